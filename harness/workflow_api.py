"""Turn a UI workflow (what ComfyUI's web UI saves, and what ``workflows/`` ships) into the API
prompt that ``POST /prompt`` takes.

    from harness.workflow_api import to_api
    prompt = to_api(json.load(open("workflows/flux_semantic_edit.json")), server.get("/object_info"))

    .venv/bin/python -m harness.workflow_api WORKFLOW.json --server http://127.0.0.1:8188 > prompt.json

``to_api`` follows what the frontend's ``app.graphToPrompt()`` does: widget values are matched to
the node's widget inputs in the order of ``/object_info`` (with the extra, unsent widgets the
frontend adds: ``control_after_generate`` and the upload button), links become
``[origin_id, origin_slot]``, frontend-only nodes (notes, reroutes, primitives) are dropped or
resolved, and muted or bypassed nodes are left out (a bypassed node passes its matching input
through). ``tests/test_browser.py`` checks its output against ``graphToPrompt()`` of the real web UI
for every shipped workflow. Not covered: the frontend's dynamic-prompt syntax in text widgets
(``{a|b}`` choices and comments), group nodes and subgraphs.

``Chromium`` drives headless Chromium (Debian's package) over the DevTools protocol; the browser
test and ``workflows/make_workflows.py`` use it to talk to the real web UI.
"""
import argparse
import json
import sys

# Nodes that exist only in the frontend: they never reach the server.
VIRTUAL_NODES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode", "PrimitiveString", "Label"}
# COMFY_DYNAMICCOMBO_V3 (ComfyUI 0.33, e.g. SaveVideo's format): a combo whose chosen option brings
# widgets of its own, which follow it and are sent as "combo.widget".
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", DYNAMIC_COMBO}
# Input options for which the frontend adds an upload button after the widget (a value in
# widgets_values that is never sent to the server).
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload", "mesh_upload")
MUTED, BYPASSED = 2, 4


class WorkflowError(ValueError):
    """The workflow cannot become a prompt on this server (e.g. a node type the server lacks)."""


def widget_slots(spec):
    """The node's widgets in the frontend's order, as (name, sent_to_server) pairs."""
    slots = []
    for section in ("required", "optional"):
        inputs = spec.get("input", {}).get(section) or {}
        order = (spec.get("input_order") or {}).get(section) or list(inputs)
        for name in order:
            entry = inputs[name]
            kind = entry[0]
            options = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            if options.get("forceInput") or not (isinstance(kind, list) or kind in WIDGET_TYPES):
                continue
            slots.append((name, True))
            if options.get("control_after_generate"):
                slots.append(("control_after_generate", False))
            if any(options.get(flag) for flag in UPLOAD_OPTIONS):
                slots.append(("upload", False))
    return slots


def _input_entry(spec, name):
    """The input's object_info entry and its options dict; (None, {}) when the node has no such input."""
    for section in ("required", "optional"):
        entry = (spec.get("input", {}).get(section) or {}).get(name)
        if entry is not None:
            return entry, (entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {})
    return None, {}


def widget_default(spec, name):
    """The value the web UI gives a new widget: its default, or a combo's first choice."""
    entry, options = _input_entry(spec, name)
    if entry is None:
        raise KeyError(name)
    if "default" in options:
        return options["default"]
    if entry[0] == DYNAMIC_COMBO:
        return options["options"][0]["key"] if options.get("options") else None
    choices = entry[0] if isinstance(entry[0], list) else options.get("options")
    return choices[0] if choices else None


def widget_inputs(spec, values):
    """The inputs the web UI sends for a node's widgets_values list, by name. A widget the list lacks
    (a file saved before it existed; new inputs come last) gets its default; a DynamicCombo's chosen
    option's widgets come right after it in the list."""
    values = iter(values or [])
    absent = object()

    def walk(spec, prefix):
        inputs = {}
        for name, sent in widget_slots(spec):
            value = next(values, absent)
            if not sent:
                continue
            inputs[prefix + name] = widget_default(spec, name) if value is absent else value
            entry, options = _input_entry(spec, name)
            if entry[0] == DYNAMIC_COMBO:
                chosen = next((o for o in options.get("options") or [] if o["key"] == inputs[prefix + name]), None)
                if chosen:
                    inputs.update(walk({"input": chosen["inputs"]}, f"{prefix}{name}."))
        return inputs

    return walk(spec, "")


def _links(ui):
    """link id -> (origin_id, origin_slot, target_id, target_slot, type), from either link form."""
    out = {}
    for link in ui.get("links") or []:
        if isinstance(link, dict):
            out[link["id"]] = (link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"], link.get("type"))
        else:
            out[link[0]] = tuple(link[1:6])
    return out


def to_api(ui_workflow: dict, object_info: dict) -> dict:
    """The API prompt for ``ui_workflow`` on a server whose ``/object_info`` is ``object_info``."""
    if "nodes" not in ui_workflow:
        raise WorkflowError("not a UI workflow (no 'nodes'); API prompts need no conversion")
    if (ui_workflow.get("definitions") or {}).get("subgraphs"):
        raise WorkflowError("subgraphs are not supported by this converter")
    nodes = {node["id"]: node for node in ui_workflow["nodes"]}
    links = _links(ui_workflow)
    missing = sorted({n["type"] for n in nodes.values() if n["type"] not in object_info and n["type"] not in VIRTUAL_NODES})
    if missing:
        raise WorkflowError(f"the server has no node type {', '.join(missing)} (a missing custom node pack?)")

    def source(link_id, seen=()):
        """The (node, slot) that really feeds ``link_id``, through reroutes and bypassed nodes;
        None when the source is muted or gone."""
        if link_id is None or link_id not in links or link_id in seen:
            return None
        origin_id, origin_slot, _, _, link_type = links[link_id]
        origin = nodes.get(origin_id)
        if origin is None or origin.get("mode", 0) == MUTED:
            return None
        if origin["type"] == "Reroute":
            inputs = origin.get("inputs") or []
            return source(inputs[0].get("link"), (*seen, link_id)) if inputs else None
        if origin.get("mode", 0) == BYPASSED:
            inputs = origin.get("inputs") or []
            same_slot = [inputs[origin_slot]] if origin_slot < len(inputs) and inputs[origin_slot].get("type") == link_type else []
            for candidate in same_slot + [i for i in inputs if i.get("type") == link_type]:
                if candidate.get("link") is not None:
                    return source(candidate["link"], (*seen, link_id))
            return None
        return origin, origin_slot

    prompt = {}
    for node_id, node in nodes.items():
        if node["type"] in VIRTUAL_NODES or node.get("mode", 0) in (MUTED, BYPASSED):
            continue
        spec = object_info[node["type"]]
        inputs = {}
        values = node.get("widgets_values")
        if isinstance(values, dict):
            inputs.update({name: values[name] for name, sent in widget_slots(spec) if sent and name in values})
        else:
            inputs.update(widget_inputs(spec, values))
        for slot in node.get("inputs") or []:
            if slot.get("link") is None:
                continue
            found = source(slot["link"])
            if found is None:
                inputs.pop(slot["name"], None)
                continue
            origin, origin_slot = found
            if origin["type"] == "PrimitiveNode":  # a primitive sends its value, not a link
                inputs[slot["name"]] = (origin.get("widgets_values") or [None])[0]
            else:
                inputs[slot["name"]] = [str(origin["id"]), origin_slot]
        prompt[str(node_id)] = {"inputs": inputs, "class_type": node["type"],
                                "_meta": {"title": node.get("title") or spec.get("display_name") or node["type"]}}
    return prompt


# --- the real web UI, in headless Chromium ------------------------------------------------------

def _die_with_parent():
    """In the child before exec (Linux): SIGTERM when the process that started it dies, so a test
    run that is killed leaves no browser behind."""
    try:
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Chromium:
    """Headless Chromium (``/usr/bin/chromium`` from Debian's packages) with one page, driven over
    the DevTools protocol through aiohttp's websocket client. Synchronous methods; the protocol
    runs on an event loop in a background thread."""

    FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]

    def __init__(self, executable=None, size=(1600, 1000), timeout=60):
        import asyncio
        import re
        import shutil
        import subprocess
        import tempfile
        import threading
        import time
        import urllib.request

        self.executable = executable or shutil.which("chromium") or "/usr/bin/chromium"
        self.profile = tempfile.mkdtemp(prefix="rf_chromium_")
        self.process = subprocess.Popen(
            [self.executable, *self.FLAGS, f"--window-size={size[0]},{size[1]}", f"--user-data-dir={self.profile}",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
            preexec_fn=_die_with_parent)
        self.stderr, self.events, self._pending, self._id = [], [], {}, 0
        self.loop = None
        try:
            deadline, url = time.monotonic() + timeout, None
            while url is None and time.monotonic() < deadline:
                line = self.process.stderr.readline()
                if not line and self.process.poll() is not None:
                    raise RuntimeError("chromium exited:\n" + "".join(self.stderr)[-3000:])
                self.stderr.append(line)
                match = re.search(r"DevTools listening on (ws://\S+)", line)
                url = match.group(1) if match else None
            if url is None:
                raise TimeoutError("chromium did not open its DevTools port:\n" + "".join(self.stderr)[-3000:])
            threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True).start()
            http = url.split("/devtools/")[0].replace("ws://", "http://")
            targets = json.loads(urllib.request.urlopen(http + "/json/list", timeout=10).read())
            page = next(t for t in targets if t["type"] == "page")
            self.loop = asyncio.new_event_loop()
            threading.Thread(target=self.loop.run_forever, daemon=True).start()
            self._run(self._connect(page["webSocketDebuggerUrl"]), timeout)
            for domain in ("Page", "Runtime"):
                self.send(f"{domain}.enable")
        except BaseException:
            self.close()
            raise

    def _run(self, coroutine, timeout):
        import asyncio
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(coroutine, timeout), self.loop).result()

    async def _connect(self, url):
        import aiohttp
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(url, max_msg_size=0)
        self.loop.create_task(self._read())

    async def _read(self):
        async for message in self.ws:
            data = json.loads(message.data)
            if data.get("id") in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            elif "method" in data:
                self.events.append(data)

    async def _send(self, method, params):
        self._id += 1
        future = self.loop.create_future()
        self._pending[self._id] = future
        await self.ws.send_str(json.dumps({"id": self._id, "method": method, "params": params}))
        return await future

    def send(self, method, params=None, timeout=60):
        """One DevTools command; its result."""
        reply = self._run(self._send(method, params or {}), timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def evaluate(self, expression, timeout=60):
        """The JSON value of a JavaScript expression in the page, awaited if it is a promise."""
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True,
                                                "timeout": int(timeout * 1000)}, timeout=timeout + 5)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise RuntimeError("JavaScript error: " + str(details.get("exception", {}).get("description") or details.get("text")))
        return result["result"].get("value")

    def wait_for(self, expression, timeout=60, interval=0.25):
        """Poll a JavaScript expression until it is truthy; its value."""
        import time
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout} s waiting for: {expression}")
            time.sleep(interval)

    def navigate(self, url):
        self.send("Page.navigate", {"url": url})

    def screenshot(self, path):
        import base64
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def console_errors(self):
        """Uncaught exceptions and console.error lines seen so far."""
        out = []
        for event in self.events:
            if event["method"] == "Runtime.exceptionThrown":
                out.append(str(event["params"]["exceptionDetails"].get("exception", {}).get("description")))
            elif event["method"] == "Runtime.consoleAPICalled" and event["params"]["type"] == "error":
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in event["params"]["args"]))
        return out

    def close(self):
        import os
        import shutil
        import signal
        if self.loop is not None:
            try:
                self._run(self.session.close(), 10)
            except Exception:
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(10)
        except Exception:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


def open_web_ui(browser, server_url, timeout=120):
    """Load ComfyUI's web UI in ``browser`` and wait until its app and graph are up."""
    browser.navigate(server_url.rstrip("/") + "/")
    browser.wait_for("!!(window.app && window.app.graph && window.app.canvas && window.LiteGraph)", timeout=timeout)


def ui_export(browser, workflow):
    """What the web UI itself makes of ``workflow``: load it, then ``app.graphToPrompt()``.
    Returns {"output": API prompt, "workflow": the UI's own serialisation}."""
    return browser.evaluate(f"""(async () => {{
        await app.loadGraphData({json.dumps(workflow)}, true, false, null, {{showMissingNodesDialog: false, showMissingModelsDialog: false}});
        const p = await app.graphToPrompt();
        return {{output: p.output, workflow: p.workflow}};
    }})()""")


def main():
    parser = argparse.ArgumentParser(description="Convert a UI workflow file into an API prompt (stdout).")
    parser.add_argument("workflow")
    parser.add_argument("--server", default="http://127.0.0.1:8188", help="a running ComfyUI, for /object_info")
    parser.add_argument("--object-info", help="a saved /object_info JSON instead of --server")
    opts = parser.parse_args()
    if opts.object_info:
        object_info = json.load(open(opts.object_info))
    else:
        import urllib.request
        with urllib.request.urlopen(opts.server.rstrip("/") + "/object_info", timeout=60) as r:
            object_info = json.loads(r.read())
    json.dump(to_api(json.load(open(opts.workflow)), object_info), sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
