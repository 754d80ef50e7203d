"""Wrong graphs fail before any model call, with a message that names the node, the input and the fix."""
import pytest
import torch

from test_samplers import SHAPE, SOLVERS, Flow


@pytest.fixture(scope="module")
def flow(node):
    return Flow(node)


@pytest.fixture
def setup(flow):
    model = flow.model("flux")
    sigmas = flow.sigmas(model, 6)
    image = flow.image(model, 1)
    inverted = flow.invert(model, image, sigmas, gamma=0.5)
    return model, sigmas, image, inverted


def fails_before_any_model_call(flow, model, action, *needles):
    calls = flow.calls(model)
    with pytest.raises(ValueError) as error:
        action()
    assert flow.calls(model) == calls, "the model was called before the error"
    for needle in needles:
        assert needle in str(error.value), str(error.value)
    return str(error.value)


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_model_that_is_not_a_flow_model(flow, node, setup, solver):
    model, sigmas, image, _ = setup
    eps = node("ModelSamplingDiscrete")().patch(model, "eps", False)[0]
    for sampler in (node("RFInversionSampler").execute(0.5, 0, solver)[0],
                    node("ControlledReverseSampler").execute(image, 0.9, 0.0, 0.25, "constant", False, 0, solver)[0],
                    node("RectifiedSDESampler").execute(1.0)[0]):
        fails_before_any_model_call(flow, model, lambda: flow.run(eps, sampler, sigmas, image),
                                    sampler.title, "not a rectified-flow model", "CONST")


# CONST samplings that flow from one image to another, not from noise, and the first host known to
# have each (0.33.0 run here, 0.38.1 read from its sources). The pack looks them up by name; a host
# from then on without one would mean that name went stale, and the check would let it through.
IMAGE_TO_IMAGE = {"IMG_TO_IMG_FLOW": (0, 33, 0), "IMG_TO_IMG_VELOCITY": (0, 38, 1)}


@pytest.mark.parametrize("name", IMAGE_TO_IMAGE)
def test_a_flow_from_image_to_image_is_refused(flow, node, setup, name):
    import comfy.model_base
    import comfy.model_sampling
    import harness.host
    model, sigmas, image, _ = setup
    if not hasattr(comfy.model_sampling, name):
        version = tuple(int(part) for part in harness.host.host_version().split(".")[:3])
        assert version < IMAGE_TO_IMAGE[name], f"ComfyUI {harness.host.host_version()} has no {name} in comfy.model_sampling"
        return
    # as the host builds it for a model of that type
    sampling = comfy.model_base.model_sampling(model.model.model_config, comfy.model_base.ModelType[name])
    assert isinstance(sampling, comfy.model_sampling.CONST)  # what a CONST check alone lets through
    patched = model.clone()
    patched.add_object_patch("model_sampling", sampling)
    for sampler in (node("RFInversionSampler").execute(0.5, 0)[0],
                    node("ControlledReverseSampler").execute(image, 0.9, 0.0, 0.25, "constant", False, 0)[0],
                    node("RectifiedSDESampler").execute(1.0)[0]):
        fails_before_any_model_call(flow, model, lambda: flow.run(patched, sampler, sigmas, image),
                                    sampler.title, "not a rectified-flow model", name, "from one image to another")


@pytest.mark.parametrize("solver", SOLVERS)
def test_inversion_sigmas_that_do_not_increase(flow, node, setup, solver):
    model, sigmas, image, _ = setup
    sampler = node("RFInversionSampler").execute(0.5, 0, solver)[0]
    fails_before_any_model_call(flow, model, lambda: flow.run(model, sampler, sigmas, image),
                                "RF-Inversion Sampler", "sigmas must increase", "Connect FlipSigmas")


@pytest.mark.parametrize("solver", SOLVERS)
def test_inversion_sigmas_that_start_at_zero(flow, node, setup, solver):
    model, sigmas, image, _ = setup
    sampler = node("RFInversionSampler").execute(0.5, 0, solver)[0]
    raw = sigmas.flip(0)  # a flip that keeps the leading 0, which FlipSigmas would turn into 1e-4
    fails_before_any_model_call(flow, model, lambda: flow.run(model, sampler, raw, image),
                                "RF-Inversion Sampler", "(0, 1]", "FlipSigmas")


@pytest.mark.parametrize("solver", SOLVERS)
def test_reverse_sigmas_that_do_not_decrease(flow, node, setup, solver):
    model, sigmas, image, inverted = setup
    sampler = node("ControlledReverseSampler").execute(image, 0.9, 0.0, 0.25, "constant", False, 0, solver)[0]
    flipped = node("FlipSigmas").execute(sigmas)[0]
    fails_before_any_model_call(flow, model, lambda: flow.run(model, sampler, flipped, inverted),
                                "Controlled Reverse Sampler", "sigmas must decrease", "without FlipSigmas")


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("shape", [(1, 16, 4, 8), (1, 4, 8, 8), (3, 16, 8, 8)])
def test_a_reference_whose_shape_does_not_match(flow, node, setup, shape, solver):
    model, sigmas, _, inverted = setup
    sampler = node("ControlledReverseSampler").execute({"samples": torch.zeros(shape)}, 0.9, 0.0, 0.25,
                                                       "constant", False, 0, solver)[0]
    inverted = {"samples": inverted["samples"].expand(2, *SHAPE[1:]).clone()}
    fails_before_any_model_call(flow, model, lambda: flow.run(model, sampler, sigmas, inverted),
                                "Controlled Reverse Sampler", "reference latent has shape", str(tuple(shape)),
                                "same image latent")


@pytest.mark.parametrize("solver", SOLVERS)
def test_a_reference_with_nan(flow, node, setup, solver):
    model, sigmas, image, inverted = setup
    bad = {"samples": torch.full(SHAPE, float("nan"))}
    sampler = node("ControlledReverseSampler").execute(bad, 0.9, 0.0, 0.25, "constant", False, 0, solver)[0]
    fails_before_any_model_call(flow, model, lambda: flow.run(model, sampler, sigmas, inverted),
                                "Controlled Reverse Sampler", "reference", "NaN")


@pytest.mark.parametrize("start,stop", [(0.25, 0.25), (0.5, 0.2)])
def test_start_not_below_stop(node, start, stop):
    with pytest.raises(ValueError) as error:
        node("ControlledReverseSampler").execute({"samples": torch.zeros(SHAPE)}, 0.9, start, stop, "constant", False, 0)
    assert "Controlled Reverse Sampler" in str(error.value) and "start" in str(error.value) and "stop" in str(error.value)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("which", ["inversion", "reverse"])
def test_a_noise_source_wired_to_a_sampler_that_ignores_it(flow, node, setup, which, solver):
    model, sigmas, image, inverted = setup
    noise = node("RandomNoise").execute(42)[0]
    if which == "inversion":
        sampler, sig, latent = node("RFInversionSampler").execute(0.5, 0, solver)[0], node("FlipSigmas").execute(sigmas)[0], image
    else:
        sampler, sig, latent = node("ControlledReverseSampler").execute(
            image, 0.9, 0.0, 0.25, "constant", False, 0, solver)[0], sigmas, inverted
    message = fails_before_any_model_call(flow, model, lambda: flow.run(model, sampler, sig, latent, noise=noise),
                                          sampler.title, "ignores the noise input", "DisableNoise")
    assert "add_noise" in message  # the fix for SamplerCustom users too


def test_the_errors_reach_the_server_as_a_node_error(server):
    """In the real server the message arrives in /history as the execution error, whole."""
    prompt = {
        "1": {"class_type": "ControlledReverseSampler",
              "inputs": {"reference": ["2", 0], "eta": 0.9, "start": 0.5, "stop": 0.25, "eta_trend": "constant",
                         "stochastic": False, "seed": 0}},
        "2": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    response = server.post("/prompt", {"prompt": prompt})
    prompt_id = response["prompt_id"]
    status = server.wait(prompt_id, timeout=60)["status"]
    assert status["status_str"] == "error"
    errors = [m for m in status["messages"] if m[0] == "execution_error"]
    assert errors, status
    assert errors[0][1]["node_type"] == "ControlledReverseSampler"
    assert "start (0.5) must be below stop (0.25)" in errors[0][1]["exception_message"]


class NaNField:
    """A field that breaks at one sigma, as an fp16 overflow would."""

    def __init__(self, field, at=0.5):
        self.field, self.at = field, at

    def denoise(self, x, sigma):
        out = self.field.denoise(x, sigma)
        return out * float("nan") if float(sigma.flatten()[0]) < self.at else out


@pytest.mark.parametrize("which,solver", [("inversion", s) for s in SOLVERS] + [("reverse", s) for s in SOLVERS]
                         + [("sde", "euler")])
def test_a_model_that_returns_nan_is_named_not_passed_on(flow, node, which, solver):
    bad = flow.model("flux", NaNField(flow.field))
    good = flow.model("flux")
    sigmas = flow.sigmas(good, 6)
    image = flow.image(good, 1)
    with pytest.raises(ValueError) as error:
        if which == "inversion":
            flow.invert(bad, image, sigmas, gamma=0.5, solver=solver)
        elif which == "reverse":
            flow.reverse(bad, flow.invert(good, image, sigmas, gamma=0.5), image, sigmas, eta=0.9, solver=solver)
        else:
            flow.run(bad, node("RectifiedSDESampler").execute(1.0)[0], sigmas, {"samples": torch.zeros(SHAPE)},
                     noise=node("RandomNoise").execute(1)[0])
    title = {"inversion": "RF-Inversion Sampler", "reverse": "Controlled Reverse Sampler", "sde": "Rectified SDE Sampler"}
    assert title[which] in str(error.value) and "NaN" in str(error.value)


def test_an_eta_trend_outside_the_list(node):
    """A pasted API prompt reaches the node unvalidated in this host (V3 combos are checked by the web UI)."""
    with pytest.raises(ValueError) as error:
        node("ControlledReverseSampler").execute({"samples": torch.zeros(SHAPE)}, 0.9, 0.0, 0.25, "cosine", False, 0)
    message = str(error.value)
    for needle in ("Controlled Reverse Sampler", "eta_trend 'cosine'", "constant, linear_increase, linear_decrease"):
        assert needle in message, message
