"""Models whose velocity field is known in closed form, standing where the network stands inside
ComfyUI's own Flux model class, and a small Flux built from ComfyUI's classes.

For data x0 ~ N(mu, s^2 I) and x_sigma = (1 - sigma) x0 + sigma eps (ALGORITHM.md, exact fields):

    E[x0 | x_sigma] = mu + (1 - sigma) s^2 (x_sigma - (1 - sigma) mu) / ((1 - sigma)^2 s^2 + sigma^2)

and a mixture weights each component's posterior mean by its responsibility. The network slot of
``comfy.model_base.Flux`` gets a module that returns the raw velocity (x - D) / sigma, so ComfyUI's
own ``calculate_denoised`` recovers D, and Flux's latent format (scale and shift), its model
sampling, conditioning and guider all stay on the path. Needs the host imported
(``comfy_host.import_host``) first.
"""
import math

import torch

FLUX_CONFIG = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=64, context_in_dim=64,
                   hidden_size=64, mlp_ratio=4.0, num_heads=2, depth=1, depth_single_blocks=1,
                   axes_dim=[8, 12, 12], theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True)


class GaussianMixture:
    """x0 ~ sum_k w_k N(mu_k, s_k^2 I) over whole latents (one component per sample), in model space.

    ``means`` are tensors of one latent's shape (C, H, W); one component is the Gaussian case."""

    def __init__(self, means, stds, weights=None):
        self.means = [m.double() for m in means]
        self.stds = [float(s) for s in stds]
        k = len(self.means)
        self.weights = [1.0 / k] * k if weights is None else [float(w) for w in weights]

    def denoise(self, x, sigma):
        """E[x0 | x_sigma = x] for a batch x (B, C, H, W) and sigma (B,) or a scalar."""
        x64 = x.double()
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1, *[1] * (x.ndim - 1))
        a = 1.0 - sigma
        logits, posts = [], []
        dims = x[0].numel()
        for mu, s, w in zip(self.means, self.stds, self.weights):
            mu = mu.to(x.device)
            var = a * a * s * s + sigma * sigma
            resid = x64 - a * mu
            posts.append(mu + a * s * s * resid / var)
            quad = (resid * resid / var).flatten(1).sum(1)
            logits.append(math.log(w) - 0.5 * quad - 0.5 * dims * torch.log(var.flatten()))
        if len(posts) == 1:
            return posts[0]
        resp = torch.softmax(torch.stack(logits, 0), 0)  # (K, B)
        return sum(r.reshape(-1, *[1] * (x.ndim - 1)) * p for r, p in zip(resp, posts))

    def sample(self, n, generator):
        """n exact samples of x0, in model space."""
        comp = torch.multinomial(torch.tensor(self.weights), n, replacement=True, generator=generator)
        out = []
        for c in comp.tolist():
            mu, s = self.means[c], self.stds[c]
            out.append(mu + s * torch.randn(mu.shape, generator=generator, dtype=torch.float64))
        return torch.stack(out).float()


class ExactVelocity(torch.nn.Module):
    """Fills Flux's network slot: returns the raw velocity (x - D) / sigma of an exact field.

    ComfyUI passes the model's timestep (sigma for Flux, 1000 sigma under SD3's sampling), so the
    sigma itself is read from ``transformer_options["sigmas"]``, which the host sets on every call."""

    def __init__(self, field, dtype=torch.float32):
        super().__init__()
        self.field, self.dtype = field, dtype
        self.calls = 0

    def forward(self, x, timestep, context=None, y=None, guidance=None, control=None, transformer_options={}, **kwargs):
        self.calls += 1
        sigma = transformer_options["sigmas"].to(torch.float64).reshape(-1, *[1] * (x.ndim - 1))
        denoised = self.field.denoise(x, sigma.flatten())
        return ((x.double() - denoised) / sigma).to(x.dtype)


def model_patcher(model):
    """A ComfyUI MODEL around a ``comfy.model_base`` model, on the host's devices, as the loaders make it."""
    import comfy.model_management as mm
    import comfy.model_patcher

    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


def flux_model(dtype=torch.float32, **overrides):
    """ComfyUI's Flux model class for FLUX_CONFIG (``overrides`` change it); its layers are empty."""
    import comfy.supported_models

    config = comfy.supported_models.Flux({**FLUX_CONFIG, **overrides})
    config.set_inference_dtype(dtype, None)
    return config.get_model({})


def exact_flux(field, dtype=torch.float32):
    """A ComfyUI MODEL: Flux's model class (latent format, model sampling, conditioning) with the
    exact velocity of ``field`` in the network's place."""
    model = flux_model(dtype)
    model.diffusion_model = ExactVelocity(field, dtype)
    return model_patcher(model)


def tiny_flux(seed=0, dtype=torch.float32, **overrides):
    """A small Flux network from ComfyUI's classes, its layers initialised (comfy.ops leaves them
    empty) from ``seed``, for overhead measurements. ``overrides`` change FLUX_CONFIG."""
    model = flux_model(dtype, **overrides)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.diffusion_model.named_parameters():
            fan_in = p.shape[-1] if p.ndim > 1 else 1
            std = 0.0 if name.endswith("bias") else 1.0 / math.sqrt(fan_in)
            p.copy_((torch.randn(p.shape, generator=generator) * std).to(p.dtype))
    return model_patcher(model)


def shifted(M, model, shift):
    """``model`` under the schedule shift of "flux" (ModelSamplingFlux at 1024 x 1024, Flux-dev's
    largest shift) or "sd3" (ModelSamplingSD3, shift 3), through the host's own nodes ``M``."""
    if shift == "flux":
        return M["ModelSamplingFlux"]().patch(model, 1.15, 0.5, 1024, 1024)[0]
    if shift == "sd3":
        return M["ModelSamplingSD3"]().patch(model, 3.0)[0]
    raise ValueError(f"shift must be 'flux' or 'sd3', got {shift!r}")


def flux_conditioning(guidance=0.0, tokens=4, dim=64):
    """A CONDITIONING for the small Flux config (the exact field ignores it)."""
    return [[torch.zeros(1, tokens, dim), {"pooled_output": torch.zeros(1, dim), "guidance": guidance}]]
