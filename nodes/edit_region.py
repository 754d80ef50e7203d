"""The Edit Region node: where the edit prompt changes the photo, from the network itself.

Thin wiring to ``sampler/edit_region.py``. The probes run through the host's own guider, as
SamplerCustomAdvanced runs a sampler, so every family gets its conditioning the way the samplers do
(Flux's guidance, SD3's pooled output, a video's 5-D latent, a model's own latent reshaping) and a
patched model (LoRA) is probed with its patches.
"""
import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import torch
from comfy_api.latest import io

from .. import sampler as rf
from .samplers import (FlowStateSampler, PackSampler, check_finite_latent, check_finite_output, check_flow_model,
                       check_fraction, seed_input)

TITLE = "Edit Region"
MAX_LEVELS = MAX_SEEDS = 16
# Hosts before ComfyUI 0.33 do not say a latent format's pixels per latent cell; these differ from 8.
DOWNSCALE = {"Flux2": 16, "Wan22": 16, "HunyuanVideo15": 16, "HunyuanImage21": 32}


class RegionProbeKSampler(FlowStateSampler):
    """Runs the region's probes under the guider's one prompt: the guider moves the photo's latent
    into the model's space and encodes the conditioning for the model's family; the network's D at
    each probe goes to ``record``. The sigmas are the probes' noise levels, not a schedule."""

    title = TITLE

    def __init__(self, seeds, seed, record):
        super().__init__(rf.sample_region_probes)
        self.seeds, self.seed, self.record = seeds, seed, record

    def check(self, model_wrap, sigmas, noise, latent_image):
        PackSampler.check(self, model_wrap, sigmas, noise, latent_image)

    def options(self, model_wrap, sigmas, latent_image, extra_args):
        return {"seeds": self.seeds, "seed": self.seed, "record": self.record}


def same_conditioning(a, b):
    """Whether two CONDITIONING lists are the same prompt: equal tensors and equal options."""
    def same(x, y):
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            return isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.shape == y.shape \
                and torch.equal(x, y.to(x))
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
            return len(x) == len(y) and all(same(p, q) for p, q in zip(x, y))
        try:
            return bool(x == y)
        except Exception:  # an object that cannot be compared is taken as different
            return False
    return same(a, b)


def check_batch(name, conditioning, batch):
    for entry in conditioning:
        held = entry[0].shape[0]
        if held not in (1, batch):
            raise ValueError(f"{TITLE}: the {name} conditioning holds a batch of {held} prompts and the latent a batch of "
                             f"{batch} images, which the host cannot pair. Encode one prompt (shared by every image) or "
                             f"one per image, or batch the latent to {held} images.")


def check_inputs(model, source, target, latent_image, threshold, levels, seeds):
    """Everything that can be told before any network call (a pasted API prompt skips the widgets' limits)."""
    check_fraction(TITLE, "threshold", threshold, "Set it on the node; 0.2 is the default.")
    if threshold >= 1:
        raise ValueError(f"{TITLE}: threshold is {threshold:g}; the soft map's largest value is 1, so nothing would be "
                         "marked. Set it below 1 (0.2 is the default).")
    for name, value, limit in (("levels", levels, MAX_LEVELS), ("seeds", seeds, MAX_SEEDS)):
        if not 1 <= value <= limit:
            raise ValueError(f"{TITLE}: {name} is {value}; it must be a whole number from 1 to {limit}. Set it on the node.")
    check_flow_model(TITLE, model.get_model_object("model_sampling"))
    check_finite_latent(TITLE, "latent", latent_image)
    for name, conditioning in (("source", source), ("target", target)):
        check_batch(name, conditioning, latent_image.shape[0])
    if same_conditioning(source, target):
        raise ValueError(f"{TITLE}: source and target are the same conditioning, so the network predicts the same under "
                         "both and there is nothing to edit. Connect as target the edit prompt, and as source a prompt "
                         "that describes the photo.")


def probe(model, conditioning, latent_image, levels, seeds, seed, record, progress):
    """The probes under one prompt, through the host's guider at cfg 1 (the prompt alone: one call a probe)."""
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(conditioning, conditioning)
    guider.set_cfg(1.0)
    sampler = RegionProbeKSampler(seeds, seed, record)
    guider.sample(torch.zeros_like(latent_image), latent_image, sampler, torch.tensor(rf.probe_levels(levels)),
                  callback=lambda *args: progress.update(1), disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)


def region(model, source, target, latent_image, levels, seeds, seed):
    """The soft map (B, H, W) at the latent's size: the source's probes first, kept; then the target's,
    each folded into the summed difference as it comes."""
    keep = comfy.model_management.intermediate_device()
    progress = comfy.utils.ProgressBar(rf.region_calls(levels, seeds))
    kept, total = [], None

    def difference(k, denoised):
        nonlocal total
        total = rf.add_difference(total, denoised, kept[k].to(denoised))
        kept[k] = None

    probe(model, source, latent_image, levels, seeds, seed, lambda k, d: kept.append(d.to(keep)), progress)
    probe(model, target, latent_image, levels, seeds, seed, difference, progress)
    check_finite_output(TITLE, total)
    soft = rf.region_map(total.to(keep))
    flat = [i for i in range(soft.shape[0]) if not bool(soft[i].any())]
    if flat:
        raise ValueError(f"{TITLE}: the network predicts the same under source and target (image {flat[0]} of the batch), "
                         "so there is nothing to edit. Check that the target prompt says the edit and the source "
                         "describes the photo.")
    return soft


def downscale(model, latent):
    """Pixels per latent cell: what the latent says (ComfyUI 0.33), else its model's latent format."""
    latent_format = model.get_model_object("latent_format")
    return int(latent.get("downscale_ratio_spacial") or getattr(latent_format, "spacial_downscale_ratio", 0)
               or DOWNSCALE.get(type(latent_format).__name__, 8))


class EditRegion(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="RFEditRegion",
            display_name=TITLE,
            category="sampling/custom_sampling",
            description="Finds where the edit prompt changes the photo, from the network itself (DiffEdit's idea on the "
                        "flow's predictions): the photo's latent is put on its straight path at a few noise levels, and "
                        "the network's predictions under source and target are compared. Connect region to "
                        "SetLatentNoiseMask on the inverted latent: outside it the edit returns the photo's latent "
                        "exactly. For a video, one region for the whole clip. Network calls: 2 x levels x seeds "
                        "(12 at the defaults).",
            inputs=[
                io.Model.Input("model", tooltip="The flow model that edits (the same as the samplers')."),
                io.Conditioning.Input("source", tooltip="A prompt that describes the photo as it is, encoded like the edit "
                                                        "prompt. An empty prompt works but makes a weak region: the "
                                                        "difference then also marks everything the edit prompt describes, "
                                                        "not only what it changes."),
                io.Conditioning.Input("target", tooltip="The edit prompt: the source with the words of the edit changed."),
                io.Latent.Input("latent", tooltip="The photo's latent (VAE Encode), the one that is inverted."),
                io.Float.Input("threshold", default=0.2, min=0.0, max=0.99, step=0.01,
                               tooltip="Where the soft map (the difference divided by its largest value) is above this, "
                                       "the edit may change the photo. Lower: a larger region (the edit has more room, "
                                       "less of the photo is kept exactly); higher: a smaller one."),
                io.Int.Input("levels", default=3, min=1, max=MAX_LEVELS,
                             tooltip="How many noise levels to probe, spread evenly inside (0, 1): 3 probes 0.25, 0.5 "
                                     "and 0.75. Each costs 2 x seeds network calls."),
                io.Int.Input("seeds", default=2, min=1, max=MAX_SEEDS,
                             tooltip="How many noise samples to probe at each level; the map is summed over them. Each "
                                     "costs 2 x levels network calls."),
                seed_input("Seed of the probes' noise samples (seed, seed + 1, ...)."),
            ],
            outputs=[io.Mask.Output("region", display_name="region",
                                    tooltip="1 where the edit may change the photo, at the image's size: connect to "
                                            "SetLatentNoiseMask on the inverted latent."),
                     io.Mask.Output("soft_map", display_name="soft_map",
                                    tooltip="The difference divided by its largest value, 0 to 1, at the image's size: "
                                            "refine it with ThresholdMask, GrowMask or FeatherMask, show it with "
                                            "MaskPreview.")],
        )

    @classmethod
    def execute(cls, model, source, target, latent, threshold=0.2, levels=3, seeds=2, seed=0) -> io.NodeOutput:
        latent_image = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
        check_inputs(model, source, target, latent_image, threshold, levels, seeds)
        soft = region(model, source, target, latent_image, levels, seeds, seed)
        factor = downscale(model, latent)
        soft = soft.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1).cpu()
        return io.NodeOutput(rf.region_mask(soft, threshold), soft)


NODES = [EditRegion]
