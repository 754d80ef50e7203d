"""The edit region (EDIT_REGION.md): where an edit prompt changes the photo, read off the network.

DiffEdit's idea (Couairon et al., ICLR 2023) on a flow model: put the photo's latent y0 on its
straight path at a few noise levels, x_s = (1 - s) y0 + s eps with seeded eps, and compare the
network's denoised estimates there under a prompt that describes the photo (the source) and under
the edit prompt (the target). Where the two prompts agree, the difference is small; where the edit
applies, it is large. The velocity difference is the same map up to 1/s, since v = (x - D) / s.

Pure torch, like rf_inversion.py: the node runs the probes through the host's guider.
"""
import torch

from .rf_inversion import _denoiser, _report, seeded_noise, trange


def probe_levels(levels):
    """``levels`` noise levels spread evenly inside (0, 1): k / (levels + 1), k = 1 ... levels
    (3 levels: 0.25, 0.5, 0.75). Neither end: at 0 the state is the photo under both prompts, at 1
    it holds nothing of the photo."""
    return [k / (levels + 1) for k in range(1, levels + 1)]


def region_calls(levels, seeds):
    """Network calls of one region: each probe (level, seed) once under each prompt."""
    return 2 * levels * seeds


@torch.no_grad()
def sample_region_probes(model, x, sigmas, extra_args=None, callback=None, disable=None, seeds=1, seed=0,
                         record=None):
    """The region's probes, in k-diffusion's sampler signature so that the host's guider runs them
    under one prompt: for each sigma s of ``sigmas`` and each of ``seeds`` noises eps_j (seeded by
    seed + j, the same at every level and under both prompts), the network's D at the photo's state
    x_s = (1 - s) x + s eps_j goes to ``record(k, D)``, k counting the probes. ``x`` is the photo's
    latent y0, returned as it is."""
    extra_args = {} if extra_args is None else extra_args
    denoise = _denoiser(model, x, extra_args)
    levels = sigmas.tolist()
    noises = [seeded_noise(x.shape, seed + j, x) for j in range(seeds)]
    for k in trange(len(levels) * seeds, disable=disable):
        sigma, eps = levels[k // seeds], noises[k % seeds]
        state = torch.lerp(x, eps, sigma)
        denoised = denoise(state, sigma)
        record(k, denoised)
        _report(callback, state, k, sigmas[k // seeds], denoised)
    return x


def add_difference(total, denoised_target, denoised_source):
    """total + the channel mean of |D_target - D_source| (EDIT_REGION.md, m), in float32; ``total`` is
    None for the first probe. The map keeps every axis but the channels: (B, H, W), or (B, T, H, W)
    for a video latent."""
    difference = (denoised_target.float() - denoised_source.float()).abs().mean(dim=1)
    return difference if total is None else total.add_(difference)


def region_map(total):
    """The soft map, 0 to 1: the summed difference ``total``, one map for a video's whole clip (the
    largest difference over its frames, so that an edit that moves is covered where it passes),
    divided by its largest value per image. An image whose difference is 0 everywhere gets a map of
    0: its two prompts do not differ to the network."""
    if total.ndim == 4:
        total = total.amax(dim=1)
    top = total.flatten(1).amax(dim=1).view(-1, 1, 1)
    return torch.where(top > 0, total / top.clamp_min(torch.finfo(total.dtype).tiny), torch.zeros_like(total))


def region_mask(soft, threshold):
    """The region: 1 where the soft map is above ``threshold``, 0 elsewhere."""
    return (soft > threshold).to(soft.dtype)
