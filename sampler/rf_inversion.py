"""RF-Inversion (Rout et al., ICLR 2025) in ComfyUI's sigma convention.

Pure torch: no ComfyUI import, so that the math can be read and tested on its own.
The equations are those of ALGORITHM.md, written in ComfyUI's sigma (x_s = (1 - s) x0 + s eps,
s = 1 is noise), so every formula uses the actual sigma of the schedule it is given, never i/N.

Each sampler has ComfyUI's k-diffusion signature ``fn(model, x, sigmas, extra_args, callback,
disable, **options)``: ``model(x, sigma * s_in, **extra_args)`` returns the denoised estimate
D(x, sigma), and the loop runs over ``sigmas`` with no hidden state.
"""
import math

import torch

try:  # console progress like ComfyUI's own samplers; tqdm ships with the host
    from tqdm.auto import trange
except ImportError:  # pragma: no cover
    def trange(n, disable=None):
        return range(n)

ETA_TRENDS = ("constant", "linear_increase", "linear_decrease")


# --- the vector fields ------------------------------------------------------------------------

def velocity(x, denoised, sigma):
    """Velocity toward the noise end, v = (x - D) / sigma (ALGORITHM.md, conventions)."""
    return (x - denoised) / sigma


def controlled_forward_velocity(x, denoised, sigma, y1, gamma):
    """Controlled forward velocity of the inversion (paper Algorithm 1; ALGORITHM.md §1):

        u_hat = (1 - gamma) * (Y - D) / sigma + gamma * (y1 - Y) / (1 - sigma)

    Written as a blend rather than u + gamma * (u_cond - u): at gamma = 1 the unconditional
    term, which is large near sigma = 0, then drops out exactly instead of cancelling in floats.
    ``sigma`` must be < 1 (the caller steps from sigma_i < sigma_end <= 1).
    """
    u_cond = (y1 - x) / (1.0 - sigma)
    if gamma == 1.0:
        return u_cond
    return (1.0 - gamma) * velocity(x, denoised, sigma) + gamma * u_cond


def controlled_denoised(denoised, y0, eta):
    """Denoised estimate of the controlled reverse field (paper Algorithm 2; ALGORITHM.md §2).

    The controlled velocity (1 - eta) * v + eta * (X - y0) / sigma equals (X - D_eta) / sigma with
    D_eta = (1 - eta) * D + eta * y0, so the reverse ODE is an Euler step on this blend.
    """
    if eta == 0.0:
        return denoised
    if eta == 1.0:
        return y0.expand_as(denoised)
    return torch.lerp(denoised, y0.to(denoised.dtype), eta)


def eta_schedule(steps, eta, start=0.0, stop=0.25, trend="constant"):
    """Controller strength eta_i for each of ``steps`` steps (ALGORITHM.md §2, schedule of eta).

    eta_i is on inside the window start <= i/steps < stop, as in the diffusers pipeline, and 0
    outside it. A linear trend ramps over the steps inside the window, reaching (increase) or
    starting from (decrease) the full ``eta``; a window of one step gets the full ``eta``.
    """
    if trend not in ETA_TRENDS:
        raise ValueError(f"eta_trend must be one of {ETA_TRENDS}, got {trend!r}")
    inside = [i for i in range(steps) if start <= i / steps < stop]
    etas = [0.0] * steps
    for k, i in enumerate(inside):
        if trend == "linear_increase":
            etas[i] = eta * (k + 1) / len(inside)
        elif trend == "linear_decrease":
            etas[i] = eta * (len(inside) - k) / len(inside)
        else:
            etas[i] = eta
    return etas


def rectified_sde_step(x, denoised, sigma, sigma_next, noise, eta=0.0, s_noise=1.0):
    """One step of the (controlled) rectified SDE (paper Eq. 17; ALGORITHM.md §3).

        X <- X + (sigma_next - sigma) * (2 v + X / (1 - sigma))
               + s_noise * sqrt(2 sigma (1 - eta) (sigma - sigma_next) / (1 - sigma)) * xi

    with v = (X - D) / sigma, D already blended toward y0 by ``eta`` (``controlled_denoised``).
    The noise carries the paper's (1 - eta) factor, so eta = 1 is deterministic. At sigma = 1
    the drift is singular and at sigma_next = 0 the noise would be left in the image: both
    ends take the plain Euler step instead, which at sigma_next = 0 returns D itself.
    """
    if sigma_next == 0 or sigma >= 1:
        return x + (sigma_next - sigma) * velocity(x, denoised, sigma)
    drift = 2.0 * velocity(x, denoised, sigma) + x / (1.0 - sigma)
    scale = s_noise * math.sqrt(2.0 * sigma * (1.0 - eta) * (sigma - sigma_next) / (1.0 - sigma))
    return x + (sigma_next - sigma) * drift + scale * noise


# --- noise -----------------------------------------------------------------------------------

def seeded_noise(shape, seed, like):
    """Standard normal noise of ``shape`` from its own CPU generator, as ComfyUI's RandomNoise draws
    it, so that it is the same on every device and leaves torch's global random state alone."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(shape, generator=generator, dtype=torch.float32, device="cpu").to(like)


class NoiseStream:
    """Fresh noise for each stochastic step, from one seeded CPU generator (re-queue reproduces)."""

    def __init__(self, seed, like):
        self.generator = torch.Generator(device="cpu").manual_seed(int(seed))
        self.like = like

    def __call__(self):
        shape = self.like.shape
        return torch.randn(shape, generator=self.generator, dtype=torch.float32, device="cpu").to(self.like)


# --- the samplers ----------------------------------------------------------------------------

def _report(callback, x, i, sigma, denoised):
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})


@torch.no_grad()
def sample_rf_inversion(model, x, sigmas, extra_args=None, callback=None, disable=None, y1=None, gamma=0.5):
    """Controlled forward ODE (paper Algorithm 1; ALGORITHM.md §1): the image latent to structured
    noise, pulled toward the noise sample ``y1`` with strength ``gamma``.

    ``sigmas`` increase from a small sigma > 0 to sigma_end <= 1; ``x`` is the state at sigmas[0]
    and the state at sigma_end is returned. With gamma = 1 and sigma_end = 1 it is exactly y1,
    because the distance to y1 shrinks by (1 - sigma_next) / (1 - sigma) on each step.
    """
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in, **extra_args)
        _report(callback, x, i, sigma, denoised)
        x = x + (sigma_next - sigma) * controlled_forward_velocity(x, denoised, sigma, y1, gamma)
    return x


@torch.no_grad()
def sample_controlled_reverse(model, x, sigmas, extra_args=None, callback=None, disable=None,
                              y0=None, etas=None, noise=None, s_noise=1.0):
    """Controlled reverse ODE (paper Algorithm 2; ALGORITHM.md §2), or with ``noise`` the controlled
    rectified SDE (paper Eq. 17; ALGORITHM.md §3): structured noise back to an image, pulled toward
    the reference latent ``y0`` with strength ``etas[i]`` at step i.

    ``x`` is the state at sigmas[0]; ``noise`` is a callable giving standard normal noise per step
    (None for the ODE). With eta_i = 1 on the last step the result is exactly y0.
    """
    extra_args = {} if extra_args is None else extra_args
    etas = [0.0] * (len(sigmas) - 1) if etas is None else etas
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = controlled_denoised(model(x, sigma * s_in, **extra_args), y0, etas[i])
        _report(callback, x, i, sigma, denoised)
        if noise is None:
            x = x + (sigma_next - sigma) * velocity(x, denoised, sigma)
        else:
            x = rectified_sde_step(x, denoised, float(sigma), float(sigma_next), noise(), etas[i], s_noise)
    return x


@torch.no_grad()
def sample_rectified_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0, noise=None):
    """Rectified SDE sampler (paper §3, the stochastic equivalent of the flow ODE; ALGORITHM.md §3):
    generation from noise with the same marginals as the ODE. ``noise`` gives the per-step noise;
    by default it is seeded from ``extra_args["seed"]``, so a re-queue reproduces the image."""
    extra_args = {} if extra_args is None else extra_args
    if noise is None:
        # offset, so that the first step's noise is not the initial noise drawn from the same seed
        # (wrapped: ComfyUI's seeds reach 2**64 - 1, the generator's largest)
        noise = NoiseStream((int(extra_args.get("seed", 0) or 0) + 1) % 2**64, x)
    return sample_controlled_reverse(model, x, sigmas, extra_args, callback, disable,
                                     y0=None, etas=None, noise=noise, s_noise=s_noise)
