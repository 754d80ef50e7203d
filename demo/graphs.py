"""The shipped workflows, turned into API prompts for a demo model.

The demo runs the graphs in ``workflows/`` as they ship, converted by ``harness/workflow_api.py``'s
``to_api`` against the running server's ``/object_info``. Only the nodes that name a model family
are swapped for the demo model's:

- model loaders (``CheckpointLoaderSimple``, ``UNETLoader``, ``VAELoader``) load the demo's MMDiT and
  TAESD;
- the emoji model (``EMOJI``, the default): the text-encoder loaders (``TripleCLIPLoader``,
  ``DualCLIPLoader``, ``CLIPLoader``) become one ``RFDemoTextEncoderLoader`` with the model's small
  text encoder; ``CLIPTextEncode`` stays, and encodes the typed prompt;
- the digit model (``DIGITS``, the session tests' fast model): the text-encoder loaders go and
  ``CLIPTextEncode`` becomes the demo's ``RFDemoDigitPrompt``;
- ``ModelSamplingFlux`` becomes ``ModelSamplingSD3`` (shift 3): the demo models are SD3-family models,
  and Flux's model sampling would hand them the timestep sigma instead of 1000 * sigma.

Every sampler, scheduler, guider, SplitSigmas/FlipSigmas and image node stays as the workflow has it.
A setting (a dict: gamma, eta, start, stop, steps, solver, cfg, inversion_prompt, ...) drives the
graph through ``configure``; ``sampler_inputs`` is the one place that turns it into the two RF
samplers' inputs.
"""
import json

from demo import common as C
from demo import scenes as S
from harness.workflow_api import to_api

WORKFLOWS = C.ROOT / "workflows"
EDIT_WORKFLOW = WORKFLOWS / "sd35_semantic_edit.json"
STROKE_WORKFLOW = WORKFLOWS / "flux_stroke_to_image.json"

EDIT_TITLE, SOURCE_TITLE = "Edit prompt", "Describe the photo (source)"  # the workflows' titles
TEXT_LOADERS = {"TripleCLIPLoader", "DualCLIPLoader", "CLIPLoader", "QuadrupleCLIPLoader"}
EMOJI = {"unet": S.UNET_NAME, "vae": S.VAE_NAME, "clip": S.CLIP_NAME}
DIGITS = {"unet": C.UNET_NAME, "vae": C.VAE_NAME, "clip": None}


def load_workflow(path):
    if not path.exists():
        raise SystemExit(f"demo: the workflow {path.relative_to(C.ROOT)} is missing; the demo runs the shipped workflows")
    return json.loads(path.read_text())


def for_demo_model(prompt, model=EMOJI):
    """Swap the loaders, text encoders and model sampling of an API prompt for a demo model's."""
    prompt = json.loads(json.dumps(prompt))
    remap = {}  # (node id, output slot) -> [node id, slot] for links to replaced nodes
    next_id = max(int(k) for k in prompt) + 1
    clip_id = None
    if model["clip"]:
        clip_id = str(next_id)
        next_id += 1
        prompt[clip_id] = {"class_type": "RFDemoTextEncoderLoader", "inputs": {"clip_name": model["clip"]},
                           "_meta": {"title": "Load Demo Text Encoder (small CLIP)"}}
    for node_id, node in list(prompt.items()):
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "CheckpointLoaderSimple":  # MODEL, CLIP, VAE -> UNETLoader + VAELoader
            del prompt[node_id]
            unet_id, vae_id = str(next_id), str(next_id + 1)
            next_id += 2
            prompt[unet_id] = {"class_type": "UNETLoader", "inputs": {"unet_name": model["unet"], "weight_dtype": "default"},
                               "_meta": {"title": "Load Diffusion Model (demo MMDiT)"}}
            prompt[vae_id] = {"class_type": "VAELoader", "inputs": {"vae_name": model["vae"]}, "_meta": {"title": "Load VAE (demo TAESD)"}}
            remap[(node_id, 0)] = [unet_id, 0]
            remap[(node_id, 2)] = [vae_id, 0]
            if clip_id:
                remap[(node_id, 1)] = [clip_id, 0]
        elif kind == "UNETLoader":
            inputs.update(unet_name=model["unet"], weight_dtype="default")
        elif kind == "VAELoader":
            inputs.update(vae_name=model["vae"])
        elif kind in TEXT_LOADERS:
            del prompt[node_id]
            if clip_id:
                remap[(node_id, 0)] = [clip_id, 0]
        elif kind == "CLIPTextEncode" and not clip_id:
            node["class_type"] = "RFDemoDigitPrompt"
            node["inputs"] = {"text": inputs.get("text", "")}
        elif kind == "ModelSamplingFlux":
            node["class_type"] = "ModelSamplingSD3"
            node["inputs"] = {"model": inputs["model"], "shift": 3.0}
    for node in prompt.values():
        for name, value in list(node["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and (str(value[0]), value[1]) in remap:
                node["inputs"][name] = remap[(str(value[0]), value[1])]
    # Nodes whose outputs nothing uses any more (GetImageSize fed ModelSamplingFlux's size).
    used = {str(v[0]) for n in prompt.values() for v in n["inputs"].values() if isinstance(v, list) and len(v) == 2}
    for node_id in [k for k, n in prompt.items() if n["class_type"] == "GetImageSize" and k not in used]:
        del prompt[node_id]
    return prompt


def nodes_of(prompt, kind):
    return [n for n in prompt.values() if n["class_type"] == kind]


def sampler_inputs(setting, inversion):
    """The RF-Inversion Sampler's and the Controlled Reverse Sampler's inputs for ``setting``; an
    input the setting leaves out (or sets to None) keeps the workflow's value. ``inversion`` is what
    the reverse's inversion input gets when the setting is ``linked`` (the exact path): the
    RF-Inversion Sampler's output, a link [node id, 0] in a prompt or its SAMPLER in-process; unlinked,
    that input is None (left unconnected). One place: a new input of either sampler is one key here."""
    pick = lambda keys: {k: setting[k] for k in keys if setting.get(k) is not None}  # noqa: E731
    inputs = (pick(("gamma", "seed", "solver")), pick(("eta", "start", "stop", "eta_trend", "stochastic", "solver")))
    if setting.get("linked") is not None:
        inputs[0]["record_path"] = bool(setting["linked"])
        inputs[1]["inversion"] = inversion if setting["linked"] else None
    return inputs


def titled(prompt, title):
    """The ids of the nodes whose title (the UI's, kept in the API prompt's _meta) is ``title``."""
    return [k for k, n in prompt.items() if n.get("_meta", {}).get("title") == title]


def without_region(prompt):
    """The edit as the paper wires it: the Edit Region's nodes (its source prompt, the region, its
    MaskPreview and SetLatentNoiseMask) removed, and the inverted latent fed straight to the edit."""
    regions = {k for k, n in prompt.items() if n["class_type"] == "RFEditRegion"}
    drop = set(regions) | {str(prompt[k]["inputs"]["source"][0]) for k in regions}
    for node_id, node in list(prompt.items()):
        mask = node["inputs"].get("mask")
        if isinstance(mask, list) and str(mask[0]) in regions:
            drop.add(node_id)
            if node["class_type"] == "SetLatentNoiseMask":  # whatever read the masked latent reads the inverted one
                for other in prompt.values():
                    for name, value in other["inputs"].items():
                        if isinstance(value, list) and len(value) == 2 and str(value[0]) == node_id:
                            other["inputs"][name] = node["inputs"]["samples"]
    for node_id in drop:
        del prompt[node_id]
    return prompt


def save_region(prompt, prefix):
    """Add a MaskToImage and a SaveImage of the Edit Region's region under ``prefix``; False when the
    prompt has no Edit Region."""
    regions = [k for k, n in prompt.items() if n["class_type"] == "RFEditRegion"]
    if not regions:
        return False
    next_id = max(int(k) for k in prompt) + 1
    prompt[str(next_id)] = {"class_type": "MaskToImage", "inputs": {"mask": [regions[0], 0]}}
    prompt[str(next_id + 1)] = {"class_type": "SaveImage", "inputs": {"images": [str(next_id), 0], "filename_prefix": prefix}}
    return True


def configure(prompt, *, image, edit_text, name, inversion_prompt="", split=None, steps=None, cfg=None,
              source_text=None, region=None, **setting):
    """Set the input image, the prompts, the samplers' settings and the output names on a converted
    prompt. ``setting`` goes to the two RF samplers (``sampler_inputs``); ``inversion_prompt`` is the
    inversion guider's prompt (the workflow's empty prompt when ""); ``split`` is the stroke
    workflow's start step (SplitSigmas); ``cfg`` the edit guider's. A workflow with the Edit Region
    keeps it unless ``region`` is False (the paper's wiring), and then needs ``source_text``, the
    prompt that describes the input."""
    for node in nodes_of(prompt, "LoadImage"):
        node["inputs"]["image"] = image
    text_kind = "CLIPTextEncode" if nodes_of(prompt, "RFDemoTextEncoderLoader") else "RFDemoDigitPrompt"
    if region is False:
        without_region(prompt)
    elif nodes_of(prompt, "RFEditRegion"):
        if source_text is None:
            raise ValueError("the workflow's Edit Region needs source_text (a prompt that describes the input), "
                             "or region=False for the paper's wiring")
        for node_id in titled(prompt, SOURCE_TITLE):
            prompt[node_id]["inputs"]["text"] = source_text
    edit = [prompt[k] for k in titled(prompt, EDIT_TITLE)]
    if len(edit) != 1:
        raise ValueError(f"expected one prompt titled {EDIT_TITLE!r} in the workflow, found {len(edit)}")
    edit[0]["inputs"]["text"] = edit_text
    if inversion_prompt:
        if text_kind != "CLIPTextEncode":
            raise ValueError("an inversion prompt needs the emoji model's text encoder")
        guider = [n for n in nodes_of(prompt, "CFGGuider") if n["inputs"]["cfg"] == 1]
        if len(guider) != 1:
            raise ValueError("expected one CFGGuider at cfg 1 (the inversion's) in the workflow")
        node_id = str(max(int(k) for k in prompt) + 1)
        prompt[node_id] = {"class_type": "CLIPTextEncode", "inputs": {"text": inversion_prompt, "clip": edit[0]["inputs"]["clip"]},
                           "_meta": {"title": "CLIP Text Encode (inversion prompt)"}}
        guider[0]["inputs"]["positive"] = [node_id, 0]
    (inversion_id, inversion_node), = [(k, n) for k, n in prompt.items() if n["class_type"] == "RFInversionSampler"]
    inversion, reverse = sampler_inputs(setting, [inversion_id, 0])
    inversion_node["inputs"].update(inversion)
    for node in nodes_of(prompt, "ControlledReverseSampler"):
        node["inputs"].update(reverse)
        if node["inputs"].get("inversion", ()) is None:  # unlinked: the input left unconnected
            del node["inputs"]["inversion"]
    if split is not None:
        for node in nodes_of(prompt, "SplitSigmas"):
            node["inputs"]["step"] = split
    if steps is not None:
        for node in nodes_of(prompt, "BasicScheduler"):
            node["inputs"]["steps"] = steps
    if cfg is not None:  # the edit's guider: the one whose cfg is not 1 (the inversion's is 1)
        for node in nodes_of(prompt, "CFGGuider"):
            if node["inputs"]["cfg"] != 1:
                node["inputs"]["cfg"] = cfg
    for node in nodes_of(prompt, "SaveImage"):
        beside = node["inputs"]["filename_prefix"].endswith("beside_input")
        node["inputs"]["filename_prefix"] = f"rf_demo/{name}{'_beside_input' if beside else ''}"
    return prompt


def edit_prompt(object_info, model=DIGITS, **settings):
    return configure(for_demo_model(to_api(load_workflow(EDIT_WORKFLOW), object_info), model), **settings)


def stroke_prompt(object_info, model=DIGITS, **settings):
    return configure(for_demo_model(to_api(load_workflow(STROKE_WORKFLOW), object_info), model), **settings)
