"""Issue 20: saved workflows and API prompts without the Edit Region give the same images as before,
bit for bit; and they keep doing so as the pack changes.

"Before" is the pack at BEFORE, the last commit whose nodes/ and sampler/ predate the region (7a5d877,
the tooling's move after it, has the same ones; the region came in c792539). Its __init__.py, nodes/
and sampler/ are taken out of git into a temporary folder, so the comparison needs the repository's
history (CI's full clone has it; a shallow clone or an export fails here, by name, and is not skipped).

- In-process: that copy is imported under another package name (``rf_before``) and its node classes'
  ``execute`` give its SAMPLERs; the current pack's come from the host's registry. The same graphs of
  the host's own nodes (BasicScheduler, FlipSigmas, SplitSigmas, BasicGuider/CFGGuider, DisableNoise/
  RandomNoise, SamplerCustomAdvanced, SetLatentNoiseMask; VAEEncode/VAEDecode on the demo model) run
  with either pack's SAMPLERs, and every latent and image is compared with torch.equal. On an exact
  field in Flux's model class (harness/exact_models.py), at the paper's 28 steps: each solver, the
  paper's setting (gamma 0.5, eta 0.9, stop 0.25), a noise mask on the inverted latent and on the
  photo, an eta ramp, the exact path (record_path on, the reverse's inversion input wired), the
  stochastic reverse and the Rectified SDE Sampler. On the emoji demo model's network (demo/), at 8
  steps: the paper's setting, the exact path with fireflow and a mask, the stochastic reverse and the
  Rectified SDE Sampler. In Wan 2.2 5B's class (video latents): a masked partial-strength edit.
- On the real server: two demo servers (harness/session.py's, on the emoji model), one with the copy as
  its ``rf_inversion``, one with this pack. The shipped SD3.5 workflow as it was at BEFORE and the Flux
  workflow that release 0.1 saved (tests/data), converted by harness/workflow_api.py's to_api (either
  server's /object_info gives the same API prompt), hash the same edited image (RFTestHash: the
  tensor's bytes) on both servers; on the current server the same prompt re-run (its photo a fresh
  copy, so ComfyUI's cache serves nothing that depends on it) and the current shipped SD3.5 workflow
  with its Edit Region taken out (demo/graphs.py's configure(region=False)) hash the same too. That
  last one also fails if the shipped file's own settings change: then say so, do not re-pin the hash.
"""
import concurrent.futures
import importlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest
import torch

from demo import common as C
from demo import graphs
from demo import scenes as S
from harness import exact_models as em
from harness import host, session
from harness.workflow_api import to_api

BEFORE = "5c3fe73"  # "Exact path: the record's final state is the last state the inversion already kept"
PACK_FILES = ("__init__.py", "nodes", "sampler")
SAMPLERS = ("RFInversionSampler", "ControlledReverseSampler", "RectifiedSDESampler")
SCENE, EDIT = "a tangerine and a cat on blue", "a tangerine and a dog on blue"  # demo/inputs/scene.png
V01_WORKFLOW = host.ROOT / "tests" / "data" / "flux_semantic_edit_v0.1.json"  # saved by release 0.1


def git(*args):
    try:
        done = subprocess.run(["git", "-C", str(host.ROOT), *args], capture_output=True)
    except OSError as e:  # no git
        done = subprocess.CompletedProcess(args, 1, b"", str(e).encode())
    if done.returncode:
        why = done.stderr.decode(errors="replace").strip()
        pytest.fail(f"the pack before the Edit Region (commit {BEFORE}) cannot be read from git ({why}): this test "
                    "compares against it, so it needs the repository with its history (a full git clone, not a "
                    "shallow clone or an export)", pytrace=False)
    return done.stdout


def extract_before(dest):
    """The pack's files at BEFORE, written under ``dest`` (a folder that a server or import takes as the pack)."""
    commit = git("rev-parse", "--verify", f"{BEFORE}^{{commit}}").decode().strip()
    archive = git("archive", "--format=tar", commit, *PACK_FILES)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return dest


def import_before(path, name="rf_before"):
    """The copy at ``path`` imported as the package ``name``: its node classes by node id."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path / "__init__.py", submodule_search_locations=[str(path)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    nodes = importlib.import_module(f"{name}.nodes")
    return {cls.define_schema().node_id: cls for cls in nodes.NODES}


@pytest.fixture(scope="module")
def before_pack(tmp_path_factory):
    return extract_before(tmp_path_factory.mktemp("before") / "rf_inversion")


@pytest.fixture(scope="module")
def packs(before_pack, node):
    old = import_before(before_pack)
    assert "RFEditRegion" not in old and set(SAMPLERS) <= set(old), sorted(old)
    new = {n: node(n) for n in SAMPLERS}
    for n in SAMPLERS:  # two different packs, the old one from the temporary copy
        assert old[n] is not new[n] and sys.modules[old[n].__module__].__file__.startswith(str(before_pack))
    return {"now": new, "before": old}


@pytest.fixture
def one_thread():
    """Torch on one thread for the in-process runs: both packs run under it, and on a shared machine two
    threads' waits on each other cost more than these small tensors' work (CI's result is the same)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo(host):
    from demo import evaluate
    return evaluate.Pipeline()


# --- in-process: the same graphs with either pack's SAMPLERs --------------------------------------

PAPER = {"gamma": 0.5, "eta": 0.9, "start": 0.0, "stop": 0.25, "eta_trend": "constant", "stochastic": False,
         "seed": 0, "solver": "euler", "steps": 28, "linked": False, "mask": None}
SETTINGS = {
    "paper": {},
    "midpoint": {"solver": "midpoint", "steps": C.steps_for_calls("midpoint", 28)},  # the paper's 28 calls a pass
    "fireflow": {"solver": "fireflow", "steps": C.steps_for_calls("fireflow", 28)},
    "mask_on_inverted_latent": {"mask": "inverted"},  # SetLatentNoiseMask between the passes, as a region is wired
    "mask_on_photo_midpoint": {"mask": "photo", "solver": "midpoint"},  # both passes masked
    "eta_ramp": {"gamma": 0.3, "eta": 1.0, "start": 0.1, "stop": 0.6, "eta_trend": "linear_increase", "seed": 5},
    "exact_path": {"linked": True},
    "exact_path_fireflow_mask": {"linked": True, "solver": "fireflow", "mask": "inverted"},
    "stochastic": {"stochastic": True, "seed": 3, "eta": 0.7, "stop": 0.5},
}
# On the demo model's network, at 8 steps (a network call there costs what an exact field's whole run does).
NETWORK_SETTINGS = {"paper": {}, "exact_path_fireflow_mask": SETTINGS["exact_path_fireflow_mask"],
                    "stochastic": SETTINGS["stochastic"]}


def box_mask():
    """1 over the right half of the demo scene (its right slot), the rest kept."""
    mask = torch.zeros(1, S.SIZE, S.SIZE)
    mask[:, :, S.SIZE // 2:] = 1.0
    return mask


class Graph:
    """The semantic edit and generation, node by node as the shipped workflows wire them, on one model."""

    def __init__(self, node, model, invert_guider, edit_guider, photo, decode=None):
        self.node, self.model, self.photo = node, model, photo
        self.invert_guider, self.edit_guider, self.decode = invert_guider, edit_guider, decode

    def sigmas(self, steps):
        return self.node("BasicScheduler").execute(self.model, "simple", steps, 1.0)[0]

    def run(self, guider, sampler, sigmas, latent, noise=None):
        noise = noise or self.node("DisableNoise").execute()[0]
        return self.node("SamplerCustomAdvanced").execute(noise, guider, sampler, sigmas, latent)[0]

    def outputs(self, latent):
        return [latent["samples"]] + ([self.decode(latent)] if self.decode else [])

    def edit(self, pack, setting):
        """{what: tensor}: the inverted and the edited latents (and the edited image)."""
        s = dict(PAPER, **setting)
        photo = self.photo
        if s["mask"] == "photo":
            photo = self.node("SetLatentNoiseMask")().set_mask(photo, box_mask())[0]
        sigmas = self.sigmas(s["steps"])
        inversion = pack["RFInversionSampler"].execute(s["gamma"], 7, s["solver"], s["linked"])[0]
        inverted = self.run(self.invert_guider, inversion, self.node("FlipSigmas").execute(sigmas)[0], photo)
        latent = inverted
        if s["mask"] == "inverted":
            latent = self.node("SetLatentNoiseMask")().set_mask(inverted, box_mask())[0]
        reverse = pack["ControlledReverseSampler"].execute(photo, s["eta"], s["start"], s["stop"], s["eta_trend"],
                                                           s["stochastic"], s["seed"], s["solver"],
                                                           inversion if s["linked"] else None)[0]
        edited = self.run(self.edit_guider, reverse, sigmas, latent)
        return dict(zip(("inverted latent", "edited latent", "edited image"), [inverted["samples"], *self.outputs(edited)]))

    def generate(self, pack, s_noise, steps, batch=2):
        """Generation from noise with the Rectified SDE Sampler (RandomNoise, SamplerCustomAdvanced)."""
        sampler = pack["RectifiedSDESampler"].execute(s_noise)[0]
        empty = {"samples": torch.zeros(batch, *self.photo["samples"].shape[1:])}
        out = self.run(self.edit_guider, sampler, self.sigmas(steps), empty, self.node("RandomNoise").execute(11)[0])
        return dict(zip(("latent", "image"), self.outputs(out)))


def compare(graph, packs, settings, steps=None, s_noises=(1.0, 0.5)):
    """Each setting's outputs with the current pack against the pack at BEFORE: a list of what differs."""
    differ, seen = [], {}
    runs = {name: (lambda p, s=dict(s, **({"steps": steps} if steps else {})): graph.edit(p, s))
            for name, s in settings.items()}
    for s_noise in s_noises:
        runs[f"rectified SDE, s_noise {s_noise:g}"] = lambda p, s_noise=s_noise: graph.generate(p, s_noise, steps or 28)
    for name, run in runs.items():
        now, before = run(packs["now"]), run(packs["before"])
        for what in now:
            if not torch.equal(now[what], before[what]):
                gap = float((now[what].double() - before[what].double()).abs().max())
                differ.append(f"{name}: the {what} differs from the pack at {BEFORE}'s by up to {gap:.3g}")
        seen[name] = list(now.values())[-1]
    # Every setting took effect (no two alike): the equalities are not of one graph run many times.
    names = list(seen)
    same = [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if torch.equal(seen[a], seen[b])]
    assert not same, f"settings that gave the same output: {same}"
    return differ


def test_the_samplers_give_the_same_latents_as_before_on_an_exact_field(node, packs, one_thread):
    """Flux's model class with an exact field under Flux's shifted schedule, a batch of two photos, 28 steps."""
    generator = torch.Generator().manual_seed(0)
    field = em.GaussianMixture([0.5 * torch.randn(16, 8, 8, generator=generator) for _ in range(2)], [0.4, 0.6])
    model = em.shifted({"ModelSamplingFlux": node("ModelSamplingFlux")}, em.exact_flux(field), "flux")
    photo = {"samples": model.model.process_latent_out(field.sample(2, torch.Generator().manual_seed(1)))}
    guider = node("BasicGuider").execute(model, em.flux_conditioning())[0]
    differ = compare(Graph(node, model, guider, guider, photo), packs, SETTINGS)
    assert not differ, "\n".join(differ)


def test_the_samplers_give_the_same_latents_and_images_as_before_on_the_demo_model(demo, packs, one_thread):
    """The emoji demo model's network (SD3's model class), its photo through VAEEncode, inverted at cfg 1 on the
    empty prompt, edited at cfg 4 (CFGGuider), decoded by VAEDecode; 8 steps."""
    from demo import run_demo
    photo = demo.encode(run_demo.load_png(C.INPUTS / "scene.png")[None])
    assert photo["samples"].shape == (1, 16, S.SIZE // 8, S.SIZE // 8)
    node = demo.node
    invert_guider = node("CFGGuider").execute(demo.model, demo.empty, demo.empty, 1.0)[0]
    edit_guider = node("CFGGuider").execute(demo.model, demo.text([EDIT]), demo.empty, 4.0)[0]
    graph = Graph(node, demo.model, invert_guider, edit_guider, photo, demo.decode)
    differ = compare(graph, packs, NETWORK_SETTINGS, steps=8, s_noises=(1.0,))
    assert not differ, "\n".join(differ)


def test_a_masked_partial_strength_video_edit_is_the_same_as_before_on_an_exact_field(node, packs, one_thread):
    """Wan 2.2 5B's model class (48 channels, 5-D latents, whose masks go through nodes/video_masks.py) with an
    exact field: SplitSigmas at partial strength, a mask per frame on the video, an eta ramp, each solver."""
    generator = torch.Generator().manual_seed(0)
    shape = em.latent_format("wan22_5b").latent_channels, 3, 4, 4
    field = em.GaussianMixture([0.5 * torch.randn(shape, generator=generator)], [0.5])
    model = node("ModelSamplingSD3")().patch(em.exact_model("wan22_5b", field), 3.0)[0]
    video = {"samples": model.model.process_latent_out(field.sample(1, torch.Generator().manual_seed(1)))}
    mask = torch.zeros(3, 64, 64)
    mask[1:, :, 32:] = 1.0
    masked = node("SetLatentNoiseMask")().set_mask(video, mask)[0]
    guider = node("BasicGuider").execute(model, [[torch.zeros(1, 4, 4096), {}]])[0]
    sigmas = node("SplitSigmas").execute(node("BasicScheduler").execute(model, "simple", 10, 1.0)[0], 4)[1]
    graph = Graph(node, model, guider, guider, masked)
    for solver in ("euler", "midpoint", "fireflow"):
        out = {}
        for p, pack in packs.items():
            inverted = graph.run(guider, pack["RFInversionSampler"].execute(0.5, 3, solver, False)[0],
                                 node("FlipSigmas").execute(sigmas)[0], masked)
            reverse = pack["ControlledReverseSampler"].execute(video, 0.9, 0.0, 0.5, "linear_decrease", False, 0, solver,
                                                               None)[0]
            out[p] = (inverted["samples"], graph.run(guider, reverse, sigmas, inverted)["samples"])
        assert out["now"][1].ndim == 5 and not torch.equal(out["now"][1], video["samples"])
        for what, a, b in zip(("inverted", "edited"), out["now"], out["before"]):
            assert torch.equal(a, b), (f"{solver}: the {what} video latent differs from the pack at {BEFORE}'s by up to "
                                       f"{float((a.double() - b.double()).abs().max()):.3g}")


# --- on the real server: the saved workflows' API prompts -----------------------------------------

@pytest.fixture(scope="module")
def servers(tmp_path_factory, before_pack):
    """Two demo servers (harness/session.py), started side by side: "before" with the pack at BEFORE as its
    rf_inversion (a folder, which host.link_pack keeps), "now" with this pack linked. Torch on one thread in
    both (OMP_NUM_THREADS): the same for either pack, and on a shared machine far faster for this small model."""
    bases = {"before": tmp_path_factory.mktemp("before_base"), "now": tmp_path_factory.mktemp("now_base")}
    shutil.copytree(before_pack, bases["before"] / "custom_nodes" / host.PACK_NAME)
    threads = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update(dict.fromkeys(threads, "1"))  # what the servers' environment copies (host.server_env)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            starting = {k: pool.submit(session.start_demo_server, base) for k, base in bases.items()}
            concurrent.futures.wait(starting.values())
    finally:
        for k, v in threads.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v
    started = {k: f.result() for k, f in starting.items() if f.exception() is None}
    try:
        for f in starting.values():
            f.result()  # a server that did not start: its error
        yield started
    finally:
        for srv in started.values():
            srv.stop()


def hashed(prompt):
    """The prompt with a hash of the edited image's tensor (tests/session_nodes' RFTestHash) beside its SaveImage."""
    prompt["hash"] = {"class_type": "RFTestHash", "inputs": {"image": [session.ids_of(prompt)["decode"], 0]}}
    return prompt


def api_prompt(workflow, info, image, name):
    """A saved UI workflow as the API prompt that the server runs on the emoji model: its loaders swapped,
    the photo, the edit prompt and the file names set; its schedule and samplers' widgets as saved."""
    converted = graphs.for_demo_model(to_api(json.loads(json.dumps(workflow)), info), graphs.EMOJI)
    return hashed(graphs.configure(converted, image=image, edit_text=EDIT, name=name, region=False))


def image_hash(server, prompt, image):
    shutil.copy(C.INPUTS / "scene.png", server.base / "input" / image)
    entry = session.run(server, prompt)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[-3000:]
    assert not {n for kind, data in entry["status"]["messages"] if kind == "execution_cached" for n in data["nodes"]} \
        & {session.ids_of(prompt)["inversion"], session.ids_of(prompt)["reverse"], "hash"}
    return session.sha256(entry)


def test_saved_workflows_give_the_same_image_as_before_on_the_real_server(servers):
    before_server, demo_server = servers["before"], servers["now"]
    infos = {"now": demo_server.get("/object_info"), "before": before_server.get("/object_info")}
    assert "RFEditRegion" in infos["now"] and "RFEditRegion" not in infos["before"]
    workflows = {"sd35 at " + BEFORE: json.loads(git("show", f"{BEFORE}:workflows/sd35_semantic_edit.json")),
                 "flux saved by 0.1": json.loads(V01_WORKFLOW.read_text())}
    hashes = {}
    for i, (label, workflow) in enumerate(workflows.items()):
        prompt = api_prompt(workflow, infos["now"], f"unchanged_{i}.png", f"unchanged_{i}")
        # the saved workflow's widgets map to the same API prompt on either pack's server
        assert api_prompt(workflow, infos["before"], f"unchanged_{i}.png", f"unchanged_{i}") == prompt
        for server, where in ((before_server, "before"), (demo_server, "now")):
            hashes[label, where] = image_hash(server, prompt, f"unchanged_{i}.png")
    again = api_prompt(workflows["sd35 at " + BEFORE], infos["now"], "unchanged_again.png", "unchanged_again")
    hashes["sd35 at " + BEFORE, "now, re-run"] = image_hash(demo_server, again, "unchanged_again.png")
    shipped = graphs.load_workflow(graphs.EDIT_WORKFLOW)
    hashes["sd35 at " + BEFORE, "now, the shipped workflow without its region"] = image_hash(
        demo_server, api_prompt(shipped, infos["now"], "unchanged_shipped.png", "unchanged_shipped"), "unchanged_shipped.png")
    print(json.dumps({" / ".join(k): v for k, v in hashes.items()}, indent=1))
    for label in workflows:
        found = {where: h for (name, where), h in hashes.items() if name == label}
        assert None not in found.values() and len(set(found.values())) == 1, f"{label}: {json.dumps(found, indent=1)}"
    assert hashes["sd35 at " + BEFORE, "now"] != hashes["flux saved by 0.1", "now"]
