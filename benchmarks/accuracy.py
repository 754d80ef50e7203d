"""Accuracy per network call, on exact velocity fields, in the real host in-process.

Every run goes through SamplerCustomAdvanced with Flux's model class (latent format, model sampling,
guider); only the network is replaced by the closed-form field of harness/exact_models.py. Errors
are root-mean-square over all elements, in model space, against:

    gamma = 1 target:   the inversion's end state against y1 (it should be y1 exactly);
    eta = 1 target:     the reverse's end state, started from y1, against y0 (it should be y0);
    reconstruction:     inversion with gamma = 0, then reverse with eta = 0, against y0 (the
                        solver's discretisation error, which shrinks as the steps grow);
    the exact path:     the same with record_path and the reverse's inversion input wired (the
                        pack's solvers only; EXACT_PATH.md), gamma 0 and 0.5, with the inversion's
                        network calls counted.

for the pack's nodes with each solver and for the two public conventions of benchmarks/baselines.py
(Euler steps), at equal network calls per pass: each method runs the steps that make that many
calls (graph.STEPS_FOR_CALLS), and the calls are counted on the exact model, not assumed.
"""
import torch

from benchmarks.baselines import BaselineSampler
from benchmarks.graph import STEPS_FOR_CALLS
from harness import exact_models as em

CALLS = (8, 16, 28, 56)  # network calls per pass: euler and the conventions N steps, midpoint N/2, fireflow N - 1
SHIFTS = ("flux", "sd3")
FIELDS = ("gaussian", "mixture")
SOLVERS = ("euler", "midpoint", "fireflow")  # the pack's nodes, one per solver
METHODS = SOLVERS + ("controller_linear", "model_linear")
METRICS = ("gamma1", "eta1", "recon", "path0", "path5")
SEED = 7
SHAPE = (4, 16, 16, 16)  # a batch of 4 latents in Flux's 16 channels


def make_field(kind):
    g = torch.Generator().manual_seed(1)
    mu = 0.8 * torch.randn(SHAPE[1:], generator=g)
    if kind == "gaussian":
        return em.GaussianMixture([mu], [0.5])
    return em.GaussianMixture([mu, -mu], [0.5, 0.3], [0.5, 0.5])


def rms(a, b):
    return float((a.cpu().double() - b.cpu().double()).pow(2).mean().sqrt())


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

    def inversion(self, method, gamma, record_path=False):
        if method in SOLVERS:
            return self.M["RFInversionSampler"].execute(gamma, SEED, method, record_path)[0]
        return BaselineSampler("inversion", method, gamma=gamma, seed=SEED)

    def reverse(self, method, eta, steps, inversion=None):
        if method in SOLVERS:
            return self.M["ControlledReverseSampler"].execute({"samples": self.y0_out}, eta, 0.0, 1.0, "constant", False, 0,
                                                              method, inversion)[0]
        return BaselineSampler("reverse", method, reference={"samples": self.y0_out}, etas=[eta] * steps)

    def counted(self, sampler, sigmas, latent_model_space):
        """The run's result and the network calls it made, read from the exact model's counter."""
        network = self.model.model.diffusion_model
        before = network.calls
        out = self.run(sampler, sigmas, latent_model_space)
        return out, network.calls - before

    def measure(self, method, calls):
        steps = STEPS_FOR_CALLS.get(method, STEPS_FOR_CALLS["euler"])(calls)
        sig, flip = self.sigmas(steps)
        gamma1 = rms(self.run(self.inversion(method, 1.0), flip, self.y0), self.y1)
        eta1 = rms(self.run(self.reverse(method, 1.0, steps), sig, self.y1), self.y0)
        inverted, inv_calls = self.counted(self.inversion(method, 0.0), flip, self.y0)
        back, rev_calls = self.counted(self.reverse(method, 0.0, steps), sig, inverted)
        if (inv_calls, rev_calls) != (calls, calls):
            raise RuntimeError(f"{method} at {steps} steps made {inv_calls} + {rev_calls} network calls, not {calls} per pass")
        row = {"steps": steps, "calls": inv_calls, "gamma1": gamma1, "eta1": eta1, "recon": rms(back, self.y0)}
        if method in SOLVERS:
            for gamma in (0.0, 0.5):
                row[f"path{int(10 * gamma)}"], row["path_calls"] = self.through_path(method, gamma, steps, flip, sig, calls)
        return row

    def through_path(self, method, gamma, steps, flip, sig, calls):
        """The round trip through the exact path: its error, and the recording inversion's network calls."""
        inversion = self.inversion(method, gamma, record_path=True)
        inverted, inv_calls = self.counted(inversion, flip, self.y0)
        back, rev_calls = self.counted(self.reverse(method, 0.0, steps, inversion), sig, inverted)
        if rev_calls != calls:
            raise RuntimeError(f"{method} through the path made {rev_calls} reverse calls, not {calls}")
        return rms(back, self.y0), inv_calls


def run_accuracy(M, calls_list=CALLS, log=print):
    rows = []
    for field_kind in FIELDS:
        for shift in SHIFTS:
            case = Case(M, field_kind, shift)
            for calls in calls_list:
                row = {"field": field_kind, "shift": shift, "calls": calls}
                for method in METHODS:
                    for metric, value in case.measure(method, calls).items():
                        row[f"{metric}:{method}"] = value
                rows.append(row)
                log(f"  accuracy {field_kind:8s} {shift:4s} {calls:2d} calls per pass: "
                    + "  ".join(f"{k}={v:.2e}" for k, v in row.items() if k.startswith(METRICS)))
    return rows
