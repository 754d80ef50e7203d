"""The edit benchmark of the emoji demo model, through ComfyUI's own nodes, in-process on the CPU.

    .venv/bin/python -m demo.evaluate [--n 100] [--json output/demo_metrics.json] [--plot docs/images/demo_tradeoff.png]

On held-out scenes (object pair, order and background never seen together in training), each scene
gets one edit, in two input sets: "canonical", the scenes as trained on, which their prompt fully
describes (so a plain sample of the edit prompt already keeps the rest), and "varied", the same
scenes with a background tint and object moves of up to 4 px that no prompt says (what an edit must
take from the input image). Each edit is: one slot's object becomes another ("a red apple and a cat on blue" -> "a red apple
and a dog on blue"). Per setting it measures:

- edit_success: the strict slot reader (trained on clean renders with blur and noise, never on the
  autoencoder's output: what a person would read) reads the target object in the edited slot;
- kept_object_success: it still reads the kept object in the other slot;
- edit_success_lenient, kept_object_success_lenient: the same by the slot classifier that saw the
  autoencoder's output in training (the reader of the benchmark before issue 21), a second column;
- background_psnr, background_ssim: over everything outside the edited slot's 64 x 64 box (the kept
  object and the background), against the input scene; *_to_autoencoder: against the autoencoder's
  own reconstruction of it (the top-level "autoencoder" entry is that reconstruction against the
  input: the ceiling of what any edit through this autoencoder can score);
- network_calls: the network evaluations per scene in both passes, counted through the model (CFG's
  unconditional half counted too).

The graph is workflows/sd35_semantic_edit.json's, node by node: UNETLoader + ModelSamplingSD3 (shift
3), VAELoader, the demo text encoder (the loader node's own function) + CLIPTextEncode, VAEEncode,
BasicScheduler (simple) + FlipSigmas, CFGGuider (the inversion at cfg 1 on the inversion prompt, or at
the edit's cfg against the empty prompt; the edit at cfg 4 against the empty prompt), DisableNoise, SamplerCustomAdvanced with the pack's
RF-Inversion Sampler and Controlled Reverse Sampler, VAEDecode. The scenes run as one batch, each
with its own prompt (a conditioning of batch N, which ComfyUI pairs with the latent batch).
Settings: the paper's (gamma 0.5, eta 0.9, stop 0.25, 28 steps, euler) and sweeps of eta, gamma,
stop, the solver (at equal network calls) and the inversion prompt around it; then the same edits
through the exact path (``linked``: the reverse's inversion input wired to the recording inversion);
then with the Edit Region node's mask (``region``: the network's probes under the scene's prompt and the
edit prompt, SetLatentNoiseMask on the inverted latent), whose rows add region_iou, region_slot_share
and region_kept_share against the edited slot's box, and count the probes in network_calls.
"""
import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # the samplers' progress bars, 15 settings x 2 passes
import torch  # noqa: E402

from demo import common as C  # noqa: E402
from demo import graphs  # noqa: E402
from demo import scenes as S  # noqa: E402
from harness import host, small_clip  # noqa: E402

CFG = 4.0
PAPER = {"name": "paper", "gamma": 0.5, "eta": 0.9, "start": 0.0, "stop": 0.25, "steps": 28, "solver": "euler",
         "inversion_prompt": "", "inversion_cfg": 1.0, "cfg": CFG, "linked": False, "region": None}
# The Edit Region node's default: threshold 0.2, noise levels 0.25, 0.5, 0.75, two seeds (12 calls a scene),
# the scene's prompt as the source.
REGION = {"threshold": 0.2, "levels": 3, "seeds": 2, "source": "scene"}
SWEEPS = {"eta": [0.0, 0.5, 0.7, 1.0], "gamma": [0.0, 0.25, 0.75, 1.0], "stop": [0.1, 0.4, 0.6]}


def settings():
    """The paper's setting, then one sweep at a time around it."""
    out = [dict(PAPER, sweep="paper")]
    for key, values in SWEEPS.items():
        out += [dict(PAPER, name=f"{key}_{v:g}", sweep=key, **{key: v}) for v in values]
    for solver in ("midpoint", "fireflow"):  # the paper's 28 network calls per pass
        out.append(dict(PAPER, name=f"solver_{solver}", sweep="solver", solver=solver, steps=C.steps_for_calls(solver, 28)))
    out.append(dict(PAPER, name="inversion_prompt_source", sweep="inversion_prompt", inversion_prompt="source"))
    return out + linked_settings() + region_settings()


def region_settings():
    """With the Edit Region node's mask on the inverted latent (SetLatentNoiseMask): the paper's setting
    at the default region, then its threshold, its probes (levels x seeds), an empty source prompt, the
    controller off, and through the exact path (the paper's inversion, and the best linked setting)."""
    base = dict(PAPER, sweep="region", region=REGION)
    out = [dict(base, name="region_paper")]
    out += [dict(base, name=f"region_threshold_{t:g}", region=dict(REGION, threshold=t)) for t in (0.1, 0.3, 0.5)]
    out += [dict(base, name=f"region_probes_{levels}x{seeds}", region=dict(REGION, levels=levels, seeds=seeds))
            for levels, seeds in ((1, 1), (3, 1), (5, 2))]
    out.append(dict(base, name="region_empty_source", region=dict(REGION, source="empty")))
    out.append(dict(base, name="region_eta_0", eta=0.0))
    out.append(dict(base, name="region_gamma_0_eta_0", gamma=0.0, eta=0.0))
    out.append(dict(base, name="region_linked_paper", linked=True))
    out.append(dict(base, name="region_linked_source_cfg_fireflow", linked=True, inversion_prompt="source",
                    inversion_cfg=CFG, solver="fireflow", steps=C.steps_for_calls("fireflow", 28)))
    return out


def linked_settings():
    """Through the exact path (the reverse's inversion input wired, the inversion recording): the paper's
    setting, then gamma, eta and stop around it, with the empty inversion prompt (the paper's) and with
    one that describes the input scene; the solvers at the paper's 28 network calls per reverse."""
    out = []
    for inversion_prompt, inversion_cfg, tag in (("", 1.0, "empty"), ("source", 1.0, "source"), ("source", CFG, "source_cfg")):
        base = dict(PAPER, linked=True, inversion_prompt=inversion_prompt, inversion_cfg=inversion_cfg, sweep=f"linked_{tag}")
        for gamma in (0.0, 0.5):
            out.append(dict(base, name=f"linked_{tag}_gamma_{gamma:g}_eta_0", gamma=gamma, eta=0.0))
            for eta in (0.5, 0.9):
                for stop in (0.25, 0.5):
                    out.append(dict(base, name=f"linked_{tag}_gamma_{gamma:g}_eta_{eta:g}_stop_{stop:g}", gamma=gamma,
                                    eta=eta, stop=stop))
        for solver in ("midpoint", "fireflow"):
            out.append(dict(base, name=f"linked_{tag}_solver_{solver}", solver=solver, steps=C.steps_for_calls(solver, 28)))
    for row in out:
        if row["name"] == "linked_empty_gamma_0.5_eta_0.9_stop_0.25":
            row["name"] = "linked_paper"  # the paper's setting, through the path
    return out


class Pipeline:
    """The semantic-edit workflow's nodes on a batch of scenes."""

    def __init__(self):
        self.nodes, self.pack = host.import_host()
        import folder_paths
        folder_paths.add_model_folder_path("diffusion_models", str(C.MODELS / "diffusion_models"))
        folder_paths.add_model_folder_path("vae", str(C.MODELS / "vae"))
        model = self.nodes.UNETLoader().load_unet(S.UNET_NAME, "default")[0]
        self.model = self.node("ModelSamplingSD3")().patch(model, 3.0)[0]
        self.calls = 0  # network evaluations per scene: counted where the model runs, cond and uncond
        self.model.set_model_unet_function_wrapper(self._count)
        self.vae = self.nodes.VAELoader().load_vae(S.VAE_NAME)[0]
        self.clip = small_clip.load(S.CLIP_FILE)  # what RFDemoTextEncoderLoader returns for the file
        self.empty = self.text([""])

    def _count(self, apply_model, args):
        self.calls += len(args["cond_or_uncond"])
        return apply_model(args["input"], args["timestep"], **args["c"])

    def node(self, node_id):
        return self.nodes.NODE_CLASS_MAPPINGS[node_id]

    def text(self, texts):
        """CLIPTextEncode of each text, as one conditioning of batch len(texts)."""
        conds = [self.nodes.CLIPTextEncode().encode(self.clip, t)[0][0] for t in texts]
        return [[torch.cat([c[0] for c in conds]), {"pooled_output": torch.cat([c[1]["pooled_output"] for c in conds])}]]

    @torch.no_grad()  # ComfyUI's executor runs nodes under inference mode; a direct call does not
    def encode(self, images):
        """images (N, 3, H, W) in [0, 1] -> LATENT"""
        return self.node("VAEEncode")().encode(self.vae, images.permute(0, 2, 3, 1))[0]

    @torch.no_grad()
    def decode(self, latent):
        return self.node("VAEDecode")().decode(self.vae, latent)[0].permute(0, 3, 1, 2).clamp(0, 1)

    def sigmas(self, steps):
        return self.node("BasicScheduler").execute(self.model, "simple", steps, 1.0)[0]

    def sample(self, guider, sampler, sigmas, latent):
        noise = self.node("DisableNoise").execute()[0]
        return self.node("SamplerCustomAdvanced").execute(noise, guider, sampler, sigmas, latent)[0]

    def inversion_sampler(self, setting):
        inputs, _ = graphs.sampler_inputs(setting, None)
        return self.node("RFInversionSampler").execute(**{"gamma": 0.5, "seed": 0, "solver": "euler", **inputs})[0]

    def reverse_sampler(self, setting, reference, inversion):
        _, inputs = graphs.sampler_inputs(setting, inversion)
        return self.node("ControlledReverseSampler").execute(reference=reference, **{
            "eta": 0.9, "start": 0.0, "stop": 0.25, "eta_trend": "constant", "stochastic": False, "seed": 0, "solver": "euler",
            **inputs})[0]

    def invert(self, latent, setting, inversion_cond):
        """The inverted latent, and the inversion's SAMPLER (which holds the path it recorded, if linked)."""
        # the paper inverts at cfg 1; at the edit's cfg, against the empty prompt as the edit is guided
        negative = inversion_cond if setting["inversion_cfg"] == 1 else self.empty
        guider = self.node("CFGGuider").execute(self.model, inversion_cond, negative, setting["inversion_cfg"])[0]
        sigmas = self.node("FlipSigmas").execute(self.sigmas(setting["steps"]))[0]
        sampler = self.inversion_sampler(setting)
        return self.sample(guider, sampler, sigmas, latent), sampler

    def region(self, latent, source_cond, edit_cond, region):
        """The Edit Region node's (region, soft map) for the scenes, as the workflow wires it."""
        return self.node("RFEditRegion").execute(self.model, source_cond, edit_cond, latent, region["threshold"],
                                                 region["levels"], region["seeds"], 0).args

    def edit(self, inverted, reference, setting, edit_cond, inversion=None):
        guider = self.node("CFGGuider").execute(self.model, edit_cond, self.empty, setting["cfg"])[0]
        return self.sample(guider, self.reverse_sampler(setting, reference, inversion), self.sigmas(setting["steps"]),
                           inverted)


def edit_set(n, seed=1):
    """n held-out scenes, each with a slot to edit and a target object in it (not the scene's other
    object, not the one there): (triples (n, 3), slots (n,), targets (n,)). The same scenes for
    both input sets."""
    _, held = S.split()
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(held), generator=gen)[:n]
    triples = torch.tensor(held)[pick]
    slots = torch.randint(0, 2, (len(triples),), generator=gen)
    targets = []
    for (a, b, _), s in zip(triples.tolist(), slots.tolist()):
        choices = [o for o in range(S.N_OBJ) if o not in (a, b)]
        targets.append(choices[int(torch.randint(0, len(choices), (1,), generator=gen))])
    return triples, slots, torch.tensor(targets)


def edited_triples(triples, slots, targets):
    out = triples.clone()
    out[torch.arange(len(out)), slots] = targets
    return out


def background_metrics(images, reference, slots):
    """PSNR and SSIM outside each image's edited slot, per image."""
    psnr, ssim = torch.empty(len(images)), torch.empty(len(images))
    for s in (0, 1):
        idx = (slots == s).nonzero()[:, 0]
        if len(idx):
            mask = S.outside(s)
            psnr[idx] = S.masked_psnr(images[idx], reference[idx], mask)
            ssim[idx] = S.masked_ssim(images[idx], reference[idx], mask)
    return psnr, ssim


def reads(reader, out, triples, slots, targets):
    """(edited slot reads the target, other slot reads the kept object), per image, by ``reader``."""
    rows = torch.arange(len(triples))
    got = torch.stack([reader.read(out, s) for s in (0, 1)], 1)  # (N, 2): both slots, in one batch each
    return (got[rows, slots] == targets).float(), (got[rows, 1 - slots] == triples[rows, 1 - slots]).float()


def measure(pipe, readers, setting, data, inverted_cache):
    """One setting on the whole edit set: its row of numbers and the edited images."""
    images, latent, autoencoded, triples, slots, targets, source_cond, edit_cond = data
    key = tuple(setting[k] for k in ("gamma", "solver", "steps", "inversion_prompt", "inversion_cfg", "linked"))
    pipe.calls = 0
    if key not in inverted_cache:
        cond = source_cond if setting["inversion_prompt"] == "source" else pipe.empty
        inverted_cache[key] = (*pipe.invert(latent, setting, cond), pipe.calls)
    inverted, inversion, inversion_calls = inverted_cache[key]
    pipe.calls = 0
    region = setting.get("region")
    if region:
        mask, _ = pipe.region(latent, source_cond if region["source"] == "scene" else pipe.empty, edit_cond, region)
        inverted = pipe.node("SetLatentNoiseMask")().set_mask(inverted, mask)[0]
    out = pipe.decode(pipe.edit(inverted, latent, setting, edit_cond, inversion))
    edited_ok, kept_ok = reads(readers["strict"], out, triples, slots, targets)
    edited_lenient, kept_lenient = reads(readers["lenient"], out, triples, slots, targets)
    psnr, ssim = background_metrics(out, images, slots)
    psnr_ae, ssim_ae = background_metrics(out, autoencoded, slots)
    row = {k: setting[k] for k in ("name", "gamma", "eta", "start", "stop", "steps", "solver", "inversion_prompt", "inversion_cfg", "cfg", "linked")}
    row.update(sweep=setting["sweep"], edit_success=float(edited_ok.mean()), kept_object_success=float(kept_ok.mean()),
               edit_success_lenient=float(edited_lenient.mean()), kept_object_success_lenient=float(kept_lenient.mean()),
               background_psnr=float(psnr.mean()), background_ssim=float(ssim.mean()),
               background_psnr_to_autoencoder=float(psnr_ae.mean()), background_ssim_to_autoencoder=float(ssim_ae.mean()),
               network_calls=inversion_calls + pipe.calls, finite=bool(torch.isfinite(out).all()), region=bool(region))
    if region:
        row.update({f"region_{k}": v for k, v in region.items()}, **region_metrics(mask, slots))
    return row, out


def region_metrics(mask, slots):
    """How the region matches the edited slot's box: IoU, the share of the slot it marks, and the share
    of the kept area (everything outside the slot) it marks; means over the scenes."""
    kept = torch.stack([S.outside(int(s)) for s in slots]).float()
    marked = (mask > 0.5).float()
    slot = 1 - kept
    inter, union = (marked * slot).flatten(1).sum(1), ((marked + slot) > 0).float().flatten(1).sum(1)
    return {"region_iou": float((inter / union).mean()),
            "region_slot_share": float((inter / slot.flatten(1).sum(1)).mean()),
            "region_kept_share": float(((marked * kept).flatten(1).sum(1) / kept.flatten(1).sum(1)).mean())}


def plot(rows, path, ceiling):
    """Background PSNR against edit success: one curve per sweep, the paper's setting marked, and the
    settings through the exact path as rings, one colour per inversion prompt, and those with the edit
    region as diamonds."""
    from PIL import Image, ImageDraw, ImageFont
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:
        font = ImageFont.load_default()
    xs_all = [r["edit_success"] for r in rows]
    ys_all = [r["background_psnr"] for r in rows] + [ceiling]
    x0, x1 = max(0.0, min(xs_all) - 0.05), min(1.0, max(xs_all) + 0.05)
    y0, y1 = min(ys_all) - 1.0, max(ys_all) + 1.0
    W, H, L, B, T, R = 920, 610, 70, 60, 190, 200  # R: room for the labels of points at edit success 1
    im = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(im)
    pw, ph = W - L - R, H - T - B
    xs = lambda v: L + (v - x0) / (x1 - x0) * pw  # noqa: E731
    ys = lambda v: T + (1 - (v - y0) / (y1 - y0)) * ph  # noqa: E731
    for i in range(6):
        vx, vy = x0 + (x1 - x0) * i / 5, y0 + (y1 - y0) * i / 5
        d.line([(xs(vx), T), (xs(vx), T + ph)], fill=(235, 235, 235))
        d.line([(L, ys(vy)), (L + pw, ys(vy))], fill=(235, 235, 235))
        d.text((xs(vx) - 12, T + ph + 6), f"{vx:.2f}", fill="black", font=font)
        d.text((L - 44, ys(vy) - 7), f"{vy:.1f}", fill="black", font=font)
    d.rectangle([L, T, L + pw, T + ph], outline="black")
    d.line([(L, ys(ceiling)), (L + pw, ys(ceiling))], fill=(150, 150, 150), width=1)
    d.text((L + 6, ys(ceiling) - 16), f"autoencoder's own reconstruction {ceiling:.1f} dB (the ceiling)", fill=(110, 110, 110), font=font)
    d.text((L + pw / 2 - 200, H - 28), "edit success: the strict reader reads the target emoji in the edited slot", fill="black", font=font)
    d.text((10, 8), "Emoji demo model: background PSNR (dB, outside the edited slot) against edit success, held-out scenes "
           "with a tint and moves no prompt says", fill="black", font=font)
    curves = (("eta", (200, 60, 30)), ("gamma", (30, 90, 200)), ("stop", (40, 150, 60)), ("solver", (140, 60, 160)))
    paper = next(r for r in rows if r["name"] == "paper")
    for n, (key, colour) in enumerate(curves):
        pts = sorted([r for r in rows if r["sweep"] == key] + ([paper] if key != "solver" else []),
                     key=lambda r: r[key] if key != "solver" else r["name"])
        coords = [(xs(r["edit_success"]), ys(r["background_psnr"])) for r in pts]
        if key != "solver" and len(coords) > 1:
            d.line(coords, fill=colour, width=2)
        for i, ((x, y), r) in enumerate(zip(coords, pts)):
            d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour)
            if key == "solver" or i in (0, len(pts) - 1):  # a sweep's ends: its middle points crowd each other
                label = r["solver"] if key == "solver" else f"{key} {r[key]:g}"
                d.text((x + 6, y - 16 + 12 * (n % 2)), label, fill=colour, font=font)
        ly = 30 + 18 * n
        d.line([(14, ly + 7), (34, ly + 7)], fill=colour, width=3)
        d.text((40, ly), f"{key} sweep around the paper's setting" if key != "solver" else "solvers at 28 calls a pass",
               fill=colour, font=font)
    rings = (("linked_empty", (110, 110, 110), "through the exact path, empty inversion prompt"),
             ("linked_source", (230, 130, 0), "through the exact path, inverted under the scene's prompt"),
             ("linked_source_cfg", (0, 150, 150), "through the exact path, inverted under the scene's prompt at the edit's cfg"))
    for n, (key, colour, words) in enumerate(rings):
        for r in (r for r in rows if r["sweep"] == key):
            x, y = xs(r["edit_success"]), ys(r["background_psnr"])
            d.ellipse([x - 5, y - 5, x + 5, y + 5], outline=colour, width=2)
        ly = 30 + 18 * (len(curves) + n)
        d.ellipse([19, ly + 2, 29, ly + 12], outline=colour, width=2)
        d.text((40, ly), words, fill=colour, font=font)
    colour, ly = (200, 0, 120), 30 + 18 * (len(curves) + len(rings))
    for r in (r for r in rows if r.get("region")):
        x, y = xs(r["edit_success"]), ys(r["background_psnr"])
        d.polygon([(x, y - 6), (x + 6, y), (x, y + 6), (x - 6, y)], fill=colour)
    d.polygon([(24, ly + 1), (30, ly + 7), (24, ly + 13), (18, ly + 7)], fill=colour)
    d.text((40, ly), "with the Edit Region's mask on the inverted latent (thresholds, probes, exact path)", fill=colour, font=font)
    x, y = xs(paper["edit_success"]), ys(paper["background_psnr"])
    d.rectangle([x - 6, y - 6, x + 6, y + 6], outline="black", width=2)
    d.text((x + 8, y + 6), "paper (g .5, eta .9, stop .25)", fill="black", font=font)
    im.save(path)


INPUT_SETS = {
    "canonical": "the scenes as the model was trained on them: the prompt says everything in them",
    "varied": "the same scenes with a background tint and object moves of up to 4 px that no prompt says",
}


def edit_inputs(pipe, objects, n, inputs):
    """The edit set's images, latents, triples, edited slots and targets, and the conditionings of the
    scenes' prompts and of the edit prompts."""
    triples, slots, targets = edit_set(n)
    tint, shift = S.unprompted_variation(len(triples), torch.Generator().manual_seed(2)) if inputs == "varied" else (None, None)
    images = S.render(objects, triples[:, 0], triples[:, 1], triples[:, 2], tint=tint, shift=shift)
    source_cond = pipe.text([S.prompt(*t) for t in triples.tolist()])
    edit_cond = pipe.text([S.prompt(*t) for t in edited_triples(triples, slots, targets).tolist()])
    return images, pipe.encode(images), triples, slots, targets, source_cond, edit_cond


def input_data(pipe, readers, objects, n, inputs):
    """The edit set's images, latents, autoencoder reconstructions, prompts' conditionings."""
    images, latent, triples, slots, targets, source_cond, edit_cond = edit_inputs(pipe, objects, n, inputs)
    autoencoded = pipe.decode(latent)
    ae_psnr, ae_ssim = background_metrics(autoencoded, images, slots)
    summary = {"about": INPUT_SETS[inputs],
               **{f"{name}_reader_accuracy_{on}": reader.accuracy(x, triples) for name, reader in readers.items()
                  for on, x in (("inputs", images), ("autoencoder", autoencoded))},
               "autoencoder": {"background_psnr": float(ae_psnr.mean()), "background_ssim": float(ae_ssim.mean())}}
    print(f"{inputs} inputs ({INPUT_SETS[inputs]}): the strict reader reads {summary['strict_reader_accuracy_inputs']:.3f} "
          f"of their emoji and {summary['strict_reader_accuracy_autoencoder']:.3f} of their autoencoder reconstructions' "
          f"(lenient {summary['lenient_reader_accuracy_inputs']:.3f}, {summary['lenient_reader_accuracy_autoencoder']:.3f}); "
          f"autoencoder outside the edited slot: PSNR {ae_psnr.mean():.2f} dB, SSIM {ae_ssim.mean():.3f}", flush=True)
    return (images, latent, autoencoded, triples, slots, targets, source_cond, edit_cond), summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="held-out scenes (one edit each)")
    parser.add_argument("--json", default=str(C.ROOT / "output" / "demo_metrics.json"))
    parser.add_argument("--plot", default=str(C.ROOT / "docs" / "images" / "demo_tradeoff.png"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="only these settings, by name")
    parser.add_argument("--inputs", nargs="*", choices=list(INPUT_SETS), default=list(INPUT_SETS),
                        help="the input sets to run (both by default; one each in two processes uses two cores)")
    parser.add_argument("--merge", nargs="*", metavar="JSON",
                        help="run nothing: join these runs' files (one input set each) into --json, and plot")
    opts = parser.parse_args()
    if opts.merge:
        parts = [json.loads(Path(f).read_text()) for f in opts.merge]
        if len({p["n"] for p in parts}) != 1:
            raise SystemExit("evaluate --merge: the runs have different --n")
        result = {"n": parts[0]["n"], "seconds": sum(p["seconds"] for p in parts), "threads": parts[0]["threads"],
                  "processes": len(parts), "inputs": {k: v for p in parts for k, v in p["inputs"].items()},
                  "settings": [r for p in parts for r in p["settings"]]}
        return write(result, opts, time.time(), plot_it=not any(p.get("only") for p in parts))
    torch.set_num_threads(opts.threads)
    start = time.time()
    pipe = Pipeline()
    readers = {"strict": S.load_classifier(strict=True), "lenient": S.load_classifier()}
    objects = S.load_objects()
    rows, inputs_summary = [], {}
    for inputs in opts.inputs:
        data, inputs_summary[inputs] = input_data(pipe, readers, objects, opts.n, inputs)
        cache = {}
        for setting in settings():
            if opts.only and setting["name"] not in opts.only:
                continue
            row, _ = measure(pipe, readers, setting, data, cache)
            row["inputs"] = inputs
            rows.append(row)
            print(f"  {inputs:9s} {row['name']:24s} edit {row['edit_success']:.2f} ({row['edit_success_lenient']:.2f})  kept {row['kept_object_success']:.2f}  "
                  f"background PSNR {row['background_psnr']:.2f} dB (to autoencoder {row['background_psnr_to_autoencoder']:.2f})  "
                  f"SSIM {row['background_ssim']:.3f}  calls {row['network_calls']}  ({time.time() - start:.0f} s)", flush=True)
    result = {"n": opts.n, "seconds": round(time.time() - start, 1), "threads": opts.threads, "inputs": inputs_summary,
              "settings": rows, **({"only": opts.only} if opts.only else {})}
    write(result, opts, start, plot_it=not opts.only and "varied" in inputs_summary)


def write(result, opts, start, plot_it):
    Path(opts.json).parent.mkdir(parents=True, exist_ok=True)
    Path(opts.json).write_text(json.dumps(result, indent=1) + "\n")
    if plot_it:
        Path(opts.plot).parent.mkdir(parents=True, exist_ok=True)
        plot([r for r in result["settings"] if r["inputs"] == "varied"], opts.plot,
             result["inputs"]["varied"]["autoencoder"]["background_psnr"])
    print(f"wrote {opts.json}{' and ' + opts.plot if plot_it else ''} in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
