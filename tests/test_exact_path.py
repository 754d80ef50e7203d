"""The exact path (EXACT_PATH.md, issue 16) in the real host, through SamplerCustomAdvanced: the
RF-Inversion Sampler with record_path on, wired to the Controlled Reverse Sampler's inversion input.

Exact Gaussian and two-mode mixture fields in Flux's model class and in Wan 2.2 5B's (a video class):
with the link and eta = 0 under the inversion's conditioning the reverse returns the input to float
precision, for every solver, step count and gamma, with the same reverse calls as without it; the
control targets stay exact; every wrong wiring is named before any model call. The records live in one
bounded store (nodes/samplers.py), one per inverted latent: a re-created RF-Inversion Sampler finds its
twin's, two photos through one SAMPLER each find their own, and the bound drops the oldest (issue 19)."""
import contextlib

import comfy.model_management
import pytest
import torch

from harness import exact_models as em
from test_errors import fails_before_any_model_call
from test_families import FamilyFlow
from test_samplers import SHAPE, SOLVERS, Flow, partial, rel, y1_of
from test_solvers import CALLS, FIELDS, counted, field_of

# Network calls of an inversion that records its path: its own, then the reverse's along the path,
# less the calls the two share (the D at each visited state, for the rules that start a step with one).
RECORDING_CALLS = {"euler": lambda n: n + 1, "midpoint": lambda n: 3 * n + 1, "fireflow": lambda n: 2 * n + 2}


@pytest.fixture(scope="module")
def flow(node):
    return Flow(node)


@pytest.fixture(scope="module")
def store(pack):
    """The pack's one store of exact-path records, as the host loaded it."""
    return pack.nodes.samplers.RECORDS


@contextlib.contextmanager
def isolated(store, budget=None):
    """The real store, emptied for a test that counts on what it holds (other tests' records, made with
    the same settings, would otherwise be found), then given back as it was."""
    saved = store.records, dict(store.dropped), store.budget
    store.records, store.dropped, store.budget = [], {}, store.budget if budget is None else budget
    try:
        yield store
    finally:
        store.records, store.dropped, store.budget = saved


@pytest.fixture(scope="module")
def wan(node):
    return FamilyFlow(node, "wan22_5b")


def linked_round_trip(flow, model, image, sigmas, gamma, solver, **reverse):
    """Invert with record_path, then reverse through the link; returns the output, the inversion's and
    the reverse's network calls, and the inversion's SAMPLER."""
    inversion = flow.inversion(gamma, solver=solver, record_path=True)
    inverted, inv_calls = counted(flow, model, lambda: flow.invert(model, image, sigmas, gamma, solver=solver,
                                                                   sampler=inversion))
    reverse = {"eta": 0.0, **reverse}
    out, rev_calls = counted(flow, model, lambda: flow.reverse(model, inverted, image, sigmas, solver=solver,
                                                               inversion=inversion, **reverse)["samples"])
    return out, inv_calls, rev_calls, inversion, inverted


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("gamma", [0.0, 0.5])
@pytest.mark.parametrize("steps", [8, 28])
@pytest.mark.parametrize("field", FIELDS)
def test_the_linked_reverse_returns_the_input(flow, store, field, steps, gamma, solver):
    model = flow.model("flux", field_of(flow, field))
    sigmas = flow.sigmas(model, steps)
    image = flow.image(model, 1)
    out, inv_calls, rev_calls, inversion, inverted = linked_round_trip(flow, model, image, sigmas, gamma, solver)
    assert rel(out, image["samples"]) <= 1e-5
    assert inv_calls == RECORDING_CALLS[solver](steps)
    # the same reverse, unlinked: the same network calls, and only the solver's error to the input
    plain, plain_calls = counted(flow, model, lambda: flow.reverse(model, inverted, image, sigmas, eta=0.0,
                                                                   solver=solver)["samples"])
    assert plain_calls == rev_calls == CALLS[solver](steps)
    assert rel(plain, image["samples"]) > 1e3 * rel(out, image["samples"])
    # the record: one residual per step, the photo and the inverted state, on the intermediate device
    path = store.of(inversion.key)[0]
    assert len(path.residuals) == steps and path.solver == solver
    assert path.nbytes == (steps + 2) * image["samples"].numel() * 4
    assert all(r.device == comfy.model_management.intermediate_device() for r in [path.start, *path.residuals])


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_the_linked_reverse_returns_a_video(wan, solver, gamma):
    """Wan 2.2 5B's class: a 5-D latent in its 48-channel per-channel format, shift 8."""
    model = wan.model(em.GaussianMixture([wan.mu, -wan.mu], [0.5, 0.3], [0.5, 0.5]))
    sigmas = wan.sigmas(model, 8)
    image = wan.image(model, 1)
    out, inv_calls, rev_calls, _, _ = linked_round_trip(wan, model, image, sigmas, gamma, solver)
    assert out.shape == image["samples"].shape
    assert rel(out, image["samples"]) <= 1e-5
    assert (inv_calls, rev_calls) == (RECORDING_CALLS[solver](8), CALLS[solver](8))


def test_recording_leaves_the_inversion_as_it_was(flow):
    """record_path adds work after the inversion's last step; the inverted latent is the same bit for bit."""
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 8)
    image = flow.image(model, 1)
    for solver in SOLVERS:
        plain = flow.invert(model, image, sigmas, 0.5, solver=solver)["samples"]
        recorded = flow.invert(model, image, sigmas, 0.5, solver=solver,
                               sampler=flow.inversion(0.5, solver=solver, record_path=True))["samples"]
        assert torch.equal(plain, recorded), solver


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("field", FIELDS)
def test_gamma_one_and_eta_one_stay_exact_with_the_link(flow, field, solver):
    model = flow.model("flux", field_of(flow, field))
    sigmas = flow.sigmas(model, 8)
    image = flow.image(model, 1)
    inversion = flow.inversion(1.0, solver=solver, record_path=True)
    inverted = flow.invert(model, image, sigmas, 1.0, solver=solver, sampler=inversion)
    assert rel(inverted["samples"], model.model.process_latent_out(y1_of(7, SHAPE))) <= 1e-5
    out = flow.reverse(model, inverted, image, sigmas, eta=0.0, solver=solver, inversion=inversion)["samples"]
    assert rel(out, image["samples"]) <= 1e-5  # from y1 itself, the path brings the photo back
    # eta = 1 lands on the reference alone, even with an edit's field and a reference that is not the input
    edit = flow.model("flux", em.GaussianMixture([-flow.mu], [0.5]))
    other = flow.image(model, 2)
    out = flow.reverse(edit, inverted, other, sigmas, eta=1.0, stop=1.0, solver=solver, inversion=inversion)["samples"]
    assert rel(out, other["samples"]) <= 1e-5


@pytest.mark.parametrize("solver", SOLVERS)
def test_an_edit_through_the_path_keeps_more_of_the_input(flow, solver):
    """Another prompt is another field: through the path, the edit moves away from the input by the
    difference of the two fields only, so it stays closer than the same edit without the link."""
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 28)
    image = flow.image(model, 1)
    inversion = flow.inversion(0.0, solver=solver, record_path=True)
    inverted = flow.invert(model, image, sigmas, 0.0, solver=solver, sampler=inversion)
    edit = flow.model("flux", em.GaussianMixture([flow.mu + 0.1], [0.5]))
    linked = flow.reverse(edit, inverted, image, sigmas, eta=0.0, solver=solver, inversion=inversion)["samples"]
    plain = flow.reverse(edit, inverted, image, sigmas, eta=0.0, solver=solver)["samples"]
    assert 0 < rel(linked, image["samples"]) < rel(plain, image["samples"])


@pytest.mark.parametrize("solver", SOLVERS)
def test_partial_strength_batch_and_a_mask_through_the_path(flow, node, solver):
    model = flow.model("sd3")
    sigmas = partial(flow.sigmas(model, 8))
    image = flow.image(model, 1, batch=2)
    out, _, _, _, _ = linked_round_trip(flow, model, image, sigmas, 0.5, solver)
    for b in range(2):
        assert rel(out[b], image["samples"][b]) <= 1e-5
    # a noise mask: outside it the edit is the reference, inside the path is kept as well as without a mask
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :32] = 1.0
    masked = node("SetLatentNoiseMask")().set_mask(image, mask)[0]
    inversion = flow.inversion(0.5, solver=solver, record_path=True)
    inverted = flow.invert(model, masked, sigmas, 0.5, solver=solver, sampler=inversion)
    back = flow.reverse(model, inverted, image, sigmas, eta=0.0, solver=solver, inversion=inversion)["samples"]
    assert rel(back, image["samples"]) <= 1e-5
    edit = flow.model("sd3", em.GaussianMixture([-flow.mu], [0.5]))
    out = flow.reverse(edit, inverted, image, sigmas, eta=0.0, solver=solver, inversion=inversion)["samples"]
    assert rel(out[..., 4:], image["samples"][..., 4:]) <= 1e-5
    assert rel(out[..., :4], image["samples"][..., :4]) > 0.1


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_through_the_path(flow, solver, dtype):
    """The reverse replays the inversion's network calls on the same states, so a half precision network
    returns the photo to float32 rounding, far closer than its own precision (measured: 6e-8)."""
    model = flow.model("flux", dtype=dtype)
    sigmas = flow.sigmas(model, 14)
    image = flow.image(model, 1)
    out, _, _, _, inverted = linked_round_trip(flow, model, image, sigmas, 0.5, solver)
    assert torch.isfinite(out).all()
    assert rel(out, image["samples"]) <= 1e-5
    plain = flow.reverse(model, inverted, image, sigmas, eta=0.0, solver=solver)["samples"]
    assert rel(plain, image["samples"]) > 10 * rel(out, image["samples"])


def test_a_re_created_sampler_finds_the_record_of_its_twin(flow):
    """Under --cache-lru ComfyUI may drop the RF-Inversion Sampler's output and keep its inversion's latent:
    the node then runs again, a new SAMPLER with the same settings, and the reverse still finds the record."""
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 8)
    image = flow.image(model, 1)
    inverted = flow.invert(model, image, sigmas, 0.5, seed=11, solver="fireflow",
                           sampler=flow.inversion(0.5, seed=11, solver="fireflow", record_path=True))
    twin = flow.inversion(0.5, seed=11, solver="fireflow", record_path=True)
    calls = flow.calls(model)
    out = flow.reverse(model, inverted, image, sigmas, eta=0.0, solver="fireflow", inversion=twin)["samples"]
    assert flow.calls(model) - calls == CALLS["fireflow"](8)  # the reverse's own calls: the record was not made again
    error = rel(out, image["samples"])
    print(f"through a re-created twin: relative error {error:.1e}")
    assert error <= 1e-6


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("gamma", [0.5, 1.0])
def test_two_photos_through_one_sampler_each_find_their_own(flow, store, gamma, solver):
    """Two inversions through one SAMPLER, then the two linked reverses: each comes back to its own photo.
    At gamma = 1 both inversions end on y1 itself, and the reference tells the records apart."""
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 8)
    photos = [flow.image(model, 1), flow.image(model, 2)]
    inversion = flow.inversion(gamma, seed=12, solver=solver, record_path=True)
    inverted = [flow.invert(model, photo, sigmas, gamma, seed=12, solver=solver, sampler=inversion) for photo in photos]
    assert len(store.of(inversion.key)) >= 2
    errors = []
    for photo, latent in zip(photos, inverted):
        out = flow.reverse(model, latent, photo, sigmas, eta=0.0, solver=solver, inversion=inversion)["samples"]
        errors.append(rel(out, photo["samples"]))
    print(f"gamma {gamma}, {solver}: the two photos come back to {errors[0]:.1e} and {errors[1]:.1e}")
    assert max(errors) <= 1e-6
    assert rel(photos[0]["samples"], photos[1]["samples"]) > 0.1  # two photos, not one twice


def test_the_bound_drops_the_oldest_record(flow, node, store):
    """A store that holds two records: a third inversion drops the oldest. Its reverse then names the bound
    and the fix, before any model call; the fingerprint that ComfyUI's cache reads changes, so that a
    re-queue runs the inversion again; the two newer records still serve their reverses; and a record a
    reverse used is dropped after one that was used before it."""
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 8)
    photos = [flow.image(model, seed) for seed in (1, 2, 3)]
    record = (8 + 2) * photos[0]["samples"].numel() * 4  # 40 KiB: 8 steps + 2 latents of 16 x 8 x 8 floats
    fingerprint = lambda: node("RFInversionSampler").fingerprint_inputs(0.5, 13, "euler", True)  # noqa: E731

    def held():
        """Which photos the store holds records of, oldest first."""
        return [[rel(r.start, model.model.process_latent_in(p["samples"])) < 1e-6 for p in photos].index(True)
                for r in store.records]

    with isolated(store, budget=int(2.5 * record)):
        before = fingerprint()
        inversion = flow.inversion(0.5, seed=13, solver="euler", record_path=True)
        inverted = []
        for photo in photos:
            inverted.append(flow.invert(model, photo, sigmas, 0.5, seed=13, sampler=inversion))
            assert store.nbytes <= 2.5 * record
        assert held() == [1, 2] and store.dropped == {inversion.key: 1}
        assert fingerprint() != before
        message = fails_before_any_model_call(
            flow, model, lambda: flow.reverse(model, inverted[0], photos[0], sigmas, eta=0.0, inversion=inversion),
            "Controlled Reverse Sampler", "inversion", "no record of this latent_image", "up to 100 KiB", "drops the oldest",
            "Queue the prompt again", "queue fewer")
        print(message)
        for b in (2, 1):
            out = flow.reverse(model, inverted[b], photos[b], sigmas, eta=0.0, inversion=inversion)["samples"]
            assert rel(out, photos[b]["samples"]) <= 1e-6
        assert held() == [2, 1]
        flow.invert(model, photos[0], sigmas, 0.5, seed=13, sampler=inversion)  # the re-queue's inversion
        assert held() == [1, 0] and store.dropped == {inversion.key: 2}
        out = flow.reverse(model, inverted[0], photos[0], sigmas, eta=0.0, inversion=inversion)["samples"]
        assert rel(out, photos[0]["samples"]) <= 1e-6
    assert fingerprint() == before  # the store given back as it was


# --- progress and interrupt ------------------------------------------------------------------

@pytest.mark.parametrize("solver", SOLVERS)
def test_progress_counts_the_recording_and_interrupt_leaves_no_record(flow, store, solver):
    """The recording runs the reverse's steps along the path after the inversion's own: the bar counts
    both, through the sampler's own callback. Interrupted there, the inversion leaves no record, and a
    linked reverse says so instead of retracing half a path."""
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 6)
    image = flow.image(model, 1)
    inversion = flow.inversion(0.5, solver=solver, record_path=True)
    flipped = flow.node("FlipSigmas").execute(sigmas)[0]
    seen = []
    flow.sample(model, inversion, flipped, image, lambda i, d, x, total: seen.append((i, total)))
    assert seen == [(i, 12) for i in range(12)]

    def interrupt_in_the_recording(i, d, x, total):
        if i == 7:
            comfy.model_management.interrupt_current_processing(True)

    with isolated(store):
        try:
            with pytest.raises(comfy.model_management.InterruptProcessingException):
                flow.sample(model, inversion, flipped, image, interrupt_in_the_recording)
        finally:
            comfy.model_management.interrupt_current_processing(False)
        assert store.records == []
        inverted = flow.invert(model, image, sigmas, 0.5, solver=solver)
        fails_before_any_model_call(flow, model, lambda: flow.reverse(model, inverted, image, sigmas, eta=0.0,
                                                                      solver=solver, inversion=inversion),
                                    "Controlled Reverse Sampler", "inversion", "has not recorded a run", "latent_image")
    # the run before, which completed, still serves the same latent
    out = flow.reverse(model, inverted, image, sigmas, eta=0.0, solver=solver, inversion=inversion)["samples"]
    assert rel(out, image["samples"]) <= 1e-6


# --- wrong wiring, named before any model call -----------------------------------------------

@pytest.fixture(scope="module")
def recorded(flow):
    """An 8-step fireflow inversion that recorded its path, and what it ran on."""
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 8)
    image = flow.image(model, 1)
    inversion = flow.inversion(0.5, solver="fireflow", record_path=True)
    inverted = flow.invert(model, image, sigmas, 0.5, solver="fireflow", sampler=inversion)
    return model, sigmas, image, inversion, inverted


def test_an_inversion_that_has_not_run(flow, recorded):
    model, sigmas, image, _, inverted = recorded
    fresh = flow.inversion(0.5, seed=8, solver="fireflow", record_path=True)  # settings that recorded nothing
    fails_before_any_model_call(flow, model, lambda: flow.reverse(model, inverted, image, sigmas, eta=0.9,
                                                                  solver="fireflow", inversion=fresh),
                                "Controlled Reverse Sampler", "inversion", "has not recorded a run",
                                "SamplerCustomAdvanced must run first")


def test_another_solver(flow, recorded):
    model, sigmas, image, inversion, inverted = recorded
    fails_before_any_model_call(flow, model, lambda: flow.reverse(model, inverted, image, sigmas, eta=0.9,
                                                                  solver="euler", inversion=inversion),
                                "inversion", "'fireflow' inversion", "solver is 'euler'", "Set both samplers' solver")


@pytest.mark.parametrize("which", ["steps", "split", "scheduler"])
def test_another_schedule(flow, node, recorded, which):
    model, sigmas, image, inversion, inverted = recorded
    other = {"steps": lambda: flow.sigmas(model, 9), "split": lambda: partial(sigmas),
             "scheduler": lambda: node("BasicScheduler").execute(model, "beta", 8, 1.0)[0]}[which]()
    fails_before_any_model_call(flow, model, lambda: flow.reverse(model, inverted, image, other, eta=0.9,
                                                                  solver="fireflow", inversion=inversion),
                                "inversion", "recorded a schedule of 8 steps", "Connect the sigmas whose FlipSigmas")


def test_another_latent(flow, recorded):
    model, sigmas, image, inversion, inverted = recorded
    for latent in ({"samples": inverted["samples"] + 0.1}, {"samples": inverted["samples"].repeat(2, 1, 1, 1)}):
        fails_before_any_model_call(flow, model, lambda: flow.reverse(model, latent, image, sigmas, eta=0.9,
                                                                      solver="fireflow", inversion=inversion),
                                    "inversion", "recorded the inversion of another latent", "Connect as latent_image")


def test_an_inversion_that_does_not_record_and_a_sampler_that_is_not_one(flow, node, recorded):
    _, _, image, _, _ = recorded
    reverse = node("ControlledReverseSampler")
    for sampler, needles in ((flow.inversion(0.5, solver="fireflow"), ("does not record its path", "record_path")),
                             (node("KSamplerSelect").execute("euler")[0], ("takes the SAMPLER output of an RF-Inversion",
                                                                           "KSAMPLER")),
                             (node("RectifiedSDESampler").execute(1.0)[0], ("Rectified SDE Sampler",))):
        with pytest.raises(ValueError) as error:
            reverse.execute(image, 0.9, 0.0, 0.25, "constant", False, 0, "fireflow", sampler)
        for needle in ("Controlled Reverse Sampler", "inversion", *needles):
            assert needle in str(error.value), str(error.value)


def test_a_stochastic_reverse_is_refused_with_the_link(node, recorded):
    _, _, image, inversion, _ = recorded
    with pytest.raises(ValueError) as error:
        node("ControlledReverseSampler").execute(image, 0.9, 0.0, 0.25, "constant", True, 0, "euler", inversion)
    for needle in ("Controlled Reverse Sampler", "stochastic", "inversion", "Turn stochastic off"):
        assert needle in str(error.value), str(error.value)


def test_the_new_inputs_come_last_and_are_optional(server):
    """Saved workflows store widget values by position, and saved API prompts lack the new inputs."""
    info = server.get("/object_info")
    order = info["RFInversionSampler"]["input_order"]
    assert order["required"] == ["gamma", "seed"] and order["optional"] == ["solver", "record_path"], order
    assert info["RFInversionSampler"]["input"]["optional"]["record_path"][1]["default"] is False
    order = info["ControlledReverseSampler"]["input_order"]
    assert order["optional"] == ["solver", "inversion"], order
    assert info["ControlledReverseSampler"]["input"]["optional"]["inversion"][0] == "SAMPLER"
