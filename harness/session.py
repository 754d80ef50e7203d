"""An artist's long session on one server, on the demo model: the soak and its memory figure.

    .venv/bin/python -m harness.session [--repeats 5] [--out output/session]

Starts the real ComfyUI server with the pack, the demo model (demo/) and the test-only observer nodes
(tests/session_nodes), queues the shipped SD3.5 edit workflow (workflows/sd35_semantic_edit.json, as
the demo runs it) with 10 distinct settings, 5 times each, back to back through /prompt, and reports
the server's resident memory after the first 10 runs and after the last: the figure is MB per run
after warm-up. tests/test_session.py runs the same soak and asserts a generous bound on it.

The pieces the session tests share live here too: the demo-model server, and the edit prompt with
its observers (a network-call counter on each pass, a hash of the edited image).
"""
import argparse
import json
import time
import uuid
from pathlib import Path

from demo import common as C
from demo import graphs, run_demo
from harness import host

ROOT = host.ROOT

SESSION_NODES = ROOT / "tests" / "session_nodes"
TEST_NODES = ROOT / "tests" / "test_nodes"

# 10 distinct edits: every one has its own gamma, so each run inverts and edits anew (ComfyUI's cache
# keeps only what the run before shares with it: the loaders and the encoded photo). 8 steps unless
# given: the soak is about the server holding up, not about the edit's quality.
STEPS = 8
SETTINGS = [
    {"image": "three.png", "edit_text": "an 8", "gamma": 0.25, "eta": 0.9, "stop": 0.5},
    {"image": "three.png", "edit_text": "a 5", "gamma": 0.3, "eta": 0.9, "stop": 0.5},
    {"image": "three.png", "edit_text": "an 8", "gamma": 0.5, "eta": 0.9, "stop": 0.25},
    {"image": "three.png", "edit_text": "a 2", "gamma": 0.2, "eta": 0.7, "stop": 0.5, "solver": "euler"},
    {"image": "three.png", "edit_text": "an 8", "gamma": 0.35, "eta": 1.0, "stop": 0.5, "solver": "midpoint", "steps": 4},
    {"image": "stroke_seven.png", "edit_text": "a 7", "gamma": 0.4, "eta": 0.9, "stop": 0.5},
    {"image": "stroke_seven.png", "edit_text": "a 1", "gamma": 0.15, "eta": 0.5, "stop": 0.5},
    {"image": "astronaut.png", "edit_text": "a 4", "gamma": 0.1, "eta": 0.9, "stop": 0.5},
    {"image": "astronaut.png", "edit_text": "", "gamma": 0.0, "eta": 0.0, "cfg": 1.0},
    {"image": "three.png", "edit_text": "a 9", "gamma": 0.45, "eta": 0.8, "stop": 0.4, "steps": 12},
]


def start_demo_server(base, extra_args=(), log_path=None):
    """The real server on ``base`` with the pack, the demo model and its inputs, the demo's prompt node,
    and the test-only nodes (the tiny test models and the session observers)."""
    base = Path(base)
    run_demo.prepare_base(base)
    server = host.start_server(base, extra_packs=[C.DEMO / "demo_nodes", TEST_NODES, SESSION_NODES],
                                     log_path=log_path, extra_args=extra_args)
    server.base = base
    return server


def ids_of(prompt):
    """{"inversion"/"reverse": SamplerCustomAdvanced id, ..., "decode": the edit's VAEDecode id}."""
    kinds = {"RFInversionSampler": "inversion", "ControlledReverseSampler": "reverse"}
    ids = {}
    for node_id, node in prompt.items():
        if node["class_type"] == "SamplerCustomAdvanced":
            ids[kinds[prompt[node["inputs"]["sampler"][0]]["class_type"]]] = node_id
        if node["class_type"] == "SaveImage" and not node["inputs"]["filename_prefix"].endswith("beside_input"):
            ids["decode"] = node["inputs"]["images"][0]
    return ids


def observed(prompt):
    """The prompt with observers that change nothing: a call counter between the model and each pass's
    guider (labels "inversion" and "reverse"), and a hash of the edited image (node "hash")."""
    ids = ids_of(prompt)
    for n, label in enumerate(("inversion", "reverse")):
        guider = prompt[prompt[ids[label]]["inputs"]["guider"][0]]
        prompt[f"count_{label}"] = {"class_type": "RFTestCountCalls", "inputs": {"model": guider["inputs"]["model"], "label": label}}
        guider["inputs"]["model"] = [f"count_{label}", 0]
    prompt["hash"] = {"class_type": "RFTestHash", "inputs": {"image": [ids["decode"], 0]}}
    return prompt


def edit_prompt(object_info, name="session", **settings):
    """The shipped SD3.5 edit workflow on the demo model (demo/graphs.py), with the observers; in the
    paper's wiring (its Edit Region taken out) unless ``region`` and ``source_text`` say otherwise."""
    return observed(graphs.edit_prompt(object_info, name=name, **{"region": False, **settings}))


def run(server, prompt, client_id="", timeout=300):
    """Queue a prompt and wait for it; returns its /history entry. Raises if the server refuses it."""
    prompt_id, refused = server.submit(prompt, client_id)
    if refused:
        raise RuntimeError(f"the server refused the prompt: {json.dumps(refused)[:2000]}")
    return server.wait(prompt_id, timeout=timeout)


def sha256(entry):
    """The hash of the edited image in a history entry (None if it has none)."""
    out = entry.get("outputs", {}).get("hash")
    return out["sha256"][0] if out else None


def cached(entry):
    """The node ids that the run took from ComfyUI's cache (its execution_cached message)."""
    return {n for kind, data in entry["status"]["messages"] if kind == "execution_cached" for n in data["nodes"]}


def files_outside(base, keep=("output", "temp")):
    """Every file under the base directory and the ComfyUI install, except in ComfyUI's output and temp
    folders and the server's log: {path: size}."""
    base = Path(base)
    found = {}
    for top in (base, host.COMFY):
        for path in top.rglob("*"):
            if path.is_file() and not (top == base and path.relative_to(base).parts[0] in keep) \
                    and path.suffix != ".log" and "__pycache__" not in path.parts:
                found[str(path)] = path.stat().st_size
    return found


def queue_all(server, prompts, client_id, timeout=600):
    """Queue the prompts back to back, then wait for each; returns their history entries in order."""
    ids = []
    for prompt in prompts:
        prompt_id, refused = server.submit(prompt, client_id)
        if refused:
            raise RuntimeError(f"the server refused a soak prompt: {json.dumps(refused)[:2000]}")
        ids.append(prompt_id)
    deadline = time.monotonic() + timeout
    return [server.wait(prompt_id, timeout=max(deadline - time.monotonic(), 1)) for prompt_id in ids]


def soak(server, settings=SETTINGS, repeats=5, warmup=10):
    """len(settings) x repeats edits through /prompt, the settings in turn (each run differs from the
    one before, so nothing of the edit comes from the cache). Queued in two back-to-back batches, the
    first ``warmup`` runs and then the rest, so that the memory after warm-up is read on an idle server.
    Returns the report: the runs' statuses and image hashes by setting, the memory, the queue and the
    files written outside ComfyUI's output and temp folders."""
    info = server.get("/object_info")
    client_id = uuid.uuid4().hex
    order = [i for _ in range(repeats) for i in range(len(settings))]
    prompts = [edit_prompt(info, name=f"soak/setting_{i}", **{"steps": STEPS, **settings[i]}) for i in order]
    before = files_outside(server.base)
    start = time.monotonic()
    entries = queue_all(server, prompts[:warmup], client_id)
    rss_warm = server.rss_mb()
    entries += queue_all(server, prompts[warmup:], client_id)
    seconds = time.monotonic() - start
    rss_end = server.rss_mb()
    after = files_outside(server.base)
    hashes = {}
    for i, entry in zip(order, entries):
        hashes.setdefault(i, []).append(sha256(entry))
    runs_after = len(prompts) - warmup
    return {
        "runs": len(entries), "seconds": round(seconds, 1),
        "statuses": [e["status"]["status_str"] for e in entries],
        "hashes": hashes,
        "edits_from_cache": sum(bool(cached(e) & set(ids_of(p).values())) for e, p in zip(entries, prompts)),
        "rss_after_warmup_mb": round(rss_warm, 1), "rss_after_last_mb": round(rss_end, 1),
        "mb_per_run_after_warmup": round((rss_end - rss_warm) / runs_after, 3),
        "queue": server.get("/queue"),
        "new_files_outside_output": sorted(set(after) - set(before)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "output" / "session"))
    opts = parser.parse_args()
    server = start_demo_server(Path(opts.out) / "comfy_base")
    try:
        report = soak(server, repeats=opts.repeats)
    finally:
        server.stop()
    same = all(len(set(h)) == 1 for h in report["hashes"].values())
    print(f"soak: {report['runs']} edits ({len(SETTINGS)} settings x {opts.repeats}) in {report['seconds']} s; "
          f"statuses {sorted(set(report['statuses']))}; same settings bit-identical: {same}; "
          f"edits taken from the cache: {report['edits_from_cache']}")
    print(f"resident memory: {report['rss_after_warmup_mb']} MB after the first 10 runs, "
          f"{report['rss_after_last_mb']} MB after the last")
    print(f"MB per run after warm-up: {report['mb_per_run_after_warmup']}")
    print(f"queue at the end: {len(report['queue']['queue_running'])} running, {len(report['queue']['queue_pending'])} pending; "
          f"new files outside output/ and temp/: {report['new_files_outside_output'] or 'none'}")


if __name__ == "__main__":
    main()
