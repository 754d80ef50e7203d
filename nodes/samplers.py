"""The three SAMPLER nodes: thin wiring from node inputs to the math in ``sampler/``.

What lives here is only what needs the host: checks of the model, the sigmas and the latents
before any model call (so a wrong graph fails with a message, not a traceback from torch), the
move of the reference into the model's latent space, interrupt on every step, and the exact path's
records, held between runs.
"""
import math

import comfy.model_management
import comfy.model_sampling
import comfy.samplers
import torch
from comfy_api.latest import io

from .. import sampler as rf
from . import video_masks

CATEGORY = "sampling/custom_sampling/samplers"
FLIPPED_ZERO = 1e-4  # what comfy_extras' FlipSigmas puts in place of a schedule's final 0


def check_flow_model(title, sampling, where=""):
    """Name a model that is no rectified-flow model before any call: it would run to meaningless output."""
    # CONST subclasses of newer hosts that flow from one image to another, not from noise: by name, as older hosts lack them
    image_to_image = [n for n in ("IMG_TO_IMG_FLOW", "IMG_TO_IMG_VELOCITY")
                      if isinstance(sampling, getattr(comfy.model_sampling, n, ()))]
    if image_to_image or not isinstance(sampling, comfy.model_sampling.CONST):
        # the prediction type (EPS, V_PREDICTION, ...) says what the model is: its class is "ModelSampling"
        kinds = [c.__name__ for c in type(sampling).__mro__ if c.__module__ == comfy.model_sampling.__name__
                 and c.__name__ != "ModelSampling"]
        why = (f"{image_to_image[0]}: a flow from one image to another, not from noise to an image" if image_to_image
               else f"{' + '.join(kinds) or type(sampling).__name__}, not CONST: an SD1.5/SDXL-style diffusion model")
        raise ValueError(f"{title}: the model {where}is not a rectified-flow model (its sampling is "
                         f"{why}). Use a flow model such as Flux, Flux.2, SD3, Qwen-Image, Z-Image or Wan.")


class PackSampler(comfy.samplers.KSAMPLER):
    """A KSAMPLER that checks its inputs first and honours interrupt on every step."""

    title = "sampler"
    uses_noise = True

    def check(self, model_wrap, sigmas, noise, latent_image):
        where = f"{self.title}:"
        check_flow_model(self.title, model_wrap.inner_model.model_sampling, "connected to the guider ")
        if not self.uses_noise and noise is not None and torch.count_nonzero(noise) > 0:
            raise ValueError(f"{where} this sampler ignores the noise input, and a noise source is wired to it. "
                             "Connect DisableNoise to SamplerCustomAdvanced's noise (or turn add_noise off in SamplerCustom).")
        if latent_image is not None:
            check_finite_latent(self.title, "latent_image", latent_image)

    def checked(self, samples):
        """Never hand NaN on to the next node: name the sampler where the values broke."""
        check_finite_output(self.title, samples, " while sampling")
        return samples

    def interruptible(self, callback, total_steps):
        def step_callback(i, denoised, x, total=total_steps):
            comfy.model_management.throw_exception_if_processing_interrupted()
            if callback is not None:
                callback(i, denoised, x, total)
        return step_callback

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None, disable_pbar=False):
        self.check(model_wrap, sigmas, noise, latent_image)
        callback = self.interruptible(callback, len(sigmas) - 1)
        return self.checked(super().sample(model_wrap, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar))


class FlowStateSampler(PackSampler):
    """A sampler whose latent input is the state at the first sigma and whose output is the state at
    the last sigma, as they are. ComfyUI's KSAMPLER instead scales the input as noise plus image
    and divides the output by (1 - last sigma): that drops the structured noise at sigma = 1 and
    divides by zero there. The guider still moves both latents in and out of the model's space."""

    uses_noise = False

    def check(self, model_wrap, sigmas, noise, latent_image):
        super().check(model_wrap, sigmas, noise, latent_image)
        if len(sigmas) < 2:  # the host runs a one-value schedule as no step: the latent would pass through unchanged
            held = f"{len(sigmas)} value ({float(sigmas[0]):g})" if len(sigmas) else "no value"
            raise ValueError(f"{self.title}: the sigmas hold {held}, so there is no step "
                             "to run. Connect the scheduler's sigmas with steps of 1 or more; after SplitSigmas, use the "
                             "side that keeps at least two sigmas.")

    def options(self, model_wrap, sigmas, latent_image, extra_args):
        return {}

    def progress_steps(self, sigmas):
        """What the progress bar counts: the steps of the schedule."""
        return len(sigmas) - 1

    def clean_image(self, latent_image, options):
        """What a noise mask keeps outside the mask (KSamplerX0Inpaint blends the denoised with it)."""
        return latent_image

    def mask_noise(self, noise, sigmas, latent_image, options):
        """The noise that puts the outside of a mask on its straight path: KSamplerX0Inpaint feeds
        the network sigma * noise + (1 - sigma) * clean_image there."""
        return noise

    def finished(self, options):
        """After a run that completed: what it leaves behind."""

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None, disable_pbar=False):
        # A repeated sigma (the simple scheduler past the model's table of sigmas) moves nothing: it is
        # dropped here, before the checks, so that the steps, the eta window, the progress and the
        # record all count the steps that run, and no network call is spent on it.
        sigmas = rf.without_zero_steps(sigmas)
        self.check(model_wrap, sigmas, noise, latent_image)
        options = self.options(model_wrap, sigmas, latent_image, extra_args)
        extra_args["denoise_mask"] = denoise_mask
        model_k = comfy.samplers.KSamplerX0Inpaint(model_wrap, sigmas)
        model_k.latent_image = self.clean_image(latent_image, options)
        # only a mask reads it: without one, no latent-sized tensor is made for it
        model_k.noise = noise if denoise_mask is None else self.mask_noise(noise, sigmas, latent_image, options)
        # a video class that would feed clean tokens under a noisy timestep gets the straight path instead
        inpaint = video_masks.inpaint(model_k, denoise_mask, extra_args)
        step_callback = self.interruptible(callback, self.progress_steps(sigmas))

        def denoise(x, sigma, **kwargs):
            # A second-order step makes two network calls: stop before the next one, not at the step's end.
            comfy.model_management.throw_exception_if_processing_interrupted()
            return inpaint(x, sigma, **kwargs)

        samples = self.checked(self.sampler_function(denoise, latent_image.clone(), sigmas, extra_args=extra_args,
                                                     callback=lambda d: step_callback(d["i"], d["denoised"], d["x"]),
                                                     disable=disable_pbar, **options))
        self.finished(options)
        return samples


# The exact path's records are held here, one per inverted latent, not on the SAMPLER that made them:
# ComfyUI may drop and re-create that SAMPLER while it keeps the inversion's latent (--cache-lru), and
# one SAMPLER may invert several photos (runs of a batch, or two SamplerCustomAdvanced sharing it). A
# reverse finds its record by what identifies it: the inversion's settings, the schedule, the inverted
# latent (and the photo, where two inversions end on one latent: gamma = 1 ends on y1 whatever the photo).
#
# Bound: 2 GiB of CPU memory in all, the least recently recorded or used dropped first (the newest is
# always kept, whatever its size). A record is steps + 2 latents: at 28 steps 30 MiB for a 1024² Flux
# photo, so about 68 photos, and 600 MiB for a 121-frame Wan 2.2 clip, so 3 clips. More would hold, for
# photos edited long ago, memory that the models and ComfyUI's own cache need.
RECORD_BUDGET = 2 * 1024 ** 3


class PathStore:
    """The exact path's records, oldest first, held up to ``budget`` bytes. ``dropped`` counts, per
    inversion settings, the records dropped for the bound: the RF-Inversion Sampler's fingerprint, so that
    ComfyUI re-runs an inversion whose latent it still caches but whose record is gone."""

    def __init__(self, budget):
        self.budget, self.records, self.dropped = budget, [], {}

    @property
    def nbytes(self):
        return sum(r.nbytes for r in self.records)

    def add(self, path):
        """Keep a finished record; it replaces one of the same run (a re-run under --cache-none)."""
        def same_run(r):
            return r.key == path.key and r.levels == path.levels and rf.same_state(r.final, path.final) \
                and rf.same_state(r.start, path.start)
        self.records = [r for r in self.records if not same_run(r)]
        self.records.append(path)
        while len(self.records) > 1 and self.nbytes > self.budget:
            old = self.records.pop(0)
            self.dropped[old.key] = self.dropped.get(old.key, 0) + 1

    def of(self, key):
        """The records of one inversion's settings, newest first."""
        return [r for r in reversed(self.records) if r.key == key]

    def use(self, path):
        """A record a reverse retraces is the last to be dropped: a re-edit keeps needing it."""
        self.records.remove(path)
        self.records.append(path)


RECORDS = PathStore(RECORD_BUDGET)


def size(nbytes):
    """A size in bytes as a person reads it."""
    for unit, scale in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes} B"


def record_key(gamma, seed, solver):
    """What an inversion's record is filed under: the RF-Inversion Sampler's settings."""
    return float(gamma), int(seed), solver


class RFInversionKSampler(FlowStateSampler):
    title = "RF-Inversion Sampler"

    def __init__(self, gamma, seed, solver="euler", record_path=False):
        super().__init__(rf.sample_rf_inversion)
        self.gamma, self.seed, self.solver, self.record_path = gamma, seed, solver, record_path
        self.key = record_key(gamma, seed, solver)

    def check(self, model_wrap, sigmas, noise, latent_image):
        super().check(model_wrap, sigmas, noise, latent_image)
        if len(sigmas) > 1 and not bool((sigmas[1:] > sigmas[:-1]).all()):
            raise ValueError(f"{self.title}: the sigmas must increase (inversion runs from the image toward noise). "
                             "Connect FlipSigmas between the scheduler and the sampler.")
        if len(sigmas) > 1 and not (0 < float(sigmas[0]) and float(sigmas[-1]) <= 1):
            raise ValueError(f"{self.title}: the sigmas must lie in (0, 1], got {float(sigmas[0]):g} to {float(sigmas[-1]):g}. "
                             "Use FlipSigmas on a flow model's schedule (it turns a leading 0 into 1e-4).")

    def options(self, model_wrap, sigmas, latent_image, extra_args):
        options = {"gamma": self.gamma, "y1": rf.seeded_noise(latent_image.shape, self.seed, latent_image),
                   "solver": self.solver}
        if self.record_path:
            # FlipSigmas turns the schedule's final 0 into 1e-4: the reverse of that schedule ends at 0.
            start = float(sigmas[0])
            # a new record each run, kept only when the run completes: an interrupted one leaves none.
            # Held on the intermediate device.
            options["path"] = rf.RecordedPath(0.0 if math.isclose(start, FLIPPED_ZERO, rel_tol=1e-6) else start,
                                              keep=lambda t: t.to(comfy.model_management.intermediate_device()),
                                              key=self.key)
        return options

    def finished(self, options):
        if "path" in options:
            RECORDS.add(options["path"])

    def progress_steps(self, sigmas):
        # recording runs the reverse's steps along the path after the inversion's own
        return (len(sigmas) - 1) * (2 if self.record_path else 1)

    def mask_noise(self, noise, sigmas, latent_image, options):
        return options["y1"]  # outside a mask: the image's path toward y1 (the gamma = 1 path)


class ControlledReverseKSampler(FlowStateSampler):
    title = "Controlled Reverse Sampler"

    def __init__(self, reference, eta, start, stop, eta_trend, stochastic, seed, solver="euler", inversion=None):
        super().__init__(rf.sample_controlled_reverse)
        self.reference = reference
        self.eta, self.start, self.stop, self.eta_trend = eta, start, stop, eta_trend
        self.stochastic, self.seed, self.solver = stochastic, seed, solver
        self.inversion = inversion

    def check(self, model_wrap, sigmas, noise, latent_image):
        super().check(model_wrap, sigmas, noise, latent_image)
        if len(sigmas) > 1 and not bool((sigmas[1:] < sigmas[:-1]).all()):
            raise ValueError(f"{self.title}: the sigmas must decrease (the reverse runs from noise to the image). "
                             "Connect the scheduler's sigmas directly, without FlipSigmas.")
        check_finite_latent(self.title, "reference latent", self.reference["samples"])

    def recorded_path(self, sigmas, latent_image, y0):
        """The record this run retraces: the inversion's settings, these sigmas and this latent (and, where
        two records end on this latent, the one of the photo y0). Named before any model call otherwise."""
        where = f"{self.title}: the inversion input"
        key, levels = self.inversion.key, sigmas.tolist()
        records = RECORDS.of(key)
        mine = [r for r in records if rf.same_state(r.final, latent_image)]
        fits = [r for r in mine if rf.same_schedule(levels, r.levels)]
        if fits:
            found = next((r for r in fits if rf.same_state(r.start, y0)), fits[0])
            RECORDS.use(found)
            return found
        if mine:
            path = mine[0]
            raise ValueError(f"{where} recorded a schedule of {len(path.levels) - 1} steps from sigma "
                             f"{path.levels[0]:g} to {path.levels[-1]:g}, and these sigmas are {len(levels) - 1} steps "
                             f"from {levels[0]:g} to {levels[-1]:g}. Connect the sigmas whose FlipSigmas fed the "
                             "inversion (the same scheduler, steps and SplitSigmas side).")
        if RECORDS.dropped.get(key):
            raise ValueError(f"{where} has no record of this latent_image's inversion left. The exact path keeps its "
                             f"records up to {size(RECORDS.budget)} in all and drops the oldest (here, "
                             f"{RECORDS.dropped[key]} of this RF-Inversion Sampler's settings). Queue the prompt again: "
                             "the RF-Inversion Sampler then runs its inversion again and records it. If this "
                             "comes back, one run inverts more photos through it than that holds: queue fewer at "
                             "once. Otherwise the latent_image is not that inversion's: connect the output of the "
                             "SamplerCustomAdvanced that ran the RF-Inversion Sampler wired to inversion.")
        if not records:
            raise ValueError(f"{where} is wired to an RF-Inversion Sampler that has not recorded a run (it has not run "
                             "yet, or was interrupted). Its SamplerCustomAdvanced must run first: connect that node's "
                             "output latent as this sampler's latent_image.")
        raise ValueError(f"{where} recorded the inversion of another latent (shape {tuple(records[0].final.shape)}) "
                         f"than this latent_image (shape {tuple(latent_image.shape)}). Connect as latent_image the "
                         "output of the SamplerCustomAdvanced that ran the RF-Inversion Sampler wired to inversion.")

    def model_space_reference(self, model_wrap, latent_image):
        """The reference y0 moved the way the latent being sampled was: SamplerCustomAdvanced makes an
        image latent 5-D for a model whose latents are (Qwen-Image's one frame), and the guider applies
        process_latent_in, which may reshape (HunyuanImage 2.1's refiner pairs frames into channels).
        Shapes are compared there, in one space; a reshape that fails is the same mismatch."""
        ref = self.reference["samples"]
        model = model_wrap.inner_model
        if model.latent_format.latent_dimensions == 3 and ref.ndim == 4:
            ref = ref.unsqueeze(2)  # as comfy.sample.fix_empty_latent_channels does for latent_image
        try:
            y0 = model.process_latent_in(ref.to(latent_image))
        except (RuntimeError, ValueError):
            y0 = None
        if y0 is None or y0.ndim != latent_image.ndim or y0.shape[1:] != latent_image.shape[1:] \
                or y0.shape[0] not in (1, latent_image.shape[0]):
            raise ValueError(self.mismatch(self.reference["samples"].shape, self.raw_shape(model, latent_image)))
        return y0

    def raw_shape(self, model, latent_image):
        """The latent being sampled as the graph holds it, for the message (outside the model's space)."""
        try:
            return model.process_latent_out(latent_image).shape
        except (RuntimeError, ValueError):
            return latent_image.shape

    def mismatch(self, ref, latent):
        first = (f"{self.title}: the reference latent has shape {tuple(ref)}, but the latent being sampled has "
                 f"shape {tuple(latent)}.")
        if len(ref) != len(latent) and 5 in (len(ref), len(latent)):
            kinds = {4: "an image latent (B, C, H, W)", 5: "a video latent (B, C, T, H, W)"}
            return (f"{first} The reference is {kinds.get(len(ref), f'{len(ref)}-D')} and the latent being sampled is "
                    f"{kinds.get(len(latent), f'{len(latent)}-D')}. Connect as reference the same latent that was "
                    "inverted: a video's latent for a video edit, an image's for an image edit.")
        if len(ref) == len(latent) == 5 and ref[2] != latent[2]:
            return (f"{first} The reference has {ref[2]} frames and the latent being sampled {latent[2]}. Connect "
                    "as reference the same video latent that was inverted, so that the inversion and the reverse "
                    "share one frame count.")
        return f"{first} Connect the same image latent that was inverted."

    def options(self, model_wrap, sigmas, latent_image, extra_args):
        # Before any model call: a reference of the wrong shape is named here, not in torch.
        y0 = self.model_space_reference(model_wrap, latent_image)
        etas = rf.eta_schedule(len(sigmas) - 1, self.eta, self.start, self.stop, self.eta_trend)
        noise = rf.NoiseStream(self.seed, latent_image) if self.stochastic else None
        options = {"y0": y0, "etas": etas, "noise": noise, "solver": self.solver}
        if self.inversion is not None:
            options["residuals"] = self.recorded_path(sigmas, latent_image, y0).residuals
        return options

    def clean_image(self, latent_image, options):
        # The latent being sampled is structured noise: outside a mask the image is the reference.
        return options["y0"].expand_as(latent_image)

    def mask_noise(self, noise, sigmas, latent_image, options):
        # The noise of the line from y0 through the inverted state: at sigma_0 it is that state.
        sigma = float(sigmas[0])
        return (latent_image - (1.0 - sigma) * options["y0"]) / sigma


class RectifiedSDEKSampler(PackSampler):
    title = "Rectified SDE Sampler"

    def __init__(self, s_noise):
        super().__init__(rf.sample_rectified_sde, {"s_noise": s_noise})


SOLVER_TOOLTIP = (
    "How each step is integrated. euler: the paper's method, one network call per step, first order. "
    "midpoint (RF-Solver): two calls per step, second order. fireflow (FireFlow): the midpoint rule reusing "
    "the last network call, steps + 1 calls, second order. At the same number of network calls the second-order "
    "solvers invert and reconstruct far more faithfully: for midpoint, halve the steps to keep the cost.")


def solver_input(extra=""):
    """The ``solver`` input: added last to both RF samplers, so that saved UI workflows keep their widget
    values, and optional, so that saved API prompts without it still validate (as euler)."""
    return io.Combo.Input("solver", options=list(rf.SOLVERS), default="euler", optional=True,
                          tooltip=SOLVER_TOOLTIP + extra)


def seed_input(tooltip):
    """A ``seed`` input as RandomNoise's: any seed ComfyUI draws, fixed unless the user changes it."""
    return io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=False, tooltip=tooltip)


def check_choice(title, name, value, choices, hint):
    """This host validates V3 combos only in the web UI: a pasted API prompt reaches execute as it is."""
    if value not in choices:
        raise ValueError(f"{title}: {name} {value!r} is not one of the choices {', '.join(choices)}. {hint}")


def check_finite_latent(title, name, latent):
    """A latent input with NaN or inf: name the input and where such values come from."""
    if not torch.isfinite(latent).all():
        raise ValueError(f"{title}: the {name} holds NaN or inf values; check the node that made it (a VAE Encode of an "
                         "image with NaN pixels, or a sampler before this one that overflowed).")


def check_finite_output(title, values, during=""):
    """Never hand NaN on to the next node: name the node where the model's values broke."""
    if not torch.isfinite(values).all():
        raise ValueError(f"{title}: the model returned NaN or inf values{during}. This usually comes from the model's "
                         "weights or dtype (try weight_dtype default or bf16 instead of fp16).")


def check_fraction(title, name, value, hint):
    """NaN passes the host's min/max validation (every comparison with it is false), and a pasted API
    prompt can carry it as JSON's NaN: name it here, not as NaN from the model."""
    if not 0 <= value <= 1:
        raise ValueError(f"{title}: {name} is {'NaN' if math.isnan(value) else f'{value:g}'}; it must be a number between "
                         f"0 and 1. {hint}")


def check_solver(title, solver):
    check_choice(title, "solver", solver, rf.SOLVERS, "Pick one of them on the node (euler is the paper's method).")


def check_inversion(title, inversion, stochastic, solver):
    """What the inversion input can be told apart by before any run: its node, whether it records, its solver."""
    if not isinstance(inversion, RFInversionKSampler):
        raise ValueError(f"{title}: the inversion input takes the SAMPLER output of an RF-Inversion Sampler (the one "
                         f"that feeds the inversion's SamplerCustomAdvanced), got {getattr(inversion, 'title', None) or type(inversion).__name__}. "
                         "Rewire it, or leave inversion unconnected.")
    if not inversion.record_path:
        raise ValueError(f"{title}: the RF-Inversion Sampler wired to the inversion input does not record its path. "
                         "Turn on its record_path, or leave inversion unconnected.")
    if stochastic:
        raise ValueError(f"{title}: stochastic is on and an inversion is wired: the recorded path is the ODE's, which "
                         "the SDE's noise leaves. Turn stochastic off to retrace the path, or leave inversion "
                         "unconnected for the stochastic reverse.")
    if inversion.solver != solver:
        raise ValueError(f"{title}: the inversion input is wired to a '{inversion.solver}' inversion, and this "
                         f"sampler's solver is '{solver}': the record serves the reverse of its own solver. Set both "
                         "samplers' solver to the same choice.")


# The nodes' schemas are declarations, alike in shape but each with its own inputs: kept one per node.
class RFInversionSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="RFInversionSampler",
            display_name="RF-Inversion Sampler",
            category=CATEGORY,
            description="Controlled forward ODE (RF-Inversion, Algorithm 1): turns an image latent into structured noise "
                        "that the Controlled Reverse Sampler edits. Use with FlipSigmas sigmas, DisableNoise, the image "
                        "latent as latent_image, and an empty prompt with guidance 0.",
            inputs=[
                io.Float.Input("gamma", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="Controller strength toward the seeded noise y1. 0 is plain ODE inversion (most "
                                       "faithful, least editable); 1 goes straight to y1 (forgets the image). The paper uses 0.5."),
                seed_input("Seed of the noise sample y1 that the controller pulls toward (the same noise RandomNoise draws with this seed)."),
                solver_input(),
                io.Boolean.Input("record_path", default=False, optional=True,
                                 tooltip="Record the inversion's path, so that a Controlled Reverse Sampler whose "
                                         "inversion input is wired from this node retraces it: the photo comes back "
                                         "exactly, and an edit keeps what its prompt does not change. Costs network calls "
                                         "once per photo (euler: steps + 1 in all; midpoint: 3 x steps + 1; fireflow: "
                                         "2 x steps + 2) and holds one latent per step in memory, on the CPU."),
            ],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def fingerprint_inputs(cls, gamma, seed, solver="euler", record_path=False):
        # Changes only when a record of these settings was dropped for the bound: ComfyUI then re-runs the
        # inversion (and records again) instead of serving its cached latent to a reverse that needs the record.
        return RECORDS.dropped.get(record_key(gamma, seed, solver), 0) if record_path else 0

    @classmethod
    def execute(cls, gamma, seed, solver="euler", record_path=False) -> io.NodeOutput:
        check_fraction("RF-Inversion Sampler", "gamma", gamma, "Set it on the node; the paper uses 0.5.")
        check_solver("RF-Inversion Sampler", solver)
        return io.NodeOutput(RFInversionKSampler(gamma, seed, solver, bool(record_path)))


class ControlledReverseSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ControlledReverseSampler",
            display_name="Controlled Reverse Sampler",
            category=CATEGORY,
            description="Controlled reverse ODE (RF-Inversion, Algorithm 2): takes the inverted latent back to an image "
                        "under the edit prompt, guided toward the reference image over the start/stop window. Use with "
                        "the scheduler's sigmas, DisableNoise, and the inverted latent as latent_image.",
            inputs=[
                io.Latent.Input("reference", tooltip="The image latent y0 that was inverted: the controller pulls toward it."),
                io.Float.Input("eta", default=0.9, min=0.0, max=1.0, step=0.01,
                               tooltip="Controller strength toward the reference inside the window. Higher keeps more of the "
                                       "photo, lower follows the prompt more. The paper uses 0.9 to 1.0."),
                io.Float.Input("start", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Start of the guidance window, as a fraction of the steps run (start <= i/steps)."),
                io.Float.Input("stop", default=0.25, min=0.0, max=1.0, step=0.01,
                               tooltip="End of the guidance window, as a fraction of the steps run (i/steps < stop). A later "
                                       "stop keeps more of the photo; the paper uses about 7 of 28 steps (0.25)."),
                io.Combo.Input("eta_trend", options=list(rf.ETA_TRENDS), default="constant",
                               tooltip="How eta varies over the window: constant, or ramping up to / down from eta."),
                io.Boolean.Input("stochastic", default=False,
                                 tooltip="Use the controlled rectified SDE step (paper Eq. 17) instead of the ODE. Its noise is "
                                         "scaled by (1 - eta) as in the paper, so eta = 1 still lands on the reference; the "
                                         "authors' code leaves that factor out."),
                seed_input("Seed of the stochastic mode's noise (unused by the ODE)."),
                solver_input(" The stochastic mode's step is always Euler-Maruyama: with stochastic on, choose euler."),
                io.Sampler.Input("inversion", optional=True,
                                 tooltip="The exact path (optional): wire the RF-Inversion Sampler that inverted this "
                                         "latent, with its record_path on. Each step then adds back, weighted by "
                                         "(1 - eta), the inversion's recorded path: with the inversion's prompt the photo "
                                         "comes back exactly, and an edit keeps what its prompt does not change. Same "
                                         "network calls; use the same solver and sigmas as the inversion."),
            ],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, reference, eta, start, stop, eta_trend, stochastic, seed, solver="euler",
                inversion=None) -> io.NodeOutput:
        title = "Controlled Reverse Sampler"
        check_fraction(title, "eta", eta, "Set it on the node; the paper uses 0.9 to 1.0.")
        check_fraction(title, "start", start, "Set it on the node; the paper's is 0.")
        check_fraction(title, "stop", stop, "Set it on the node; the paper's is 0.25.")
        if start >= stop:
            raise ValueError(f"{title}: start ({start}) must be below stop ({stop}). "
                             "Set start to 0 and stop to 0.25 for the paper's setting.")
        check_choice(title, "eta_trend", eta_trend, rf.ETA_TRENDS, "Pick one of them on the node (constant is the paper's).")
        check_solver(title, solver)
        if stochastic and solver != "euler":
            raise ValueError(f"{title}: stochastic is on with solver '{solver}', but the stochastic step is "
                             "Euler-Maruyama only. Set solver to euler, or turn stochastic off to use "
                             f"{solver}.")
        if inversion is not None:
            check_inversion(title, inversion, stochastic, solver)
        return io.NodeOutput(ControlledReverseKSampler(reference, eta, start, stop, eta_trend, stochastic, seed, solver,
                                                       inversion))


class RectifiedSDESampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="RectifiedSDESampler",
            display_name="Rectified SDE Sampler",
            category=CATEGORY,
            description="The rectified SDE (RF-Inversion §3): a stochastic sampler with the flow ODE's marginals, for "
                        "generation from noise with any flow model. Its noise is drawn from the sampling seed.",
            inputs=[
                io.Float.Input("s_noise", default=1.0, min=0.0, max=100.0, step=0.01,
                               tooltip="Scale of the noise added per step. 1 is the exact SDE with the flow's marginals; "
                                       "below 1 the images get smoother, and 0 is no longer a sampler of the model."),
            ],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, s_noise) -> io.NodeOutput:
        return io.NodeOutput(RectifiedSDEKSampler(s_noise))


NODES = [RFInversionSampler, ControlledReverseSampler, RectifiedSDESampler]
