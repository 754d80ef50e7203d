"""Metrics of RF-Inversion on the demo model, through ComfyUI's own nodes, in-process on the CPU.

    .venv/bin/python demo/evaluate.py [--n 100] [--out docs]

For held-out digits (never seen in training), each drawn in a random colour, background and stroke
thickness, it asks for an edit to another digit and measures:

- edit success: the demo's digit classifier (trained by demo/train.py) reads the target digit;
- faithfulness to the input: SSIM and RMS error between the edit and the input image, and the error
  of the image's mean colour (the style that an edit should keep: stroke and background colours);

over sweeps of eta, gamma and the window's stop around the demo model's setting (gamma 0.25, eta
0.9, stop 0.5), and at the paper's setting (gamma 0.5, eta 0.9, stop 0.25), with the workflow's
settings otherwise: 28 steps of the simple scheduler at SD3's shift 3, inversion under the empty
prompt at cfg 1, the edit at cfg 4 against the empty prompt. The nodes are the host's UNETLoader,
VAELoader, VAEEncode/VAEDecode, BasicScheduler, FlipSigmas, CFGGuider, DisableNoise and
SamplerCustomAdvanced with the pack's two samplers. It writes a JSON of the numbers and a plot of
faithfulness against edit success (the paper's faithfulness-editability figure).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

sys.path.insert(0, str(C.ROOT / "scripts"))
import comfy_host  # noqa: E402

conditioning = C.demo_nodes().conditioning  # the demo prompt node's own function

ETAS = [0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0]
GAMMAS = [0.0, 0.25, 0.5, 0.75, 1.0]
STOPS = [0.1, 0.25, 0.4, 0.5, 0.6]
STEPS, CFG = 28, 4.0
# The demo model's setting (see docs/demo.md: SD3's shift 3 makes the paper's stop 0.25 cover only
# sigma 1 to 0.9, too short for this small model) and the paper's Flux setting.
DEMO_SETTING = {"gamma": 0.25, "eta": 0.9, "stop": 0.5}
PAPER_SETTING = {"gamma": 0.5, "eta": 0.9, "stop": 0.25}
STOP = PAPER_SETTING["stop"]


class DemoPipeline:
    """The semantic-edit workflow's graph, node by node, on a batch of images."""

    def __init__(self, steps=STEPS):
        self.nodes, self.pack = comfy_host.import_host()
        import folder_paths
        folder_paths.add_model_folder_path("diffusion_models", str(C.MODELS / "diffusion_models"))
        folder_paths.add_model_folder_path("vae", str(C.MODELS / "vae"))
        n = self.node
        model = self.nodes.UNETLoader().load_unet(C.UNET_NAME, "default")[0]
        self.model = n("ModelSamplingSD3")().patch(model, 3.0)[0]
        # Count the network calls rather than assume them: the post-CFG hook runs once per denoised
        # estimate D, whether CFG batches the cond and uncond halves into one forward pass or not.
        self.calls = 0
        self.model.set_model_sampler_post_cfg_function(self._count)
        self.vae = self.nodes.VAELoader().load_vae(C.VAE_NAME)[0]
        self.steps = steps
        self.sigmas, self.flipped = self.schedule(steps)
        self.empty = conditioning("")

    def _count(self, args):
        self.calls += 1
        return args["denoised"]

    def schedule(self, steps):
        """The scheduler's sigmas for the reverse pass and their FlipSigmas for the inversion."""
        sigmas = self.node("BasicScheduler").execute(self.model, "simple", steps, 1.0)[0]
        return sigmas, self.node("FlipSigmas").execute(sigmas)[0]

    def node(self, node_id):
        return self.nodes.NODE_CLASS_MAPPINGS[node_id]

    @torch.no_grad()  # ComfyUI's executor runs nodes under inference mode; a direct call does not
    def encode(self, images):
        """images (N, 3, H, W) in [0, 1] -> LATENT"""
        return self.node("VAEEncode")().encode(self.vae, images.permute(0, 2, 3, 1))[0]

    @torch.no_grad()
    def decode(self, latent):
        return self.node("VAEDecode")().decode(self.vae, latent)[0].permute(0, 3, 1, 2).clamp(0, 1)

    def sample(self, guider, sampler, sigmas, latent):
        noise = self.node("DisableNoise").execute()[0]
        return self.node("SamplerCustomAdvanced").execute(noise, guider, sampler, sigmas, latent)[0]

    def invert(self, latent, gamma, seed=0, solver="euler", steps=None):
        guider = self.node("CFGGuider").execute(self.model, self.empty, self.empty, 1.0)[0]
        sampler = self.node("RFInversionSampler").execute(gamma, seed, solver)[0]
        flipped = self.flipped if steps in (None, self.steps) else self.schedule(steps)[1]
        return self.sample(guider, sampler, flipped, latent)

    def edit(self, inverted, reference, text, eta, stop=STOP, cfg=CFG, solver="euler", steps=None):
        guider = self.node("CFGGuider").execute(self.model, conditioning(text), self.empty, cfg)[0]
        sampler = self.node("ControlledReverseSampler").execute(reference, eta, 0.0, stop, "constant", False, 0, solver)[0]
        sigmas = self.sigmas if steps in (None, self.steps) else self.schedule(steps)[0]
        return self.sample(guider, sampler, sigmas, inverted)


def held_out_set(n, seed=1):
    """n held-out digits in random styles, with a target digit other than their own for each."""
    from safetensors.torch import load_file
    data = load_file(str(C.TEST_DIGITS_FILE))
    glyphs, labels = data["glyphs"].float()[:n] / 16, data["labels"].long()[:n]
    gen = torch.Generator().manual_seed(seed)
    images = C.render(glyphs, *C.random_style(len(labels), gen))
    targets = (labels + torch.randint(1, 10, labels.shape, generator=gen)) % 10
    return images, labels, targets


def mean_colour_error(a, b):
    return (a.mean(dim=(2, 3)) - b.mean(dim=(2, 3))).norm(dim=1)


def measure(pipe, classifier, images, targets, inverted_by_gamma, reference, gamma, eta, stop, **solver):
    """The edit at (gamma, eta, stop) of every image to its target; ``solver`` (solver=, steps=) goes
    to the reverse pass, the inversion's having been run with the same."""
    out = torch.empty_like(images)
    inverted = inverted_by_gamma[gamma]
    for t in targets.unique().tolist():  # one prompt per batch: group the images by their target
        idx = (targets == t).nonzero()[:, 0]
        sub = {"samples": inverted["samples"][idx]}
        ref = {"samples": reference["samples"][idx]}
        out[idx] = pipe.decode(pipe.edit(sub, ref, f"a {t}", eta, stop=stop, **solver))
    with torch.no_grad():
        pred = classifier(out).argmax(1)
    return out, {
        "gamma": gamma, "eta": eta, "stop": stop,
        "edit_success": float((pred == targets).float().mean()),
        "ssim_to_input": float(C.ssim(out, images).mean()),
        "rms_to_input": float((out - images).pow(2).flatten(1).mean(1).sqrt().mean()),
        "mean_colour_error": float(mean_colour_error(out, images).mean()),
        "finite": bool(torch.isfinite(out).all()),
    }


def load_astronaut():
    """demo/inputs/astronaut.png (scikit-image's public-domain NASA photo, downscaled): (1, 3, 64, 64)."""
    from PIL import Image
    im = Image.open(C.INPUTS / "astronaut.png").convert("RGB")
    return torch.tensor(list(im.get_flattened_data()), dtype=torch.float32).reshape(C.SIZE, C.SIZE, 3).permute(2, 0, 1)[None] / 255


def round_trip(pipe, reference, solver, steps):
    """Plain ODE inversion and back (gamma 0, eta 0, empty prompt at cfg 1) with ``solver``: the
    decoded image and the network calls counted in each pass."""
    pipe.calls = 0
    inverted = pipe.invert(reference, 0.0, solver=solver, steps=steps)
    forward = pipe.calls
    back = pipe.decode(pipe.edit(inverted, reference, "", 0.0, cfg=1.0, solver=solver, steps=steps))
    return back, forward, pipe.calls - forward


def solver_runs(solvers):
    """(budget, solver, steps): each solver at each budget of network calls per pass, and fireflow at
    the budget's steps as well (one call more). The eta window counts steps (stop 0.5 of 27 steps
    is 14 steps, 0.52 of the schedule; of 7 steps, 4 steps, 0.57), so that row is the one whose
    window matches euler's and midpoint's."""
    return [(calls, solver, C.steps_for_calls(solver, calls)) for calls in C.SOLVER_BUDGETS for solver in solvers] + \
        [(calls, "fireflow", calls) for calls in C.SOLVER_BUDGETS]


def solver_table(pipe, classifier, images, targets, reference, photo, start):
    """Each solver at equal network calls per pass: the digits' and the photo's reconstruction, and
    the demo edit. The calls are counted through the model, and must match rf.network_calls."""
    rf = pipe.pack.sampler
    with torch.no_grad():
        autoencoded = pipe.decode(reference)
        photo_latent = pipe.encode(photo)
        photo_autoencoded = pipe.decode(photo_latent)
    rows, photos = [], {"input": photo, "autoencoder": photo_autoencoded}
    d = DEMO_SETTING
    for budget, solver, steps in solver_runs(rf.SOLVERS):
        recon, forward, backward = round_trip(pipe, reference, solver, steps)
        expected = rf.network_calls(solver, steps)
        if not forward == backward == expected:
            raise RuntimeError(f"{solver}, {steps} steps: counted {forward} and {backward} network calls, expected {expected}")
        pipe.calls = 0
        inverted = {d["gamma"]: pipe.invert(reference, d["gamma"], solver=solver, steps=steps)}
        _, edit = measure(pipe, classifier, images, targets, inverted, reference, d["gamma"], d["eta"], d["stop"],
                          solver=solver, steps=steps)
        edit_calls = expected * (1 + len(targets.unique()))  # the reverse runs once per target digit
        if pipe.calls != edit_calls:
            raise RuntimeError(f"{solver}, {steps} steps: the edit made {pipe.calls} network calls, expected {edit_calls}")
        photo_back, _, _ = round_trip(pipe, photo_latent, solver, steps)
        if forward == budget:  # the photo strip shows the equal-call runs
            photos[(solver, steps)] = photo_back
        window = sum(1 for eta in rf.eta_schedule(steps, d["eta"], 0.0, d["stop"]) if eta)
        row = {"budget": budget, "solver": solver, "steps": steps, "calls_per_pass": forward,
               "eta_window": f"{window}/{steps}",
               "recon_psnr": float(C.psnr(recon, images).mean()), "recon_ssim": float(C.ssim(recon, images).mean()),
               "recon_psnr_to_autoencoder": float(C.psnr(recon, autoencoded).mean()),
               "edit_success": edit["edit_success"], "edit_ssim": edit["ssim_to_input"],
               "edit_colour_error": edit["mean_colour_error"],
               "photo_psnr": float(C.psnr(photo_back, photo)), "photo_ssim": float(C.ssim(photo_back, photo)),
               "photo_psnr_to_autoencoder": float(C.psnr(photo_back, photo_autoencoded))}
        rows.append(row)
        print(f"  {solver:8s} {steps:2d} steps, {forward} calls/pass: digits PSNR {row['recon_psnr']:.2f} "
              f"(to autoencoder {row['recon_psnr_to_autoencoder']:.2f}) SSIM {row['recon_ssim']:.3f}; edit success "
              f"{row['edit_success']:.2f} colour err {row['edit_colour_error']:.3f}; photo PSNR {row['photo_psnr']:.2f} "
              f"(to autoencoder {row['photo_psnr_to_autoencoder']:.2f}) SSIM {row['photo_ssim']:.3f}  ({time.time() - start:.0f} s)", flush=True)
    autoencoder = {"digits_psnr": float(C.psnr(autoencoded, images).mean()), "digits_ssim": float(C.ssim(autoencoded, images).mean()),
                   "photo_psnr": float(C.psnr(photo_autoencoded, photo)), "photo_ssim": float(C.ssim(photo_autoencoded, photo))}
    return rows, autoencoder, photos


def plot(rows, path, marked):
    """Faithfulness (SSIM to the input) against edit success: one curve per sweep (eta, gamma, stop),
    and marked single settings. The axes are zoomed to the data."""
    from PIL import Image, ImageDraw, ImageFont
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:
        font = ImageFont.load_default()
    xs_all = [r["edit_success"] for r in rows]
    ys_all = [r["ssim_to_input"] for r in rows]
    x0, x1 = max(0.0, min(xs_all) - 0.05), min(1.0, max(xs_all) + 0.03)
    y0, y1 = max(0.0, min(ys_all) - 0.03), min(1.0, max(ys_all) + 0.03)
    W, H, L, B, T, R = 720, 520, 70, 60, 110, 40
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
        d.text((L - 40, ys(vy) - 7), f"{vy:.2f}", fill="black", font=font)
    d.rectangle([L, T, L + pw, T + ph], outline="black")
    d.text((L + pw / 2 - 170, H - 28), "edit success: the classifier reads the target digit", fill="black", font=font)
    d.text((10, 8), "Demo model: faithfulness (SSIM to the input) against edit success, held-out digits", fill="black", font=font)
    ds = DEMO_SETTING
    curves = (("eta", (200, 60, 30), f"eta sweep (gamma {ds['gamma']}, stop {ds['stop']})", "eta", (6, -16)),
              ("gamma", (30, 90, 200), f"gamma sweep (eta {ds['eta']}, stop {ds['stop']})", "g", (6, 4)),
              ("stop", (40, 150, 60), f"stop sweep (gamma {ds['gamma']}, eta {ds['eta']})", "stop", (-62, -6)))
    for n, (key, colour, label, short, (dx, dy)) in enumerate(curves):
        pts = [r for r in rows if r["sweep"] == key]
        coords = [(xs(r["edit_success"]), ys(r["ssim_to_input"])) for r in pts]
        d.line(coords, fill=colour, width=2)
        for (x, y), r in zip(coords, pts):
            d.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour)
            d.text((x + dx, y + dy), f"{short} {r[key]:g}", fill=colour, font=font)
        ly = 32 + 18 * n
        d.line([(14, ly + 7), (34, ly + 7)], fill=colour, width=3)
        d.text((40, ly), label, fill=colour, font=font)
    for r, name in marked:
        x, y = xs(r["edit_success"]), ys(r["ssim_to_input"])
        d.rectangle([x - 5, y - 5, x + 5, y + 5], outline="black", width=2)
        d.text((x - 190, y + 8), name, fill="black", font=font)
    im.save(path)


def save_small_png(image_hwc, path):
    """Save (H, W, 3) in [0, 1] as a palette PNG (a few times smaller than RGB for these images)."""
    from PIL import Image
    Image.fromarray((image_hwc * 255).round().byte().numpy()).quantize(colors=256).save(path)


def run_sweeps(pipe, classifier, images, targets, reference, autoencoded, images_dir, start):
    """The reconstruction and the eta, gamma and stop sweeps with the workflow's euler, 28 steps;
    writes the plot and the examples strip. Returns the reconstruction's row and the sweeps' rows."""
    inverted = {}
    for gamma in sorted(set(GAMMAS)):
        inverted[gamma] = pipe.invert(reference, gamma)
        print(f"  inverted at gamma {gamma} ({time.time() - start:.0f} s)", flush=True)

    # Reconstruction: plain ODE inversion and back under the empty prompt (gamma 0, eta 0, cfg 1).
    recon = pipe.decode(pipe.edit(inverted[0.0], reference, "", 0.0, cfg=1.0))
    recon_row = {"ssim_to_input": float(C.ssim(recon, images).mean()),
                 "rms_to_input": float((recon - images).pow(2).flatten(1).mean(1).sqrt().mean()),
                 "rms_to_autoencoder": float((recon - autoencoded).pow(2).flatten(1).mean(1).sqrt().mean()),
                 "edit_success": float((classifier(recon).argmax(1) == targets).float().mean())}
    print(f"  reconstruction (gamma 0, eta 0, empty prompt): SSIM {recon_row['ssim_to_input']:.3f}, "
          f"RMS {recon_row['rms_to_input']:.4f} (to the autoencoder's own reconstruction {recon_row['rms_to_autoencoder']:.4f})", flush=True)

    rows, examples = [], {}
    d = DEMO_SETTING
    settings = ([("eta", d["gamma"], eta, d["stop"]) for eta in ETAS] + [("gamma", g, d["eta"], d["stop"]) for g in GAMMAS]
                + [("stop", d["gamma"], d["eta"], stop) for stop in STOPS]
                + [("paper", PAPER_SETTING["gamma"], PAPER_SETTING["eta"], PAPER_SETTING["stop"])])
    for sweep, gamma, eta, stop in settings:
        edited, row = measure(pipe, classifier, images, targets, inverted, reference, gamma, eta, stop)
        row["sweep"] = sweep
        rows.append(row)
        examples[(gamma, eta, stop)] = edited
        print(f"  {sweep:5s} gamma {gamma:4.2f} eta {eta:4.2f} stop {stop:4.2f}: success {row['edit_success']:.2f}  SSIM {row['ssim_to_input']:.3f}  "
              f"RMS {row['rms_to_input']:.3f}  colour err {row['mean_colour_error']:.3f}  ({time.time() - start:.0f} s)", flush=True)

    paper = next(r for r in rows if r["sweep"] == "paper")
    plot(rows, images_dir / "demo_tradeoff.png", [(paper, "paper's setting (g .5, eta .9, stop .25)")])
    # A strip of examples: input, then the edit at each eta (the demo setting's gamma and stop).
    k = 8
    strip = torch.cat([images[:k]] + [examples[(d["gamma"], eta, d["stop"])][:k] for eta in ETAS], dim=0)
    grid = strip.reshape(1 + len(ETAS), k, 3, C.SIZE, C.SIZE).permute(0, 3, 1, 4, 2).reshape((1 + len(ETAS)) * C.SIZE, k * C.SIZE, 3)
    save_small_png(grid, images_dir / "demo_eta_examples.png")
    print(f"wrote {images_dir / 'demo_tradeoff.png'}, {images_dir / 'demo_eta_examples.png'}", flush=True)
    return recon_row, rows


def save_photo_strip(photos, rows, path, scale=2):
    """The photo, its autoencoder reconstruction, then each solver's round trip at each budget, each
    captioned with its PSNR to the photo and to the autoencoder's reconstruction (the ceiling)."""
    from PIL import Image, ImageDraw, ImageFont
    try:
        font = ImageFont.load_default(size=12)
    except TypeError:
        font = ImageFont.load_default()
    psnr = {(r["solver"], r["steps"]): r for r in rows}
    tiles = [(photos["input"], "input", ""), (photos["autoencoder"], "autoencoder only", "(the ceiling)")]
    for (solver, steps), image in ((k, v) for k, v in photos.items() if isinstance(k, tuple)):
        r = psnr[(solver, steps)]
        tiles.append((image, f"{solver}, {r['calls_per_pass']} calls",
                      f"{r['photo_psnr']:.1f} / {r['photo_psnr_to_autoencoder']:.1f} dB"))
    side, cap = C.SIZE * scale, 32
    sheet = Image.new("RGB", (len(tiles) * side, side + cap), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image, line1, line2) in enumerate(tiles):
        im = Image.fromarray((image[0].clamp(0, 1).permute(1, 2, 0) * 255).round().byte().numpy())
        sheet.paste(im.resize((side, side), Image.NEAREST), (i * side, 0))
        draw.text((i * side + 3, side + 2), line1, fill="black", font=font)
        draw.text((i * side + 3, side + 16), line2, fill="black", font=font)
    sheet.quantize(colors=256).save(path, optimize=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="held-out digits per setting")
    parser.add_argument("--images", default=str(C.ROOT / "docs" / "images"), help="where the plot and examples go")
    parser.add_argument("--json", default=str(C.ROOT / "output" / "demo_metrics.json"), help="the sweeps' numbers")
    parser.add_argument("--solvers-json", default=str(C.ROOT / "output" / "demo_solvers.json"), help="the solver table's numbers")
    parser.add_argument("--only", choices=("sweeps", "solvers"), help="run only the sweeps, or only the solver table")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plot-only", action="store_true", help="redraw the plot from the JSON of the last run")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    start = time.time()
    images_dir, json_path, solvers_path = Path(opts.images), Path(opts.json), Path(opts.solvers_json)
    images_dir.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    solvers_path.parent.mkdir(parents=True, exist_ok=True)
    if opts.plot_only:
        rows = json.loads(json_path.read_text())["sweeps"]
        plot(rows, images_dir / "demo_tradeoff.png", [(next(r for r in rows if r["sweep"] == "paper"), "paper's setting (g .5, eta .9, stop .25)")])
        return
    pipe = DemoPipeline()
    classifier = C.load_classifier()
    images, labels, targets = held_out_set(opts.n)
    reference = pipe.encode(images)
    with torch.no_grad():
        recon_images = pipe.decode(reference)
        acc_inputs = float((classifier(images).argmax(1) == labels).float().mean())
        acc_recon = float((classifier(recon_images).argmax(1) == labels).float().mean())
    print(f"{opts.n} held-out digits; classifier accuracy {acc_inputs:.3f} on them, {acc_recon:.3f} on their "
          f"autoencoder reconstructions; autoencoder SSIM {float(C.ssim(recon_images, images).mean()):.3f}", flush=True)

    if opts.only != "solvers":
        t = time.time()
        recon_row, rows = run_sweeps(pipe, classifier, images, targets, reference, recon_images, images_dir, start)
        result = {"n": opts.n, "steps": STEPS, "cfg": CFG, "demo_setting": DEMO_SETTING, "paper_setting": PAPER_SETTING,
                  "classifier_accuracy_inputs": acc_inputs, "classifier_accuracy_autoencoder": acc_recon,
                  "reconstruction": recon_row, "sweeps": rows, "targets": targets.tolist(), "labels": labels.tolist(),
                  "seconds": round(time.time() - t, 1)}
        json_path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {json_path} ({time.time() - start:.0f} s)", flush=True)
    if opts.only != "sweeps":
        t = time.time()
        print(f"solvers at equal network calls per pass {C.SOLVER_BUDGETS}; demo edit {DEMO_SETTING}", flush=True)
        rows, autoencoder, photos = solver_table(pipe, classifier, images, targets, reference, load_astronaut(), start)
        save_photo_strip(photos, rows, images_dir / "demo_solvers_astronaut.png")
        result = {"n": opts.n, "budgets": C.SOLVER_BUDGETS, "cfg": CFG, "demo_setting": DEMO_SETTING, "autoencoder": autoencoder,
                  "solvers": rows, "seconds": round(time.time() - t, 1), "threads": opts.threads}
        solvers_path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {solvers_path}, {images_dir / 'demo_solvers_astronaut.png'} ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
