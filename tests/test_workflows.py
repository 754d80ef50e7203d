"""The shipped workflows, end to end on the real ComfyUI server with the pack loaded.

Each UI file in ``workflows/`` becomes an API prompt through ``harness.workflow_api.to_api`` (checked
against the web UI's own ``graphToPrompt`` in test_browser.py). Only the model loaders are swapped,
by node class and keeping their links, for tiny models built from ComfyUI's classes
(``tests/test_nodes``); every other node runs as shipped. Observer nodes from the same test pack
report the shape and finiteness of every saved image and every sampler output; a saved video is
decoded with PyAV and must have the input clip's frame count and size.
"""
import io
import json
import re
import time
import uuid

import pytest
import requests
from conftest import ROOT
from PIL import Image

from harness import workflow_api

WORKFLOWS = ROOT / "workflows"
NAMES = ["flux_semantic_edit", "flux_stroke_to_image", "flux_rectified_sde_generation", "sd35_semantic_edit",
         "flux_partial_strength_edit", "flux2_semantic_edit", "qwen_image_semantic_edit", "zimage_semantic_edit",
         "wan22_video_edit"]
PACK_NODES = {"RFInversionSampler", "ControlledReverseSampler", "RectifiedSDESampler", "RFEditRegion"}
# The workflows that ship the Edit Region between the inversion and the edit (stroke to image repaints
# the whole picture, and generation inverts nothing).
REGION_WORKFLOWS = {"flux_semantic_edit", "flux_partial_strength_edit", "sd35_semantic_edit", "flux2_semantic_edit",
                    "qwen_image_semantic_edit", "zimage_semantic_edit", "wan22_video_edit"}
# Workflow files as release 0.1 shipped them, before the samplers had a solver input: workflows that
# people saved then must keep loading, with the same values, and run (as euler, the paper's method).
SAVED_BEFORE = {"flux_semantic_edit_v0.1": ROOT / "tests" / "data" / "flux_semantic_edit_v0.1.json"}
# The two RF samplers' inputs in that file, by name.
SAVED_BEFORE_SAMPLERS = {
    "RFInversionSampler": {"gamma": 0.5, "seed": 0},
    "ControlledReverseSampler": {"eta": 0.9, "start": 0.0, "stop": 0.25, "eta_trend": "constant", "stochastic": False, "seed": 0},
}
INPUT_SIZE = (80, 64)  # width, height of the test photos and clip: not square, so a transposed axis shows
CLIP_FRAMES = 5  # the test clip: 4n + 1 frames, what Wan's autoencoder returns unchanged (2 latent frames)

# Model loader -> the tiny loader with the same outputs, and its inputs.
SWAPS = {
    "UNETLoader": ("RFTestTinyDiffusionModel", {"architecture": "flux", "seed": 0}),
    "CheckpointLoaderSimple": ("RFTestTinyCheckpoint", {"architecture": "sd3", "seed": 0}),
    "DualCLIPLoader": ("RFTestTinyTextEncoder", {"seed": 1}),
    "TripleCLIPLoader": ("RFTestTinyTextEncoder", {"seed": 1}),
    "CLIPLoader": ("RFTestTinyTextEncoder", {"seed": 1}),
    "VAELoader": ("RFTestTinyVAE", {"seed": 2, "architecture": "taesd16"}),
}
# Plain generation at the shipped 1024 x 1024 gets Flux's model class with an exact field (no
# attention over 4096 tokens, and known statistics); the edits get the small Flux network.
SWAP_OVERRIDES = {"flux_rectified_sde_generation": {
    "UNETLoader": ("RFTestTinyDiffusionModel", {"architecture": "flux_exact_gaussian", "seed": 0})}}
# The newer families: the network and the autoencoder of each from its own ComfyUI classes
# (Z-Image uses Flux's autoencoder, so the 16-channel TAESD stands in for it).
for _name, _model, _vae in [("flux2_semantic_edit", "flux2", "flux2"), ("qwen_image_semantic_edit", "qwen_image", "qwen_image"),
                            ("zimage_semantic_edit", "zimage", "taesd16"), ("wan22_video_edit", "wan22", "wan22")]:
    SWAP_OVERRIDES[_name] = {"UNETLoader": ("RFTestTinyDiffusionModel", {"architecture": _model, "seed": 0}),
                             "VAELoader": ("RFTestTinyVAE", {"seed": 2, "architecture": _vae})}
# Each sampler's latent for the 80 x 64 input: [batch, channels, (frames,) height, width].
LATENT_SHAPES = {"flux2_semantic_edit": [1, 128, 4, 5],  # 32 channels at 1/8, packed 2 x 2
                 "qwen_image_semantic_edit": [1, 16, 1, 8, 10],  # Wan 2.1's autoencoder: a video of one frame
                 "wan22_video_edit": [1, 48, 2, 4, 5]}  # 5 frames -> 1 + 1 latent frames, 1/16 in space


def swaps_for(name):
    return {**SWAPS, **SWAP_OVERRIDES.get(name, {})}


def load(name):
    return json.loads(SAVED_BEFORE.get(name, WORKFLOWS / f"{name}.json").read_text())


def input_images(ui):
    """The file names the workflow's LoadImage and LoadVideo nodes ask for."""
    return sorted({n["widgets_values"][0] for n in ui["nodes"] if n["type"] in ("LoadImage", "LoadVideo")})


def make_photo(width, height, seed=0):
    """A small test picture: smooth colour gradients and a disc, as PNG bytes."""
    import numpy as np
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r = xx / max(width - 1, 1)
    g = yy / max(height - 1, 1)
    b = ((xx - width * 0.6) ** 2 + (yy - height * 0.45) ** 2 < (min(width, height) * 0.3) ** 2).astype(np.float32)
    rgb = (np.stack([r, g, 0.3 + 0.6 * b], -1) * 255).clip(0, 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def make_clip(width, height, frames, fps=8):
    """A small test clip: the test picture drifting sideways, as H.264 MP4 bytes (PyAV)."""
    import av
    import numpy as np
    photo = np.asarray(Image.open(io.BytesIO(make_photo(width + frames, height))))
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(photo[:, i:i + width]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buffer.getvalue()


def video_info(data):
    """(frame count, width, height) of a video file's decoded frames."""
    import av
    with av.open(io.BytesIO(data)) as container:
        frames = [f for f in container.decode(video=0)]
    return len(frames), frames[0].width, frames[0].height


def upload_inputs(server, ui):
    """Put the workflow's input pictures and clips on the server the way the web UI does (/upload/image)."""
    for filename in input_images(ui):
        if filename.endswith(".mp4"):
            content = (filename, make_clip(*INPUT_SIZE, CLIP_FRAMES), "video/mp4")
        else:
            content = (filename, make_photo(*INPUT_SIZE), "image/png")
        r = requests.post(server.url + "/upload/image", files={"image": content},
                          data={"overwrite": "true", "type": "input"}, timeout=30)
        r.raise_for_status()


def swap_loaders(prompt, object_info, swaps=SWAPS):
    """Swap every model loader for its tiny stand-in, by node class, keeping the node id (so every
    link to it stays). Returns the ids swapped."""
    swapped = []
    for node_id, node in prompt.items():
        if node["class_type"] in swaps:
            tiny, inputs = swaps[node["class_type"]]
            assert object_info[tiny]["output"] == object_info[node["class_type"]]["output"], (tiny, node["class_type"])
            prompt[node_id] = {"class_type": tiny, "inputs": dict(inputs), "_meta": node.get("_meta", {})}
            swapped.append(node_id)
    return swapped


def add_observers(prompt):
    """Observer nodes beside the graph: one per saved image and one per sampler output. They read
    the same links the shipped nodes read and change nothing. Returns {observer id: what it sees}."""
    observers = {}
    for node_id, node in list(prompt.items()):
        if node["class_type"] in ("SaveImage", "PreviewImage"):
            observers[f"9{node_id}0"] = ("image", node_id)
            prompt[f"9{node_id}0"] = {"class_type": "RFTestImageStats", "inputs": {"image": node["inputs"]["images"]}}
        elif node["class_type"] in ("SamplerCustomAdvanced", "SamplerCustom"):
            observers[f"9{node_id}0"] = ("latent", node_id)
            prompt[f"9{node_id}0"] = {"class_type": "RFTestLatentStats", "inputs": {"latent": [node_id, 0]}}
    return observers


def queue(server, prompt, timeout=240):
    """Submit to /prompt, wait on /history; returns (the /prompt answer, the history entry)."""
    answer = server.post("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})
    prompt_id = answer["prompt_id"]
    return answer, server.wait(prompt_id, timeout=timeout)


def fetch(server, item):
    r = requests.get(server.url + "/view", params={"filename": item["filename"], "subfolder": item["subfolder"],
                                                   "type": item["type"]}, timeout=30)
    r.raise_for_status()
    return r.content


def fetch_image(server, item):
    return Image.open(io.BytesIO(fetch(server, item)))


def check_saved_videos(server, ui, outputs):
    """Every SaveVideo wrote a playable file with the input clip's frame count and size."""
    saves = [str(n["id"]) for n in ui["nodes"] if n["type"] == "SaveVideo"]
    for node_id in saves:
        items = outputs.get(node_id, {}).get("images")
        assert items, f"SaveVideo {node_id} saved nothing"
        for item in items:
            assert item["type"] == "output" and item["subfolder"] == "rf_inversion", item
            assert video_info(fetch(server, item)) == (CLIP_FRAMES, *INPUT_SIZE)
    return saves


def expected_sizes(name, ui):
    """(width, height) of each SaveImage, by node id, as the graph should make them."""
    w, h = (d // 8 * 8 for d in INPUT_SIZE)  # VAEEncode crops to the VAE's factor
    out = {}
    for node in ui["nodes"]:
        if node["type"] != "SaveImage":
            continue
        if name == "flux_rectified_sde_generation":
            latent = next(n for n in ui["nodes"] if n["type"] == "EmptySD3LatentImage")
            out[str(node["id"])] = tuple(latent["widgets_values"][:2])
        elif "side by side" in (node.get("title") or ""):
            out[str(node["id"])] = (INPUT_SIZE[0] + w, INPUT_SIZE[1])
        else:
            out[str(node["id"])] = (w, h)
    return out


@pytest.fixture(scope="module")
def object_info(server):
    return server.get("/object_info")


@pytest.mark.parametrize("name", NAMES)
def test_workflow_file_uses_core_nodes_and_the_pack_only(name, object_info):
    ui = load(name)
    types = {n["type"] for n in ui["nodes"]}
    unknown = sorted(t for t in types if t not in object_info and t not in workflow_api.VIRTUAL_NODES)
    assert not unknown, f"node types the host lacks: {unknown}"
    assert not any(t.startswith("RFTest") for t in types), "a test-only node was shipped"
    # Every non-pack, non-frontend node is one of the host's own (comfy core or comfy_extras).
    for t in types - PACK_NODES - workflow_api.VIRTUAL_NODES:
        assert object_info[t].get("python_module", "nodes").split(".")[0] in ("nodes", "comfy_extras"), t
    assert types & PACK_NODES
    assert ui["version"] == 0.4 and ui["links"], "not a UI-format workflow"


@pytest.mark.parametrize("name", NAMES)
def test_workflow_note_explains_the_knobs(name):
    ui = load(name)
    notes = [n["widgets_values"][0] for n in ui["nodes"] if n["type"] in ("Note", "MarkdownNote")]
    assert notes, "no Note node"
    text = "\n".join(notes)
    wanted = ["s_noise", "seed"] if "generation" in name else ["gamma", "eta", "start", "stop", "paper", "28 steps"]
    for word in wanted:
        assert word in text, f"the note does not explain {word!r}"
    assert "safetensors" in text, "the note does not say which model files to use"
    if name in REGION_WORKFLOWS:
        for words in ("Edit Region", "Describe the photo", "threshold", "GrowMask", "network calls", "MaskPreview"):
            assert words in text, f"the note does not explain the region's {words!r}"


@pytest.mark.parametrize("name", sorted(REGION_WORKFLOWS))
def test_region_workflows_mask_the_inverted_latent_with_the_region(name, object_info):
    """Describe the photo -> Edit Region (with the edit prompt and the photo's latent) -> MaskPreview and
    SetLatentNoiseMask on the inverted latent, which the edit samples."""
    prompt = workflow_api.to_api(load(name), object_info)
    kind = lambda ref: prompt[str(ref[0])]["class_type"]  # noqa: E731
    (region,) = [n for n in prompt.values() if n["class_type"] == "RFEditRegion"]
    assert prompt[str(region["inputs"]["source"][0])]["_meta"]["title"] == "Describe the photo (source)"
    assert prompt[str(region["inputs"]["target"][0])]["_meta"]["title"] == "Edit prompt"
    assert kind(region["inputs"]["latent"]) == "VAEEncode"
    (mask,) = [n for n in prompt.values() if n["class_type"] == "SetLatentNoiseMask"]
    assert kind(mask["inputs"]["mask"]) == "RFEditRegion" and kind(mask["inputs"]["samples"]) == "SamplerCustomAdvanced"
    assert prompt[str(mask["inputs"]["samples"][0])]["_meta"]["title"].startswith("Invert")
    assert [kind(n["inputs"]["mask"]) for n in prompt.values() if n["class_type"] == "MaskPreview"] == ["RFEditRegion"]
    (edit,) = [n for n in prompt.values() if n["class_type"] == "SamplerCustomAdvanced"
               and n["_meta"]["title"].startswith("Edit")]
    assert kind(edit["inputs"]["latent_image"]) == "SetLatentNoiseMask"
    assert {k: region["inputs"][k] for k in ("threshold", "levels", "seeds", "seed")} == \
        {"threshold": 0.2, "levels": 3, "seeds": 2, "seed": 0}


def widgets(ui, node_type):
    """Widget values by name for every node of ``node_type`` (through the converter's own matching)."""
    out = []
    for node in ui["nodes"]:
        if node["type"] == node_type:
            out.append(dict(zip([n for n, _ in workflow_api.widget_slots(SPEC_CACHE[node_type])], node["widgets_values"])))
    return out


SPEC_CACHE = {}


def pack_math():
    """The pack's sampler math (pure torch), imported without the host."""
    import importlib.util
    import sys
    if "rf_pack_math" not in sys.modules:
        spec = importlib.util.spec_from_file_location("rf_pack_math", ROOT / "sampler" / "__init__.py",
                                                      submodule_search_locations=[str(ROOT / "sampler")])
        module = importlib.util.module_from_spec(spec)
        sys.modules["rf_pack_math"] = module
        spec.loader.exec_module(module)
    return sys.modules["rf_pack_math"]


@pytest.mark.parametrize("name", NAMES)
def test_workflow_settings_are_the_papers(name, object_info):
    ui = load(name)
    SPEC_CACHE.update(object_info)
    schedulers = widgets(ui, "BasicScheduler") + widgets(ui, "Flux2Scheduler")
    steps = 8 if name == "zimage_semantic_edit" else 28  # Z-Image Turbo is step-distilled (its note says what changes)
    assert [s["steps"] for s in schedulers] == [steps] and schedulers[0].get("denoise", 1.0) == 1.0
    if name == "flux_rectified_sde_generation":
        assert widgets(ui, "RectifiedSDESampler") == [{"s_noise": 1.0}]
        return
    assert [s["gamma"] for s in widgets(ui, "RFInversionSampler")] == [0.5]
    reverse = widgets(ui, "ControlledReverseSampler")
    assert len(reverse) == 1
    split = widgets(ui, "SplitSigmas")
    expected = {"flux_stroke_to_image": (0.9, 0.1, [3]), "flux_partial_strength_edit": (0.7, 0.9, [6])}.get(name, (0.9, 0.25, []))
    assert (reverse[0]["eta"], reverse[0]["stop"], [s["step"] for s in split]) == expected
    assert reverse[0]["start"] == 0.0 and reverse[0]["stochastic"] is False
    # fireflow: second order for one network call more per pass (why: the notes and docs/workflows.md).
    assert [w["solver"] for w in widgets(ui, "RFInversionSampler") + reverse] == ["fireflow", "fireflow"]
    # The paper's s and tau (Table 4; tau is the last step with eta on, both of 28): the pack's own
    # eta schedule over the 28 - s steps that run is on for exactly steps s..tau. At Z-Image's 8
    # steps the same stop 0.25 is steps 0 and 1.
    s, tau = {"flux_stroke_to_image": (3, 5), "flux_partial_strength_edit": (6, 25), "zimage_semantic_edit": (0, 1)}.get(name, (0, 6))
    etas = pack_math().eta_schedule(steps - s, reverse[0]["eta"], reverse[0]["start"], reverse[0]["stop"], reverse[0]["eta_trend"])
    assert [i + s for i, e in enumerate(etas) if e > 0] == list(range(s, tau + 1))
    if name.startswith("flux"):
        guidance = sorted(w["guidance"] for w in widgets(ui, "FluxGuidance"))
        assert guidance == ([0.0, 4.0] if name.startswith("flux2") else [0.0, 3.5])


@pytest.mark.parametrize("name", NAMES)
def test_workflow_as_shipped_fails_validation_only_for_the_missing_model_files(name, server, object_info):
    """Unswapped, on a server without Flux or SD3.5 weights: the only errors are the model file
    names of the loaders, so every other node and link validates as shipped."""
    ui = load(name)
    upload_inputs(server, ui)
    prompt = workflow_api.to_api(ui, object_info)
    try:
        answer = server.post("/prompt", {"prompt": prompt})
        pytest.fail(f"a prompt with missing model files was accepted: {answer}")
    except Exception as error:  # urllib raises HTTPError 400 with the validation report
        body = json.loads(error.read()) if hasattr(error, "read") else None
    assert body is not None, "no validation report"
    loaders = {nid for nid, node in prompt.items() if node["class_type"] in SWAPS}
    assert set(body["node_errors"]) <= loaders, body["node_errors"]
    for node_errors in body["node_errors"].values():
        for err in node_errors["errors"]:
            assert err["type"] == "value_not_in_list", err
            assert re.search(r"(unet|ckpt|clip|vae)_name", err["extra_info"]["input_name"]), err


@pytest.mark.parametrize("name", list(SAVED_BEFORE))
def test_workflow_saved_before_the_solver_input_converts_with_its_values(name, object_info):
    """The solver input came last, so the old widget values still land on their inputs; the old file
    has no solver value, and it gets the default, euler, as the web UI gives it (and the inversion's
    record_path, added after it, its default, off)."""
    ui = load(name)
    prompt = workflow_api.to_api(ui, object_info)
    for node_type, values in SAVED_BEFORE_SAMPLERS.items():
        [inputs] = [n["inputs"] for n in prompt.values() if n["class_type"] == node_type]
        assert "solver" in dict(workflow_api.widget_slots(object_info[node_type]))  # the host has what the file lacks
        assert {k: v for k, v in inputs.items() if k not in ("reference", "solver", "record_path")} == values, node_type
        assert inputs["solver"] == "euler" and inputs.get("record_path", False) is False


@pytest.mark.parametrize("name", NAMES + list(SAVED_BEFORE))
def test_workflow_runs_on_the_server_with_tiny_models(name, server, object_info):
    ui = load(name)
    upload_inputs(server, ui)
    prompt = workflow_api.to_api(ui, object_info)
    swapped = swap_loaders(prompt, object_info, swaps_for(name))
    assert swapped and not any(n["class_type"] in SWAPS for n in prompt.values())
    observers = add_observers(prompt)
    started = time.monotonic()
    answer, entry = queue(server, prompt)
    elapsed = time.monotonic() - started
    assert answer.get("node_errors") == {}, answer
    messages = [m[0] for m in entry["status"]["messages"]]
    errors = [m for m in entry["status"]["messages"] if m[0] in ("execution_error", "execution_interrupted")]
    assert entry["status"]["status_str"] == "success" and not errors, f"{errors}\n{server.log()[-3000:]}"
    assert "execution_success" in messages
    outputs = entry["outputs"]

    # Every SaveImage wrote its picture, at the size the graph should make; every SaveVideo a clip
    # with the input's frames.
    sizes = expected_sizes(name, ui)
    assert sizes or check_saved_videos(server, ui, outputs)
    for node_id, size in sizes.items():
        assert node_id in outputs and outputs[node_id].get("images"), f"SaveImage {node_id} saved nothing"
        for item in outputs[node_id]["images"]:
            assert item["type"] == "output" and item["subfolder"] == "rf_inversion", item
            picture = fetch_image(server, item)
            assert picture.size == size, (node_id, picture.size, size)

    # Every observed tensor is finite and has the right shape.
    if name == "flux_rectified_sde_generation":
        latent_hw = [d // 8 for d in reversed(next(iter(sizes.values())))]
    else:
        latent_hw = [INPUT_SIZE[1] // 8, INPUT_SIZE[0] // 8]
    for observer, (kind, node_id) in observers.items():
        stats = outputs[observer]["rf_test_stats"][0]
        assert stats["finite"], (kind, node_id, stats)
        if kind == "latent":
            assert stats["shape"] == LATENT_SHAPES.get(name, [1, 16, *latent_hw]), (node_id, stats)
            assert stats["std"] > 0
            if name == "flux_rectified_sde_generation":
                # Standard-normal data in model space leaves the sampler through Flux's latent
                # format (x / 0.3611 + 0.1159): the rectified SDE's 28 steps must land on it.
                assert abs(stats["mean"] - 0.1159) < 0.05 and abs(stats["std"] * 0.3611 - 1) < 0.05, stats
        else:
            width, height = sizes[node_id]
            assert stats["shape"] == [1, height, width, 3], (node_id, stats)
            assert 0.0 <= stats["min"] <= stats["max"] <= 1.0
    print(f"{name}: ran in {elapsed:.1f} s")


FAKE_INFO = {
    "Source": {"input": {"required": {"seed": ["INT", {"control_after_generate": True}], "name": [["a.png", "b.png"], {"image_upload": True}]}},
               "input_order": {"required": ["seed", "name"]}, "output": ["IMAGE"], "display_name": "Source"},
    "Filter": {"input": {"required": {"image": ["IMAGE"], "amount": ["FLOAT", {}], "count": ["INT", {"forceInput": True}]},
                         "optional": {"mask": ["MASK"], "mode": [["x", "y"], {}]}},
               "input_order": {"required": ["image", "amount", "count"], "optional": ["mask", "mode"]},
               "output": ["IMAGE"], "display_name": "Filter"},
}


def test_to_api_matches_widgets_links_and_frontend_only_nodes():
    ui = {"nodes": [
        {"id": 1, "type": "Source", "mode": 0, "inputs": [], "widgets_values": [7, "randomize", "b.png", "image"]},
        {"id": 2, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": 1}]},
        {"id": 3, "type": "PrimitiveNode", "mode": 0, "outputs": [{"links": [3]}], "widgets_values": [5, "fixed"]},
        {"id": 4, "type": "Filter", "mode": 4, "inputs": [{"name": "image", "type": "IMAGE", "link": 2}], "widgets_values": [0.5, "x"]},
        {"id": 5, "type": "Filter", "mode": 0, "title": "Second", "widgets_values": [0.25, "y"],
         "inputs": [{"name": "image", "type": "IMAGE", "link": 4}, {"name": "count", "type": "INT", "link": 3, "widget": {"name": "count"}}]},
        {"id": 6, "type": "Note", "mode": 0, "widgets_values": ["hello"]},
        {"id": 7, "type": "Filter", "mode": 2, "inputs": [], "widgets_values": [0.0, "x"]},
    ], "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 4, 0, "IMAGE"], [3, 3, 0, 5, 1, "INT"], [4, 4, 0, 5, 0, "IMAGE"]]}
    assert workflow_api.to_api(ui, FAKE_INFO) == {
        "1": {"inputs": {"seed": 7, "name": "b.png"}, "class_type": "Source", "_meta": {"title": "Source"}},
        "5": {"inputs": {"amount": 0.25, "mode": "y", "image": ["1", 0], "count": 5}, "class_type": "Filter",
              "_meta": {"title": "Second"}},
    }


def test_to_api_names_a_missing_node_type():
    ui = {"nodes": [{"id": 1, "type": "NotInstalled", "mode": 0, "widgets_values": []}], "links": []}
    with pytest.raises(workflow_api.WorkflowError, match="NotInstalled"):
        workflow_api.to_api(ui, FAKE_INFO)
