"""The three samplers in the real host, through SamplerCustomAdvanced, with an exact velocity field in
Flux's model class (its latent format, scale and shift, is on the path), under Flux's shifted
schedule and SD3's shift 3."""
import comfy.model_management
import pytest
import torch

from harness import exact_models as em

SHIFTS = ["flux", "sd3"]
SOLVERS = ["euler", "midpoint", "fireflow"]
STEPS = [4, 8, 28]
SHAPE = (1, 16, 8, 8)


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


class Flow:
    """Builds graphs out of the host's own nodes, as a workflow would wire them."""

    def __init__(self, node):
        self.node = node
        self.M = {name: node(name) for name in ("ModelSamplingFlux", "ModelSamplingSD3")}
        generator = torch.Generator().manual_seed(0)
        self.mu = 0.5 * torch.randn(SHAPE[1:], generator=generator)
        self.field = em.GaussianMixture([self.mu], [0.5])

    def model(self, shift, field=None, dtype=torch.float32):
        return em.shifted(self.M, em.exact_flux(field or self.field, dtype), shift)

    def calls(self, model):
        return model.model.diffusion_model.calls

    def sigmas(self, model, steps):
        return self.node("BasicScheduler").execute(model, "simple", steps, 1.0)[0]

    def image(self, model, seed, batch=1):
        """An image latent in the VAE's space, drawn from the data distribution."""
        x0 = self.field.sample(batch, torch.Generator().manual_seed(seed))
        return {"samples": model.model.process_latent_out(x0)}

    def run(self, model, sampler, sigmas, latent, noise=None):
        guider = self.node("BasicGuider").execute(model, em.flux_conditioning())[0]
        noise = noise or self.node("DisableNoise").execute()[0]
        return self.node("SamplerCustomAdvanced").execute(noise, guider, sampler, sigmas, latent)[0]

    def sample(self, model, sampler, sigmas, latent, callback, noise=None):
        """What SamplerCustomAdvanced runs (the guider's sample) with ``callback`` in the place of the
        progress bar's: the host's own per-step report, which newer hosts throttle behind the bar."""
        guider = self.node("BasicGuider").execute(model, em.flux_conditioning())[0]
        noise = noise or self.node("DisableNoise").execute()[0]
        return guider.sample(noise.generate_noise(latent), latent["samples"], sampler, sigmas, callback=callback,
                             disable_pbar=True, seed=noise.seed)

    def inversion(self, gamma, seed=7, solver="euler", record_path=False):
        """The RF-Inversion Sampler's SAMPLER (with record_path, the exact path's inversion)."""
        return self.node("RFInversionSampler").execute(gamma, seed, solver, record_path)[0]

    def invert(self, model, latent, sigmas, gamma, seed=7, solver="euler", sampler=None):
        sampler = sampler or self.inversion(gamma, seed, solver)
        return self.run(model, sampler, self.node("FlipSigmas").execute(sigmas)[0], latent)

    def reverse_sampler(self, reference, solver="euler", eta=0.9, start=0.0, stop=0.25, trend="constant",
                        stochastic=False, seed=0, inversion=None):
        """The Controlled Reverse Sampler's SAMPLER."""
        return self.node("ControlledReverseSampler").execute(reference, eta, start, stop, trend, stochastic, seed,
                                                             solver, inversion)[0]

    def reverse(self, model, inverted, reference, sigmas, eta, start=0.0, stop=0.25, trend="constant",
                stochastic=False, seed=0, solver="euler", inversion=None):
        sampler = self.reverse_sampler(reference, solver, eta, start, stop, trend, stochastic, seed, inversion)
        return self.run(model, sampler, sigmas, inverted)


@pytest.fixture(scope="module")
def flow(node):
    return Flow(node)


def y1_of(seed, shape):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def partial(sigmas, at=0.6):
    """The schedule truncated at sigma = ``at``: partial strength, as img2img strength truncates it."""
    return torch.cat([torch.tensor([at]), sigmas[sigmas < at]])


# --- the control targets ---------------------------------------------------------------------

@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("steps", STEPS)
def test_gamma_one_reaches_the_seeded_noise(flow, shift, steps):
    model = flow.model(shift)
    sigmas = flow.sigmas(model, steps)
    assert float(sigmas[0]) == 1.0
    target = model.model.process_latent_out(y1_of(7, SHAPE))
    for image_seed in (1, 2):  # whatever the input image
        out = flow.invert(model, flow.image(model, image_seed), sigmas, gamma=1.0, seed=7)["samples"]
        assert torch.isfinite(out).all()
        assert rel(out, target) <= 1e-5


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("steps", STEPS)
def test_eta_one_over_the_whole_window_lands_on_the_reference(flow, shift, steps):
    model = flow.model(shift)
    sigmas = flow.sigmas(model, steps)
    reference = flow.image(model, 1)
    inverted = flow.invert(model, reference, sigmas, gamma=0.5)
    out = flow.reverse(model, inverted, reference, sigmas, eta=1.0, start=0.0, stop=1.0)["samples"]
    assert rel(out, reference["samples"]) <= 1e-5


def reconstruction_errors(flow, model, sigma_list, image):
    errors = []
    for sigmas in sigma_list:
        inverted = flow.invert(model, image, sigmas, gamma=0.0)
        out = flow.reverse(model, inverted, image, sigmas, eta=0.0)["samples"]
        errors.append(rel(out, image["samples"]))
    return errors


@pytest.mark.parametrize("shift", SHIFTS)
def test_plain_inversion_and_reconstruction_converge_first_order(flow, shift):
    model = flow.model(shift)
    image = flow.image(model, 1)
    e4, e8, e14, e28 = reconstruction_errors(flow, model, [flow.sigmas(model, n) for n in (4, 8, 14, 28)], image)
    assert e4 > e8 > e14 > e28
    # first order: doubling the steps about halves the error
    assert 0.4 < e8 / e4 < 0.7, (e4, e8)
    assert 0.4 < e28 / e14 < 0.7, (e14, e28)


# --- partial strength: invert to sigma 0.6 and reverse from there ---------------------------

@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("steps", STEPS)
def test_partial_strength_targets(flow, shift, steps):
    model = flow.model(shift)
    sigmas = partial(flow.sigmas(model, steps))
    assert float(sigmas[0]) == pytest.approx(0.6)
    image = flow.image(model, 1)
    # gamma = 1 goes straight toward y1: at sigma_end the state is the point of that line,
    # y1 + (y0 - y1) (1 - sigma_end) / (1 - sigma_start), in the model's space.
    flipped = flow.node("FlipSigmas").execute(sigmas)[0]
    s0, s1 = float(flipped[0]), float(flipped[-1])
    y0 = model.model.process_latent_in(image["samples"])
    y1 = y1_of(7, SHAPE)
    expected = model.model.process_latent_out(y1 + (y0 - y1) * (1 - s1) / (1 - s0))
    inverted = flow.invert(model, image, sigmas, gamma=1.0)
    assert rel(inverted["samples"], expected) <= 1e-5
    out = flow.reverse(model, inverted, image, sigmas, eta=1.0, start=0.0, stop=1.0)["samples"]
    assert rel(out, image["samples"]) <= 1e-5


@pytest.mark.parametrize("shift", SHIFTS)
def test_partial_strength_reconstruction_converges_first_order(flow, shift):
    model = flow.model(shift)
    image = flow.image(model, 1)
    e4, e8, e14, e28 = reconstruction_errors(
        flow, model, [partial(flow.sigmas(model, n)) for n in (4, 8, 14, 28)], image)
    assert e4 > e8 > e14 > e28
    assert 0.35 < e8 / e4 < 0.75, (e4, e8)
    assert 0.35 < e28 / e14 < 0.75, (e14, e28)


def test_inversion_to_sigma_one_passes_the_structured_noise_through_unchanged(flow):
    """ComfyUI's stock path would divide by (1 - 1) after the inversion and drop the latent at
    sigma = 1 before the reverse; the state must arrive intact instead."""
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 8)
    image = flow.image(model, 1)
    inverted = flow.invert(model, image, sigmas, gamma=0.5)["samples"]
    assert torch.isfinite(inverted).all()
    noise_std = float(model.model.process_latent_in(inverted).std())
    assert 0.5 < noise_std < 1.5  # structured noise, in the model's space about unit scale
    # The reverse with eta = 0 on the first step only sees the model: a changed inverted latent
    # changes the output, so the state is really used at sigma = 1.
    a = flow.reverse(model, {"samples": inverted}, image, sigmas, eta=0.0)["samples"]
    b = flow.reverse(model, {"samples": inverted * 1.1}, image, sigmas, eta=0.0)["samples"]
    assert rel(a, b) > 1e-3


# --- the rectified SDE -----------------------------------------------------------------------

def test_sde_generation_matches_the_data_distribution(flow, node):
    mu, s = torch.full(SHAPE[1:], 0.8), 0.5
    field = em.GaussianMixture([mu], [s])
    model = flow.model("flux", field)
    sigmas = flow.sigmas(model, 28)
    sampler = node("RectifiedSDESampler").execute(1.0)[0]
    empty = {"samples": torch.zeros(64, *SHAPE[1:])}
    out = flow.run(model, sampler, sigmas, empty, noise=node("RandomNoise").execute(123)[0])["samples"]
    x = model.model.process_latent_in(out)
    assert torch.isfinite(x).all()
    assert abs(float(x.mean()) - 0.8) / 0.8 < 0.03
    assert abs(float((x - mu).std()) - s) / s < 0.03


def test_sde_is_reproducible_per_seed(flow, node):
    model = flow.model("sd3")
    sigmas = flow.sigmas(model, 8)
    sampler = node("RectifiedSDESampler").execute(1.0)[0]
    empty = {"samples": torch.zeros(2, *SHAPE[1:])}
    a = flow.run(model, sampler, sigmas, empty, noise=node("RandomNoise").execute(5)[0])["samples"]
    b = flow.run(model, sampler, sigmas, empty, noise=node("RandomNoise").execute(5)[0])["samples"]
    c = flow.run(model, sampler, sigmas, empty, noise=node("RandomNoise").execute(6)[0])["samples"]
    assert torch.equal(a, b)
    assert rel(a, c) > 0.1
    top = flow.run(model, sampler, sigmas, empty, noise=node("RandomNoise").execute(2**64 - 1)[0])["samples"]
    assert torch.isfinite(top).all()  # the largest seed the widget allows


def test_stochastic_reverse_lands_on_the_reference_with_eta_one(flow):
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 8)
    image = flow.image(model, 1)
    inverted = flow.invert(model, image, sigmas, gamma=0.5)
    out = flow.reverse(model, inverted, image, sigmas, eta=1.0, stop=1.0, stochastic=True, seed=3)["samples"]
    assert rel(out, image["samples"]) <= 1e-5
    # and with eta = 0 the seed matters: the noise is really there
    a = flow.reverse(model, inverted, image, sigmas, eta=0.0, stochastic=True, seed=3)["samples"]
    b = flow.reverse(model, inverted, image, sigmas, eta=0.0, stochastic=True, seed=4)["samples"]
    assert torch.isfinite(a).all() and rel(a, b) > 1e-3


# --- re-queue, batches, dtypes ---------------------------------------------------------------

@pytest.mark.parametrize("solver", SOLVERS)
def test_requeue_is_bit_identical_and_leaves_the_global_rng_alone(flow, solver):
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 8)
    image = flow.image(model, 1, batch=2)
    state = torch.get_rng_state()
    outs = []
    for _ in range(2):
        inverted = flow.invert(model, image, sigmas, gamma=0.5, seed=11, solver=solver)
        outs.append(flow.reverse(model, inverted, image, sigmas, eta=0.9, solver=solver)["samples"])
        if solver == "euler":  # the stochastic step is Euler-Maruyama only
            outs.append(flow.reverse(model, inverted, image, sigmas, eta=0.9, stochastic=True, seed=4)["samples"])
    half = len(outs) // 2
    assert all(torch.equal(a, b) for a, b in zip(outs[:half], outs[half:]))
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("solver", SOLVERS)
def test_batch_of_three_keeps_each_sample_exact(flow, solver):
    model = flow.model("sd3")
    sigmas = flow.sigmas(model, 8)
    image = flow.image(model, 1, batch=3)
    inverted = flow.invert(model, image, sigmas, gamma=1.0, seed=7, solver=solver)["samples"]
    target = model.model.process_latent_out(y1_of(7, (3, *SHAPE[1:])))
    assert rel(inverted, target) <= 1e-5
    out = flow.reverse(model, {"samples": inverted}, image, sigmas, eta=1.0, stop=1.0, solver=solver)["samples"]
    for b in range(3):
        assert rel(out[b], image["samples"][b]) <= 1e-5
    # a single reference broadcasts over the batch
    one = {"samples": image["samples"][:1]}
    out = flow.reverse(model, {"samples": inverted}, one, sigmas, eta=1.0, stop=1.0, solver=solver)["samples"]
    assert rel(out, one["samples"].expand_as(out)) <= 1e-5
    # each sample of the batch is integrated as it would be alone (gamma 0: y1 is drawn per batch shape)
    alone = flow.reverse(model, flow.invert(model, {"samples": image["samples"][1:2]}, sigmas, gamma=0.0, solver=solver),
                         {"samples": image["samples"][1:2]}, sigmas, eta=0.5, solver=solver)["samples"]
    batch = flow.reverse(model, flow.invert(model, image, sigmas, gamma=0.0, solver=solver), image, sigmas, eta=0.5,
                         solver=solver)["samples"]
    assert rel(batch[1:2], alone) <= 1e-5


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 0.05), (torch.float16, 0.01)])
def test_half_precision_models(flow, dtype, tol, solver):
    full, half = flow.model("flux"), flow.model("flux", dtype=dtype)
    assert half.model.get_dtype() == dtype
    sigmas = flow.sigmas(full, 14)
    image = flow.image(full, 1, batch=2)
    results = []
    for model in (full, half):
        inverted = flow.invert(model, image, sigmas, gamma=0.0, solver=solver)
        results.append(flow.reverse(model, inverted, image, sigmas, eta=0.0, solver=solver)["samples"])
    assert torch.isfinite(results[1]).all()
    assert rel(results[1], results[0]) < tol
    # the control targets do not depend on the network's precision
    inverted = flow.invert(half, image, sigmas, gamma=1.0, seed=7, solver=solver)["samples"]
    assert rel(inverted, full.model.process_latent_out(y1_of(7, (2, *SHAPE[1:])))) <= 1e-5


# --- the host's sampler plumbing: SamplerCustom, progress, interrupt -------------------------

@pytest.mark.parametrize("solver", SOLVERS)
def test_drop_in_for_sampler_custom(flow, node, solver):
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 8)
    image = flow.image(model, 1)
    cond = em.flux_conditioning()
    custom = node("SamplerCustom")
    inverted = custom.execute(model, False, 0, 1.0, cond, cond, node("RFInversionSampler").execute(0.5, 7, solver)[0],
                              node("FlipSigmas").execute(sigmas)[0], image)[0]
    reverse = node("ControlledReverseSampler").execute(image, 1.0, 0.0, 1.0, "constant", False, 0, solver)[0]
    out = custom.execute(model, False, 0, 1.0, cond, cond, reverse, sigmas, inverted)[0]
    assert rel(out["samples"], image["samples"]) <= 1e-5


@pytest.mark.parametrize("solver", SOLVERS)
def test_every_step_reports_progress(flow, node, solver):
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 6)
    image = flow.image(model, 1)
    inverted = flow.invert(model, image, sigmas, gamma=0.5, solver=solver)
    seen = []
    report = lambda i, denoised, x, total: seen.append((i + 1, total))  # noqa: E731  as the progress bar counts
    flow.sample(model, node("RFInversionSampler").execute(0.5, 7, solver)[0], node("FlipSigmas").execute(sigmas)[0],
                image, report)
    flow.sample(model, node("ControlledReverseSampler").execute(image, 0.9, 0.0, 0.25, "constant", False, 0, solver)[0],
                sigmas, inverted, report)
    assert seen == [(i, 6) for i in range(1, 7)] * 2  # once per step, whatever the network calls per step


@pytest.mark.parametrize("which,solver", [("inversion", s) for s in SOLVERS] + [("reverse", s) for s in SOLVERS]
                         + [("sde", "euler")])
def test_interrupt_stops_sampling(flow, node, which, solver):
    """The host's interrupt, set at the third step's report, stops the sampler before its next network call."""
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 10)
    image = flow.image(model, 1)
    inverted = flow.invert(model, image, sigmas, gamma=0.5)
    steps = []

    def interrupt_at_step_three(i, denoised, x, total):
        steps.append(i + 1)
        if i + 1 == 3:
            comfy.model_management.interrupt_current_processing(True)

    calls = flow.calls(model)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            if which == "inversion":
                flow.sample(model, node("RFInversionSampler").execute(0.5, 7, solver)[0],
                            node("FlipSigmas").execute(sigmas)[0], image, interrupt_at_step_three)
            elif which == "reverse":
                reverse = node("ControlledReverseSampler").execute(image, 0.9, 0.0, 0.25, "constant", False, 0, solver)[0]
                flow.sample(model, reverse, sigmas, inverted, interrupt_at_step_three)
            else:
                flow.sample(model, node("RectifiedSDESampler").execute(1.0)[0], sigmas, {"samples": torch.zeros(SHAPE)},
                            interrupt_at_step_three, noise=node("RandomNoise").execute(1)[0])
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert steps == [1, 2, 3]
    # stopped before the next network call, not at the end: the calls of the 3 steps reported
    # (the Rectified SDE runs in KSAMPLER's own wrapper, which checks at the report after a call)
    expected = 4 if which == "sde" else {"euler": 3, "midpoint": 6, "fireflow": 4}[solver]
    assert flow.calls(model) - calls == expected


# --- the eta window --------------------------------------------------------------------------

@pytest.mark.parametrize("trend", ["linear_increase", "linear_decrease", "constant"])
def test_a_window_of_one_step_with_any_trend(flow, trend):
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 4)
    image = flow.image(model, 1)
    inverted = flow.invert(model, image, sigmas, gamma=0.5)
    # steps 0..3: start 0.75 <= i/4 < 1.0 holds for the last step only, and eta = 1 there lands on y0
    out = flow.reverse(model, inverted, image, sigmas, eta=1.0, start=0.75, stop=1.0, trend=trend)["samples"]
    assert rel(out, image["samples"]) <= 1e-5
    out = flow.reverse(model, inverted, image, sigmas, eta=0.9, start=0.0, stop=0.25, trend=trend)["samples"]
    assert torch.isfinite(out).all()


def test_eta_keeps_more_of_the_reference_as_it_grows(flow):
    """A different prompt is a different field: the edit moves away from the reference, and eta
    pulls it back, monotonically."""
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 14)
    image = flow.image(model, 1)
    inverted = flow.invert(model, image, sigmas, gamma=0.5)
    edit = flow.model("flux", em.GaussianMixture([-flow.mu], [0.5]))
    errors = [rel(flow.reverse(edit, inverted, image, sigmas, eta=eta, stop=0.5)["samples"], image["samples"])
              for eta in (0.0, 0.5, 0.9, 1.0)]
    assert errors == sorted(errors, reverse=True), errors
    assert errors[0] > 1.1 * errors[-1]


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_noise_mask_keeps_the_outside_of_the_mask(flow, node, solver):
    """Masks go through ComfyUI's own inpaint blending (KSamplerX0Inpaint): an edit under a noise
    mask changes the inside and returns the outside as the reference."""
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 8)
    image = flow.image(model, 1)
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :32] = 1.0  # the left half of the image may change
    masked = node("SetLatentNoiseMask")().set_mask(image, mask)[0]
    inverted = flow.invert(model, masked, sigmas, gamma=0.5, solver=solver)
    assert "noise_mask" in inverted
    edit = flow.model("flux", em.GaussianMixture([-flow.mu], [0.5]))
    inputs = []
    edit.set_model_unet_function_wrapper(lambda apply, a: inputs.append(
        (a["input"].clone(), float(a["c"]["transformer_options"]["sigmas"][0]))) or apply(a["input"], a["timestep"], **a["c"]))
    out = flow.reverse(edit, inverted, image, sigmas, eta=0.0, solver=solver)["samples"]
    ref = image["samples"]
    # the network sees the outside of the mask on its path, at every call (midpoints too): the line
    # from y0 through the inverted state, which it is at sigma = 1
    state = edit.model.process_latent_in(inverted["samples"])
    y0 = edit.model.process_latent_in(ref)
    assert float(sigmas[0]) == 1.0 and inputs[0][1] == 1.0
    for seen, sigma in inputs:
        assert rel(seen[..., 4:], (y0 + sigma * (state - y0))[..., 4:]) <= 1e-5, sigma
    assert torch.isfinite(out).all()
    assert rel(out[..., 4:], ref[..., 4:]) <= 1e-5  # latent columns 4..7: pixels 32..63, outside the mask
    assert rel(out[..., :4], ref[..., :4]) > 0.1


# --- a schedule with zero-length steps (issue 19) ---------------------------------------------

# The steps are dropped before any solver runs: euler (the paper's) and fireflow (the shipped workflows', which
# carries the network's velocity from one step to the next) stand for the three, at 1000 steps each.
@pytest.mark.parametrize("solver", ["euler", "fireflow"])
def test_a_schedule_that_repeats_sigmas_runs_without_its_zero_length_steps(flow, node, solver):
    """What the host does: ComfyUI's simple scheduler picks its sigmas from the model's table (1000 of them
    under SD3's sampling, here on Flux's class; 10000 under Flux's own), so at 1200 steps it lists 200
    sigmas twice, and its own euler runs all 1200 steps, a network call each, 200 of them on steps that
    move nothing. The RF samplers skip those steps: both passes give, bit for bit, the run on the 1000
    distinct sigmas (its network calls, its eta window as fractions of the 1000 steps, its progress
    count), the exact path's record agrees between the two, and a schedule that really goes the wrong
    way is still refused."""
    model = flow.model("sd3")
    sigmas = flow.sigmas(model, 1200)
    distinct = torch.unique_consecutive(sigmas)
    assert (len(sigmas), len(distinct)) == (1201, 1001) and bool((sigmas[1:] <= sigmas[:-1]).all())
    if solver == "euler":
        calls = flow.calls(model)
        flow.run(model, node("KSamplerSelect").execute("euler")[0], sigmas, {"samples": torch.zeros(SHAPE)},
                 noise=node("RandomNoise").execute(1)[0])
        assert flow.calls(model) - calls == 1200
    image = flow.image(model, 1)
    flipped = node("FlipSigmas").execute(sigmas)[0]
    seen, calls = [], flow.calls(model)
    inverted = flow.sample(model, flow.inversion(0.5, solver=solver), flipped, image,
                           lambda i, d, x, total: seen.append((i, total)))
    assert flow.calls(model) - calls == {"euler": 1000, "fireflow": 1001}[solver]
    assert seen == [(i, 1000) for i in range(1000)]
    inverted = {"samples": inverted}
    assert torch.equal(inverted["samples"], flow.invert(model, image, distinct, 0.5, solver=solver)["samples"])
    # eta 0.9 over the first quarter of the steps that run: 250 of the 1000
    edit = flow.model("sd3", em.GaussianMixture([-flow.mu], [0.5]))
    out = flow.reverse(edit, inverted, image, sigmas, eta=0.9, solver=solver)["samples"]
    assert torch.equal(out, flow.reverse(edit, inverted, image, distinct, eta=0.9, solver=solver)["samples"])
    if solver == "fireflow":  # the exact path (the shipped workflows' solver): both passes count the steps that run
        inversion = flow.inversion(0.5, seed=14, solver=solver, record_path=True)
        linked = flow.invert(model, image, sigmas, 0.5, seed=14, solver=solver, sampler=inversion)
        back = flow.reverse(model, linked, image, sigmas, eta=0.0, solver=solver, inversion=inversion)["samples"]
        error = rel(back, image["samples"])
        print(f"{solver}: 1200 listed steps, 1000 run; the linked round trip returns the photo to {error:.1e}")
        assert error <= 1e-6
    for sampler, wrong in ((flow.inversion(0.5, solver=solver), sigmas), (flow.reverse_sampler(image, solver), flipped)):
        calls = flow.calls(model)
        with pytest.raises(ValueError, match="must (increase|decrease)"):
            flow.run(model, sampler, wrong, image)
        assert flow.calls(model) == calls
