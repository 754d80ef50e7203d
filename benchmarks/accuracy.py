"""Accuracy per network call, on exact velocity fields, in the real host in-process.

Every run goes through SamplerCustomAdvanced with Flux's model class (latent format, model sampling,
guider); only the network is replaced by the closed-form field of scripts/exact_models.py. Errors
are root-mean-square over all elements, in model space, against:

    gamma = 1 target:   the inversion's end state against y1 (it should be y1 exactly);
    eta = 1 target:     the reverse's end state, started from y1, against y0 (it should be y0);
    reconstruction:     inversion with gamma = 0, then reverse with eta = 0, against y0 (Euler's
                        first-order error, which shrinks as the steps grow).

for the pack's nodes and for the two public conventions of benchmarks/baselines.py.
"""
import torch

import exact_models as em
from baselines import BaselineSampler

STEPS = (4, 8, 14, 28)
SHIFTS = ("flux", "sd3")
FIELDS = ("gaussian", "mixture")
METHODS = ("pack", "controller_linear", "model_linear")
METRICS = ("gamma1", "eta1", "recon")
SEED = 7
SHAPE = (4, 16, 16, 16)  # a batch of 4 latents in Flux's 16 channels


def make_field(kind):
    g = torch.Generator().manual_seed(1)
    mu = 0.8 * torch.randn(SHAPE[1:], generator=g)
    if kind == "gaussian":
        return em.GaussianMixture([mu], [0.5])
    return em.GaussianMixture([mu, -mu], [0.5, 0.3], [0.5, 0.5])


def rms(a, b):
    return float((a.double() - b.double()).pow(2).mean().sqrt())


class Case:
    """One exact model under one shift, with its guider, and helpers to run the nodes."""

    def __init__(self, M, field_kind, shift):
        self.M = M
        self.field = make_field(field_kind)
        self.model = em.shifted(M, em.exact_flux(self.field), shift)  # Flux at 1024²: e^1.15 = 3.16
        self.guider = M["BasicGuider"].execute(self.model, em.flux_conditioning())[0]
        self.no_noise = M["DisableNoise"].execute()[0]
        g = torch.Generator().manual_seed(SEED + 1)
        self.y0 = self.field.sample(SHAPE[0], g)                        # model space
        self.y1 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(SEED))  # model space
        self.y0_out = self.to_out(self.y0)

    def to_out(self, t):
        return self.model.model.process_latent_out(t.clone())

    def to_in(self, t):
        return self.model.model.process_latent_in(t.clone())

    def sigmas(self, steps):
        sig = self.M["BasicScheduler"].execute(self.model, "simple", steps, 1.0)[0]
        return sig, self.M["FlipSigmas"].execute(sig)[0]

    def run(self, sampler, sigmas, latent_model_space):
        out = self.M["SamplerCustomAdvanced"].execute(self.no_noise, self.guider, sampler, sigmas,
                                                      {"samples": self.to_out(latent_model_space)})[0]
        return self.to_in(out["samples"])

    def inversion(self, method, gamma):
        if method == "pack":
            return self.M["RFInversionSampler"].execute(gamma, SEED)[0]
        return BaselineSampler("inversion", method, gamma=gamma, seed=SEED)

    def reverse(self, method, eta, steps):
        if method == "pack":
            return self.M["ControlledReverseSampler"].execute({"samples": self.y0_out}, eta, 0.0, 1.0, "constant", False, 0)[0]
        return BaselineSampler("reverse", method, reference={"samples": self.y0_out}, etas=[eta] * steps)

    def measure(self, method, steps):
        sig, flip = self.sigmas(steps)
        gamma1 = rms(self.run(self.inversion(method, 1.0), flip, self.y0), self.y1)
        eta1 = rms(self.run(self.reverse(method, 1.0, steps), sig, self.y1), self.y0)
        inverted = self.run(self.inversion(method, 0.0), flip, self.y0)
        recon = rms(self.run(self.reverse(method, 0.0, steps), sig, inverted), self.y0)
        return {"gamma1": gamma1, "eta1": eta1, "recon": recon}


def run_accuracy(M, steps_list=STEPS, log=print):
    rows = []
    for field_kind in FIELDS:
        for shift in SHIFTS:
            case = Case(M, field_kind, shift)
            for steps in steps_list:
                row = {"field": field_kind, "shift": shift, "steps": steps}
                for method in METHODS:
                    for metric, value in case.measure(method, steps).items():
                        row[f"{metric}:{method}"] = value
                rows.append(row)
                log(f"  accuracy {field_kind:8s} {shift:4s} {steps:2d} steps: "
                    + "  ".join(f"{k}={v:.2e}" for k, v in row.items() if ":" in k))
    return rows
