"""The shipped workflows in ComfyUI's real web UI: headless Chromium (Debian's package, installed by
scripts/setup_browser.sh) opens the frontend that the test server serves.

For each workflow it loads the file the way the template browser does, finds no missing-node,
missing-model or unconnected-input warning, checks that the converter's API prompt is exactly the
UI's own ``graphToPrompt()``, swaps the model loaders for the tiny test loaders in the graph
(keeping every link), queues it from the page and sees it complete. One screenshot per workflow is
kept under tests/artifacts/.
"""
import json
import re

import pytest
import requests
from conftest import ARTIFACTS
from test_workflows import (NAMES, SAVED_BEFORE, SAVED_BEFORE_SAMPLERS, check_saved_videos, expected_sizes, fetch_image, load,
                            swap_loaders, swaps_for, upload_inputs)

from harness import workflow_api

PACK_FOLDER = "rf_inversion"  # the pack's folder name in custom_nodes, as harness.host links it
# Open dialogs: PrimeVue's on frontend 1.32.9, role=dialog elements on 1.49.6.
DIALOG, IN_DIALOG = ".p-dialog, [role=dialog]", ".p-dialog *, [role=dialog] *"

HOOKS_JS = r"""(() => {
  if (window.__rf) return true;
  const api = window.comfyAPI.api.api;
  const rf = window.__rf = {events: [], queued: [], queueErrors: []};
  const copy = (x) => JSON.parse(JSON.stringify(x ?? []));
  if (app.showMissingModelsError) {
    // Frontend 1.32.9 (ComfyUI 0.3.75) reports a load's missing nodes and models through these two
    // calls: record each list it passes.
    const seen = {missingNodes: [], missingModels: []};
    const showNodes = app.showMissingNodesError.bind(app), showModels = app.showMissingModelsError.bind(app);
    app.showMissingNodesError = (...a) => { seen.missingNodes.push(copy(a[0])); return showNodes(...a); };
    app.showMissingModelsError = (...a) => { seen.missingModels.push(copy(a[0])); return showModels(...a); };
    rf.clearWarnings = () => { seen.missingNodes.length = 0; seen.missingModels.length = 0; };
    rf.warnings = () => copy(seen);
  } else {
    // Frontend 1.49.6 (ComfyUI 0.33) has no such calls: loadGraphData clears and then fills two Pinia
    // stores, which its errors tab shows; read them after the load.
    const stores = document.getElementById("vue-app").__vue_app__.config.globalProperties.$pinia._s;
    const store = (id) => { const s = stores.get(id); if (!s) throw new Error(`no Pinia store ${id} in this frontend`); return s; };
    rf.clearWarnings = () => {};
    rf.warnings = () => ({missingNodes: copy(store("missingNodesError").missingNodesError?.nodeTypes),
                          missingModels: copy(store("missingModel").missingModelCandidates)});
  }
  for (const type of ["execution_start", "execution_success", "execution_error", "execution_interrupted"])
    api.addEventListener(type, (e) => rf.events.push({type, detail: JSON.parse(JSON.stringify(e.detail ?? null))}));
  const queue = api.queuePrompt.bind(api);
  api.queuePrompt = async (...a) => {
    try { const r = await queue(...a); rf.queued.push(r); return r; }
    catch (e) { rf.queueErrors.push(String(e && (e.response ? JSON.stringify(e.response) : e.message || e))); throw e; }
  };
  return true;
})()"""

LOAD_JS = r"""(async (name, folder, given, dialog) => {
  // From the template route, as the template browser loads it; or the workflow given, as a dropped file is.
  let data = given;
  if (!data) {
    const url = `/api/workflow_templates/${folder}/${name}.json`;
    const response = await fetch(url);
    if (!response.ok) throw new Error(url + " answered " + response.status);
    data = await response.json();
  }
  // Close what an earlier test left open (e.g. an execution error report), so each load starts clean.
  for (const button of document.querySelectorAll(".p-dialog .p-dialog-close-button")) button.click();
  await new Promise((r) => setTimeout(r, 300));
  __rf.clearWarnings();
  await app.loadGraphData(data, true, true, name);
  await new Promise((r) => setTimeout(r, 300));
  const registered = LiteGraph.registered_node_types;
  return {
    served: data,
    ...__rf.warnings(),
    unregistered: app.graph.nodes.filter((n) => !(n.type in registered)).map((n) => n.type),
    withErrors: app.graph.nodes.filter((n) => n.has_errors).map((n) => n.type),
    dialogs: [...document.querySelectorAll(dialog)].map((d) => d.innerText.slice(0, 300)),
    graph: app.graph.serialize(),
  };
})"""

# Every widget's value by name, for each node of the given types, as the loaded graph holds them.
WIDGETS_JS = r"""((types) => Object.fromEntries(types.map((type) => [type, app.graph.nodes.filter((n) => n.type === type)
  .map((n) => Object.fromEntries(n.widgets.map((w) => [w.name, w.value])))])))"""

SWAP_JS = r"""((swaps) => {
  const graph = app.graph, linkOf = (id) => graph.links.get ? graph.links.get(id) : graph.links[id];
  const swapped = [];
  for (const old of [...graph.nodes]) {
    const swap = swaps[old.type];
    if (!swap) continue;
    const targets = old.outputs.map((o) => (o.links || []).map((id) => { const l = linkOf(id); return [l.target_id, l.target_slot]; }));
    const id = old.id, pos = [...old.pos], size = [...old.size], type = old.type;
    graph.remove(old);
    const tiny = LiteGraph.createNode(swap[0]);
    tiny.id = id;  // same id: the prompt's links to it keep their form
    graph.add(tiny);
    tiny.pos = pos;
    tiny.title = `${tiny.title} for ${type}`;
    for (const [name, value] of Object.entries(swap[1])) tiny.widgets.find((w) => w.name === name).value = value;
    tiny.setSize([Math.max(size[0], tiny.computeSize()[0]), tiny.computeSize()[1]]);
    targets.forEach((links, slot) => links.forEach(([target, targetSlot]) => {
      if (!tiny.connect(slot, graph.getNodeById(target), targetSlot)) throw new Error(`cannot relink ${type} output ${slot}`);
    }));
    swapped.push(String(id));
  }
  graph.setDirtyCanvas(true, true);
  return swapped;
})"""


def models_the_note_names(ui):
    """(folder under models/, file name) for each file the workflow's note tells a person to put in place,
    from its line 'Models: a.safetensors in models/x; b and c in models/y (...)'."""
    notes = [n["widgets_values"][0] for n in ui["nodes"] if n["type"] in ("Note", "MarkdownNote")]
    line = next(l for text in notes for l in text.splitlines() if l.startswith("Models:"))
    found = []
    for part in line.removeprefix("Models:").split(";"):
        folder = re.search(r"\bin models/(\w+)", part).group(1)
        found += [(folder, name) for name in re.findall(r"[\w.\-]+\.safetensors", part.split(" in models/")[0])]
    assert found, line
    return found


@pytest.fixture(scope="module")
def files_in_place(server):
    """The workflows' inputs uploaded, and empty files under the model names and folders that their notes
    give (for this module only), before the page reads the node list: frontend 1.49.6 reports every model
    or input file a loader names that is not among its choices (1.32.9 only models with a download
    link), so the warnings checked below are those of a person who followed the note. The tiny loaders
    replace the model loaders before anything runs, so no model file is read."""
    made = []
    for name in [*NAMES, *SAVED_BEFORE]:
        ui = load(name)
        upload_inputs(server, ui)
        for folder, file in models_the_note_names(ui):
            path = server.base_dir / "models" / folder / file
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
                made.append(path)
    yield
    for path in made:
        path.unlink()


@pytest.fixture(scope="module")
def web(server, files_in_place):
    """Chromium on the server's web UI, first-run dialogs settled, with recording hooks."""
    settings = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False,
                "LiteGraph.Canvas.MinFontSizeForLOD": 4}  # text stays drawn in the zoomed-out screenshots
    for key, value in settings.items():
        requests.post(f"{server.url}/settings/{key}", json=value, timeout=30).raise_for_status()
    browser = workflow_api.Chromium(size=(1920, 1080))
    try:
        browser.send("Emulation.setDeviceMetricsOverride", {"width": 1920, "height": 1080, "deviceScaleFactor": 1, "mobile": False})
        browser.send("Page.addScriptToEvaluateOnNewDocument", {"source": "localStorage.setItem('vueNodesBannerDismissed', 'true');"})
        workflow_api.open_web_ui(browser, server.url)
        browser.wait_for("!!(window.comfyAPI && window.comfyAPI.api && window.comfyAPI.api.api)")
        browser.evaluate(HOOKS_JS)
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def object_info(server):
    return server.get("/object_info")


def test_template_browser_lists_the_workflows_and_opens_one(web):
    listed = web.evaluate("fetch('/api/workflow_templates').then((r) => r.json())")
    assert sorted(listed.get(PACK_FOLDER, [])) == sorted(NAMES), listed
    # What a person does: Templates in the sidebar, the pack under Extensions, then a card.
    web.evaluate("document.querySelector('button[aria-label=Templates]').click()")
    leaf = f"[...document.querySelectorAll({json.dumps(IN_DIALOG)})].find((e) => e.children.length === 0 && e.textContent.trim() === {json.dumps(PACK_FOLDER)})"
    web.wait_for(f"!!{leaf}", timeout=30)
    web.evaluate(f"{leaf}.click()")
    for name in NAMES:
        web.wait_for(f"document.querySelector({json.dumps(DIALOG)}).innerText.includes({json.dumps(name)})", timeout=30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    web.screenshot(ARTIFACTS / "template_browser.png")
    card = f"[...document.querySelectorAll({json.dumps(IN_DIALOG)})].find((e) => e.children.length === 0 && e.textContent.trim() === 'flux_semantic_edit')"
    web.evaluate(f"{card}.click()")
    ui = load("flux_semantic_edit")
    web.wait_for(f"!document.querySelector({json.dumps(DIALOG)}) && app.graph.nodes.length === {len(ui['nodes'])} && "
                 "app.graph.nodes.some((n) => n.type === 'ControlledReverseSampler')", timeout=30)


def without_video_preview(prompt):
    """The page's prompt less LoadVideo's preview widget: once the clip has loaded, the frontend adds
    it and graphToPrompt sends its empty value too; the server ignores it, and the converter leaves it out."""
    for node in prompt.values():
        if node["class_type"] == "LoadVideo" and node["inputs"].get("video-preview") == "":
            del node["inputs"]["video-preview"]
    return prompt


@pytest.mark.parametrize("name", NAMES)
def test_converter_matches_the_web_ui_export(name, web, object_info):
    """to_api (what the tests and the demo submit) is exactly what the web UI queues."""
    ui = load(name)
    exported = workflow_api.ui_export(web, ui)
    assert without_video_preview(exported["output"]) == workflow_api.to_api(ui, object_info)


def unconnected_inputs(graph, object_info):
    """Required inputs that are neither a widget nor linked, as 'Type.input'."""
    out = []
    for node in graph["nodes"]:
        spec = object_info.get(node["type"])
        if spec is None:
            continue
        widgets = {name for name, _ in workflow_api.widget_slots(spec)}
        linked = {i["name"] for i in node.get("inputs") or [] if i.get("link") is not None}
        for name in (spec.get("input", {}).get("required") or {}):
            if name not in widgets and name not in linked:
                out.append(f"{node['type']}.{name}")
    return out


def assert_loaded_without_warnings(loaded, object_info):
    """No kind of load warning in what LOAD_JS reports."""
    assert not loaded["missingNodes"] and not loaded["unregistered"], loaded["missingNodes"] or loaded["unregistered"]
    assert not loaded["missingModels"], loaded["missingModels"]
    assert not loaded["withErrors"], loaded["withErrors"]
    assert not loaded["dialogs"], loaded["dialogs"]
    assert not unconnected_inputs(loaded["graph"], object_info)


@pytest.mark.parametrize("name", NAMES)
def test_workflow_runs_in_the_web_ui(name, web, server, object_info):
    ui = load(name)
    upload_inputs(server, ui)

    # Load it as the template browser does, and look for every kind of load warning.
    loaded = web.evaluate(f"{LOAD_JS}({json.dumps(name)}, {json.dumps(PACK_FOLDER)}, null, {json.dumps(DIALOG)})")
    assert loaded["served"] == ui, "the server serves another file than workflows/"
    assert_loaded_without_warnings(loaded, object_info)

    # Swap the loaders in the page; the UI's prompt is then the converter's, swapped the same way.
    swapped = web.evaluate(f"{SWAP_JS}({json.dumps(swaps_for(name))})")
    expected = workflow_api.to_api(ui, object_info)
    assert sorted(swapped) == sorted(swap_loaders(expected, object_info, swaps_for(name)))
    shown = web.evaluate("app.graphToPrompt().then((p) => p.output)")
    strip = lambda p: {k: {**v, "_meta": None} for k, v in p.items()}  # noqa: E731  (titles of swapped nodes differ)
    assert strip(without_video_preview(shown)) == strip(expected)  # the page queues it below, preview and all

    # Queue from the page and wait for the server to finish it.
    queued_before = web.evaluate("__rf.queued.length")
    web.evaluate("app.queuePrompt(0, 1)", timeout=120)
    assert web.evaluate("__rf.queueErrors") == []
    queued = web.wait_for(f"__rf.queued.length > {queued_before} && __rf.queued[{queued_before}]", timeout=60)
    assert queued.get("node_errors") == {}, queued
    prompt_id = queued["prompt_id"]
    entry = server.wait(prompt_id, timeout=240)
    failures = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert entry["status"]["status_str"] == "success" and not failures, "\n".join(
        f"{f.get('node_type')} {f.get('node_id')}: {f.get('exception_message')}\n{''.join(f.get('traceback') or [])}" for f in failures)
    events = web.wait_for(f"""(() => {{ const e = __rf.events.filter((e) => e.detail && e.detail.prompt_id === {json.dumps(prompt_id)});
                              return e.some((x) => x.type === 'execution_success') && e.map((x) => x.type); }})()""", timeout=30)
    assert "execution_error" not in events and "execution_interrupted" not in events, events

    # The saved pictures exist at the right size, and the page shows them on the SaveImage nodes;
    # a saved clip has the input's frames and size, and the page has its output.
    for node_id, size in expected_sizes(name, ui).items():
        items = entry["outputs"].get(node_id, {}).get("images")
        assert items, f"SaveImage {node_id} saved nothing"
        assert fetch_image(server, items[0]).size == size
    check_saved_videos(server, ui, entry["outputs"])
    web.wait_for("""app.graph.nodes.filter((n) => n.type === 'SaveImage')
                      .every((n) => n.imgs && n.imgs.length && n.imgs.every((i) => i.complete && i.naturalWidth > 0))""", timeout=30)
    web.wait_for("""app.graph.nodes.filter((n) => n.type === 'SaveVideo')
                      .every((n) => app.nodeOutputs[String(n.id)] && app.nodeOutputs[String(n.id)].images.length)""", timeout=30)
    web.evaluate("new Promise((r) => { app.graph.setDirtyCanvas(true, true); requestAnimationFrame(() => requestAnimationFrame(r)); })")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    web.screenshot(shot)
    assert shot.stat().st_size > 10_000


def test_converter_matches_the_web_ui_with_bypassed_and_muted_nodes(web, object_info):
    """A bypassed node passes its matching input through; a muted node and what only it fed drop out."""
    ui = load("flux_semantic_edit")
    by_title = {n.get("title"): n for n in ui["nodes"]}
    by_title["Photo | edit"]["mode"] = 4  # bypass the stitch: the pair's SaveImage gets the photo
    by_title["Save the edit"]["mode"] = 2  # mute one output
    exported = workflow_api.ui_export(web, ui)["output"]
    converted = workflow_api.to_api(ui, object_info)
    assert exported == converted
    pair = str(by_title["Save photo and edit side by side"]["id"])
    photo = next(n for n in ui["nodes"] if n["type"] == "LoadImage")
    assert converted[pair]["inputs"]["images"] == [str(photo["id"]), 0]
    assert str(by_title["Save the edit"]["id"]) not in converted


@pytest.mark.parametrize("name", list(SAVED_BEFORE))
def test_workflow_saved_before_the_solver_input_loads_with_its_values(name, web, server, object_info):
    """A file saved before the samplers had a solver input opens as a dropped file does, with no
    warning: every old widget keeps its value and the later ones take their defaults (solver euler, the
    inversion's record_path off; the reverse's inversion is a link, not a widget)."""
    ui = load(name)
    upload_inputs(server, ui)
    loaded = web.evaluate(f"{LOAD_JS}({json.dumps(name)}, null, {json.dumps(ui)}, {json.dumps(DIALOG)})")
    assert_loaded_without_warnings(loaded, object_info)
    shown = web.evaluate(f"{WIDGETS_JS}({json.dumps(list(SAVED_BEFORE_SAMPLERS))})")
    later = {"RFInversionSampler": {"solver": "euler", "record_path": False}, "ControlledReverseSampler": {"solver": "euler"}}
    assert shown == {node_type: [{**values, **later[node_type]}] for node_type, values in SAVED_BEFORE_SAMPLERS.items()}
    # The UI queues the new input's default, and so does the converter.
    queued = web.evaluate("app.graphToPrompt().then((p) => p.output)")
    assert queued == workflow_api.to_api(ui, object_info)


def test_load_warnings_reach_the_hooks(web, object_info):
    """What the no-warning checks above rest on, on either frontend: a node type the server lacks and a
    model file it lacks (embedded with a download link, which 1.32.9 checks too) are reported."""
    ui = load("flux_semantic_edit")
    absent = "rf_absent_model.safetensors"
    next(n for n in ui["nodes"] if n["type"] == "UNETLoader")["widgets_values"][0] = absent
    ui["models"] = [{"name": absent, "url": f"https://example.invalid/{absent}", "directory": "diffusion_models"}]
    next(n for n in ui["nodes"] if n["type"] == "VAELoader")["type"] = "RFNoSuchNode"
    loaded = web.evaluate(f"{LOAD_JS}('rf_absent', null, {json.dumps(ui)}, {json.dumps(DIALOG)})")
    assert "RFNoSuchNode" in json.dumps(loaded["missingNodes"]), loaded["missingNodes"]
    assert absent in json.dumps(loaded["missingModels"]), loaded["missingModels"]
    with pytest.raises(AssertionError):
        assert_loaded_without_warnings(loaded, object_info)
