"""The graph every benchmark runs side by side with ComfyUI's ``euler``: the host's own nodes, as a
Flux edit workflow wires them, so that both sides get the same model, sigmas, noise and latent."""
from types import SimpleNamespace

import torch


def side_by_side(M, model, steps, image, seed, stochastic_reverse=False):
    """Flux's shift at 1024², a BasicGuider, the ``simple`` schedule and its flip, and the cases
    ``{name: (pack sampler, noise, sigmas, latent)}`` that euler is run on as well."""
    import exact_models as em

    model = em.shifted(M, model, "flux")
    guider = M["BasicGuider"].execute(model, em.flux_conditioning())[0]
    sigmas = M["BasicScheduler"].execute(model, "simple", steps, 1.0)[0]
    flipped = M["FlipSigmas"].execute(sigmas)[0]
    no_noise = M["DisableNoise"].execute()[0]

    def run(sampler, noise, sigmas, latent):
        return M["SamplerCustomAdvanced"].execute(noise, guider, sampler, sigmas, latent)

    inversion = M["RFInversionSampler"].execute(0.5, seed)[0]
    inverted = run(inversion, no_noise, flipped, image)[0]
    empty = {"samples": torch.zeros_like(image["samples"])}
    cases = {
        "RF-Inversion (gamma 0.5)": (inversion, no_noise, flipped, image),
        "Controlled Reverse (eta 0.9, ODE)": (
            M["ControlledReverseSampler"].execute(image, 0.9, 0.0, 0.25, "constant", False, 0)[0], no_noise, sigmas, inverted),
    }
    if stochastic_reverse:
        cases["Controlled Reverse (eta 0.9, stochastic)"] = (
            M["ControlledReverseSampler"].execute(image, 0.9, 0.0, 0.25, "constant", True, 0)[0], no_noise, sigmas, inverted)
    cases["Rectified SDE"] = (M["RectifiedSDESampler"].execute(1.0)[0], M["RandomNoise"].execute(seed)[0], sigmas, empty)
    return SimpleNamespace(model=model, sigmas=sigmas, no_noise=no_noise, inverted=inverted, run=run,
                           euler=M["KSamplerSelect"].execute("euler")[0], cases=cases)
