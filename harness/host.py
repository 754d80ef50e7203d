"""The real ComfyUI host for this pack: a headless server in a child process, or the host in-process.
Run from the repository root:

    .venv/bin/python -m harness.host serve [--port 8188]     start it, print the address, wait
    .venv/bin/python -m harness.host start --port N --base DIR  start it in the background, print its pid
    .venv/bin/python -m harness.host stop --pid PID             stop it
    python3 -m harness.host host                                  print which ComfyUI a run uses
    python3 -m harness.host paths                                 its tree and venv, for scripts/setup.sh

The host is ``.host/ComfyUI`` (0.3.75, made by scripts/setup.sh) with the venv ``.venv``, or the
ComfyUI tree that the environment variable COMFYUI_DIR names, with a venv of its own under
``.host/venvs/``. The pack is linked into ``BASE/custom_nodes/`` under the name ``rf_inversion``.
Tests, the demo and the benchmarks import this module for the same start-up. Only the standard
library at module level: scripts/setup.sh runs it with the system python, before the venv exists.
"""
import argparse
import asyncio
import json
import os
import hashlib
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACK_NAME = "rf_inversion"


def host_paths(comfyui_dir=None):
    """(the ComfyUI tree, its venv): the project's own 0.3.75 with .venv, or a tree given by
    COMFYUI_DIR with a venv of its own, named after the tree's path so that two trees never share one."""
    comfyui_dir = comfyui_dir if comfyui_dir is not None else os.environ.get("COMFYUI_DIR", "")
    if not comfyui_dir:
        return ROOT / ".host" / "ComfyUI", ROOT / ".venv"
    tree = Path(comfyui_dir).expanduser().resolve()
    tag = hashlib.sha256(str(tree).encode()).hexdigest()[:8]
    return tree, ROOT / ".host" / "venvs" / f"{tree.name}-{tag}"


COMFY, VENV = host_paths()
PYTHON = VENV / "bin" / "python"


def host_version(comfy=None):
    """The tree's ComfyUI version, read from its comfyui_version.py (without importing the host)."""
    text = (Path(comfy or COMFY) / "comfyui_version.py").read_text()
    found = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", text)
    if not found:
        raise RuntimeError(f"no __version__ in {comfy or COMFY}/comfyui_version.py")
    return found.group(1)


def host_line():
    return f"host: ComfyUI {host_version()} at {COMFY}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def link_pack(base_dir, extra_packs=()):
    """Make ``base_dir`` a ComfyUI base directory with this pack (and ``extra_packs``) linked in."""
    custom = Path(base_dir) / "custom_nodes"
    custom.mkdir(parents=True, exist_ok=True)
    for name, target in [(PACK_NAME, ROOT), *[(Path(p).name, Path(p)) for p in extra_packs]]:
        link = custom / name
        if link.is_symlink() and link.resolve() != Path(target).resolve():
            link.unlink()
        if not link.exists():
            link.symlink_to(Path(target).resolve(), target_is_directory=True)
    return custom


class Server:
    """A running ComfyUI server, stopped by its process id."""

    def __init__(self, process, port, log_path, base_dir):
        self.process, self.port, self.log_path, self.base_dir = process, port, Path(log_path), Path(base_dir)
        self.url = f"http://127.0.0.1:{port}"

    @property
    def pid(self):
        return self.process.pid

    def get(self, path, timeout=30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def send(self, path, payload, timeout=30):
        """POST ``payload`` as JSON; the answer's body, as bytes."""
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.read()

    def post(self, path, payload, timeout=30):
        return json.loads(self.send(path, payload, timeout))

    def submit(self, prompt, client_id=""):
        """POST /prompt: (its prompt id, None), or (None, the server's answer) when it refuses the prompt."""
        try:
            return self.post("/prompt", {"prompt": prompt, "client_id": client_id})["prompt_id"], None
        except urllib.error.HTTPError as e:
            if e.code != 400:
                raise
            return None, json.loads(e.read())

    def interrupt(self, prompt_id):
        """POST /interrupt for one prompt: the server interrupts it only while it runs (it answers no JSON)."""
        self.send("/interrupt", {"prompt_id": prompt_id})

    def rss_mb(self):
        """The server process's resident memory, in MB (from /proc: Linux only)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for process {self.pid}")

    def messages(self, client_id):
        """The websocket messages that the server sends to ``client_id`` (prompts queued with it)."""
        return Messages(self.url.replace("http://", "ws://") + f"/ws?clientId={client_id}")

    def wait(self, prompt_id, timeout=300, poll=0.25):
        """The /history entry of a queued prompt, once it has finished (status "success" or "error")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("status_str") in ("success", "error"):
                return entry
            time.sleep(poll)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s:\n{self.log()[-3000:]}")

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self):
        stop_pid(self.process.pid)


class Messages:
    """A websocket client in a background thread: the server's JSON messages, in order, on a queue
    (the binary preview frames are skipped). aiohttp is the host's own dependency."""

    def __init__(self, ws_url, timeout=30):
        import aiohttp
        self.aiohttp, self.queue = aiohttp, queue.Queue()
        self.loop = asyncio.new_event_loop()
        self.connected, self.error = threading.Event(), None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.read(ws_url),), daemon=True)
        self.thread.start()
        if not self.connected.wait(timeout) or self.error:
            raise RuntimeError(f"no websocket at {ws_url}: {self.error}")

    async def read(self, ws_url):
        try:
            async with self.aiohttp.ClientSession() as session:
                async with session.ws_connect(ws_url) as ws:
                    self.ws = ws
                    self.connected.set()
                    async for message in ws:
                        if message.type == self.aiohttp.WSMsgType.TEXT:
                            self.queue.put(json.loads(message.data))
        except Exception as e:  # reported by __init__ or next()
            self.error = e
            self.connected.set()
        self.queue.put(None)

    def next(self, timeout=60):
        """The next message, {"type": ..., "data": ...}; raises when the socket closed or none came."""
        message = self.queue.get(timeout=timeout)
        if message is None:
            raise ConnectionError(f"the websocket closed: {self.error}")
        return message

    def until(self, predicate, timeout=60):
        """Read messages until one satisfies ``predicate``; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.next(max(deadline - time.monotonic(), 0.01))
            if predicate(message):
                return message

    def close(self):
        if self.thread.is_alive() and getattr(self, "ws", None) is not None:
            asyncio.run_coroutine_threadsafe(self.ws.close(), self.loop).result(10)
        self.thread.join(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def server_env(environ=None):
    """The server's environment: this one, with the repository root after any PYTHONPATH already set, so
    that the node packs the tests and the demo load beside the pack (tests/test_nodes, demo/demo_nodes)
    import ``harness``. It comes after ComfyUI's own tree (main.py's folder, first on the server's import
    path), so the root's ``nodes/`` package never hides ComfyUI's ``nodes.py``."""
    env = dict(os.environ if environ is None else environ)
    env["PYTHONPATH"] = os.pathsep.join([p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p] + [str(ROOT)])
    return env


def start_server(base_dir, port=None, extra_packs=(), log_path=None, timeout=300, extra_args=()):
    """Start ``main.py --cpu`` headless with the pack linked in, and wait until /object_info answers."""
    if not (COMFY / "main.py").exists():
        raise SystemExit(f"ComfyUI is not set up at {COMFY}: run scripts/setup.sh first")
    base_dir = Path(base_dir)
    link_pack(base_dir, extra_packs)
    port = port or free_port()
    log_path = Path(log_path or base_dir / "comfyui.log")
    log = open(log_path, "w")
    command = [str(PYTHON), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
               "--base-directory", str(base_dir), *extra_args]
    process = subprocess.Popen(command, cwd=COMFY, env=server_env(), stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    server = Server(process, port, log_path, base_dir)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with code {process.returncode}:\n{server.log()[-4000:]}")
            try:
                server.get("/object_info/KSampler", timeout=5)
                return server
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"ComfyUI did not answer /object_info in {timeout} s:\n{server.log()[-4000:]}")
    except BaseException:  # Ctrl-C while it starts too: the server runs in its own session and would outlive us
        server.stop()
        raise


def stop_pid(pid, timeout=20):
    """Stop the server's process group: SIGTERM, then SIGKILL if it lingers."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:  # not our child: poll for its end
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


_IN_PROCESS = {}


def import_comfy(cpu=True):
    """Make the host's modules importable in this process, without loading any nodes: on the CPU, or
    with ``cpu=False`` on the device that ComfyUI's model management picks (benchmarks/device.py)."""
    # First, before anything imports ``nodes``: the repository root on the path holds the pack's nodes/.
    if sys.path[:1] != [str(COMFY)]:
        sys.path.insert(0, str(COMFY))
    loaded = sys.modules.get("nodes")
    if loaded is not None and not Path(getattr(loaded, "__file__", "") or "").resolve().is_relative_to(COMFY.resolve()):
        raise RuntimeError(f"'nodes' was imported from {getattr(loaded, '__file__', loaded)} before the host: "
                           f"import_comfy must run before anything imports ComfyUI's nodes.py")
    import utils.extra_config  # noqa: F401  as main.py does first: ComfyUI's utils package, not comfy/utils.py
    from comfy.cli_args import args
    if cpu:
        args.cpu = True  # before comfy.model_management is imported, or it looks for CUDA
    import comfy.model_management  # noqa: F401


def import_host(extra_packs=()):
    """Import the real host into this process, on the CPU, with the core custom-sampling nodes and
    this pack loaded the way ComfyUI loads custom nodes. Returns ComfyUI's ``nodes`` module and the
    pack's module."""
    if "nodes" in _IN_PROCESS:
        return _IN_PROCESS["nodes"], _IN_PROCESS["pack"]
    import_comfy()
    import nodes

    base = ROOT / ".host" / "inprocess"
    custom = link_pack(base, extra_packs)
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    for pack in sorted(custom.iterdir()):
        if not asyncio.run(nodes.load_custom_node(str(pack))):
            raise RuntimeError(f"ComfyUI could not load the custom node pack at {pack}")
    _IN_PROCESS["nodes"] = nodes
    _IN_PROCESS["pack"] = sys.modules[str(custom / PACK_NAME).replace(".", "_x_")]
    return _IN_PROCESS["nodes"], _IN_PROCESS["pack"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["serve", "start", "stop", "host", "paths"])
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--base", default=str(ROOT / ".host" / "base"), help="ComfyUI base directory")
    parser.add_argument("--pid", type=int)
    opts = parser.parse_args()
    if opts.command == "paths":
        print(f"COMFY={shlex.quote(str(COMFY))}\nVENV={shlex.quote(str(VENV))}")
        return
    if opts.command == "host":
        print(host_line(), flush=True)
        return
    if opts.command == "stop":
        stop_pid(opts.pid)
        return
    print(f"starting ComfyUI with the pack (base directory {opts.base}) ...", flush=True)
    server = start_server(opts.base, opts.port or (8188 if opts.command == "serve" else None))
    if opts.command == "start":
        print(server.pid)
        return
    print(f"ComfyUI is running at {server.url}  (log: {server.log_path}; Ctrl-C stops it)", flush=True)
    try:
        server.process.wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
