"""The samplers in the model classes of today's flow families, through SamplerCustomAdvanced: the
closed-form Gaussian field in the network's slot of ComfyUI's own class for Flux.2, Qwen-Image
(a 5-D latent of one frame), Lumina 2, Z-Image and Wan 2.2 5B (a 5-D video latent in its 48-channel
per-channel format), each under the schedule its workflow uses. Also: a mask per frame on a video,
a latent format that reshapes (HunyuanImage 2.1's refiner), and references of the wrong rank or
frame count."""
import pytest
import torch

from harness import exact_models as em
from test_errors import fails_before_any_model_call
from test_samplers import SOLVERS, Flow, rel

# Raw (VAE-space) latent of one sample, small, and the schedule of the family's workflow: a
# ModelSampling node with its shift then BasicScheduler "simple", or Flux.2's own scheduler.
FAMILIES = {
    "flux2": ((1, 128, 4, 4), "Flux2Scheduler", None),
    "qwen_image": ((1, 16, 1, 4, 4), "ModelSamplingAuraFlow", 3.1),
    "lumina2": ((1, 16, 4, 4), "ModelSamplingAuraFlow", 4.0),
    "zimage": ((1, 16, 4, 4), "ModelSamplingAuraFlow", 3.0),
    "wan22_5b": ((1, 48, 3, 4, 4), "ModelSamplingSD3", 8.0),
}
STEPS = [4, 8, 28]
S = 0.5  # the Gaussian's standard deviation


class FamilyFlow(Flow):
    """Flow's graphs (invert, reverse, run) on one family's model class and workflow schedule."""

    def __init__(self, node, family, raw=None, sampling=None, shift=None):
        self.node, self.family = node, family
        raw, self.sampling, self.shift = (raw, sampling, shift) if raw else FAMILIES[family]
        self.raw = raw
        self.shape = tuple(em.latent_format(family).process_in(torch.zeros(raw)).shape)  # model space
        self.mu = 0.5 * torch.randn(self.shape[1:], generator=torch.Generator().manual_seed(0))
        self.field = em.GaussianMixture([self.mu], [S])

    def model(self, field=None, dtype=torch.float32):
        model = em.exact_model(self.family, field or self.field, dtype)
        if self.sampling == "ModelSamplingAuraFlow":
            return self.node(self.sampling)().patch_aura(model, self.shift)[0]
        if self.sampling == "ModelSamplingSD3":
            return self.node(self.sampling)().patch(model, self.shift)[0]
        return model

    def sigmas(self, model, steps):
        if self.sampling == "Flux2Scheduler":  # as the Flux.2 template: at its resolution, not the test latent's
            return self.node("Flux2Scheduler").execute(steps, 1024, 1024)[0]
        return self.node("BasicScheduler").execute(model, "simple", steps, 1.0)[0]


@pytest.fixture(scope="module", params=list(FAMILIES))
def flow(request, node):
    return FamilyFlow(node, request.param)


@pytest.fixture(scope="module")
def wan(node):
    return FamilyFlow(node, "wan22_5b")


def y1_of(seed, shape):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def reconstruction_errors(flow, model, image, solver, steps_list):
    errors = []
    for steps in steps_list:
        sigmas = flow.sigmas(model, steps)
        inverted = flow.invert(model, image, sigmas, gamma=0.0, solver=solver)
        out = flow.reverse(model, inverted, image, sigmas, eta=0.0, solver=solver)["samples"]
        errors.append(rel(out, image["samples"]))
    return errors


# --- exactness in each family's class --------------------------------------------------------

def test_the_model_class_is_the_familys(flow):
    model = flow.model()
    image = flow.image(model, 1)
    assert tuple(image["samples"].shape) == flow.raw
    assert type(model.model).__name__ == {"flux2": "Flux2", "qwen_image": "QwenImage", "lumina2": "Lumina2",
                                          "zimage": "Lumina2", "wan22_5b": "WAN22"}[flow.family]
    sigmas = flow.sigmas(model, 8)
    assert float(sigmas[0]) == pytest.approx(1.0) and float(sigmas[-1]) == 0.0


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("steps", STEPS)
def test_gamma_one_reaches_y1_and_eta_one_lands_on_the_reference(flow, solver, steps):
    model = flow.model()
    sigmas = flow.sigmas(model, steps)
    image = flow.image(model, 1)
    inverted = flow.invert(model, image, sigmas, gamma=1.0, seed=7, solver=solver)["samples"]
    assert inverted.shape == image["samples"].shape
    assert rel(inverted, model.model.process_latent_out(y1_of(7, flow.shape))) <= 1e-5
    half = flow.invert(model, image, sigmas, gamma=0.5, solver=solver)
    out = flow.reverse(model, half, image, sigmas, eta=1.0, start=0.0, stop=1.0, solver=solver)["samples"]
    assert rel(out, image["samples"]) <= 1e-5


@pytest.mark.parametrize("solver", SOLVERS)
def test_the_reconstruction_converges(flow, solver):
    model = flow.model()
    image = flow.image(model, 1)
    errors = reconstruction_errors(flow, model, image, solver, (4, 16, 64))
    assert errors[0] > errors[1] > errors[2], errors
    # Steps times 16: euler, first order, more than 4 times smaller; midpoint and fireflow more than 40
    # times (second order until the floor of about 1e-4 that FlipSigmas's start at sigma 1e-4 leaves).
    assert errors[0] / errors[2] > (4.0 if solver == "euler" else 40.0), errors


def test_sde_samples_have_the_datas_mean_and_spread(flow, node):
    """At the workflows' 28 steps. The spread comes out 2 to 3 % low under these shifted schedules
    (their last sigma is 0.1 to 0.24, where the last step returns D): a discretisation bias that falls
    as the steps grow (Wan 2.2: 0.486 at 28 steps, 0.494 at 112, 0.495 at 224 for 0.5)."""
    mu = torch.full(flow.shape[1:], 0.8)
    model = flow.model(em.GaussianMixture([mu], [S]))
    sigmas = flow.sigmas(model, 28)
    empty = {"samples": torch.zeros(64, *flow.raw[1:])}
    out = flow.run(model, node("RectifiedSDESampler").execute(1.0)[0], sigmas, empty,
                   noise=node("RandomNoise").execute(123)[0])["samples"]
    x = model.model.process_latent_in(out)
    assert torch.isfinite(x).all()
    assert abs(float(x.mean()) - 0.8) / 0.8 < 0.02
    assert abs(float((x - mu).std()) - S) / S < 0.04


# --- a mask per frame on a video ---------------------------------------------------------------

@pytest.mark.parametrize("solver", SOLVERS)
def test_a_mask_per_frame_keeps_every_frame_outside_it(wan, node, solver):
    """SetLatentNoiseMask with one mask per latent frame (the host interpolates a mask to the latent's
    frames and size): frame 0 kept whole, as an image-to-video first frame; frame 1 may change on its
    left half, frame 2 on its right half. Wan 2.2 feeds its network the clean latent outside the mask."""
    model = wan.model()
    sigmas = wan.sigmas(model, 8)
    image = wan.image(model, 1)
    mask = torch.zeros(3, 64, 64)  # 4 x 4 latent cells of 16 pixels
    mask[1, :, :32] = 1.0
    mask[2, :, 32:] = 1.0
    masked = node("SetLatentNoiseMask")().set_mask(image, mask)[0]
    inverted = wan.invert(model, masked, sigmas, gamma=0.5, solver=solver)
    assert "noise_mask" in inverted
    edit = wan.model(em.GaussianMixture([-wan.mu], [S]))
    out = wan.reverse(edit, inverted, image, sigmas, eta=0.0, solver=solver)["samples"]
    ref = image["samples"]
    assert torch.isfinite(out).all() and out.shape == ref.shape
    outside = [(0, slice(None)), (1, slice(2, None)), (2, slice(None, 2))]
    inside = [(1, slice(None, 2)), (2, slice(2, None))]
    for frame, cols in outside:
        assert rel(out[:, :, frame, :, cols], ref[:, :, frame, :, cols]) <= 1e-5, frame
    for frame, cols in inside:
        assert rel(out[:, :, frame, :, cols], ref[:, :, frame, :, cols]) > 0.1, frame


# --- what the network is told under a mask, in the video classes ------------------------------
# Wan 2.2 5B tells its network one timestep per frame, HunyuanVideo one per clip, and both feed it the
# clean latent outside a mask (nodes/video_masks.py). The network records each call.

VIDEO = {"wan22_5b": {}, "hunyuan_video": dict(raw=(1, 16, 3, 4, 4), sampling="ModelSamplingSD3", shift=7.0)}


@pytest.fixture(scope="module", params=list(VIDEO))
def video(request, node):
    return FamilyFlow(node, request.param, **VIDEO[request.param])


def recorded(model, run):
    """``run()``'s output and the calls the exact network saw during it."""
    net = model.model.diffusion_model
    net.seen = []
    try:
        return run(), net.seen
    finally:
        net.seen = None


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_mask_within_frames_tells_the_network_the_sigma_it_is_fed(video, node, solver):
    """Every frame may change on its right half and keeps its left: at every call of both passes, the
    timestep is sigma's, for every token, and the left half is on one straight line from the clean
    latent (clean + sigma * d, the same d at every call): noise of level sigma, not the clean latent."""
    model = video.model()
    sigmas = video.sigmas(model, 6)
    image = video.image(model, 1)
    mask = torch.zeros(3, 64, 64)
    mask[:, :, 32:] = 1.0
    masked = node("SetLatentNoiseMask")().set_mask(image, mask)[0]
    inverted, inversion = recorded(model, lambda: video.invert(model, masked, sigmas, gamma=0.5, solver=solver))
    edit = video.model(em.GaussianMixture([-video.mu], [S]))
    out, reverse = recorded(edit, lambda: video.reverse(edit, inverted, image, sigmas, eta=0.0, solver=solver))
    y0 = model.model.process_latent_in(image["samples"])
    sampling = model.get_model_object("model_sampling")
    for calls in (inversion, reverse):
        assert len(calls) >= 6
        for call in calls:
            told = call["timestep"].double().reshape(call["timestep"].shape[0], -1)
            assert torch.allclose(told, sampling.timestep(call["sigma"]).double().reshape(-1, 1), rtol=1e-6, atol=1e-6), \
                (told, call["sigma"])
        # the line's direction, from the noisiest call; float32 cannot resolve it at FlipSigmas' 1e-4
        left = y0[..., :2].double()
        top = max(calls, key=lambda call: float(call["sigma"][0]))
        d = (top["x"][..., :2].double() - left) / float(top["sigma"][0])
        assert float(d.norm()) > 0.1 * float(left.norm()), "the left half was fed clean"
        for call in calls:
            assert rel(call["x"][..., :2], left + float(call["sigma"][0]) * d) <= 1e-5, "the left half left its straight line"
    out, ref = out["samples"], image["samples"]
    assert rel(out[..., :2], ref[..., :2]) <= 1e-5  # the output outside the mask is still the reference
    assert rel(out[..., 2:], ref[..., 2:]) > 0.1


def test_a_mask_of_whole_frames_keeps_the_hosts_timestep_per_frame(wan, node):
    """The image-to-video case: frame 0 kept whole. Wan 2.2 5B's own design stays: frame 0 fed clean
    under timestep 0, the other frames under sigma's."""
    model = wan.model()
    sigmas = wan.sigmas(model, 6)
    image = wan.image(model, 1)
    mask = torch.ones(3, 64, 64)
    mask[0] = 0.0
    masked = node("SetLatentNoiseMask")().set_mask(image, mask)[0]
    _, calls = recorded(model, lambda: wan.invert(model, masked, sigmas, gamma=0.5))
    y0 = model.model.process_latent_in(image["samples"])
    sampling = model.get_model_object("model_sampling")
    for call in calls:
        t = float(sampling.timestep(call["sigma"])[0])
        assert call["timestep"].shape == (1, 3)
        assert torch.allclose(call["timestep"].double(), torch.tensor([[0.0, t, t]], dtype=torch.float64), atol=1e-4)
        assert torch.equal(call["x"][:, :, 0], y0[:, :, 0].to(call["x"]))


# --- a latent format that reshapes: HunyuanImage 2.1's refiner ---------------------------------

@pytest.fixture(scope="module")
def refiner(node):
    # raw (B, 32, 1, H, W); the model's space pairs frames into channels: (B, 64, 1, H, W)
    return FamilyFlow(node, "hunyuan_image21_refiner", (1, 32, 1, 4, 4), "ModelSamplingSD3", 4.0)


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_latent_format_that_reshapes(refiner, solver):
    """The reference is compared with the latent being sampled in the model's space, where the
    refiner's latent has twice the channels: no false shape error, and the control targets hold."""
    model = refiner.model()
    assert refiner.shape == (1, 64, 1, 4, 4)
    sigmas = refiner.sigmas(model, 8)
    image = refiner.image(model, 1)
    assert tuple(image["samples"].shape) == (1, 32, 1, 4, 4)
    inverted = refiner.invert(model, image, sigmas, gamma=1.0, seed=7, solver=solver)["samples"]
    assert rel(inverted, model.model.process_latent_out(y1_of(7, refiner.shape))) <= 1e-5
    half = refiner.invert(model, image, sigmas, gamma=0.5, solver=solver)
    out = refiner.reverse(model, half, image, sigmas, eta=1.0, stop=1.0, solver=solver)["samples"]
    assert rel(out, image["samples"]) <= 1e-5


def test_a_reference_that_the_latent_format_cannot_reshape(refiner, node):
    """Two raw frames do not pair into the refiner's channels: the reshape fails, and the error is the
    node's, with both shapes, before any model call."""
    model = refiner.model()
    sigmas = refiner.sigmas(model, 6)
    image = refiner.image(model, 1)
    inverted = refiner.invert(model, image, sigmas, gamma=0.5)
    bad = {"samples": torch.randn(1, 32, 2, 4, 4)}
    sampler = node("ControlledReverseSampler").execute(bad, 0.9, 0.0, 0.25, "constant", False, 0, "euler")[0]
    fails_before_any_model_call(refiner, model, lambda: refiner.run(model, sampler, sigmas, inverted),
                                "Controlled Reverse Sampler", "(1, 32, 2, 4, 4)", "(1, 32, 1, 4, 4)",
                                "2 frames and the latent being sampled 1")


# --- references of the wrong rank or frame count -----------------------------------------------

def reverse_with(flow, node, reference, inverted, model, sigmas, solver="euler"):
    sampler = node("ControlledReverseSampler").execute(reference, 0.9, 0.0, 0.25, "constant", False, 0, solver)[0]
    return lambda: flow.run(model, sampler, sigmas, inverted)


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_video_reference_for_an_image_latent(node, solver):
    """Flux.2's image latent, 4-D, with a 5-D video reference."""
    flow = FamilyFlow(node, "flux2")
    model = flow.model()
    sigmas = flow.sigmas(model, 6)
    inverted = flow.invert(model, flow.image(model, 1), sigmas, gamma=0.5, solver=solver)
    video = {"samples": torch.randn(1, 128, 3, 4, 4)}
    message = fails_before_any_model_call(flow, model, reverse_with(flow, node, video, inverted, model, sigmas, solver),
                                          "Controlled Reverse Sampler", "(1, 128, 3, 4, 4)", "(1, 128, 4, 4)",
                                          "a video latent", "an image latent", "Connect as reference")
    assert "same latent that was inverted" in message


@pytest.mark.parametrize("solver", SOLVERS)
def test_an_image_reference_for_a_video_latent(wan, node, solver):
    model = wan.model()
    sigmas = wan.sigmas(model, 6)
    inverted = wan.invert(model, wan.image(model, 1), sigmas, gamma=0.5, solver=solver)
    frame = {"samples": torch.randn(1, 48, 4, 4)}
    fails_before_any_model_call(wan, model, reverse_with(wan, node, frame, inverted, model, sigmas, solver),
                                "Controlled Reverse Sampler", "(1, 48, 4, 4)", "(1, 48, 3, 4, 4)",
                                "an image latent", "a video latent", "a video's latent for a video edit")


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("frames", [2, 5])
def test_a_frame_count_that_the_inversion_and_the_reverse_do_not_share(wan, node, solver, frames):
    model = wan.model()
    sigmas = wan.sigmas(model, 6)
    inverted = wan.invert(model, wan.image(model, 1), sigmas, gamma=0.5, solver=solver)
    other = {"samples": torch.randn(1, 48, frames, 4, 4)}
    fails_before_any_model_call(wan, model, reverse_with(wan, node, other, inverted, model, sigmas, solver),
                                "Controlled Reverse Sampler", f"(1, 48, {frames}, 4, 4)", "(1, 48, 3, 4, 4)",
                                f"{frames} frames and the latent being sampled 3", "share one frame count")


def test_an_image_latent_for_qwen_image_is_its_one_frame(node):
    """Qwen-Image's latents are 5-D of one frame; SamplerCustomAdvanced makes a 4-D image latent so,
    and the reference takes the same step: the 4-D latent that was inverted is a valid reference."""
    flow = FamilyFlow(node, "qwen_image")
    model = flow.model()
    sigmas = flow.sigmas(model, 6)
    image = {"samples": flow.image(model, 1)["samples"][:, :, 0]}  # (1, 16, 4, 4)
    inverted = flow.invert(model, image, sigmas, gamma=0.5)
    assert inverted["samples"].shape == (1, 16, 1, 4, 4)
    out = flow.reverse(model, inverted, image, sigmas, eta=1.0, stop=1.0)["samples"]
    assert rel(out[:, :, 0], image["samples"]) <= 1e-5
