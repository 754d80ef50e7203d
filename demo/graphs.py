"""The shipped workflows, turned into API prompts for the demo model.

The demo runs the graphs in ``workflows/`` as they ship, converted by ``scripts/workflow_api.py``'s
``to_api`` against the running server's ``/object_info``. Only the nodes that name a model family
are swapped for the demo model's:

- model loaders (``CheckpointLoaderSimple``, ``UNETLoader``, ``VAELoader``) load the demo's MMDiT and
  TAESD; text-encoder loaders (``TripleCLIPLoader``, ``DualCLIPLoader``, ``CLIPLoader``) go;
- ``CLIPTextEncode`` becomes the demo's ``RFDemoDigitPrompt`` with the demo's prompt;
- ``ModelSamplingFlux`` becomes ``ModelSamplingSD3`` (shift 3): the demo model is an SD3-family model,
  and Flux's model sampling would hand it the timestep sigma instead of 1000 * sigma.

Every sampler, scheduler, guider, SplitSigmas/FlipSigmas and image node stays as the workflow has it.
"""
import json
import sys

import common as C

sys.path.insert(0, str(C.ROOT / "scripts"))
from workflow_api import to_api  # noqa: E402

WORKFLOWS = C.ROOT / "workflows"
EDIT_WORKFLOW = WORKFLOWS / "sd35_semantic_edit.json"
STROKE_WORKFLOW = WORKFLOWS / "flux_stroke_to_image.json"

TEXT_LOADERS = {"TripleCLIPLoader", "DualCLIPLoader", "CLIPLoader", "QuadrupleCLIPLoader"}


def load_workflow(path):
    if not path.exists():
        raise SystemExit(f"demo: the workflow {path.relative_to(C.ROOT)} is missing; the demo runs the shipped workflows")
    return json.loads(path.read_text())


def for_demo_model(prompt):
    """Swap the loaders, text encoders and model sampling of an API prompt for the demo model's."""
    prompt = json.loads(json.dumps(prompt))
    remap = {}  # (node id, output slot) -> [node id, slot] for links to replaced nodes
    next_id = max(int(k) for k in prompt) + 1
    for node_id, node in list(prompt.items()):
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "CheckpointLoaderSimple":  # MODEL, CLIP, VAE -> UNETLoader + VAELoader
            del prompt[node_id]
            unet_id, vae_id = str(next_id), str(next_id + 1)
            next_id += 2
            prompt[unet_id] = {"class_type": "UNETLoader", "inputs": {"unet_name": C.UNET_NAME, "weight_dtype": "default"},
                               "_meta": {"title": "Load Diffusion Model (demo MMDiT)"}}
            prompt[vae_id] = {"class_type": "VAELoader", "inputs": {"vae_name": C.VAE_NAME}, "_meta": {"title": "Load VAE (demo TAESD)"}}
            remap[(node_id, 0)] = [unet_id, 0]
            remap[(node_id, 2)] = [vae_id, 0]
        elif kind == "UNETLoader":
            inputs.update(unet_name=C.UNET_NAME, weight_dtype="default")
        elif kind == "VAELoader":
            inputs.update(vae_name=C.VAE_NAME)
        elif kind in TEXT_LOADERS:
            del prompt[node_id]
        elif kind == "CLIPTextEncode":
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


def configure(prompt, *, image, edit_text, name, gamma=None, eta=None, stop=None, split=None, steps=None, cfg=None,
              solver=None, linked=None):
    """Set the demo's input image, prompt, sampler settings and output names on a converted prompt.
    ``solver`` goes to both RF samplers (the inversion and the reverse use the same); ``linked`` turns
    the exact path on (the inversion records, the reverse's inversion input is wired to it) or off."""
    for node in nodes_of(prompt, "LoadImage"):
        node["inputs"]["image"] = image
    prompts = nodes_of(prompt, "RFDemoDigitPrompt")
    edit = [n for n in prompts if n["inputs"]["text"].strip()]
    if len(edit) != 1:
        raise ValueError(f"expected one non-empty prompt (the edit prompt) in the workflow, found {len(edit)}")
    edit[0]["inputs"]["text"] = edit_text
    for node in nodes_of(prompt, "RFInversionSampler"):
        if gamma is not None:
            node["inputs"]["gamma"] = gamma
    if solver is not None:
        for node in nodes_of(prompt, "RFInversionSampler") + nodes_of(prompt, "ControlledReverseSampler"):
            node["inputs"]["solver"] = solver
    for node in nodes_of(prompt, "ControlledReverseSampler"):
        if eta is not None:
            node["inputs"]["eta"] = eta
        if stop is not None:
            node["inputs"]["stop"] = stop
    if linked is not None:
        link(prompt, linked)
    if split is not None:  # the stroke workflow's start step s (SplitSigmas)
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


def link(prompt, linked):
    """The exact path on or off: record_path on the RF-Inversion Sampler, and the Controlled Reverse
    Sampler's inversion input wired from it (as a workflow wires it) or left unconnected."""
    [inversion] = [k for k, n in prompt.items() if n["class_type"] == "RFInversionSampler"]
    prompt[inversion]["inputs"]["record_path"] = bool(linked)
    for node in nodes_of(prompt, "ControlledReverseSampler"):
        if linked:
            node["inputs"]["inversion"] = [inversion, 0]
        else:
            node["inputs"].pop("inversion", None)


def edit_prompt(object_info, **settings):
    return configure(for_demo_model(to_api(load_workflow(EDIT_WORKFLOW), object_info)), **settings)


def stroke_prompt(object_info, **settings):
    return configure(for_demo_model(to_api(load_workflow(STROKE_WORKFLOW), object_info)), **settings)
