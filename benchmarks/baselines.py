"""Two time conventions found in public RF-Inversion code, re-implemented here from their equations
for the accuracy benchmark only. Nothing in the pack imports this module.

Both step on the shifted sigmas of the schedule they are given, as the pack does; they differ from
the pack (and from ALGORITHM.md) in which time the controller, or the network, is told at step i:

(a) ``controller_linear``: the network is called at the true sigma_i, but the conditional fields
    use the unshifted linear time t_i = i/N (N = number of steps) in place of sigma_i:

        inversion (sigma rising):   u_cond = (y1 - Y) / (1 - i/N)        instead of / (1 - sigma_i)
        reverse   (sigma falling):  v_cond = (X - y0) / (1 - i/N)        instead of / sigma_i

(b) ``model_linear``: the diffusers-style inversion. The network is called at noise level i/N,
    the controller uses i/N as in (a), and the state is advanced by the steps of the generation
    schedule taken in generation order, dt_i = s_i - s_{i+1} with s the falling shifted sigmas
    (the first inversion step is the schedule's step next to sigma = 1). Its reverse uses the
    scheduler's own sigma (v_cond = (X - y0) / sigma_i), which is the pack's reverse equation.

At shift 1 (sigma_i = 1 - i/N on the falling schedule) all three agree. Under Flux's or SD3's shift
they do not, and the benchmark measures by how much. Some public code divides i by the number of
sigmas (N + 1) rather than the number of steps; that is a further offset not modelled here.

Both directions are written as state-in, state-out samplers, like the pack's: the latent handed in
is the state at sigmas[0], and the state at sigmas[-1] is handed back without ComfyUI's noise
scaling, so the only difference from the pack under test is the time convention.
"""
import torch

import comfy.samplers

CONVENTIONS = ("controller_linear", "model_linear")


def seeded_normal(shape, seed, like):
    """Standard normal noise from a seeded CPU generator (the same y1 the pack draws for a seed)."""
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(shape, generator=g, dtype=torch.float32).to(like)


@torch.no_grad()
def sample_inversion(model, x, sigmas, extra_args=None, callback=None, disable=None,
                     y1=None, gamma=0.5, convention="controller_linear"):
    """Controlled forward ODE under a public time convention (see the module docstring)."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    n = len(sigmas) - 1
    falling = sigmas.flip(0)  # the generation schedule the inversion was flipped from
    for i in range(n):
        t = i / n
        if convention == "controller_linear":
            sigma_model = sigmas[i]
            dt = sigmas[i + 1] - sigmas[i]
        elif convention == "model_linear":
            # the network is told i/N; at i = 0 that is 0, where (x - D) / sigma is 0/0, so it is
            # told the schedule's first sigma instead (1e-4 after FlipSigmas), as the pack is.
            sigma_model = torch.clamp(torch.as_tensor(t, dtype=sigmas.dtype, device=sigmas.device), min=float(sigmas[0]))
            dt = falling[i] - falling[i + 1]
        else:
            raise ValueError(convention)
        denoised = model(x, sigma_model * s_in, **extra_args)
        u = (x - denoised) / sigma_model
        u_cond = (y1 - x) / (1.0 - t)
        x = x + dt * (u + gamma * (u_cond - u))
    return x


@torch.no_grad()
def sample_reverse(model, x, sigmas, extra_args=None, callback=None, disable=None,
                   y0=None, etas=None, convention="controller_linear"):
    """Controlled reverse ODE under a public time convention (see the module docstring)."""
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    n = len(sigmas) - 1
    etas = [0.0] * n if etas is None else etas
    for i in range(n):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        v = (x - denoised) / sigma
        control_sigma = 1.0 - i / n if convention == "controller_linear" else sigma
        v_cond = (x - y0) / control_sigma
        x = x + (sigma_next - sigma) * (v + etas[i] * (v_cond - v))
    return x


class BaselineSampler(comfy.samplers.KSAMPLER):
    """A SAMPLER object for SamplerCustomAdvanced that runs a baseline: state in, state out, the
    reference moved into the model's latent space the way the guider moves latents."""

    def __init__(self, direction, convention, gamma=0.0, seed=0, reference=None, etas=None):
        function = sample_inversion if direction == "inversion" else sample_reverse
        super().__init__(function)
        self.direction, self.convention = direction, convention
        self.gamma, self.seed, self.reference, self.etas = gamma, seed, reference, etas

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None, disable_pbar=False):
        extra_args["denoise_mask"] = denoise_mask
        model_k = comfy.samplers.KSamplerX0Inpaint(model_wrap, sigmas)
        model_k.latent_image, model_k.noise = latent_image, noise
        if self.direction == "inversion":
            options = {"y1": seeded_normal(latent_image.shape, self.seed, latent_image), "gamma": self.gamma}
        else:
            y0 = model_wrap.inner_model.process_latent_in(self.reference["samples"].to(latent_image))
            options = {"y0": y0, "etas": self.etas}
        return self.sampler_function(model_k, latent_image.clone(), sigmas, extra_args=extra_args,
                                     disable=True, convention=self.convention, **options)
