"""An artist's long session on the real server, on the demo model (harness/session.py): the re-edit
cache, a soak, interrupts, ComfyUI's other cache modes, and Ctrl-C on the demo.

The shipped SD3.5 edit workflow runs as the demo runs it, with observers that change nothing: a
counter of network calls between the model and each pass's guider, and a hash of the edited image.
"""
import os
import select
import shutil
import signal
import subprocess
import time
import uuid

import pytest
from conftest import ROOT
from demo import common as C
from harness import session

EDIT = {"image": "three.png", "edit_text": "an 8", "gamma": 0.25, "eta": 0.9, "stop": 0.5, "steps": 8}
network_calls = C.rf_math().network_calls


def calls(server):
    return server.get("/rf_test/calls")


def run_counted(server, prompt):
    """Run a prompt; returns its history entry and the network calls of each pass during the run."""
    before = calls(server)
    entry = session.run(server, prompt)
    after = calls(server)
    assert entry["status"]["status_str"] == "success", entry["status"]
    return entry, {k: after.get(k, 0) - before.get(k, 0) for k in ("inversion", "reverse")}


def test_a_new_prompt_on_the_same_photo_costs_only_the_reverse_pass(demo_server):
    info = demo_server.get("/object_info")
    prompt = lambda **changes: session.edit_prompt(info, name="re_edit", **{**EDIT, **changes})  # noqa: E731
    ids = session.ids_of(prompt())
    per_pass = network_calls("fireflow", EDIT["steps"])
    first, _ = run_counted(demo_server, prompt())
    second, counted = run_counted(demo_server, prompt(edit_text="a 5"))
    assert ids["inversion"] in session.cached(second) and ids["reverse"] not in session.cached(second)
    assert counted == {"inversion": 0, "reverse": per_pass}
    assert session.sha256(second) != session.sha256(first)
    for changes in ({"edit_text": "a 5", "gamma": 0.3}, {"edit_text": "a 5", "gamma": 0.3, "image": "stroke_seven.png"}):
        entry, counted = run_counted(demo_server, prompt(**changes))
        assert ids["inversion"] not in session.cached(entry), changes
        assert counted == {"inversion": per_pass, "reverse": per_pass}, changes


def test_a_linked_re_edit_costs_only_the_reverse_and_matches_a_full_run(demo_server):
    """ComfyUI caches the inversion, and the pack keeps the exact path's record (docs/exact_path.md): a new
    edit text re-runs only the reverse, through the record, and gives the image a run that re-inverts gives."""
    info = demo_server.get("/object_info")
    # the same pixels under a name of its own: nothing here is cached for the tests after this one
    shutil.copy(C.INPUTS / "three.png", demo_server.base / "input" / "linked_three.png")
    prompt = lambda **changes: session.edit_prompt(info, name="linked", **{**EDIT, "image": "linked_three.png", "linked": True,  # noqa: E731
                                                                           **changes})
    ids = session.ids_of(prompt())
    per_pass = network_calls("fireflow", EDIT["steps"])
    recording = network_calls("fireflow", EDIT["steps"], record_path=True)
    first, counted = run_counted(demo_server, prompt())
    assert counted == {"inversion": recording, "reverse": per_pass}
    re_edit, counted = run_counted(demo_server, prompt(edit_text="a 5"))
    assert ids["inversion"] in session.cached(re_edit) and ids["reverse"] not in session.cached(re_edit)
    assert counted == {"inversion": 0, "reverse": per_pass}
    run_counted(demo_server, prompt(gamma=0.3))  # the cache now holds another inversion
    fresh, counted = run_counted(demo_server, prompt(edit_text="a 5"))
    assert counted == {"inversion": recording, "reverse": per_pass}
    assert session.sha256(fresh) == session.sha256(re_edit) != session.sha256(first)
    unlinked, _ = run_counted(demo_server, prompt(edit_text="a 5", linked=False))
    assert session.sha256(unlinked) != session.sha256(re_edit)


def test_soak_of_50_edits(demo_server):
    """10 settings x 5 through /prompt: harness/session.py reports the memory figure; here only a bound
    that a loaded 2-core machine cannot break (the figure is about 0.01-0.03 MB per run)."""
    report = session.soak(demo_server)
    assert report["statuses"] == ["success"] * 50
    assert report["edits_from_cache"] == 0  # every run computed its edit: the repeats are real
    for setting, hashes in report["hashes"].items():
        assert len(hashes) == 5 and None not in hashes and len(set(hashes)) == 1, (setting, hashes)
    assert len({h[0] for h in report["hashes"].values()}) == 10
    growth = report["rss_after_last_mb"] - report["rss_after_warmup_mb"]
    assert growth < 200, f"resident memory grew by {growth:.0f} MB over 40 runs after warm-up: {report}"
    assert report["queue"] == {"queue_running": [], "queue_pending": []}
    assert report["new_files_outside_output"] == []


INTERRUPT_STEPS = 400  # enough that a pass lasts well past the step at which the test interrupts it
INTERRUPT_AT = 10


@pytest.fixture(scope="module")
def uninterrupted(demo_server):
    """The long edit run through, on a copy of the photo of its own name (nothing of it is cached for
    the interrupt tests, whose copies have other names): its image hash."""
    shutil.copy(C.INPUTS / "three.png", demo_server.base / "input" / "interrupt_reference.png")
    prompt = session.edit_prompt(demo_server.get("/object_info"), name="interrupt",
                                 **{**EDIT, "image": "interrupt_reference.png", "steps": INTERRUPT_STEPS})
    entry = session.run(demo_server, prompt)
    assert entry["status"]["status_str"] == "success", entry["status"]
    return session.sha256(entry)


@pytest.mark.parametrize("during", ["reverse", "inversion"])
def test_interrupt_then_queue_again(demo_server, uninterrupted, during):
    image = f"interrupt_{during}.png"  # the same pixels under a new name: nothing of it is cached yet
    shutil.copy(C.INPUTS / "three.png", demo_server.base / "input" / image)
    prompt = session.edit_prompt(demo_server.get("/object_info"), name="interrupt",
                                 **{**EDIT, "image": image, "steps": INTERRUPT_STEPS})
    ids, client = session.ids_of(prompt), uuid.uuid4().hex
    with demo_server.messages(client) as ws:
        prompt_id, refused = demo_server.submit(prompt, client)
        assert not refused, refused
        progress = lambda m: m["type"] == "progress" and m["data"]["prompt_id"] == prompt_id  # noqa: E731
        # a bound on the wait, not on speed: the reverse starts after a whole 400-step inversion, and on a
        # loaded machine that passed the default 60 s
        at = ws.until(lambda m: progress(m) and m["data"]["node"] == ids[during] and m["data"]["value"] >= INTERRUPT_AT,
                      timeout=300)
        demo_server.interrupt(prompt_id)
        steps_seen = [at["data"]["value"]]
        while True:  # the steps that still report, up to the prompt's end
            end = ws.next()
            if progress(end):
                steps_seen.append(end["data"]["value"])
            elif end["type"] in ("execution_interrupted", "execution_success", "execution_error") \
                    and end["data"]["prompt_id"] == prompt_id:
                break
    assert end["type"] == "execution_interrupted", end
    assert end["data"]["node_id"] == ids[during]
    assert max(steps_seen) < INTERRUPT_STEPS, "the pass ran to its end"
    status = demo_server.wait(prompt_id, timeout=60)["status"]
    assert status["status_str"] == "error" and "execution_interrupted" in [m[0] for m in status["messages"]]
    assert demo_server.process.poll() is None and demo_server.get("/queue")["queue_running"] == []
    # Queued again, it re-runs what the interrupt cut short (the inversion is cached if it had finished).
    entry = session.run(demo_server, prompt)
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert (ids["inversion"] in session.cached(entry)) == (during == "reverse")
    assert ids["reverse"] not in session.cached(entry)
    assert session.sha256(entry) == uninterrupted


CACHE_MODES = {"cache-lru-1": ["--cache-lru", "1"], "cache-lru-50": ["--cache-lru", "50"], "cache-none": ["--cache-none"]}


@pytest.fixture(scope="module", params=list(CACHE_MODES))
def cache_server(request, tmp_path_factory):
    """A demo server under one of ComfyUI's other cache modes: --cache-lru 1 keeps only what the run before
    shares with this one, --cache-lru 50 keeps the last 50 node outputs, --cache-none keeps nothing."""
    server = session.start_demo_server(tmp_path_factory.mktemp(request.param), extra_args=CACHE_MODES[request.param])
    server.mode = request.param
    yield server
    server.stop()


def test_the_other_cache_modes(demo_server, cache_server):
    """The same edits, re-edit and repeat give the same images as under the default cache; --cache-lru
    keeps the inversion (and at 50 a repeated edit whole), --cache-none re-runs everything."""
    info = demo_server.get("/object_info")
    edits = [{**EDIT, "edit_text": text} for text in ("an 8", "a 5", "an 8")]
    prompts = [session.edit_prompt(info, name="cache_mode", **e) for e in edits]
    expected = [session.sha256(session.run(demo_server, p)) for p in prompts]
    runs = [run_counted(cache_server, p) for p in prompts]
    assert [session.sha256(entry) for entry, _ in runs] == expected
    per_pass = network_calls("fireflow", EDIT["steps"])
    counted = [c for _, c in runs]
    if cache_server.mode == "cache-none":
        assert counted == [{"inversion": per_pass, "reverse": per_pass}] * 3
    else:
        repeat = {"cache-lru-1": {"inversion": 0, "reverse": per_pass}, "cache-lru-50": {"inversion": 0, "reverse": 0}}
        assert counted == [{"inversion": per_pass, "reverse": per_pass}, {"inversion": 0, "reverse": per_pass},
                           repeat[cache_server.mode]]


# The exact path across runs: photo A edited, re-edited, then photo B through an RF-Inversion Sampler of the
# same settings, then A re-edited again. Before the records had a store of their own, the last run failed
# under --cache-lru 50 (A's inverted latent cached, the one SAMPLER holding B's record).
LINKED_RUNS = [("a", "an 8"), ("a", "a 5"), ("b", "an 8"), ("a", "a 2")]
LINKED_PHOTOS = {"a": "three.png", "b": "stroke_seven.png"}


def linked_prompt(info, server, photo, edit_text, name):
    """The linked edit of one of LINKED_PHOTOS, under the photo's copy named ``name`` on ``server``."""
    shutil.copy(C.INPUTS / LINKED_PHOTOS[photo], server.base / "input" / name)
    return session.edit_prompt(info, name="linked_cache", **{**EDIT, "image": name, "edit_text": edit_text,
                                                              "linked": True})


@pytest.fixture(scope="module")
def linked_images(demo_server):
    """The images of LINKED_RUNS, each made by a run that inverts anew (its photo a copy of a name of its
    own: nothing of it is cached)."""
    info = demo_server.get("/object_info")
    entries = [run_counted(demo_server, linked_prompt(info, demo_server, photo, text, f"linked_ref_{i}.png"))[0]
               for i, (photo, text) in enumerate(LINKED_RUNS)]
    return [session.sha256(entry) for entry in entries]


def test_a_linked_re_edit_under_the_other_cache_modes(cache_server, linked_images):
    """Each run gives an image, the image of a run that inverts anew, whether the inversion ran again or came
    from the cache, and the record is found by what it is of, not by the SAMPLER that made it."""
    info = cache_server.get("/object_info")
    runs = [run_counted(cache_server, linked_prompt(info, cache_server, photo, text, f"linked_{photo}.png"))
            for photo, text in LINKED_RUNS]
    assert [session.sha256(entry) for entry, _ in runs] == linked_images
    assert len(set(linked_images)) == 4
    recording = network_calls("fireflow", EDIT["steps"], record_path=True)
    inverted = [c["inversion"] for _, c in runs]
    assert [c["reverse"] for _, c in runs] == [network_calls("fireflow", EDIT["steps"])] * 4
    # which inversions the cache served: --cache-lru 1 drops A's when B runs, --cache-lru 50 keeps it
    assert inverted == {"cache-lru-1": [recording, 0, recording, recording], "cache-lru-50": [recording, 0, recording, 0],
                        "cache-none": [recording] * 4}[cache_server.mode]


def descendants(pid):
    """The process ids below ``pid`` (from /proc: each process's parent)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def processes_naming(text):
    """The running processes whose command line holds ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if text in open(f"/proc/{entry}/cmdline", "rb").read().decode(errors="replace"):
                    found.append(int(entry))
            except OSError:
                pass
    return found


def alive(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_ctrl_c_on_the_demo_leaves_no_process(tmp_path):
    """Ctrl-C in a terminal sends SIGINT to the foreground process group: here, the group of
    scripts/demo.sh, sent while ComfyUI runs the demo's first prompt. No ComfyUI or Chromium process
    of its own may be left: none of the processes below demo.sh at that moment, and none that names
    its output folder (the server's base directory is in it)."""
    out = tmp_path / "demo"
    demo = subprocess.Popen(["bash", str(ROOT / "scripts" / "demo.sh"), "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        lines, deadline = b"", time.monotonic() + 180
        log = out / "comfyui.log"
        while b"2/5" not in lines or "got prompt" not in (log.read_text(errors="replace") if log.exists() else ""):
            assert time.monotonic() < deadline and demo.poll() is None, lines.decode(errors="replace")
            if select.select([demo.stdout], [], [], 0.2)[0]:
                lines += os.read(demo.stdout.fileno(), 65536)
        ours = set(descendants(demo.pid)) | set(processes_naming(str(out)))
        assert ours, "no ComfyUI process found under the demo"
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(60)
        lines += demo.stdout.read()
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    deadline = time.monotonic() + 30  # the server gets SIGTERM and up to 20 s before SIGKILL
    while time.monotonic() < deadline and [p for p in ours if alive(p)]:
        time.sleep(0.2)
    left = [p for p in ours | set(processes_naming(str(out))) if alive(p)]
    names = {p: open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")[:200]
             for p in left if os.path.exists(f"/proc/{p}")}
    assert not left, f"left running after Ctrl-C: {names}\n{lines.decode(errors='replace')[-2000:]}"
