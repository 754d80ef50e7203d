"""The README's picture of a real edit in ComfyUI's web UI, on the demo model.

    .venv/bin/python -m demo.screenshot [--out docs/images/sd35_semantic_edit_demo.png]

It starts the demo's ComfyUI server (as demo/run_demo.py does: the pack, the demo's prompt node, the
demo model's files in the base directory), opens the web UI in headless Chromium, and loads the
shipped ``workflows/sd35_semantic_edit.json`` from the template route the template browser uses.
In the page's own graph it swaps only what the demo swaps (demo/graphs.py): the checkpoint loader
becomes the demo's UNETLoader and VAELoader, the text-encoder loader goes, and the two
becomes the demo's UNETLoader and VAELoader, the text-encoder loader becomes the demo's small CLIP
loader, and the stock CLIPTextEncode nodes get the demo's typed prompts (the edit, and the scene as
the Edit Region's source). It sets the demo's settings (the paper's gamma 0.5, eta 0.9, stop 0.25)
on the pack's nodes and the LoadImage to the demo's held-out scene (uploaded through /upload/image as
the UI does), queues from the page, waits for the run, and saves one picture: the whole graph fitted
to a 1600-pixel-wide view, and below it the same page zoomed in on the region's MaskPreview and the
side-by-side SaveImage (ComfyUI never draws a preview larger than the image, and the demo's images are 128 pixels).
"""
import argparse
import base64
import io
import json
import shutil
import time
from pathlib import Path

from demo import common as C
from demo import graphs, run_demo
from harness import host, workflow_api

NAME, FOLDER = "sd35_semantic_edit", "rf_inversion"  # the template route: /api/workflow_templates/<folder>/<name>.json
WIDTH, HEIGHT = 1600, 1000
INPUT = "scene.png"
ZOOM = 2                    # the previews' zoom: ComfyUI never draws a preview larger than its image
LEFT, TOP = 72, 104         # the canvas to the right of the sidebar, below the tabs and the Run bar
STRIP_TOP = 690             # the zoomed previews go below this line
EDIT_TEXT = run_demo.EDITS[1][0]   # "a tangerine and a dog on blue": the cat becomes a dog

LOAD_JS = r"""(async (name, folder) => {
  const response = await fetch(`/api/workflow_templates/${folder}/${name}.json`);
  if (!response.ok) throw new Error(`the template ${name} answered ${response.status}`);
  const data = await response.json();
  await app.loadGraphData(data, true, true, name);
  await new Promise((r) => setTimeout(r, 500));
  // The shipped file names SD3.5's files, which the demo's server does not have: close that dialog.
  for (const button of document.querySelectorAll(".p-dialog .p-dialog-close-button")) button.click();
  return app.graph.nodes.length;
})"""

# The demo's swaps (demo/graphs.py's for_demo_model), done on the page's graph with LiteGraph.
SWAP_JS = r"""((demo) => {
  const graph = app.graph, linkOf = (id) => graph.links.get ? graph.links.get(id) : graph.links[id];
  const targets = (node, slot) => (node.outputs[slot].links || []).map((id) => { const l = linkOf(id); return [l.target_id, l.target_slot]; });
  const make = (type, title, pos, values) => {
    const node = LiteGraph.createNode(type);
    graph.add(node);
    node.pos = pos;
    if (title) node.title = title;
    for (const [name, value] of Object.entries(values)) {
      const widget = node.widgets.find((w) => w.name === name);
      if (!widget) throw new Error(`${type} has no widget ${name}`);
      widget.value = value;
    }
    return node;
  };
  const relink = (links, node, slot) => links.forEach(([target, targetSlot]) => {
    if (!node.connect(slot, graph.getNodeById(target), targetSlot)) throw new Error(`cannot link ${node.type} to node ${target}`);
  });
  const done = [];
  for (const old of [...graph.nodes]) {
    if (old.type === "CheckpointLoaderSimple") {  // MODEL, CLIP, VAE -> the demo's UNETLoader and VAELoader
      const model = targets(old, 0), vae = targets(old, 2), pos = [...old.pos];
      graph.remove(old);
      const unet = make("UNETLoader", "Load Diffusion Model (demo MMDiT)", pos, {unet_name: demo.unet, weight_dtype: "default"});
      const vaeLoader = make("VAELoader", "Load VAE (demo TAESD)", [pos[0], pos[1] + 150], {vae_name: demo.vae});
      relink(model, unet, 0);
      relink(vae, vaeLoader, 0);
      done.push("CheckpointLoaderSimple -> UNETLoader + VAELoader");
    } else if (["TripleCLIPLoader", "DualCLIPLoader", "CLIPLoader", "QuadrupleCLIPLoader"].includes(old.type)) {
      const clip = targets(old, 0), pos = [...old.pos];
      graph.remove(old);
      const loader = make("RFDemoTextEncoderLoader", "Load Demo Text Encoder (small CLIP)", pos, {clip_name: demo.clip});
      relink(clip, loader, 0);
      done.push(`${old.type} -> RFDemoTextEncoderLoader`);
    } else if (old.type === "CLIPTextEncode" && old.widgets[0].value.trim()) {
      const text = old.title === demo.sourceTitle ? demo.source : demo.edit;
      old.widgets[0].value = text;
      done.push(`CLIPTextEncode '${old.title}': ${JSON.stringify(text)}`);
    }
  }
  const set = (type, values) => graph.nodes.filter((n) => n.type === type).forEach((n) => {
    for (const [name, value] of Object.entries(values)) n.widgets.find((w) => w.name === name).value = value;
    done.push(`${type}: ${JSON.stringify(values)}`);
  });
  set("RFInversionSampler", {gamma: demo.gamma});
  set("ControlledReverseSampler", {eta: demo.eta, stop: demo.stop});
  set("LoadImage", {image: demo.image});
  const load = graph.nodes.find((n) => n.type === "LoadImage");
  if (load.widgets.find((w) => w.name === "image").callback) load.widgets.find((w) => w.name === "image").callback(demo.image);
  graph.setDirtyCanvas(true, true);
  return done;
})"""

# Fit a set of nodes (all of them by default) into a screen rectangle: LiteGraph draws graph point p
# at (p + offset) * scale.
FIT_JS = r"""((rect, ids, maxScale) => {
  const nodes = app.graph.nodes.filter((n) => !ids || ids.includes(n.id));
  const title = LiteGraph.NODE_TITLE_HEIGHT;
  const x0 = Math.min(...nodes.map((n) => n.pos[0])), y0 = Math.min(...nodes.map((n) => n.pos[1] - title));
  const x1 = Math.max(...nodes.map((n) => n.pos[0] + n.size[0])), y1 = Math.max(...nodes.map((n) => n.pos[1] + n.size[1]));
  const [rx, ry, rw, rh] = rect;
  const scale = Math.min(rw / (x1 - x0), rh / (y1 - y0), maxScale);
  const ds = app.canvas.ds;
  ds.scale = scale;
  ds.offset[0] = rx / scale - x0 + (rw / scale - (x1 - x0)) / 2;
  ds.offset[1] = ry / scale - y0 + (rh / scale - (y1 - y0)) / 2;
  app.graph.setDirtyCanvas(true, true);
  return new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r({scale, box: [x0, y0, x1, y1]}))));
})"""

# Hide what floats over the canvas after a run: toasts, the queue/job panel, the minimap.
HIDE_CSS = """.p-toast, .p-toast-message, .queue-overlay, [class*="queue-progress"], [class*="QueueProgress"],
.minimap-main-container, .side-bar-panel { display: none !important; }"""


# The "1 job completed" panel under the Run bar: the smallest box around that text, hidden.
HIDE_QUEUE_JS = r"""(() => {
  const leaves = [...document.querySelectorAll("body *")].filter((e) => /\bjobs? (completed|failed)\b/.test(e.textContent || "")
    && ![...e.children].some((c) => /\bjobs? (completed|failed)\b/.test(c.textContent || "")));
  const hidden = [];
  for (let el of leaves) {
    while (el.parentElement) {
      const r = el.parentElement.getBoundingClientRect();
      if (r.width > 420 || r.height > 240) break;
      el = el.parentElement;
    }
    el.style.setProperty("display", "none", "important");
    hidden.push(el.className && el.className.baseVal === undefined ? String(el.className).slice(0, 80) : el.tagName);
  }
  return hidden;
})()"""


def upload(server, path):
    """Put the input picture on the server the way the web UI's upload button does."""
    import requests
    r = requests.post(server.url + "/upload/image", files={"image": (path.name, path.read_bytes(), "image/png")},
                      data={"overwrite": "true", "type": "input"}, timeout=30)
    r.raise_for_status()
    return r.json()["name"]


def capture(browser, clip=None):
    from PIL import Image
    params = {"format": "png"}
    if clip:
        params["clip"] = {**dict(zip(("x", "y", "width", "height"), clip)), "scale": 1}
    data = browser.send("Page.captureScreenshot", params)["data"]
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def trim(image, margin=14):
    """Crop a zoomed capture to what differs from the node's body colour (the image and its size label)."""
    from PIL import Image, ImageChops
    body = image.getpixel((4, 4))
    diff = ImageChops.difference(image, Image.new("RGB", image.size, body)).convert("L").point(lambda v: 255 if v > 24 else 0)
    box = diff.getbbox()
    if box is None:
        return image
    return image.crop((max(box[0] - margin, 0), max(box[1] - margin, 0), min(box[2] + margin, image.width), min(box[3] + margin, image.height)))


def compose(full, zooms):
    """The overview with the zoomed previews in the empty canvas strip below the graph."""
    from PIL import ImageDraw, ImageFont
    try:
        font = ImageFont.load_default(size=15)
    except TypeError:
        font = ImageFont.load_default()
    out = full.copy()
    draw = ImageDraw.Draw(out)
    small = font.font_variant(size=14) if hasattr(font, "font_variant") else font
    y = STRIP_TOP + 4
    note = ("workflows/sd35_semantic_edit.json, run from\nComfyUI's web UI on the demo model\n(demo/, docs/demo.md).\n\n"
            "Swapped as the demo swaps: the loaders\n(the demo's small CLIP for the text encoders).\n\n"
            f"Edit: \"{run_demo.SCENE}\"\n-> \"{EDIT_TEXT}\",\n"
            "gamma {gamma}, eta {eta}, stop {stop}.".format(**run_demo.DEMO))
    draw.multiline_text((LEFT + 8, y + 24), note, fill=(200, 200, 200), font=small, spacing=5)
    x, caption = LEFT + 360, 24
    room = HEIGHT - y - caption - 12
    for title, image in zooms:
        if image.height > room:
            image = image.resize((round(image.width * room / image.height), room))
        draw.text((x, y), f"{title} (same page, zoomed to {ZOOM * 100:.0f}%)", fill=(220, 220, 220), font=font)
        out.paste(image, (x, y + caption))
        draw.rectangle((x - 1, y + caption - 1, x + image.width, y + caption + image.height), outline=(150, 150, 150))
        x += max(image.width, 380) + 40
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(C.ROOT / "docs" / "images" / "sd35_semantic_edit_demo.png"))
    parser.add_argument("--work", default=str(C.ROOT / "output" / "screenshot"), help="the server's base directory and log")
    opts = parser.parse_args()
    start = time.monotonic()
    stamp = lambda: f"[{time.monotonic() - start:5.1f} s]"  # noqa: E731
    work = Path(opts.work)
    if work.exists():
        shutil.rmtree(work)
    base = work / "comfy_base"
    run_demo.prepare_base(base)
    for png in (base / "input").glob("*.png"):
        png.unlink()  # the input goes in through /upload/image below, as a person would add it

    print(f"{stamp()} starting ComfyUI headless with the pack, the demo's prompt node and the demo model ...", flush=True)
    server = host.start_server(base, extra_packs=[C.DEMO / "demo_nodes"], log_path=work / "comfyui.log")
    browser = None
    try:
        settings = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False,
                    "LiteGraph.Canvas.MinFontSizeForLOD": 4}  # keep the text drawn when zoomed out
        import requests
        for key, value in settings.items():
            requests.post(f"{server.url}/settings/{key}", json=value, timeout=30).raise_for_status()
        image = upload(server, C.INPUTS / INPUT)
        print(f"{stamp()} ComfyUI is up at {server.url}; uploaded {image}; opening the web UI in headless Chromium", flush=True)

        browser = workflow_api.Chromium(size=(WIDTH, HEIGHT))
        browser.send("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        browser.send("Page.addScriptToEvaluateOnNewDocument", {"source": "localStorage.setItem('vueNodesBannerDismissed', 'true');"})
        workflow_api.open_web_ui(browser, server.url)
        browser.wait_for("!!(window.comfyAPI && window.comfyAPI.api && window.comfyAPI.api.api)")

        count = browser.evaluate(f"{LOAD_JS}({json.dumps(NAME)}, {json.dumps(FOLDER)})")
        demo = {**graphs.EMOJI, "edit": EDIT_TEXT, "source": run_demo.SCENE, "sourceTitle": graphs.SOURCE_TITLE, "image": image,
                **run_demo.DEMO}
        done = browser.evaluate(f"{SWAP_JS}({json.dumps(demo)})")
        print(f"{stamp()} loaded {NAME} ({count} nodes) from the template route; in the page: " + "; ".join(done), flush=True)

        browser.evaluate("""(() => { const api = window.comfyAPI.api.api; window.__shot = {queued: [], errors: []};
            const queue = api.queuePrompt.bind(api);
            api.queuePrompt = async (...a) => { try { const r = await queue(...a); __shot.queued.push(r); return r; }
                                                catch (e) { __shot.errors.push(String(e && (e.response ? JSON.stringify(e.response) : e.message || e))); throw e; } };
            return true; })()""")
        browser.evaluate("app.queuePrompt(0, 1)", timeout=120)
        queued = browser.wait_for("__shot.errors.length ? {errors: __shot.errors} : __shot.queued[0]", timeout=60)
        if "errors" in queued or queued.get("node_errors"):
            raise SystemExit(f"screenshot: ComfyUI refused the page's prompt: {json.dumps(queued)[:3000]}")
        prompt_id = queued["prompt_id"]
        entry = server.wait(prompt_id, timeout=300)
        if entry["status"]["status_str"] != "success":
            raise SystemExit(f"screenshot: the run failed: {json.dumps(entry['status'])[-3000:]}")
        print(f"{stamp()} the run finished; outputs: " + ", ".join(
            f"{i['subfolder']}/{i['filename']}" for o in entry["outputs"].values() for i in o.get("images", [])), flush=True)
        # Clear the floating panels off the canvas.
        browser.evaluate(f"""(() => {{ const s = document.createElement('style'); s.textContent = {json.dumps(HIDE_CSS)};
            document.head.appendChild(s); for (const b of document.querySelectorAll('.p-toast-close-button')) b.click();
            app.canvas.show_info = false; app.canvas.deselectAll && app.canvas.deselectAll(); return true; }})()""")
        hidden = browser.evaluate(HIDE_QUEUE_JS)
        time.sleep(0.5)
        # The same page zoomed in on the previews (images are loaded when a node is drawn).
        zooms = []
        for node in browser.evaluate("app.graph.nodes.filter((n) => n.type === 'MaskPreview' || (n.type === 'SaveImage' && /side by side/.test(n.title))).map((n) => ({id: n.id, title: n.title, pos: [...n.pos], size: [...n.size]}))"):
            cx, cy = node["pos"][0] + node["size"][0] / 2, node["pos"][1] + 20 + node["size"][1] / 2
            browser.evaluate(f"""(() => {{ const ds = app.canvas.ds; ds.scale = {ZOOM};
                ds.offset[0] = {WIDTH / 2 / ZOOM} - {cx}; ds.offset[1] = {HEIGHT / 2 / ZOOM} - {cy};
                app.graph.setDirtyCanvas(true, true); return true; }})()""")
            browser.wait_for(f"(() => {{ const n = app.graph.getNodeById({node['id']}); "
                             "return n.imgs && n.imgs.length && n.imgs.every((i) => i.complete && i.naturalWidth > 0); })()", timeout=30)
            browser.evaluate("new Promise((r) => { app.graph.setDirtyCanvas(true, true); requestAnimationFrame(() => requestAnimationFrame(r)); })")
            w, h = 720, 560
            zooms.append((node["title"], trim(capture(browser, (WIDTH / 2 - w / 2, HEIGHT / 2 - h / 2, w, h)))))
        # The whole graph, fitted into the canvas above the strip that the zoomed previews take.
        overview = browser.evaluate(f"{FIT_JS}([{LEFT}, {TOP}, {WIDTH - LEFT - 24}, {STRIP_TOP - TOP - 16}], null, 2)")
        full = capture(browser)
        print(f"{stamp()} overview at zoom {overview['scale']:.2f}; previews at zoom {ZOOM}; hid the queue panel: {hidden}", flush=True)
    finally:
        if browser is not None:
            browser.close()
        server.stop()
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compose(full, zooms).save(out, optimize=True)
    print(f"{stamp()} wrote {out} ({out.stat().st_size // 1024} KB)", flush=True)


if __name__ == "__main__":
    main()
