"""The graph every benchmark runs side by side with ComfyUI's ``euler``: the host's own nodes, as a
Flux edit workflow wires them, so that both sides get the same model, sigmas, noise and latent."""
from types import SimpleNamespace

import torch

# steps of each solver that make ``calls`` network calls, as euler makes them in ``calls`` steps
# (euler N, midpoint 2N, fireflow N + 1; the benchmarks count the calls and check)
STEPS_FOR_CALLS = {"euler": lambda calls: calls, "midpoint": lambda calls: calls // 2,
                   "fireflow": lambda calls: calls - 1}


def side_by_side(M, model, steps, image, seed, stochastic_reverse=False, solvers=("midpoint", "fireflow")):
    """Flux's shift at 1024², a BasicGuider, the ``simple`` schedule and its flip, and the cases
    ``{name: (pack sampler, noise, sigmas, latent, euler's sigmas)}`` that euler is run on as well.

    euler gets the pack's sigmas, except for a second-order ``solvers`` row: that one runs the steps
    that make as many network calls as euler's ``steps`` (STEPS_FOR_CALLS), and euler keeps ``steps``."""
    from harness import exact_models as em

    model = em.shifted(M, model, "flux")
    guider = M["BasicGuider"].execute(model, em.flux_conditioning())[0]

    def schedule(n):
        falling = M["BasicScheduler"].execute(model, "simple", n, 1.0)[0]
        return falling, M["FlipSigmas"].execute(falling)[0]

    sigmas, flipped = schedule(steps)
    no_noise = M["DisableNoise"].execute()[0]

    def run(sampler, noise, sigmas, latent):
        return M["SamplerCustomAdvanced"].execute(noise, guider, sampler, sigmas, latent)

    inversion = M["RFInversionSampler"].execute(0.5, seed)[0]
    inverted = run(inversion, no_noise, flipped, image)[0]
    empty = {"samples": torch.zeros_like(image["samples"])}

    def reverse(stochastic=False, solver="euler"):
        return M["ControlledReverseSampler"].execute(image, 0.9, 0.0, 0.25, "constant", stochastic, 0, solver)[0]

    cases = {
        "RF-Inversion (gamma 0.5)": (inversion, no_noise, flipped, image, flipped),
        "Controlled Reverse (eta 0.9, ODE)": (reverse(), no_noise, sigmas, inverted, sigmas),
    }
    for solver in solvers:
        falling, rising = schedule(STEPS_FOR_CALLS[solver](steps))
        cases[f"RF-Inversion (gamma 0.5, {solver})"] = (
            M["RFInversionSampler"].execute(0.5, seed, solver)[0], no_noise, rising, image, flipped)
        cases[f"Controlled Reverse (eta 0.9, ODE, {solver})"] = (reverse(solver=solver), no_noise, falling, inverted, sigmas)
    if stochastic_reverse:
        cases["Controlled Reverse (eta 0.9, stochastic)"] = (reverse(stochastic=True), no_noise, sigmas, inverted, sigmas)
    cases["Rectified SDE"] = (M["RectifiedSDESampler"].execute(1.0)[0], M["RandomNoise"].execute(seed)[0], sigmas, empty, sigmas)
    return SimpleNamespace(model=model, sigmas=sigmas, no_noise=no_noise, inverted=inverted, run=run,
                           euler=M["KSamplerSelect"].execute("euler")[0], cases=cases)
