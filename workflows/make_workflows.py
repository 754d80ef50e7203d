"""Regenerates the workflow files in this folder through ComfyUI's real web UI.

    .venv/bin/python -m workflows.make_workflows            (starts a ComfyUI server and Chromium)
    .venv/bin/python -m workflows.make_workflows --server http://127.0.0.1:8188

Each graph below is described by node type, title, position, widget values by name and links by
input name; the web UI builds it with LiteGraph's own calls and serialises it, so the files are
exactly what the UI saves. Needs scripts/setup.sh and scripts/setup_browser.sh run first.
"""
import argparse
import json
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

NOTE_COLOR = ("#432", "#653")
PACK_COLOR = ("#223", "#335")

FLUX_FILES = "flux1-dev.safetensors in models/diffusion_models; clip_l.safetensors and t5xxl_fp16.safetensors in models/text_encoders; ae.safetensors in models/vae"

KNOBS = """Knobs, in plain words:
- gamma (RF-Inversion Sampler, 0 to 1): how hard the inversion is pulled toward plain random noise. 0 is plain inversion: most faithful to the photo, least editable. 1 goes straight to random noise and forgets the photo. The paper uses 0.5.
- eta (Controlled Reverse Sampler, 0 to 1): how hard the edit is pulled back toward the photo while its window is open. Higher keeps more of the photo (layout, identity, colours); lower follows the prompt more. The paper uses 0.9 to 1.0.
- start / stop: the window in which eta acts, as fractions of the steps that run. A later stop keeps more of the photo, an earlier one gives the prompt more room.
- eta_trend: eta constant over the window, or ramping up or down inside it.
- stochastic: the paper's controlled SDE instead of the ODE (adds fresh noise from seed, scaled by 1 - eta). Needs solver euler.
- solver (both samplers): how each step is computed. euler is the paper's method, one network call per step. fireflow is second order at one call per step (plus one per sampler run). midpoint is second order at two calls per step: halve the steps to keep the cost.
- seed (RF-Inversion Sampler): the random noise that gamma pulls toward; change it for another variation.
- Both samplers must share one schedule: keep the one BasicScheduler feeding both (28 steps, as in the paper).
- record_path (RF-Inversion Sampler) and inversion (Controlled Reverse Sampler), the exact path: off and unconnected here, the paper's wiring. Turn record_path on and wire the RF-Inversion Sampler's output to the reverse's inversion input, and the reverse retraces the inversion's recorded path: with the inversion's own prompt the photo comes back exactly. Why it is off: on the pack's emoji benchmark, with the paper's empty-prompt inversion the path kept about as much of the background (21.5 against 21.0 dB); it kept the most (26.5 dB, 7.4 dB more against the autoencoder's own image) when the inversion was given a prompt describing the photo at the edit's guidance, for about 1.4 times the network calls, but then edited fewer scenes (79 % against 98 %). With the Edit Region on, the path keeps less (30.2 against 31.05 dB). Try it when the edit must keep the rest of the photo exactly and no region is used."""

# Why the edit workflows use fireflow; the figures are on the exact Gaussian field (see docs/workflows.md).
SOLVER_CHOICE = """Solver: fireflow on both samplers, with the paper's steps and eta window unchanged. It is second order for one network call per step, plus one per sampler (29 calls instead of euler's 28 at 28 steps), so inverting and rebuilding the input is far more faithful: on an exact test field under Flux's schedule at 28 steps each way, the round trip misses the input by about 0.14 % with fireflow against 17 % with euler. Set both samplers to euler for the paper's exact method."""


def flux_loaders(x=0, y=0, image="example.png", with_image=True):
    nodes = []
    if with_image:
        nodes.append(dict(key="image", type="LoadImage", pos=[x, y], size=[320, 360], widgets={"image": image}))
        y += 420
    nodes += [
        dict(key="unet", type="UNETLoader", pos=[x, y], size=[320, 90],
             widgets={"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}),
        dict(key="clip", type="DualCLIPLoader", pos=[x, y + 140], size=[320, 140],
             widgets={"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors", "type": "flux", "device": "default"}),
        dict(key="vae", type="VAELoader", pos=[x, y + 330], size=[320, 60], widgets={"vae_name": "ae.safetensors"}),
    ]
    return nodes


REGION_NOTE = """Edit Region (on in this workflow): the Edit Region node finds where your edit changes the photo by asking the model itself. It puts the photo on its way to noise at a few noise levels and compares the model's predictions under "Describe the photo" and under "Edit prompt" (12 extra network calls at its defaults: 3 levels x 2 seeds x 2 prompts). Where they differ is the region; SetLatentNoiseMask on the inverted latent keeps everything outside it exactly as the photo. MaskPreview shows the region: check it before you judge the edit.
- Write in "Describe the photo" the edit prompt as the photo is now: the same words, with the edit's words as the photo has them (edit "a photo of a smiling person wearing a red knitted hat", describe "a photo of a person"). An empty description makes a weak region: it then marks everything the edit prompt describes, not only what it changes.
- Region too small (the edit stops short, or is cut off at its edge): lower threshold (0.1), or put GrowMask between Edit Region and SetLatentNoiseMask.
- Region too large (the photo changes where it should not): raise threshold (0.3 to 0.5), or bring the description closer to the edit prompt.
- An edit of the whole picture (a new style, winter for summer) gets a region of nearly the whole picture: nothing is held back.
- A video gets one region for the whole clip: every place that the edit changes in any frame.
- To edit without the region, connect the Invert node's output straight to the Edit node's latent_image.
Measured on the pack's emoji benchmark (100 held-out scenes, the paper's settings, the region's defaults): the background outside the edited object kept 31.05 dB of the 31.11 dB that the autoencoder allows (20.96 dB without the region), the edit succeeded in 98 % of the scenes (98 % without), and the region covered the edited object with an IoU of 0.78 (it marks whole latent cells: lower threshold to 0.1 for a tighter fit to the object's box, IoU 0.89). Not measured on this model: no real weights run in the pack's tests, and on a large model the region is rougher than on the emoji model, so look at it."""


def add_region(nodes, links, model_src, source_text, xs, y):
    """The Edit Region between the inversion and the edit: a prompt that describes the photo, the region
    of what the edit prompt changes, shown in MaskPreview, and SetLatentNoiseMask on the inverted latent,
    which the edit then samples instead of the inverted latent itself."""
    x1, x2, x3, x4 = xs
    nodes += [
        dict(key="source", type="CLIPTextEncode", pos=[x2, y], size=[380, 130], widgets={"text": source_text},
             title="Describe the photo (source)"),
        dict(key="region", type="RFEditRegion", pos=[x3, y], size=[380, 200],
             widgets={"threshold": 0.2, "levels": 3, "seeds": 2, "seed": 0}, color=PACK_COLOR),
        dict(key="noise_mask", type="SetLatentNoiseMask", pos=[x2, y + 190], size=[380, 50],
             title="Keep the photo outside the region"),
        dict(key="preview", type="MaskPreview", pos=[x4, y], size=[320, 320], title="The region (what the edit may change)"),
    ]
    links.remove(("invert", 0, "edit", "latent_image"))
    links += [("clip", 0, "source", "clip"), (*model_src, "region", "model"), ("source", 0, "region", "source"),
              ("prompt", 0, "region", "target"), ("encode", 0, "region", "latent"), ("region", 0, "preview", "mask"),
              ("invert", 0, "noise_mask", "samples"), ("region", 0, "noise_mask", "mask"),
              ("noise_mask", 0, "edit", "latent_image")]


def edit_graph(note, prompt, split_step=None, eta=0.9, start=0.0, stop=0.25, prefix="rf_inversion/edit",
               image="example.png", sd35=False, cfg=4.0, source=None):
    """Load image -> VAE encode -> RF-Inversion (empty prompt, guidance 0) -> controlled reverse under
    the edit prompt -> decode -> save, and the photo and the edit side by side. ``split_step``
    truncates the schedule (partial strength): invert only up to the sigma of that step."""
    x1, x2, x3, x4 = 380, 760, 1180, 1600
    nodes = [dict(key="note", type="Note", title="Read me", pos=[-460, 0], size=[420, 900], widgets={"text": note}, color=NOTE_COLOR)]
    links = []
    if sd35:
        nodes += [
            dict(key="image", type="LoadImage", pos=[0, 0], size=[320, 360], widgets={"image": image}),
            dict(key="ckpt", type="CheckpointLoaderSimple", pos=[0, 420], size=[320, 100], widgets={"ckpt_name": "sd3.5_large.safetensors"}),
            dict(key="clip", type="TripleCLIPLoader", pos=[0, 570], size=[320, 110],
                 widgets={"clip_name1": "clip_g.safetensors", "clip_name2": "clip_l.safetensors", "clip_name3": "t5xxl_fp16.safetensors"}),
            dict(key="msamp", type="ModelSamplingSD3", pos=[x1, 140], size=[320, 60], widgets={"shift": 3.0}),
        ]
        links += [("ckpt", 0, "msamp", "model")]
        model_src, vae_src = ("msamp", 0), ("ckpt", 2)
    else:
        nodes += flux_loaders(0, 0, image)
        nodes += [
            dict(key="size", type="GetImageSize", pos=[x1, 0], size=[320, 90], title="Image size (sets the Flux shift)"),
            dict(key="msamp", type="ModelSamplingFlux", pos=[x1, 140], size=[320, 130],
                 widgets={"max_shift": 1.15, "base_shift": 0.5, "width": 1024, "height": 1024}),
        ]
        links += [("image", 0, "size", "image"), ("unet", 0, "msamp", "model"),
                  ("size", 0, "msamp", "width"), ("size", 1, "msamp", "height")]
        model_src, vae_src = ("msamp", 0), ("vae", 0)
    nodes += [
        dict(key="encode", type="VAEEncode", pos=[x1, 330], size=[320, 50]),
        dict(key="sched", type="BasicScheduler", pos=[x1, 440], size=[320, 110],
             widgets={"scheduler": "simple", "steps": 28, "denoise": 1.0}, title="BasicScheduler (28 steps, shared)"),
        dict(key="flip", type="FlipSigmas", pos=[x1, 790], size=[320, 30]),
        dict(key="nonoise", type="DisableNoise", pos=[x1, 870], size=[320, 30]),
        dict(key="empty", type="CLIPTextEncode", pos=[x2, 0], size=[380, 130], widgets={"text": ""},
             title="Empty prompt (inversion)"),
        dict(key="inv_sampler", type="RFInversionSampler", pos=[x2, 420], size=[380, 90],
             widgets={"gamma": 0.5, "seed": 0, "solver": "fireflow"}, color=PACK_COLOR),
        dict(key="invert", type="SamplerCustomAdvanced", pos=[x2, 560], size=[380, 330],
             title="Invert: photo -> structured noise"),
        dict(key="prompt", type="CLIPTextEncode", pos=[x3, 0], size=[380, 130], widgets={"text": prompt},
             title="Edit prompt"),
        dict(key="rev_sampler", type="ControlledReverseSampler", pos=[x3, 420], size=[380, 220],
             widgets={"eta": eta, "start": start, "stop": stop, "eta_trend": "constant", "stochastic": False, "seed": 0,
                      "solver": "fireflow"},
             color=PACK_COLOR),
        dict(key="edit", type="SamplerCustomAdvanced", pos=[x3, 690], size=[380, 330],
             title="Edit: structured noise -> image"),
        dict(key="decode", type="VAEDecode", pos=[x4, 0], size=[240, 50]),
        dict(key="stitch", type="ImageStitch", pos=[x4, 100], size=[300, 150],
             widgets={"direction": "right", "match_image_size": True, "spacing_width": 0, "spacing_color": "white"},
             title="Photo | edit"),
        dict(key="save", type="SaveImage", pos=[x4 + 360, 0], size=[400, 440], widgets={"filename_prefix": prefix},
             title="Save the edit"),
        dict(key="save_pair", type="SaveImage", pos=[x4, 490], size=[760, 440],
             widgets={"filename_prefix": prefix + "_beside_input"}, title="Save photo and edit side by side"),
    ]
    if sd35:
        nodes += [
            dict(key="inv_guider", type="CFGGuider", pos=[x2, 180], size=[380, 100], widgets={"cfg": 1.0},
                 title="Inversion guider (empty prompt, cfg 1)"),
            dict(key="edit_guider", type="CFGGuider", pos=[x3, 180], size=[380, 100], widgets={"cfg": cfg},
                 title="Edit guider"),
        ]
        links += [("clip", 0, "empty", "clip"), ("clip", 0, "prompt", "clip"),
                  (*model_src, "inv_guider", "model"), ("empty", 0, "inv_guider", "positive"), ("empty", 0, "inv_guider", "negative"),
                  (*model_src, "edit_guider", "model"), ("prompt", 0, "edit_guider", "positive"), ("empty", 0, "edit_guider", "negative")]
    else:
        nodes += [
            dict(key="inv_guidance", type="FluxGuidance", pos=[x2, 180], size=[380, 60], widgets={"guidance": 0.0},
                 title="FluxGuidance 0 (inversion)"),
            dict(key="inv_guider", type="BasicGuider", pos=[x2, 290], size=[380, 50], title="Inversion guider"),
            dict(key="edit_guidance", type="FluxGuidance", pos=[x3, 180], size=[380, 60], widgets={"guidance": 3.5}),
            dict(key="edit_guider", type="BasicGuider", pos=[x3, 290], size=[380, 50], title="Edit guider"),
        ]
        links += [("clip", 0, "empty", "clip"), ("clip", 0, "prompt", "clip"),
                  ("empty", 0, "inv_guidance", "conditioning"), (*model_src, "inv_guider", "model"),
                  ("inv_guidance", 0, "inv_guider", "conditioning"),
                  ("prompt", 0, "edit_guidance", "conditioning"), (*model_src, "edit_guider", "model"),
                  ("edit_guidance", 0, "edit_guider", "conditioning")]
    if split_step is None:
        inv_sigmas, rev_sigmas = ("flip", 0), ("sched", 0)
        links += [("sched", 0, "flip", "sigmas")]
    else:
        nodes.append(dict(key="split", type="SplitSigmas", pos=[x1, 620], size=[320, 80], widgets={"step": split_step},
                          title=f"SplitSigmas (start at step {split_step} of 28)"))
        inv_sigmas, rev_sigmas = ("flip", 0), ("split", 1)
        links += [("sched", 0, "split", "sigmas"), ("split", 1, "flip", "sigmas")]
    links += [
        ("image", 0, "encode", "pixels"), (*vae_src, "encode", "vae"), (*model_src, "sched", "model"),
        ("nonoise", 0, "invert", "noise"), ("inv_guider", 0, "invert", "guider"), ("inv_sampler", 0, "invert", "sampler"),
        (*inv_sigmas, "invert", "sigmas"), ("encode", 0, "invert", "latent_image"),
        ("encode", 0, "rev_sampler", "reference"),
        ("nonoise", 0, "edit", "noise"), ("edit_guider", 0, "edit", "guider"), ("rev_sampler", 0, "edit", "sampler"),
        (*rev_sigmas, "edit", "sigmas"), ("invert", 0, "edit", "latent_image"),
        ("edit", 0, "decode", "samples"), (*vae_src, "decode", "vae"),
        ("decode", 0, "save", "images"), ("image", 0, "stitch", "image1"), ("decode", 0, "stitch", "image2"),
        ("stitch", 0, "save_pair", "images"),
    ]
    if source is not None:
        add_region(nodes, links, model_src, source, (x1, x2, x3, x4), 1080)
    return nodes, links


def generation_graph(note, prompt):
    x1, x2, x3 = 380, 760, 1180
    nodes = [dict(key="note", type="Note", title="Read me", pos=[-460, 0], size=[420, 700], widgets={"text": note}, color=NOTE_COLOR)]
    nodes += flux_loaders(0, 0, with_image=False)
    nodes += [
        dict(key="msamp", type="ModelSamplingFlux", pos=[x1, 0], size=[320, 130],
             widgets={"max_shift": 1.15, "base_shift": 0.5, "width": 1024, "height": 1024}),
        dict(key="latent", type="EmptySD3LatentImage", pos=[x1, 180], size=[320, 110],
             widgets={"width": 1024, "height": 1024, "batch_size": 1}),
        dict(key="sched", type="BasicScheduler", pos=[x1, 340], size=[320, 110], widgets={"scheduler": "simple", "steps": 28, "denoise": 1.0}),
        dict(key="noise", type="RandomNoise", pos=[x1, 500], size=[320, 90], widgets={"noise_seed": 0, "control_after_generate": "randomize"}),
        dict(key="prompt", type="CLIPTextEncode", pos=[x2, 0], size=[380, 160], widgets={"text": prompt}, title="Prompt"),
        dict(key="guidance", type="FluxGuidance", pos=[x2, 210], size=[380, 60], widgets={"guidance": 3.5}),
        dict(key="guider", type="BasicGuider", pos=[x2, 320], size=[380, 50]),
        dict(key="sampler", type="RectifiedSDESampler", pos=[x2, 420], size=[380, 60], widgets={"s_noise": 1.0}, color=PACK_COLOR),
        dict(key="sample", type="SamplerCustomAdvanced", pos=[x2, 530], size=[380, 330]),
        dict(key="decode", type="VAEDecode", pos=[x3, 0], size=[240, 50]),
        dict(key="save", type="SaveImage", pos=[x3, 100], size=[500, 560], widgets={"filename_prefix": "rf_inversion/rectified_sde"}),
    ]
    links = [("unet", 0, "msamp", "model"), ("clip", 0, "prompt", "clip"), ("prompt", 0, "guidance", "conditioning"),
             ("msamp", 0, "guider", "model"), ("guidance", 0, "guider", "conditioning"), ("msamp", 0, "sched", "model"),
             ("noise", 0, "sample", "noise"), ("guider", 0, "sample", "guider"), ("sampler", 0, "sample", "sampler"),
             ("sched", 0, "sample", "sigmas"), ("latent", 0, "sample", "latent_image"),
             ("sample", 0, "decode", "samples"), ("vae", 0, "decode", "vae"), ("decode", 0, "save", "images")]
    return nodes, links


SEMANTIC_NOTE = f"""RF-Inversion: semantic edit with Flux-dev

Edit a photo with a prompt, keeping everything the prompt does not mention.
1. Load a photo of about one megapixel (e.g. 1024 x 1024; sides that are multiples of 16).
2. Write what the photo should become in "Edit prompt" (describe the whole picture, e.g. "a photo of an old man smiling"), and the photo as it is now in "Describe the photo" (e.g. "a photo of an old man").
3. Queue. The edit, and the photo and the edit side by side, are saved in output/rf_inversion/.

Models: {FLUX_FILES}.

How it works: the RF-Inversion Sampler runs the flow backwards, from the photo to noise, with an empty prompt and guidance 0. Its result is "structured noise" that still remembers the photo. The Controlled Reverse Sampler runs the flow forward again under your prompt, pulled back toward the photo during the first steps.

{KNOBS}

This workflow uses the paper's settings: 28 steps, gamma 0.5, eta 0.9, start 0, stop 0.25 (eta on for steps 0 to 6, the first 7 of 28), Flux guidance 3.5 for the edit. The paper's windows for other edits (eta on from step 0 through step tau of 28): age tau 5 with eta 1.0 (stop 0.2), gender tau 8 with eta 1.0 (stop 0.3), stylization tau 6 with eta 0.9 (stop 0.23).

{SOLVER_CHOICE}

{REGION_NOTE}"""

STROKE_NOTE = f"""RF-Inversion: stroke-to-image with Flux-dev

A crude painting in (a few coloured strokes: blue sky, green hill, a brown house), a realistic image out with the same layout and colours.
1. Load your painting (about one megapixel).
2. Describe the realistic picture in "Edit prompt".
3. Queue. Results go to output/rf_inversion/.

Models: {FLUX_FILES}.

The paper's setting for this task (its Table 4): start at step s = 3 of 28 and keep eta = 0.9 on up to step tau = 5.
- SplitSigmas at step 3 does the "start at step 3": the painting is inverted only up to the noise level of step 3 (partial strength), and the edit runs the remaining 25 steps from there.
- The eta window is counted in the steps that run: steps 3, 4 and 5 of 28 are the first 3 of the 25 steps, so stop = 0.1 (eta is on while step/25 < 0.1).

Faithfulness against realism:
- Raise eta or stop: the result follows the strokes more closely (more faithful, more painterly).
- Lower eta or stop: the result looks more like a photo but drifts from the strokes.
- A larger SplitSigmas step starts from less noise: closer to the painting, less realistic. Step 0 inverts all the way.

{SOLVER_CHOICE}

{KNOBS}"""

PARTIAL_NOTE = f"""RF-Inversion: partial-strength edit with Flux-dev

A lighter edit: the photo is inverted only part of the way to noise, and the edit runs from there. Small changes (adding glasses, a smile, a colour) keep the rest of the photo nearly untouched.
1. Load a photo (about one megapixel). 2. Describe the edited photo in "Edit prompt", and the photo as it is now in "Describe the photo". 3. Queue. Results go to output/rf_inversion/.

Models: {FLUX_FILES}.

- SplitSigmas "step" is where the schedule starts (the paper's s): the photo is inverted up to the noise level of step 6 of 28, and the edit runs the remaining 22 steps. A larger step is a lighter edit (step 0 is the full inversion of the semantic-edit workflow). FlipSigmas turns the low part of the split around for the inversion.
- This uses the paper's "adding glasses" setting (its Table 4): s = 6, tau = 25, eta = 0.7. The window is counted in the 22 steps that run: steps 6 to 25 of 28 are the first 20 of 22, so stop = 0.9 (eta is on while step/22 < 0.9).

{SOLVER_CHOICE}

{KNOBS}

{REGION_NOTE}"""

GENERATION_NOTE = f"""Rectified SDE sampler: text-to-image with Flux-dev

Plain generation with the paper's rectified SDE: a stochastic sampler that keeps the flow's distribution (the same images on average as the usual Euler ODE, with fresh noise added at every step). Fine detail tends to come out differently from the ODE sampler.
1. Write a prompt. 2. Set the size in EmptySD3LatentImage and the same size in ModelSamplingFlux. 3. Queue. Images go to output/rf_inversion/.

Models: {FLUX_FILES}.

Knobs:
- s_noise (Rectified SDE Sampler): scale of the noise added per step. 1 is the exact SDE; below 1 images get smoother; 0 is no longer a sampler of the model.
- RandomNoise seed: the starting noise; every step's noise also comes from this seed, so a re-queue with the same seed gives the same image.
- 28 steps and Flux guidance 3.5, as for Flux-dev's usual sampling."""

SD35_NOTE = """RF-Inversion: semantic edit with Stable Diffusion 3.5

The same edit as the Flux workflow, with SD3.5 Large: the samplers work with any rectified-flow model, not only Flux.
1. Load a photo of about one megapixel. 2. Describe the edited photo in "Edit prompt", and the photo as it is now in "Describe the photo". 3. Queue. Results go to output/rf_inversion/.

Models: sd3.5_large.safetensors in models/checkpoints (its VAE is used); clip_g.safetensors, clip_l.safetensors and t5xxl_fp16.safetensors in models/text_encoders.

SD3 has no guidance input like Flux: the inversion uses CFGGuider with the empty prompt on both sides and cfg 1 (no guidance), and the edit uses the prompt against the empty prompt at cfg 4. ModelSamplingSD3 shift 3 is SD3.5's own schedule.

""" + KNOBS + """

Settings: 28 steps, gamma 0.5, eta 0.9, stop 0.25 (the paper's Flux settings; the paper does not tune SD3.5, so try eta 0.8 to 1.0 and stop 0.2 to 0.35).

""" + SOLVER_CHOICE + "\n\n" + REGION_NOTE


# The four newer flow families: loaders, schedule and guidance of each, as the host's own templates
# wire them (comfyui_workflow_templates: image_flux2, image_qwen_image, image_z_image_turbo,
# video_wan2_2_5B_ti2v). "guidance": FluxGuidance values (inversion, edit) on BasicGuider;
# "cfg": CFGGuider values (inversion, edit) with the empty prompt as negative; neither: BasicGuider.
FAMILIES = {
    "flux2": dict(unet="flux2_dev_fp8mixed.safetensors", clip=("mistral_3_small_flux2_bf16.safetensors", "flux2"),
                  vae="flux2-vae.safetensors", steps=28, guidance=(0.0, 4.0)),
    "qwen_image": dict(unet="qwen_image_fp8_e4m3fn.safetensors", clip=("qwen_2.5_vl_7b_fp8_scaled.safetensors", "qwen_image"),
                       vae="qwen_image_vae.safetensors", steps=28, sampling=("ModelSamplingAuraFlow", 3.1), cfg=(1.0, 2.5)),
    "zimage": dict(unet="z_image_turbo_bf16.safetensors", clip=("qwen_3_4b.safetensors", "lumina2"), vae="ae.safetensors",
                   steps=8, sampling=("ModelSamplingAuraFlow", 3.0)),
    "wan22": dict(unet="wan2.2_ti2v_5B_fp16.safetensors", clip=("umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan"),
                  vae="wan2.2_vae.safetensors", steps=28, sampling=("ModelSamplingSD3", 8.0), cfg=(1.0, 5.0)),
}


def family_edit_graph(family, note, prompt, prefix, media="example.png", source=None):
    """The semantic edit for one of FAMILIES: photo (or clip) -> VAE encode -> RF-Inversion with the
    empty prompt -> controlled reverse under the edit prompt -> decode -> save. Flux.2 takes its
    schedule from Flux2Scheduler at the photo's size; the others from ModelSampling* + BasicScheduler.
    Wan 2.2 reads a clip (LoadVideo, GetVideoComponents) and saves one (CreateVideo at the input's
    frame rate and with its sound, SaveVideo)."""
    f = FAMILIES[family]
    video = family == "wan22"
    x1, x2, x3, x4 = 380, 760, 1180, 1600
    nodes = [dict(key="note", type="Note", title="Read me", pos=[-460, 0], size=[420, 1000], widgets={"text": note}, color=NOTE_COLOR)]
    if video:
        nodes += [dict(key="video", type="LoadVideo", pos=[0, 0], size=[320, 360], widgets={"file": media}),
                  dict(key="frames", type="GetVideoComponents", pos=[0, 400], size=[320, 90])]
        links = [("video", 0, "frames", "video")]
        pixels = ("frames", 0)
    else:
        nodes.append(dict(key="image", type="LoadImage", pos=[0, 0], size=[320, 360], widgets={"image": media}))
        links = []
        pixels = ("image", 0)
    y = 540
    nodes += [
        dict(key="unet", type="UNETLoader", pos=[0, y], size=[320, 90], widgets={"unet_name": f["unet"], "weight_dtype": "default"}),
        dict(key="clip", type="CLIPLoader", pos=[0, y + 140], size=[320, 110],
             widgets={"clip_name": f["clip"][0], "type": f["clip"][1], "device": "default"}),
        dict(key="vae", type="VAELoader", pos=[0, y + 300], size=[320, 60], widgets={"vae_name": f["vae"]}),
        dict(key="encode", type="VAEEncode", pos=[x1, 330], size=[320, 50]),
    ]
    steps = f["steps"]
    if "sampling" in f:
        kind, shift = f["sampling"]
        nodes += [dict(key="msamp", type=kind, pos=[x1, 140], size=[320, 60], widgets={"shift": shift}),
                  dict(key="sched", type="BasicScheduler", pos=[x1, 440], size=[320, 110],
                       widgets={"scheduler": "simple", "steps": steps, "denoise": 1.0}, title=f"BasicScheduler ({steps} steps, shared)")]
        links += [("unet", 0, "msamp", "model"), ("msamp", 0, "sched", "model")]
        model_src = ("msamp", 0)
    else:  # Flux.2: its scheduler shifts by the image's token count
        nodes += [dict(key="size", type="GetImageSize", pos=[x1, 0], size=[320, 90], title="Image size (sets the Flux.2 schedule)"),
                  dict(key="sched", type="Flux2Scheduler", pos=[x1, 440], size=[320, 110],
                       widgets={"steps": steps, "width": 1024, "height": 1024}, title=f"Flux2Scheduler ({steps} steps, shared)")]
        links += [(*pixels, "size", "image"), ("size", 0, "sched", "width"), ("size", 1, "sched", "height")]
        model_src = ("unet", 0)
    nodes += [
        dict(key="flip", type="FlipSigmas", pos=[x1, 790], size=[320, 30]),
        dict(key="nonoise", type="DisableNoise", pos=[x1, 870], size=[320, 30]),
        dict(key="empty", type="CLIPTextEncode", pos=[x2, 0], size=[380, 130], widgets={"text": ""}, title="Empty prompt (inversion)"),
        dict(key="inv_sampler", type="RFInversionSampler", pos=[x2, 420], size=[380, 90],
             widgets={"gamma": 0.5, "seed": 0, "solver": "fireflow"}, color=PACK_COLOR),
        dict(key="invert", type="SamplerCustomAdvanced", pos=[x2, 560], size=[380, 330], title="Invert: input -> structured noise"),
        dict(key="prompt", type="CLIPTextEncode", pos=[x3, 0], size=[380, 130], widgets={"text": prompt}, title="Edit prompt"),
        dict(key="rev_sampler", type="ControlledReverseSampler", pos=[x3, 420], size=[380, 220],
             widgets={"eta": 0.9, "start": 0.0, "stop": 0.25, "eta_trend": "constant", "stochastic": False, "seed": 0,
                      "solver": "fireflow"}, color=PACK_COLOR),
        dict(key="edit", type="SamplerCustomAdvanced", pos=[x3, 690], size=[380, 330], title="Edit: structured noise -> output"),
        dict(key="decode", type="VAEDecode", pos=[x4, 0], size=[240, 50]),
    ]
    if "guidance" in f:
        nodes += [dict(key="inv_guidance", type="FluxGuidance", pos=[x2, 180], size=[380, 60], widgets={"guidance": f["guidance"][0]},
                       title=f"FluxGuidance {f['guidance'][0]:g} (inversion)"),
                  dict(key="inv_guider", type="BasicGuider", pos=[x2, 290], size=[380, 50], title="Inversion guider"),
                  dict(key="edit_guidance", type="FluxGuidance", pos=[x3, 180], size=[380, 60], widgets={"guidance": f["guidance"][1]}),
                  dict(key="edit_guider", type="BasicGuider", pos=[x3, 290], size=[380, 50], title="Edit guider")]
        links += [("empty", 0, "inv_guidance", "conditioning"), ("inv_guidance", 0, "inv_guider", "conditioning"),
                  ("prompt", 0, "edit_guidance", "conditioning"), ("edit_guidance", 0, "edit_guider", "conditioning")]
    elif "cfg" in f:
        nodes += [dict(key="inv_guider", type="CFGGuider", pos=[x2, 180], size=[380, 100], widgets={"cfg": f["cfg"][0]},
                       title=f"Inversion guider (empty prompt, cfg {f['cfg'][0]:g})"),
                  dict(key="edit_guider", type="CFGGuider", pos=[x3, 180], size=[380, 100], widgets={"cfg": f["cfg"][1]},
                       title="Edit guider")]
        links += [("empty", 0, "inv_guider", "positive"), ("empty", 0, "inv_guider", "negative"),
                  ("prompt", 0, "edit_guider", "positive"), ("empty", 0, "edit_guider", "negative")]
    else:  # step-distilled: no guidance at all
        nodes += [dict(key="inv_guider", type="BasicGuider", pos=[x2, 290], size=[380, 50], title="Inversion guider (empty prompt)"),
                  dict(key="edit_guider", type="BasicGuider", pos=[x3, 290], size=[380, 50], title="Edit guider")]
        links += [("empty", 0, "inv_guider", "conditioning"), ("prompt", 0, "edit_guider", "conditioning")]
    if video:
        nodes += [dict(key="create", type="CreateVideo", pos=[x4, 100], size=[300, 80], title="Create video (input's fps and sound)"),
                  dict(key="save", type="SaveVideo", pos=[x4, 240], size=[500, 560],
                       widgets={"filename_prefix": prefix, "format": "auto", "codec": "auto"}, title="Save the edited clip")]
        links += [("decode", 0, "create", "images"), ("frames", 2, "create", "fps"), ("frames", 1, "create", "audio"),
                  ("create", 0, "save", "video")]
    else:
        nodes += [dict(key="stitch", type="ImageStitch", pos=[x4, 100], size=[300, 150],
                       widgets={"direction": "right", "match_image_size": True, "spacing_width": 0, "spacing_color": "white"},
                       title="Photo | edit"),
                  dict(key="save", type="SaveImage", pos=[x4 + 360, 0], size=[400, 440], widgets={"filename_prefix": prefix},
                       title="Save the edit"),
                  dict(key="save_pair", type="SaveImage", pos=[x4, 490], size=[760, 440],
                       widgets={"filename_prefix": prefix + "_beside_input"}, title="Save photo and edit side by side")]
        links += [("decode", 0, "save", "images"), (*pixels, "stitch", "image1"), ("decode", 0, "stitch", "image2"),
                  ("stitch", 0, "save_pair", "images")]
    links += [
        ("clip", 0, "empty", "clip"), ("clip", 0, "prompt", "clip"), (*model_src, "inv_guider", "model"),
        (*model_src, "edit_guider", "model"), ("sched", 0, "flip", "sigmas"),
        (*pixels, "encode", "pixels"), ("vae", 0, "encode", "vae"),
        ("nonoise", 0, "invert", "noise"), ("inv_guider", 0, "invert", "guider"), ("inv_sampler", 0, "invert", "sampler"),
        ("flip", 0, "invert", "sigmas"), ("encode", 0, "invert", "latent_image"), ("encode", 0, "rev_sampler", "reference"),
        ("nonoise", 0, "edit", "noise"), ("edit_guider", 0, "edit", "guider"), ("rev_sampler", 0, "edit", "sampler"),
        ("sched", 0, "edit", "sigmas"), ("invert", 0, "edit", "latent_image"),
        ("edit", 0, "decode", "samples"), ("vae", 0, "decode", "vae"),
    ]
    if source is not None:
        add_region(nodes, links, model_src, source, (x1, x2, x3, x4), 1080)
    return nodes, links


def family_note(title, intro, files, settings):
    return f"""RF-Inversion: {title}

{intro}

Models: {files}.

How it works: the RF-Inversion Sampler runs the flow backwards, from the input to noise, with an empty prompt and no guidance. Its result is "structured noise" that still remembers the input. The Controlled Reverse Sampler runs the flow forward again under your prompt, pulled back toward the input during the first steps.

{settings}

{KNOBS}

{REGION_NOTE}"""


PHOTO_STEPS = """1. Load a photo of about one megapixel (e.g. 1024 x 1024; sides that are multiples of 16).
2. Write what the photo should become in "Edit prompt" (describe the whole picture), and the photo as it is now in "Describe the photo".
3. Queue. The edit, and the photo and the edit side by side, are saved in output/rf_inversion/."""

FLUX2_NOTE = family_note("semantic edit with Flux.2-dev", PHOTO_STEPS,
    "flux2_dev_fp8mixed.safetensors in models/diffusion_models; mistral_3_small_flux2_bf16.safetensors in models/text_encoders (CLIPLoader type flux2); flux2-vae.safetensors in models/vae",
    """Settings: the paper's edit (28 steps, gamma 0.5, eta 0.9, start 0, stop 0.25: eta on for steps 0 to 6), solver fireflow on both samplers (29 network calls per pass). Flux.2's own schedule comes from Flux2Scheduler, fed the photo's size (GetImageSize), and it is shifted harder than Flux.1's: at 1024 x 1024 the eta window covers sigma 1.0 to 0.963, against 1.0 to 0.905 under Flux.1-dev's schedule. That window is short: if the edit drifts from the photo, raise stop to about 0.46 (eta on for steps 0 to 12, down to sigma 0.908, Flux.1's range). On an exact test field under this schedule, inverting and rebuilding the input at 28 steps each way misses it by 0.6 % with fireflow, against 25 % with euler. FluxGuidance 0 for the inversion, 4 for the edit (the template's value).""")

QWEN_NOTE = family_note("semantic edit with Qwen-Image", PHOTO_STEPS,
    "qwen_image_fp8_e4m3fn.safetensors in models/diffusion_models; qwen_2.5_vl_7b_fp8_scaled.safetensors in models/text_encoders (CLIPLoader type qwen_image); qwen_image_vae.safetensors in models/vae",
    """Settings: the paper's edit (28 steps, gamma 0.5, eta 0.9, start 0, stop 0.25: eta on for steps 0 to 6), solver fireflow on both samplers (29 network calls per pass). ModelSamplingAuraFlow shift 3.1 (the template's) with BasicScheduler simple: the eta window covers sigma 1.0 to 0.903, the same range as under Flux.1-dev's schedule, so the paper's window carries over. Qwen-Image has no guidance input: the inversion uses CFGGuider with the empty prompt on both sides and cfg 1 (no guidance), and the edit the prompt against the empty prompt at cfg 2.5 (the template's). On an exact test field under this schedule, inverting and rebuilding the input at 28 steps each way misses it by 0.04 % with fireflow, against 12 % with euler.""")

ZIMAGE_NOTE = family_note("semantic edit with Z-Image Turbo", PHOTO_STEPS,
    "z_image_turbo_bf16.safetensors in models/diffusion_models; qwen_3_4b.safetensors in models/text_encoders (CLIPLoader type lumina2); ae.safetensors (Flux's) in models/vae",
    """Settings: Z-Image Turbo is step-distilled, so this runs 8 steps, not the paper's 28 steps: gamma 0.5, eta 0.9, start 0, stop 0.25, solver fireflow on both samplers (9 network calls per pass), no guidance (BasicGuider: Turbo runs at cfg 1, as its template does). ModelSamplingAuraFlow shift 3 with BasicScheduler simple gives the sigmas 1.0, 0.955, 0.9, 0.833, 0.75, 0.643, 0.5, 0.3, 0.

At so few steps:
- The eta window: stop 0.25 of 8 steps is steps 0 and 1, sigma 1.0 to 0.90. That is the same range of noise as the paper's 7 of 28 steps under Flux.1-dev (1.0 to 0.905), but in two big steps, so eta can only be set coarsely: stop 0.125 is one step (to sigma 0.955), stop 0.375 is three (to 0.833).
- The inversion: on an exact test field under this schedule, inverting and rebuilding the input at 8 steps each way misses it by 1.5 % with fireflow, against 37 % with euler and 0.33 % with midpoint (16 network calls per pass). At 28 steps fireflow misses by 0.04 %. Use fireflow or midpoint here: euler at 8 steps loses the input. A distilled model's field is also not the exact flow the inversion assumes, so expect the photo to be kept less closely than at 28 steps; raise eta or stop if the edit drifts.""")

WAN_NOTE = family_note("video edit with Wan 2.2 5B", """A short clip in, the same clip re-prompted out (the motion and layout stay, what the prompt changes changes).
1. Load a clip with LoadVideo (upload it with the node's button). Use a frame count of 4n + 1 (e.g. 49, 81 or 121): Wan's autoencoder packs 4 frames into one latent frame after the first, so other counts come out shorter. Sides should be multiples of 32.
2. Describe the whole edited clip in "Edit prompt", and the clip as it is now in "Describe the photo".
3. Queue. The edited clip is saved in output/rf_inversion/ at the input's frame rate, with its sound.""",
    "wan2.2_ti2v_5B_fp16.safetensors in models/diffusion_models; umt5_xxl_fp8_e4m3fn_scaled.safetensors in models/text_encoders (CLIPLoader type wan); wan2.2_vae.safetensors in models/vae",
    """Settings: the paper's edit (28 steps, gamma 0.5, eta 0.9, start 0, stop 0.25: eta on for steps 0 to 6), solver fireflow on both samplers (29 network calls per pass; the edit runs each call twice for cfg). The samplers work on the 5-D video latent (48 channels, frames, height / 16, width / 16) as on an image's. ModelSamplingSD3 shift 8 (the template's) with BasicScheduler simple: shift 8 keeps the schedule at high noise for long, so the eta window covers only sigma 1.0 to 0.960, against 1.0 to 0.905 under Flux.1-dev's schedule. If the edit drifts from the clip, raise stop to about 0.46 (eta on for steps 0 to 12, down to sigma 0.902). On an exact test field under this schedule, inverting and rebuilding the input at 28 steps each way misses it by 0.5 % with fireflow, against 23 % with euler. The inversion uses CFGGuider with the empty prompt on both sides at cfg 1; the edit the prompt against the empty prompt at cfg 5 (the template's).

Memory (an estimate, not measured): on a 24 GB card, 1280 x 704 at up to 121 frames (5 s at 24 fps) is the size Wan 2.2 5B and its template are made for; with the fp16 weights (10 GB) ComfyUI offloads what does not fit. The RF samplers add only two or three latent-sized tensors (121 frames at 1280 x 704 are 48 x 31 x 44 x 80 values, 21 MB in fp32). Start at 832 x 480 and 49 to 81 frames if the card is also driving a display, and let VAE Encode / VAE Decode fall back to tiles.""")


WORKFLOWS = {
    "flux_semantic_edit": lambda: edit_graph(SEMANTIC_NOTE, "a photo of a smiling person wearing a red knitted hat",
                                             prefix="rf_inversion/edit", source="a photo of a person"),
    "flux_stroke_to_image": lambda: edit_graph(STROKE_NOTE, "a photograph of a small house on a green hill under a blue sky, "
                                               "realistic, detailed, natural light", split_step=3, eta=0.9, stop=0.1,
                                               prefix="rf_inversion/stroke_to_image", image="stroke_painting.png"),
    "flux_rectified_sde_generation": lambda: generation_graph(GENERATION_NOTE, "a photograph of a red fox sitting in fresh "
                                                              "snow at sunrise, detailed fur, shallow depth of field"),
    "sd35_semantic_edit": lambda: edit_graph(SD35_NOTE, "a photo of a smiling person wearing a red knitted hat",
                                             prefix="rf_inversion/sd35_edit", sd35=True,
                                             source="a photo of a person"),
    "flux_partial_strength_edit": lambda: edit_graph(PARTIAL_NOTE, "a photo of a person wearing glasses", split_step=6,
                                                     eta=0.7, stop=0.9, prefix="rf_inversion/partial_edit",
                                                     source="a photo of a person"),
    "flux2_semantic_edit": lambda: family_edit_graph("flux2", FLUX2_NOTE, "a photo of a smiling person wearing a red knitted hat",
                                                     prefix="rf_inversion/flux2_edit", source="a photo of a person"),
    "qwen_image_semantic_edit": lambda: family_edit_graph("qwen_image", QWEN_NOTE, "a photo of a smiling person wearing a red "
                                                          "knitted hat", prefix="rf_inversion/qwen_image_edit",
                                                          source="a photo of a person"),
    "zimage_semantic_edit": lambda: family_edit_graph("zimage", ZIMAGE_NOTE, "a photo of a smiling person wearing a red knitted hat",
                                                      prefix="rf_inversion/zimage_edit", source="a photo of a person"),
    "wan22_video_edit": lambda: family_edit_graph("wan22", WAN_NOTE, "the same scene in winter, snow falling, everything covered "
                                                  "in fresh snow", prefix="rf_inversion/wan22_edit", media="example.mp4",
                                                  source="the same scene in summer"),
}

BUILD_JS = r"""(async (spec) => {
  await app.loadGraphData({last_node_id: 0, last_link_id: 0, nodes: [], links: [], groups: [], config: {}, extra: {}, version: 0.4},
                          true, false, null, {showMissingNodesDialog: false, showMissingModelsDialog: false});
  const made = {};
  for (const n of spec.nodes) {
    const node = LiteGraph.createNode(n.type);
    if (!node) throw new Error("no node type " + n.type);
    app.graph.add(node);
    if (n.title) node.title = n.title;
    for (const [name, value] of Object.entries(n.widgets || {})) {
      const w = (node.widgets || []).find((w) => w.name === name);
      if (!w) throw new Error(n.type + " has no widget " + name);
      w.value = value;
    }
    node.pos = n.pos;
    const min = node.computeSize();
    node.setSize([Math.max(min[0], (n.size || min)[0]), Math.max(min[1], (n.size || min)[1])]);
    if (n.color) { node.color = n.color[0]; node.bgcolor = n.color[1]; }
    made[n.key] = node;
  }
  for (const [src, slot, dst, input] of spec.links) {
    const a = made[src], b = made[dst];
    const i = b.findInputSlot(input);
    if (i < 0) throw new Error(b.type + " has no input " + input);
    if (!a.connect(slot, b, i)) throw new Error("cannot link " + src + ":" + slot + " -> " + dst + "." + input);
  }
  const data = app.graph.serialize();
  return data;
})"""


def build(browser, name):
    nodes, links = WORKFLOWS[name]()
    data = browser.evaluate(f"{BUILD_JS}({json.dumps({'nodes': nodes, 'links': links})})")
    xs = [n["pos"][0] for n in data["nodes"]] + [n["pos"][0] + n["size"][0] for n in data["nodes"]]
    ys = [n["pos"][1] for n in data["nodes"]] + [n["pos"][1] + n["size"][1] for n in data["nodes"]]
    # Open with the whole graph in view in a 1920 x 1080 window (the canvas starts right of the
    # sidebar and below the tab bar).
    left, top = 70, 90
    scale = round(min((1920 - left - 20) / (max(xs) - min(xs)), (1080 - top - 20) / (max(ys) - min(ys)), 1.0), 3)
    data.setdefault("extra", {})["ds"] = {"scale": scale, "offset": [round(left / scale - min(xs), 1), round(top / scale - min(ys), 1)]}
    return data


def main():
    from harness import host
    from harness.workflow_api import Chromium, open_web_ui
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", help="a running ComfyUI with the pack; default: start one")
    parser.add_argument("names", nargs="*", default=list(WORKFLOWS))
    opts = parser.parse_args()
    server = None
    if opts.server is None:
        server = host.start_server(tempfile.mkdtemp(prefix="rf_make_workflows_"))
        url = server.url
    else:
        url = opts.server
    browser = Chromium()
    try:
        open_web_ui(browser, url)
        for name in opts.names:
            data = build(browser, name)
            path = HERE / f"{name}.json"
            if path.exists():  # the UI draws a new id each time: keep the shipped one, so a rebuild changes only the graph
                data["id"] = json.loads(path.read_text()).get("id", data["id"])
            path.write_text(json.dumps(data, indent=2) + "\n")
            print(f"wrote workflows/{name}.json: {len(data['nodes'])} nodes, {len(data['links'])} links")
    finally:
        browser.close()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
