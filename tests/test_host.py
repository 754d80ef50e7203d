"""The pack in the real ComfyUI host: as a server, in-process, and the CI entry point."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import harness.host
from conftest import ROOT

PACK_NODES = {"RFInversionSampler": "RF-Inversion Sampler",
              "ControlledReverseSampler": "Controlled Reverse Sampler",
              "RectifiedSDESampler": "Rectified SDE Sampler"}
REGION_NODE = ("RFEditRegion", "Edit Region")


def test_server_lists_the_pack_nodes_and_logs_no_import_failure(server):
    info = server.get("/object_info")
    assert len(info) > 300, "the host's own nodes are missing"
    for node_id, title in PACK_NODES.items():
        assert node_id in info, f"{node_id} not in /object_info"
        assert info[node_id]["display_name"] == title
        assert info[node_id]["category"] == "sampling/custom_sampling/samplers"
        assert info[node_id]["output"] == ["SAMPLER"]
        for name, spec in info[node_id]["input"]["required"].items():
            assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
    node_id, title = REGION_NODE
    region = info[node_id]
    assert region["display_name"] == title and region["output"] == ["MASK", "MASK"]
    assert region["output_name"] == ["region", "soft_map"]
    # the order, which every saved workflow keeps: the four connections first, then the knobs
    assert list(region["input"]["required"]) == ["model", "source", "target", "latent", "threshold", "levels", "seeds", "seed"]
    for name, spec in region["input"]["required"].items():
        assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
    log = server.log()
    assert "rf_inversion" in log, "the server did not report loading the pack"
    bad = [line for line in log.splitlines()
           if "rf_inversion" in line and ("IMPORT FAILED" in line or "Cannot import" in line or "Traceback" in line)]
    assert not bad, bad


def test_host_imports_the_pack_in_process(host, pack):
    for node_id in PACK_NODES:
        assert node_id in host.NODE_CLASS_MAPPINGS
        assert host.NODE_DISPLAY_NAME_MAPPINGS[node_id] == PACK_NODES[node_id]
    # V3 only: with NODE_CLASS_MAPPINGS the loader would skip comfy_entrypoint.
    assert not hasattr(pack, "NODE_CLASS_MAPPINGS")
    import asyncio
    extension = asyncio.run(pack.comfy_entrypoint())
    listed = asyncio.run(extension.get_node_list())
    assert [cls.GET_SCHEMA().node_id for cls in listed] == [*PACK_NODES, REGION_NODE[0]]


def test_sampler_math_imports_without_comfyui():
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('rfmath', r'{ROOT / 'sampler' / '__init__.py'}',"
            f" submodule_search_locations=[r'{ROOT / 'sampler'}'])\n"
            "m = importlib.util.module_from_spec(spec); sys.modules['rfmath'] = m; spec.loader.exec_module(m)\n"
            "assert callable(m.sample_rf_inversion)\n"
            "bad = [k for k in sys.modules if k.split('.')[0] in ('comfy', 'comfy_api', 'nodes', 'folder_paths')]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


def _ci_copy(tmp_path, test_body):
    """A copy of the CI entry point, its scripts and harness/host.py around one test file.

    These tests check the entry point (its exit status and its lines), not a host, so the copy gets no
    set-up of its own: its project host (.host/ComfyUI and .venv, which .ci/run's 0.3.75 leg runs on) is
    the host that this run uses, set up already. That is the project's 0.3.75, or COMFYUI_DIR's tree and
    its venv, the only host a fresh clone has when ``COMFYUI_DIR=... bash scripts/test.sh`` is its first
    command. The stamp is the one scripts/setup.sh writes for its project host (sha256 of the pins and
    of itself), so that its check finds the host in place; PIP_NO_INDEX keeps a set-up that did not
    find it from installing into the shared venv."""
    for rel in (".ci/run", "scripts/test.sh", "scripts/setup.sh", "scripts/setup_browser.sh", "scripts/requirements-host.txt",
                "harness/__init__.py", "harness/host.py", "tests/pytest.ini"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    (tmp_path / ".venv").symlink_to(harness.host.VENV, target_is_directory=True)
    (tmp_path / ".host").mkdir()
    (tmp_path / ".host" / "ComfyUI").symlink_to(harness.host.COMFY, target_is_directory=True)
    stamp = hashlib.sha256((ROOT / "scripts" / "requirements-host.txt").read_bytes() + (ROOT / "scripts" / "setup.sh").read_bytes())
    (tmp_path / ".host" / "setup.stamp").write_text(stamp.hexdigest() + "\n")
    (tmp_path / "tests").mkdir(exist_ok=True)
    (tmp_path / "tests" / "test_one.py").write_text(f"def test_one():\n    {test_body}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PIP_NO_INDEX"] = "1"
    result = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=300)
    assert "setup: host ready" in result.stdout and "setup: creating" not in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def test_ci_run_fails_when_a_test_fails(tmp_path):
    result = _ci_copy(tmp_path, "assert 1 == 2")
    assert result.returncode != 0, result.stdout[-2000:]
    assert "1 failed" in result.stdout


def test_ci_run_passes_when_the_tests_pass(tmp_path):
    result = _ci_copy(tmp_path, "assert 1 == 1")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout
    # The copy has no ../shared beside it: CI says so, and runs the project's host alone.
    assert "../shared is absent" in result.stdout and "ran ComfyUI 0.3.75 alone" in result.stdout
    version = harness.host.host_version()  # the host this run uses, which the copy runs on
    assert f"host: ComfyUI {version} at {tmp_path.resolve() / '.host' / 'ComfyUI'}" in result.stdout.splitlines()


def test_the_host_line_names_the_tree_this_run_uses(server):
    """The line every run prints is the tree that the tests import and the server runs."""
    import comfy.model_management
    assert harness.host.host_line() == f"host: ComfyUI {harness.host.host_version()} at {harness.host.COMFY}"
    assert Path(comfy.model_management.__file__).resolve().is_relative_to(harness.host.COMFY)
    assert server.get("/system_stats")["system"]["comfyui_version"] == harness.host.host_version()
    if os.environ.get("COMFYUI_DIR"):
        assert harness.host.COMFY == Path(os.environ["COMFYUI_DIR"]).resolve()
        assert Path(sys.executable).parent.parent == harness.host.VENV != ROOT / ".venv"


def test_comfyui_dir_outside_the_project_gets_a_venv_inside_it(tmp_path):
    """A tree anywhere is named as it is; its venv is the project's own (.host/venvs), one per tree."""
    code = "import harness.host as h; print(h.COMFY); print(h.VENV)"
    env = {**os.environ, "COMFYUI_DIR": str(tmp_path / "ComfyUI")}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[0] == str((tmp_path / "ComfyUI").resolve())
    assert Path(out[1]).parent == ROOT / ".host" / "venvs" and Path(out[1]).name.startswith("ComfyUI-")
    assert Path(out[1]) != harness.host.VENV


def test_setup_refuses_a_comfyui_dir_that_is_no_comfyui_tree(tmp_path):
    env = {**os.environ, "COMFYUI_DIR": str(tmp_path)}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"COMFYUI_DIR={tmp_path} is not a ComfyUI tree" in result.stderr and "main.py" in result.stderr


TOOLING = ("harness", "demo", "benchmarks", "workflows")

# Loads a custom node pack the way harness.host.import_host does, in a fresh process whose environment
# is the server's (the repository root on PYTHONPATH, so the tooling is importable), and prints, after
# each pack, the tooling's modules the process holds: by name, or by a file in the tooling's folders.
# harness/host.py itself comes in under another name, so that "harness" is not imported unless a pack does.
LOAD_PACKS = """
import asyncio, importlib.util, json, sys
from pathlib import Path
root, base, packs = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
spec = importlib.util.spec_from_file_location("rf_host_under_test", root / "harness" / "host.py")
host = importlib.util.module_from_spec(spec)
spec.loader.exec_module(host)
host.import_comfy()
import nodes
asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
custom = host.link_pack(base, [p for p in packs if Path(p) != host.ROOT])
folders = [root / name for name in %r]
for pack in packs:
    name = host.PACK_NAME if Path(pack) == host.ROOT else Path(pack).name
    loaded = asyncio.run(nodes.load_custom_node(str(custom / name)))
    tooling = sorted(m for m, module in list(sys.modules.items()) if m != "rf_host_under_test" and (
        m.split(".")[0] in %r
        or any(Path(getattr(module, "__file__", None) or "/").resolve().is_relative_to(f) for f in folders)))
    print(json.dumps({"pack": name, "loaded": loaded, "tooling": tooling}))
""" % (TOOLING + ("tests",), TOOLING)


def test_the_pack_imports_none_of_the_tooling(tmp_path):
    """ComfyUI loads the pack (the repository root's __init__.py, then nodes/ and sampler/ through its
    entry point) as a plain custom node: no module of harness, demo, benchmarks or workflows comes in
    with it, though each is importable there. A pack that does import one, loaded after it in the same
    process, shows that the check sees it."""
    control = tmp_path / "imports_the_tooling"
    control.mkdir()
    (control / "__init__.py").write_text("from harness import workflow_api  # noqa: F401\nNODE_CLASS_MAPPINGS = {}\n")
    out = subprocess.run([sys.executable, "-c", LOAD_PACKS, str(ROOT), str(tmp_path / "base"), str(ROOT), str(control)],
                         env=harness.host.server_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    pack, after_control = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert pack["pack"] == harness.host.PACK_NAME and pack["loaded"], out.stderr[-4000:]
    assert pack["tooling"] == [], f"loading the pack imported the tooling: {pack['tooling']}"
    assert after_control["loaded"] and "harness.workflow_api" in after_control["tooling"], after_control


def test_the_server_imports_comfyuis_nodes_and_the_harness_from_the_repository_root():
    """The test and demo node packs import harness in the server, through PYTHONPATH (appended to what
    the caller had); ComfyUI's nodes.py still comes first, from main.py's folder, not the root's nodes/."""
    assert harness.host.server_env({"PYTHONPATH": "/elsewhere"})["PYTHONPATH"].split(os.pathsep) == ["/elsewhere", str(ROOT)]
    code = "import importlib.util as u; print(u.find_spec('nodes').origin); print(u.find_spec('harness').origin)"
    # -c puts its folder first on the path, as running main.py does with ComfyUI's
    out = subprocess.run([str(harness.host.PYTHON), "-c", code], cwd=harness.host.COMFY, env=harness.host.server_env(),
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(harness.host.COMFY / "nodes.py"), str(ROOT / "harness" / "__init__.py")]


def test_the_benchmarks_report_the_host_that_the_run_uses(tmp_path):
    """benchmarks/run.py's report names the host the run imports, the one the line of every run names:
    COMFYUI_DIR's tree when it is set (here a stand-in tree with its own version), not .host/ComfyUI."""
    from benchmarks import run
    assert harness.host.host_line() == "host: ComfyUI {comfyui} at {comfyui_dir}".format(**run.host_of_run())
    tree = tmp_path / "ComfyUI"
    tree.mkdir()
    (tree / "comfyui_version.py").write_text('__version__ = "0.0.7"\n')
    code = "from benchmarks import run; from harness import host; print(run.host_of_run()); print(host.host_line())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "COMFYUI_DIR": str(tree)},
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == [str({"comfyui": "0.0.7", "comfyui_dir": str(tree.resolve())}), f"host: ComfyUI 0.0.7 at {tree.resolve()}"]
