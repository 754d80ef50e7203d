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


# --- the ODE solvers (SOLVERS.md) -------------------------------------------------------------
#
# Each pass is dx/dsigma = field(x, sigma, D), where D = D(x, sigma) is the network's denoised
# estimate and everything else in ``field`` is closed-form. A step rule takes ``denoise(x, sigma)``
# (one network call), the field, the state, the step's ends and what the previous step carried over
# (fireflow's network velocity; None on the first step and for the other rules), and returns the new
# state, the D of its last network call and what it carries over. Only the network's part is
# carried, never the whole controlled field, so the closed-form controller terms are always
# evaluated at the current x, sigma and eta, and gamma = 1 and eta = 1 stay exact.

SOLVERS = ("euler", "midpoint", "fireflow")


def euler_step(denoise, field, x, sigma, sigma_next, carried=None):
    """Euler step (the paper's Algorithms 1 and 2): x <- x + h * field(x, sigma, D(x, sigma)),
    h = sigma_next - sigma. First order; one network call."""
    denoised = denoise(x, sigma)
    return x + (sigma_next - sigma) * field(x, sigma, denoised), denoised, None


def _from_midpoint(denoise, field, x, x_mid, sigma, sigma_next):
    """The explicit midpoint rule's second half, from x_m = x + (h / 2) * (a slope at the start):

        x <- x + h * field(x_m, sigma_m, D(x_m, sigma_m)),   sigma_m = sigma + h / 2,

    strictly between the step's ends (never 0, never 1). Returns the new state, D(x_m, sigma_m) and
    sigma_m. The callers form x_m in one expression, so that the start slope is freed before the
    network call."""
    h = sigma_next - sigma
    sigma_mid = sigma + 0.5 * h
    denoised = denoise(x_mid, sigma_mid)
    return x + h * field(x_mid, sigma_mid, denoised), denoised, sigma_mid


def midpoint_step(denoise, field, x, sigma, sigma_next, carried=None):
    """RF-Solver's second-order step (Wang et al., "Taming Rectified Flow for Inversion and Editing",
    arXiv 2411.04746, its order-2 Taylor update with the derivative of the velocity taken by a finite
    difference over half a step). Written out, that is the explicit midpoint rule:

        x_m = x + (h / 2) * field(x, sigma, D(x, sigma)),   x <- x + h * field(x_m, sigma + h / 2, D(x_m, sigma + h / 2))

    Second order; two network calls per step."""
    x_mid = x + (0.5 * (sigma_next - sigma)) * field(x, sigma, denoise(x, sigma))
    x_next, denoised, _ = _from_midpoint(denoise, field, x, x_mid, sigma, sigma_next)
    return x_next, denoised, None


def fireflow_step(denoise, field, x, sigma, sigma_next, carried=None):
    """FireFlow's step (Deng et al., "FireFlow: Fast Inversion of Rectified Flow for Image Semantic
    Editing", arXiv 2412.07517): the midpoint rule whose start slope reuses the network's velocity
    v_m = (x_m - D_m) / sigma_m from the previous step's midpoint instead of a new call:

        x_m = x + (h / 2) * field(x, sigma, x - sigma * v_prev),   x <- x + h * field(x_m, sigma + h / 2, D_m)

    (x - sigma * v_prev is the denoised estimate whose velocity at x is v_prev.) Still second order,
    since x_m only needs an O(h) slope; one network call per step, two on the first (``carried`` is
    None there): N + 1 for N steps. Reusing the velocity, as FireFlow does, rather than D itself
    makes the round trip on a Gaussian field 1.6 times more accurate at 28 steps (SOLVERS.md's
    setting): flow paths are nearly straight, so their velocity changes less than D does."""
    start = denoise(x, sigma) if carried is None else x - sigma * carried
    x_mid = x + (0.5 * (sigma_next - sigma)) * field(x, sigma, start)
    del start  # not held across the network call
    x_next, denoised, sigma_mid = _from_midpoint(denoise, field, x, x_mid, sigma, sigma_next)
    return x_next, denoised, velocity(x_mid, denoised, sigma_mid)


STEPS = {"euler": euler_step, "midpoint": midpoint_step, "fireflow": fireflow_step}


def solver_step(solver):
    """The step rule of ``solver``, one of SOLVERS."""
    if solver not in STEPS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    return STEPS[solver]


def network_calls(solver, steps, record_path=False):
    """Network calls of ``steps`` steps of ``solver``: euler N, midpoint 2N, fireflow N + 1. An inversion
    that records its path (``path_residuals``) adds the reverse's calls less those it shares with the
    inversion: euler N + 1, midpoint 3N + 1, fireflow 2N + 2 in all."""
    solver_step(solver)
    if steps <= 0:
        return 0
    own = {"euler": steps, "midpoint": 2 * steps, "fireflow": steps + 1}[solver]
    return own + ({"euler": 1, "midpoint": steps + 1, "fireflow": steps + 1}[solver] if record_path else 0)


# --- the exact path (EXACT_PATH.md) -----------------------------------------------------------

class RecordedPath:
    """What an inversion leaves for the reverse that retraces it (EXACT_PATH.md): the reverse's sigmas
    (``levels``, from the inversion's last sigma down to ``end``), the ``solver`` both use, the
    inversion's first and last states (``start``, the photo, and ``final``, the inverted latent: which
    run this record is of) and one residual per reverse step, in the reverse's order. ``keep`` moves
    what is recorded to where it is held (the host's intermediate device); ``end`` is where the reverse
    stops, and ``key`` the inversion's settings, both set by the caller before the run."""

    def __init__(self, end=0.0, keep=None, key=None):
        self.end, self.keep, self.key = end, keep or (lambda t: t), key
        self.levels = self.solver = self.start = self.final = self.residuals = None

    @property
    def nbytes(self):
        return sum(t.numel() * t.element_size() for t in [self.start, self.final, *(self.residuals or [])]
                   if t is not None)


def same_schedule(levels, recorded):
    """Whether a reverse's sigmas are a record's ``levels``: to float32 rounding, as both come through tensors."""
    return len(levels) == len(recorded) and all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7)
                                                for a, b in zip(levels, recorded))


def same_state(recorded, latent):
    """Whether ``latent`` is the state a record kept, by value: the guider moves a latent out of the model's
    space and back in between the two passes, which may round it, so to 1e-4 of its norm, not bit for bit."""
    if recorded is None or recorded.shape != latent.shape:
        return False
    recorded = recorded.to(latent)
    return float((recorded - latent).norm()) <= 1e-4 * max(float(recorded.norm()), 1e-12)


def without_zero_steps(sigmas):
    """The schedule less its zero-length steps: a step from a sigma to the same sigma moves nothing. ComfyUI's
    ``simple`` scheduler repeats sigmas past the size of the model's table (1000 under SD3's sampling); its
    samplers spend a network call on each such step, and here none is run. Every count that follows (the
    steps, the eta window's fractions, the progress, the exact path's record) is then of the steps that run."""
    return torch.unique_consecutive(sigmas)


def path_residuals(step, denoise, states, levels, end, like, starts=None, keep=None, report=None):
    """The exact path's residuals (EXACT_PATH.md, the rule). The inversion visited ``states`` x_0 ... x_N
    at ``levels`` sigma_0 < ... < sigma_N; the reverse steps from sigma_(j+1) to sigma_j, and last to
    ``end``. With R_j that reverse step (``step`` on the plain field, eta = 0, the inversion's
    conditioning), taken along the path in the reverse's order and carrying what the reverse carries:

        r_j = x_j - R_j(x_(j+1)),

    so that a reverse adding r_j after its step j retraces x_j exactly. ``starts[k]`` is the network's
    D at x_k where the inversion already computed it (the start of its step k): it stands in for that
    call. ``states`` are consumed and the steps run on the device and dtype of ``like``; the residuals
    come back in the reverse's order, each through ``keep``."""
    starts = {} if starts is None else starts
    keep = keep or (lambda t: t)

    def field(state, sigma, denoised):
        return velocity(state, denoised, sigma)

    residuals, carried = [], None
    for k, j in enumerate(reversed(range(len(states) - 1))):
        start = states.pop().to(like)

        def recalled(state, sigma, start=start, known=starts.pop(j + 1, None)):
            return known.to(state) if known is not None and state is start else denoise(state, sigma)

        landed, denoised, carried = step(recalled, field, start, levels[j + 1], levels[j] if j else end, carried)
        if report is not None:
            report(start, k, levels[j + 1], denoised)
        residuals.append(keep(states[-1].to(landed) - landed))
        start = landed = denoised = None
    return residuals


# --- the samplers ----------------------------------------------------------------------------

def _report(callback, x, i, sigma, denoised):
    if callback is not None:
        callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})


def _denoiser(model, x, extra_args):
    """D(x, sigma) for a python float sigma: one network call, batched as the model wants it."""
    s_in = x.new_ones([x.shape[0]])
    return lambda state, sigma: model(state, sigma * s_in, **extra_args)


@torch.no_grad()
def sample_rf_inversion(model, x, sigmas, extra_args=None, callback=None, disable=None, y1=None, gamma=0.5,
                        solver="euler", path=None):
    """Controlled forward ODE (paper Algorithm 1; ALGORITHM.md §1): the image latent to structured
    noise, pulled toward the noise sample ``y1`` with strength ``gamma``, integrated by ``solver``
    (SOLVERS: euler is the paper's).

    ``sigmas`` increase from a small sigma > 0 to sigma_end <= 1; ``x`` is the state at sigmas[0]
    and the state at sigma_end is returned. With gamma = 1 and sigma_end = 1 it is exactly y1 for
    every solver: the field is then linear along the straight line to y1, which each step follows.

    With a ``path`` (a RecordedPath) the run also records what a reverse with the same solver needs to
    retrace it (``path_residuals``): the states it visits and the network's D at each step's start go
    to ``path.keep`` as they come, and the residuals replace them after the last step.
    """
    extra_args = {} if extra_args is None else extra_args
    step = solver_step(solver)
    denoise = _denoiser(model, x, extra_args)
    levels = sigmas.tolist()  # read on the host once per run, not once per step (a sync on CUDA)
    steps = len(levels) - 1

    def field(state, sigma, denoised):
        return controlled_forward_velocity(state, denoised, sigma, y1, gamma)

    states, starts = ([path.keep(x)], {}) if path is not None else (None, None)
    carried = None
    for i in trange(steps, disable=disable):
        def network(state, sigma, start=x, i=i):
            denoised = denoise(state, sigma)
            if states is not None and i > 0 and state is start:  # D at a visited state: the path's reverse needs it
                starts[i] = path.keep(denoised)
            return denoised

        x_next, denoised, carried = step(network, field, x, levels[i], levels[i + 1], carried)
        _report(callback, x, i, sigmas[i], denoised)
        x, x_next, denoised, network = x_next, None, None, None  # nothing but the state held across the next call
        if states is not None:
            states.append(path.keep(x))
    if path is not None:
        report = None if callback is None else lambda state, k, sigma, d: _report(callback, state, steps + k, sigma, d)
        path.start, path.final = states[0], states[-1]  # already kept: which photo and latent this record is of
        path.residuals = path_residuals(step, denoise, states, levels, path.end, x, starts, path.keep, report)
        path.levels, path.solver = levels[:0:-1] + [path.end], solver
    return x


@torch.no_grad()
def sample_controlled_reverse(model, x, sigmas, extra_args=None, callback=None, disable=None,
                              y0=None, etas=None, noise=None, s_noise=1.0, solver="euler", residuals=None):
    """Controlled reverse ODE (paper Algorithm 2; ALGORITHM.md §2) integrated by ``solver``, or with
    ``noise`` the controlled rectified SDE (paper Eq. 17; ALGORITHM.md §3), whose step is
    Euler-Maruyama: structured noise back to an image, pulled toward the reference latent ``y0``
    with strength ``etas[i]``, held over step i.

    ``x`` is the state at sigmas[0]; ``noise`` is a callable giving standard normal noise per step
    (None for the ODE). With eta_i = 1 on the last step the result is exactly y0.

    ``residuals`` (the exact path, EXACT_PATH.md): a RecordedPath's residuals, one per step; step i
    then adds (1 - eta_i) * residuals[i], so that under the inversion's conditioning with eta = 0 the
    reverse retraces the inversion's states, and eta = 1 stays exact.
    """
    extra_args = {} if extra_args is None else extra_args
    step = solver_step(solver)
    if noise is not None and solver != "euler":
        raise ValueError(f"the stochastic step is Euler-Maruyama: solver must be 'euler', got {solver!r}")
    levels = sigmas.tolist()  # read on the host once per run, not once per step (a sync on CUDA)
    etas = [0.0] * (len(levels) - 1) if etas is None else etas
    denoise = _denoiser(model, x, extra_args)
    carried = None
    for i in trange(len(levels) - 1, disable=disable):
        sigma, sigma_next, eta = levels[i], levels[i + 1], etas[i]
        if noise is None:
            def field(state, s, d, eta=eta):
                return velocity(state, controlled_denoised(d, y0, eta), s)
            x_next, denoised, carried = step(denoise, field, x, sigma, sigma_next, carried)
            shown = controlled_denoised(denoised, y0, eta)
            if residuals is not None and eta != 1.0:
                x_next.add_(residuals[i].to(x_next), alpha=1.0 - eta)
        else:
            shown = controlled_denoised(denoise(x, sigma), y0, eta)
            x_next = rectified_sde_step(x, shown, sigma, sigma_next, noise(), eta, s_noise)
        _report(callback, x, i, sigmas[i], shown)
        x, x_next, denoised, shown = x_next, None, None, None  # nothing but the state held across the next call
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
