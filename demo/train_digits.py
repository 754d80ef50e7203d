"""Train the digit model (the fast model of the session tests; the demo's default is the emoji model of
demo/train.py) from data that is on this machine, on the CPU.

    PYTHONPATH=<dir with scikit-learn> .venv/bin/python -m demo.train_digits   (about 27 min on 2 shared cores)

Training needs scikit-learn (for its bundled digits data set) beside the host's environment; the demo
itself does not. It writes, under demo/:

    models/diffusion_models/rfdemo_digits_mmdit.safetensors   an SD3-family MMDiT (ComfyUI's own class)
    models/vae/rfdemo_digits_taesd.safetensors                a TAESD with 16 latent channels
    eval/digit_classifier.safetensors                         a small CNN for the edit-success metric
    eval/test_digits.safetensors                              the held-out digits the metrics use
    inputs/*.png                                              the demo's input images
    train_digits_log.txt                                      what this run did, and how long it took

Stages, in order: the autoencoder; the latents of the training images; the flow model on those
latents (rectified-flow loss, velocity target eps - x0, class dropout for the empty prompt); the
classifier. Everything is seeded, single-threaded and reproducible on the same torch build.
"""
import argparse
import time

import torch
import torch.nn.functional as F

from demo import common as C


def log(msg, lines=[]):  # noqa: B006  the list keeps the run's log for train_digits_log.txt
    print(msg, flush=True)
    lines.append(msg)
    return lines


def batch_images(glyphs, labels, n, gen):
    idx = torch.randint(0, len(labels), (n,), generator=gen)
    return C.render(glyphs[idx], *C.random_style(n, gen)), labels[idx]


def train_vae(glyphs, labels, steps, gen):
    enc, dec = C.build_taesd()
    C.init_taesd(enc, dec)
    return C.train_autoencoder(enc, dec, lambda: batch_images(glyphs, labels, 16, gen)[0], steps, 1e-3, 1e-4, log)


@torch.no_grad()
def encode_all(enc, glyphs, labels, copies, gen):
    zs, ys = [], []
    for _ in range(copies):
        for i in range(0, len(labels), 64):
            g = glyphs[i:i + 64]
            zs.append(enc(C.render(g, *C.random_style(len(g), gen))))
            ys.append(labels[i:i + 64])
    return torch.cat(zs), torch.cat(ys)


def train_dit(latents, labels, steps, gen, batch=128, p_null=0.15):
    model = C.build_mmdit()
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(0, len(labels), (batch,), generator=gen)
        x0 = latents[idx]
        y = labels[idx].clone()
        y[torch.rand(batch, generator=gen) < p_null] = C.NULL_CLASS
        cond = C.one_hot(y)
        # SD3's model sampling gives the network the timestep 1000 * sigma, and reads its output as
        # the velocity v with D = x - sigma * v (comfy/model_sampling.py, CONST).
        loss = C.rectified_flow_loss(lambda x, sigma: model(x, sigma * 1000, y=cond, context=cond[:, None]), x0, gen)
        C.optimise(opt, sched, loss, model.parameters())
        C.ema_update(ema, model, min(0.999, (1 + step) / (10 + step)))
        if step % 100 == 0 or step == steps - 1:
            log(f"  flow step {step:5d}/{steps}  loss {loss.item():.4f}  {time.time() - t0:.0f} s")
    model.load_state_dict(ema)
    return model.eval()


def train_classifier(glyphs, labels, recon_images, recon_labels, steps, gen):
    model = C.DigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    t0 = time.time()
    for step in range(steps):
        x, y = batch_images(glyphs, labels, 48, gen)
        idx = torch.randint(0, len(recon_labels), (16,), generator=gen)
        x = torch.cat([x, recon_images[idx]])
        y = torch.cat([y, recon_labels[idx]])
        x = (x + 0.03 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"  classifier step {step:4d}/{steps}  loss {loss.item():.3f}  {time.time() - t0:.0f} s")
    return model.eval()


def stroke_painting():
    """A crude painting of a 7: two flat, straight strokes, nothing like the data set's soft strokes."""
    from PIL import Image, ImageDraw
    bg, fg = (40, 12, 52), (90, 230, 80)
    im = Image.new("RGB", (C.SIZE, C.SIZE), bg)
    d = ImageDraw.Draw(im)
    d.line([(17, 14), (46, 14)], fill=fg, width=8)
    d.line([(46, 14), (28, 52)], fill=fg, width=8)
    return torch.tensor(list(im.get_flattened_data()), dtype=torch.float32).reshape(C.SIZE, C.SIZE, 3).permute(2, 0, 1) / 255


def make_inputs(g_test, y_test):
    """The demo's inputs: a held-out 3 in orange on navy, and a crude painting of a 7."""
    C.INPUTS.mkdir(parents=True, exist_ok=True)
    three = g_test[(y_test == 3).nonzero()[0, 0]]
    C.save_png(C.render(three[None], *C.style((1.0, 0.55, 0.1), (0.05, 0.08, 0.3), 0.45))[0], C.INPUTS / "three.png")
    C.save_png(stroke_painting(), C.INPUTS / "stroke_seven.png")


def main():
    # Alike in shape to demo/train.py's options (duplicates pairs them): each script's own stages and
    # budgets, which its --help should list as they are.
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae-steps", type=int, default=800)
    parser.add_argument("--flow-steps", type=int, default=6000)
    parser.add_argument("--classifier-steps", type=int, default=600)
    parser.add_argument("--copies", type=int, default=4, help="styles drawn per training digit for the flow model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reuse-vae", action="store_true", help="reuse the autoencoder of the last run (output/demo_train_cache.pt)")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    from safetensors.torch import save_file

    start = time.time()
    (g_train, y_train), (g_test, y_test) = C.load_digits_split()
    log(f"data: {len(y_train)} training digits, {len(y_test)} held out; torch {torch.__version__}, {opts.threads} thread(s)")

    cache = C.ROOT / "output" / "demo_train_cache.pt"
    if opts.reuse_vae:  # only to iterate on the later stages; a full run trains the autoencoder
        enc, dec = C.build_taesd()
        state = torch.load(cache)
        enc.load_state_dict(state["enc"])
        dec.load_state_dict(state["dec"])
        enc.eval(), dec.eval()
        gen.set_state(state["gen"])
        log(f"[1/4] autoencoder reused from {cache}")
    else:
        log(f"[1/4] autoencoder (TAESD, 16 latent channels, width {C.TAESD_WIDTH} of 64), {opts.vae_steps} steps")
        enc, dec = train_vae(g_train, y_train, opts.vae_steps, gen)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"enc": enc.state_dict(), "dec": dec.state_dict(), "gen": gen.get_state()}, cache)

    log(f"[2/4] latents of {opts.copies} styled copies of every training digit")
    raw, lat_labels = encode_all(enc, g_train, y_train, opts.copies, gen)
    mean, std = raw.mean().item(), raw.std().item()
    latents = (raw - mean) / std
    log(f"  {len(lat_labels)} latents, raw mean {mean:.3f} std {std:.3f}, range {raw.min():.2f} to {raw.max():.2f}")

    log(f"[3/4] flow model (MMDiT depth {C.DEPTH}), {opts.flow_steps} steps")
    dit = train_dit(latents, lat_labels, opts.flow_steps, gen)

    log(f"[4/4] digit classifier, {opts.classifier_steps} steps")
    with torch.no_grad():
        idx = torch.randperm(len(lat_labels), generator=gen)[:768]
        recon = torch.cat([dec(raw[i]) for i in idx.split(64)]).clamp(0, 1)
    clf = train_classifier(g_train, y_train, recon, lat_labels[idx], opts.classifier_steps, gen)
    with torch.no_grad():
        test_images = C.render(g_test, *C.random_style(len(y_test), gen))
        acc = (clf(test_images).argmax(1) == y_test).float().mean().item()
        acc_recon = (clf(dec(enc(test_images)).clamp(0, 1)).argmax(1) == y_test).float().mean().item()
        recon_psnr = C.psnr(dec(enc(test_images)).clamp(0, 1), test_images).mean().item()
    log(f"  held-out accuracy {acc:.3f} on drawn digits, {acc_recon:.3f} on their autoencoder reconstructions; "
        f"autoencoder PSNR {recon_psnr:.1f} dB")

    # The TAESD file: ComfyUI's VAE loader reads taesd_encoder.* / taesd_decoder.* / vae_scale / vae_shift.
    # TAESD.encode gives enc / vae_scale + vae_shift; SD3's latent format then maps l -> (l - 0.0609) * 1.5305.
    # These two numbers make that chain equal (enc - mean) / std: the normalised latents the flow model learned.
    vae_sd = C.taesd_file_state(enc, dec, mean, std)
    for path in (C.UNET_FILE, C.VAE_FILE, C.CLASSIFIER_FILE, C.INPUTS / "x"):
        path.parent.mkdir(parents=True, exist_ok=True)
    save_file(vae_sd, str(C.VAE_FILE), metadata={"about": "RF-Inversion demo: TAESD for 64x64 digit images"})
    save_file({k: v.half().contiguous() for k, v in dit.state_dict().items()}, str(C.UNET_FILE),
              metadata={"about": "RF-Inversion demo: SD3-family MMDiT conditioned on an 11-way one-hot digit class"})
    save_file(clf.state_dict(), str(C.CLASSIFIER_FILE))
    save_file({"glyphs": (g_test * 16).round().to(torch.uint8), "labels": y_test.to(torch.uint8)}, str(C.TEST_DIGITS_FILE))

    make_inputs(g_test, y_test)

    sizes = {p.name: p.stat().st_size / 1e6 for p in (C.UNET_FILE, C.VAE_FILE, C.CLASSIFIER_FILE, C.TEST_DIGITS_FILE)}
    n_dit = sum(p.numel() for p in dit.parameters())
    n_vae = sum(p.numel() for p in enc.parameters()) + sum(p.numel() for p in dec.parameters())
    log(f"params: flow model {n_dit / 1e6:.2f} M, autoencoder {n_vae / 1e6:.2f} M, classifier "
        f"{sum(p.numel() for p in clf.parameters()) / 1e6:.2f} M; files (MB): "
        + ", ".join(f"{k} {v:.1f}" for k, v in sizes.items()))
    lines = log(f"done in {(time.time() - start) / 60:.1f} min")
    (C.DEMO / "train_digits_log.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
