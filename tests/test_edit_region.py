"""The Edit Region node (RFEditRegion) in the real host: on an exact field whose data a prompt changes
only inside a known box, in each flow family's model class (HunyuanImage 2.1's refiner, whose latent format reshapes, too), the region is that box exactly, at the
image's size; SetLatentNoiseMask and the samplers take it, and the edit returns the reference outside
it. Its errors come before any model call; it reports progress, honours interrupt and counts its calls."""
import math
import types

import comfy.model_management
import pytest
import torch

from harness import exact_models as em
from test_errors import fails_before_any_model_call
from test_samplers import rel

# family: (raw latent of one sample, pixels per latent cell)
FAMILIES = {
    "flux": ((1, 16, 8, 8), 8),
    "flux2": ((1, 128, 4, 4), 16),
    "qwen_image": ((1, 16, 1, 8, 8), 8),
    "zimage": ((1, 16, 8, 8), 8),
    "wan22_5b": ((1, 48, 3, 4, 4), 16),
    # its latent format pairs frames into channels in the model's space; both hosts give it 8 pixels a cell
    "hunyuan_image21_refiner": ((1, 32, 1, 8, 8), 8),
}


def conditioning(value, guidance=3.5):
    """A prompt that the prompted field reads as ``value`` (the mean of its context)."""
    return [[torch.full((1, 4, 64), float(value)), {"pooled_output": torch.zeros(1, 64), "guidance": guidance}]]


SOURCE, TARGET = conditioning(0.0), conditioning(1.0)


class Region:
    """A family's model class with a prompted Gaussian field: the prompt moves the data's mean inside
    ``box`` (latent rows and columns 1..3 and 2..5 of every frame) and nowhere else."""

    def __init__(self, node, family):
        self.node, self.family = node, family
        raw, self.factor = FAMILIES[family]
        self.raw = raw
        shape = tuple(em.latent_format(family).process_in(torch.zeros(raw)).shape)
        generator = torch.Generator().manual_seed(0)
        mu = 0.5 * torch.randn(shape[1:], generator=generator)
        self.box = torch.zeros(shape[-2:])
        self.box[1:3, 2:5] = 1
        self.field = em.PromptedGaussian(mu, 0.5, 0.8 * self.box)

    def model(self):
        return em.exact_model(self.family, self.field)

    def latent(self, model, seed=1):
        x0 = self.field.sample(1, torch.Generator().manual_seed(seed), SOURCE[0][0])
        return {"samples": model.model.process_latent_out(x0)}

    def region(self, model, latent, source=SOURCE, target=TARGET, **knobs):
        return self.node("RFEditRegion").execute(model, source, target, latent, **knobs).args


def pixel_box(box, factor):
    return box.repeat_interleave(factor, 0).repeat_interleave(factor, 1)


@pytest.fixture(scope="module")
def rf(pack):
    return pack.sampler


def test_the_probe_levels_and_calls(rf):
    assert rf.probe_levels(3) == [0.25, 0.5, 0.75]
    assert rf.probe_levels(1) == [0.5]
    assert rf.region_calls(3, 2) == 12


def test_the_soft_map_is_per_image_and_one_for_a_clip(rf):
    total = torch.zeros(2, 3, 4, 4)  # two clips of three frames
    total[0, 0, 1, 1], total[0, 2, 3, 3] = 2.0, 4.0  # an edit that moves: both places are in the region
    total[1, 1, 0, 0] = 0.5
    soft = rf.region_map(total)
    assert soft.shape == (2, 4, 4)
    assert soft[0, 1, 1] == 0.5 and soft[0, 3, 3] == 1.0 and soft[1, 0, 0] == 1.0
    assert rf.region_mask(soft, 0.4).sum() == 3
    assert not rf.region_map(torch.zeros(1, 4, 4)).any()  # prompts that do not differ: no map, no NaN


@pytest.mark.parametrize("family", FAMILIES)
def test_the_region_is_where_the_prompts_differ_at_the_image_size(node, family):
    """The difference of the two prompts' D is (m_t - m_s) sigma^2 / var: inside the box only."""
    region = Region(node, family)
    model = region.model()
    latent = region.latent(model)
    calls = model.model.diffusion_model.calls
    mask, soft = region.region(model, latent, threshold=0.5, levels=3, seeds=2, seed=0)
    assert model.model.diffusion_model.calls - calls == 12  # 2 x levels x seeds
    expected = pixel_box(region.box, region.factor)
    assert mask.shape == soft.shape == (1, *expected.shape)  # the image's size: latent cells x the VAE's factor
    assert torch.equal(mask[0], expected)
    assert float(soft.max()) == 1.0 and float(soft[0][expected == 0].abs().max()) == 0.0


@pytest.mark.parametrize("family", ["flux", "wan22_5b"])
def test_setlatentnoisemask_and_the_samplers_keep_the_outside_of_the_region(node, family):
    """The region on the inverted latent: the edit under the target prompt changes the box and returns
    the reference everywhere else."""
    region = Region(node, family)
    model = region.model()
    latent = region.latent(model)
    mask, _ = region.region(model, latent)
    sigmas = node("BasicScheduler").execute(model, "simple", 8, 1.0)[0]

    def run(sampler, sigmas, latent, cond):
        guider = node("CFGGuider").execute(model, cond, cond, 1.0)[0]
        return node("SamplerCustomAdvanced").execute(node("DisableNoise").execute()[0], guider, sampler, sigmas, latent)[0]

    inverted = run(node("RFInversionSampler").execute(0.5, 7, "fireflow")[0], node("FlipSigmas").execute(sigmas)[0],
                   latent, SOURCE)
    masked = node("SetLatentNoiseMask")().set_mask(inverted, mask)[0]
    reverse = node("ControlledReverseSampler").execute(latent, 0.9, 0.0, 0.25, "constant", False, 0, "fireflow")[0]
    out = run(reverse, sigmas, masked, TARGET)["samples"]
    ref = latent["samples"]
    inside = region.box.bool()
    assert torch.isfinite(out).all()
    assert rel(out[..., ~inside], ref[..., ~inside]) <= 1e-5
    assert rel(out[..., inside], ref[..., inside]) > 0.05
    unmasked = run(reverse, sigmas, inverted, TARGET)["samples"]  # without the region the outside drifts
    assert rel(unmasked[..., ~inside], ref[..., ~inside]) > 1e3 * rel(out[..., ~inside], ref[..., ~inside])


def test_a_batch_gets_one_region_per_image(node):
    region = Region(node, "flux")
    model = region.model()
    one, two = region.latent(model, 1), region.latent(model, 2)
    both = {"samples": torch.cat([one["samples"], two["samples"]])}
    mask, soft = region.region(model, both)
    assert mask.shape[0] == 2
    assert torch.equal(mask[0], region.region(model, one)[0][0])
    assert torch.equal(mask[1], region.region(model, two)[0][0])
    # a prompt per image: the second image's prompts do not differ, the first's do
    source = [[torch.cat([SOURCE[0][0], SOURCE[0][0]]), dict(SOURCE[0][1])]]
    with pytest.raises(ValueError, match="image 1 of the batch"):
        region.region(model, both, source, [[torch.cat([TARGET[0][0], SOURCE[0][0]]), dict(TARGET[0][1])]])


def test_progress_and_interrupt(node):
    region = Region(node, "flux")
    model = region.model()
    latent = region.latent(model)
    import comfy.utils
    seen = []
    hook = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: seen.append((value, total)))
    try:
        region.region(model, latent, levels=2, seeds=1)
    finally:
        comfy.utils.set_progress_bar_global_hook(hook)
    assert seen[-1] == (4, 4) and [v for v, _ in seen] == sorted(v for v, _ in seen)
    calls = model.model.diffusion_model.calls
    comfy.model_management.interrupt_current_processing(True)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            region.region(model, latent)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert model.model.diffusion_model.calls == calls  # stopped before the first network call


@pytest.fixture(scope="module")
def flux_region(node):
    region = Region(node, "flux")
    model = region.model()
    return region, model, region.latent(model)


def refused(flux_region, *needles, **change):
    region, model, latent = flux_region
    args = dict(model=model, source=SOURCE, target=TARGET, latent=latent, threshold=0.2, levels=3, seeds=2, seed=0)
    args.update(change)
    counter = types.SimpleNamespace(calls=lambda m: m.model.diffusion_model.calls)
    message = fails_before_any_model_call(counter, model, lambda: region.node("RFEditRegion").execute(**args),
                                          "Edit Region", *needles)
    return message


def test_the_same_prompt_twice_is_nothing_to_edit(flux_region):
    refused(flux_region, "same conditioning", "nothing to edit", "source", target=conditioning(0.0))


def test_a_field_that_ignores_the_prompt_is_named_after_the_probes(node, flux_region):
    region, _, latent = flux_region
    model = em.exact_flux(em.GaussianMixture([torch.zeros(16, 8, 8)], [0.5]))
    with pytest.raises(ValueError, match="predicts the same under source and target"):
        node("RFEditRegion").execute(model, SOURCE, TARGET, latent)


def test_a_batch_the_conditionings_cannot_pair_with_the_latent(flux_region):
    three = [[SOURCE[0][0].repeat(3, 1, 1), dict(SOURCE[0][1])]]
    refused(flux_region, "source conditioning holds a batch of 3", "batch of 1", source=three)


def test_a_model_that_is_not_a_flow_model(node, flux_region):
    region, model, latent = flux_region
    eps = node("ModelSamplingDiscrete")().patch(model, "eps", False)[0]
    refused(flux_region, "not a rectified-flow model", "CONST", model=eps)


def test_nan_in_the_latent(flux_region):
    _, _, latent = flux_region
    bad = latent["samples"].clone()
    bad[0, 0, 0, 0] = math.nan
    refused(flux_region, "latent holds NaN or inf", latent={"samples": bad})


@pytest.mark.parametrize("knob,value,needle", [("threshold", math.nan, "threshold is NaN"), ("threshold", 1.0, "below 1"),
                                                ("threshold", -0.1, "between 0 and 1"), ("levels", 0, "levels is 0"),
                                                ("seeds", 17, "seeds is 17")])
def test_an_out_of_range_knob_from_a_pasted_prompt(flux_region, knob, value, needle):
    refused(flux_region, needle, knob, **{knob: value})


def test_the_tooltip_states_the_calls_and_the_empty_source(node):
    schema = node("RFEditRegion").GET_SCHEMA()
    assert [i.id for i in schema.inputs][:4] == ["model", "source", "target", "latent"]
    assert "2 x levels x seeds" in schema.description and "12 at the defaults" in schema.description
    source = next(i for i in schema.inputs if i.id == "source")
    assert "empty prompt" in source.tooltip and "weak" in source.tooltip
