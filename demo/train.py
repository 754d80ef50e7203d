"""Train the demo's default model, the emoji scenes model, from the npm package, on the CPU.

    nice .venv/bin/python -m demo.train          (see demo/train_log.txt for its time)

It fetches `emoji-datasource-google@16.0.0` with `npm pack` into ~/.cache/rfdemo_emoji (once; the
only download) and writes, under demo/:

    models/diffusion_models/rfdemo_emoji_mmdit.safetensors   an SD3-family MMDiT (ComfyUI's own class)
    models/vae/rfdemo_emoji_taesd.safetensors                a TAESD with 16 latent channels
    models/text_encoders/rfdemo_emoji_clip.safetensors       a small CLIP text transformer (ComfyUI's class)
    eval/emoji_classifier.safetensors                        the slot classifier of the metrics
    eval/emoji_objects.safetensors                           the vocabulary's 20 emoji at 28 px (RGBA)
    inputs/*.png                                             the demo's input images
    train_log.txt                                            what the run did, and how long it took

Stages: the autoencoder on training scenes; the latents of every training scene; the text encoder
and the flow model together (rectified-flow loss, velocity target eps - x0, the empty prompt for 10 %
of the batch: CFG's negative and the inversion's prompt); the slot classifier. Each stage's result,
and the flow stage every few hundred steps, is checkpointed in output/demo_emoji_train/: run the
same command again to resume where it stopped (--fresh starts over). Seeded; reproducible on the
same torch build and thread count.
"""
import argparse
import time

import torch
import torch.nn.functional as F

from demo import common as C
from demo import scenes as S
from harness import small_clip

CKPT = C.ROOT / "output" / "demo_emoji_train"
LOG = C.DEMO / "train_log.txt"
P_NULL = 0.1
BATCH = 128


def log(msg):
    print(msg, flush=True)
    with LOG.open("a") as f:
        f.write(msg + "\n")


def save_ckpt(name, state):
    tmp = CKPT / f"{name}.tmp"
    torch.save(state, tmp)
    tmp.replace(CKPT / f"{name}.pt")  # atomic: a kill mid-write leaves the last good checkpoint


def load_ckpt(name):
    path = CKPT / f"{name}.pt"
    return torch.load(path, weights_only=False) if path.exists() else None


def random_scenes(objects, triples, n, gen, vary=False):
    """n random scenes of ``triples``; ``vary``: with the unprompted tint and moves."""
    idx = torch.randint(0, len(triples), (n,), generator=gen)
    t = triples[idx]
    tint, shift = S.unprompted_variation(n, gen) if vary else (None, None)
    return S.render(objects, t[:, 0], t[:, 1], t[:, 2], tint=tint, shift=shift), t


def train_vae(objects, triples, steps, gen, batch=16):
    enc, dec = C.build_taesd()
    C.init_taesd(enc, dec)
    return C.train_autoencoder(enc, dec, lambda: random_scenes(objects, triples, batch, gen)[0], steps, 2e-3, 1e-4, log)


def _clip_layer_out_of_place(self, x, mask=None, optimized_attention=None):
    """ComfyUI's CLIPLayer.forward (comfy/clip_model.py) with its residual adds out of place: the
    same function, but autograd cannot differentiate through the in-place ``x +=``."""
    x = x + self.self_attn(self.layer_norm1(x), mask, optimized_attention)
    return x + self.mlp(self.layer_norm2(x))


def encode_tokens(transformer, tokens):
    """What SDClipModel.forward computes for plain token ids (tokens: (N, 12) long), batched: the
    hidden states of the last layer and the projected pooled vector at the first end token.
    (SDClipModel embeds one prompt at a time, which makes the token table's gradient one dense copy
    per prompt.) tests/test_demo.py checks that it equals CLIPTextEncode's output."""
    end = S.TEXT_CONFIG["eos_token_id"]
    num_tokens = ((tokens == end).int().argmax(1) + 1).tolist()
    embeds = transformer.get_input_embeddings()(tokens, out_dtype=torch.float32)
    out = transformer(None, None, embeds=embeds, num_tokens=num_tokens, intermediate_output=None,
                      final_layer_norm_intermediate=True, dtype=torch.float32)
    return out[0], out[2]


class Flow(torch.nn.Module):
    """The text encoder and the MMDiT, trained together: prompt tokens -> CLIPTextEncode's (hidden
    states, pooled) -> the velocity the SD3 model sampling reads."""

    def __init__(self):
        super().__init__()
        import comfy.clip_model
        comfy.clip_model.CLIPLayer.forward = _clip_layer_out_of_place  # training only: this process
        self.clip = small_clip.build_clip(S.TEXT_CONFIG, seed=0)
        self.text = small_clip.transformer(self.clip)
        self.text.requires_grad_(True)  # ComfyUI freezes a text encoder it builds
        self.dit = C.build_mmdit(S.DEPTH, pooled=S.TEXT_WIDTH, context=S.TEXT_WIDTH)

    def encode(self, tokens):
        return encode_tokens(self.text, tokens)

    def forward(self, x, sigma, tokens):
        context, pooled = self.encode(tokens)
        # SD3's model sampling gives the network 1000 * sigma and reads its output as the velocity
        # v with D = x - sigma * v (comfy/model_sampling.py, CONST).
        return self.dit(x, sigma * 1000, y=pooled, context=context)


def train_flow(flow, latents, tokens, empty_tokens, steps, gen, state=None, batch=BATCH, every=50, lr=1.5e-3, name="flow"):
    """AdamW at ``lr`` after 100 warm-up steps, constant, with an EMA of the weights. Every ``every``
    steps it checkpoints as ``name`` everything a killed run needs to resume where it stopped."""
    opt = torch.optim.AdamW(flow.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / 100))
    ema = {k: v.detach().clone() for k, v in flow.state_dict().items()}
    start, elapsed = 0, 0.0
    if state is not None:
        flow.load_state_dict(state["flow"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        ema = state["ema"]
        gen.set_state(state["gen"])
        start, elapsed = state["step"], state["elapsed"]
        log(f"  resumed at step {start} ({elapsed:.0f} s done)")
    t0 = time.time() - elapsed
    for step in range(start, steps):
        idx = torch.randint(0, len(latents), (batch,), generator=gen)
        x0 = latents[idx]
        toks = tokens[idx].clone()
        toks[torch.rand(batch, generator=gen) < P_NULL] = empty_tokens
        loss = C.rectified_flow_loss(lambda x, sigma: flow(x, sigma, toks), x0, gen)
        C.optimise(opt, sched, loss, flow.parameters())
        C.ema_update(ema, flow, min(0.995, (1 + step) / (10 + step)))
        if step % 25 == 0 or step == steps - 1:
            log(f"  flow step {step:5d}/{steps}  loss {loss.item():.4f}  {time.time() - t0:.0f} s")
        if (step + 1) % every == 0 or step == steps - 1:
            save_ckpt(name, {"flow": flow.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "ema": ema,
                               "gen": gen.get_state(), "step": step + 1, "elapsed": time.time() - t0})
    flow.load_state_dict(ema)
    return flow.eval()


def train_classifier(objects, triples, dec, enc, steps, gen):
    """On slot crops of training scenes, a quarter of them through the autoencoder (what the metrics
    read is decoded), with pixel noise."""
    model = S.SlotClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=1e-4)
    t0 = time.time()
    for step in range(steps):
        x, t = random_scenes(objects, triples, 32, gen, vary=True)
        with torch.no_grad():
            x[:8] = dec(enc(x[:8])).clamp(0, 1)
        x = (x + 0.03 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
        crops = torch.cat([S.crop(x, 0), S.crop(x, 1)])
        labels = torch.cat([t[:, 0], t[:, 1]])
        loss = F.cross_entropy(model(crops), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"  classifier step {step:4d}/{steps}  loss {loss.item():.3f}  {time.time() - t0:.0f} s")
    return model.eval()


@torch.no_grad()
def sample(flow, tokens, empty_tokens, gen, steps=20, cfg=4.0):
    """Euler samples of the prompts on SD3's shift-3 schedule with CFG (a check; the demo samples
    through ComfyUI)."""
    n = len(tokens)
    t = torch.linspace(1, 0, steps + 1)
    sigmas = 3 * t / (1 + 2 * t)
    x = torch.randn(n, 16, C.LATENT_SIDE, C.LATENT_SIDE, generator=gen)
    for i in range(steps):
        s = sigmas[i].repeat(n)
        v = flow(torch.cat([x, x]), torch.cat([s, s]), torch.cat([tokens, empty_tokens.expand(n, -1)]))
        v = v[n:] + cfg * (v[:n] - v[n:])
        x = x + (sigmas[i + 1] - sigmas[i]) * v
    return x


def stroke_painting():
    """A crude painting of a scene: a red disc with a brown stroke (an apple) and a yellow disc with
    four strokes (a sun) on blue, flat colours nothing like the emoji's shading."""
    from PIL import Image, ImageDraw
    im = Image.new("RGB", (C.SIZE, C.SIZE), tuple(round(255 * c) for c in S.PALETTE["blue"]))
    d = ImageDraw.Draw(im)
    d.ellipse([5, 23, 29, 45], fill=(220, 30, 30))
    d.line([(17, 24), (20, 17)], fill=(110, 60, 20), width=3)
    d.ellipse([41, 25, 55, 39], fill=(255, 200, 0))
    for a, b in (((48, 19), (48, 45)), ((35, 32), (61, 32)), ((39, 23), (57, 41)), ((57, 23), (39, 41))):
        d.line([a, b], fill=(255, 200, 0), width=2)
    return torch.tensor(list(im.get_flattened_data()), dtype=torch.float32).reshape(C.SIZE, C.SIZE, 3).permute(2, 0, 1) / 255


DEMO_SCENE = ("tangerine", "cat", "blue")  # a held-out scene (checked below): the demo's input
# What the prompt does not say, so that an edit must take it from the image: a darker blue, and the
# emoji moved by a pixel or two (training scenes have neither).
DEMO_TINT = (-0.07, -0.05, -0.10)
DEMO_SHIFT = ((1, -2), (-1, 2))


def make_inputs(objects, held):
    C.INPUTS.mkdir(parents=True, exist_ok=True)
    left, right, bg = S.NAMES.index(DEMO_SCENE[0]), S.NAMES.index(DEMO_SCENE[1]), S.BACKGROUNDS.index(DEMO_SCENE[2])
    if (left, right, bg) not in held:
        raise SystemExit(f"train: the demo scene {DEMO_SCENE} is not held out; pick another")
    scene = S.render(objects, left, right, bg, tint=torch.tensor([DEMO_TINT]), shift=torch.tensor([DEMO_SHIFT]))
    C.save_png(scene[0], C.INPUTS / "scene.png")
    C.save_png(stroke_painting(), C.INPUTS / "stroke_scene.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae-steps", type=int, default=600)
    parser.add_argument("--flow-steps", type=int, default=3000)
    parser.add_argument("--varied-steps", type=int, default=1000)
    parser.add_argument("--varied-copies", type=int, default=4, help="varied renders of each training scene for stage 3b")
    parser.add_argument("--classifier-steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1, help="1: on shared cores two threads ran 10x slower")
    parser.add_argument("--fresh", action="store_true", help="ignore the checkpoints in output/demo_emoji_train and start over")
    parser.add_argument("--time-flow", type=int, default=0, help="only time this many flow steps (to size the run) and exit")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    torch.manual_seed(0)
    from safetensors.torch import save_file
    CKPT.mkdir(parents=True, exist_ok=True)
    if opts.fresh:
        for p in CKPT.glob("*.pt"):
            p.unlink()
        LOG.unlink(missing_ok=True)
    start = time.time()

    pkg = S.package_dir(download=True)
    objects = S.objects_from_package(pkg)
    train, held = S.split()
    train_t = torch.tensor(train)
    log(f"run at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {S.N_OBJ} emoji x {S.N_BG} backgrounds, "
        f"{len(train)} training scenes, {len(held)} held out; torch {torch.__version__}, {opts.threads} thread(s)")

    state = load_ckpt("vae")
    gen = torch.Generator().manual_seed(0)
    enc, dec = C.build_taesd()
    if state is None:
        log(f"[1/4] autoencoder (TAESD, 16 latent channels, width {C.TAESD_WIDTH} of 64), {opts.vae_steps} steps")
        enc, dec = train_vae(objects, train_t, opts.vae_steps, gen)
        save_ckpt("vae", {"enc": enc.state_dict(), "dec": dec.state_dict()})
    else:
        enc.load_state_dict(state["enc"])
        dec.load_state_dict(state["dec"])
        enc.eval(), dec.eval()
        log("[1/4] autoencoder: from its checkpoint")

    with torch.no_grad():
        images = S.render(objects, train_t[:, 0], train_t[:, 1], train_t[:, 2])
        raw = torch.cat([enc(x) for x in images.split(128)])
    mean, std = raw.mean().item(), raw.std().item()
    latents = (raw - mean) / std
    log(f"[2/4] latents of the {len(train)} training scenes: raw mean {mean:.3f} std {std:.3f}")

    flow = Flow()
    tokens = torch.tensor([small_clip.tokens(flow.clip, S.prompt(*t)) for t in train])
    empty_tokens = torch.tensor(small_clip.tokens(flow.clip, ""))
    longest = int(((tokens == S.TEXT_CONFIG["eos_token_id"]).int().argmax(1) + 1).max())
    if longest >= S.TEXT_CONFIG["max_position_embeddings"]:
        raise SystemExit(f"train: a prompt takes {longest} tokens; the text encoder pads to {S.TEXT_CONFIG['max_position_embeddings']}")
    if opts.time_flow:
        t0 = time.time()
        train_flow(flow, latents, tokens, empty_tokens, opts.time_flow, torch.Generator().manual_seed(1), every=10**9)
        n = sum(p.numel() for p in flow.dit.parameters())
        print(f"{opts.time_flow} flow steps in {time.time() - t0:.1f} s; MMDiT {n / 1e6:.2f} M parameters")
        return
    state = load_ckpt("flow")
    if state is None or state["step"] < opts.flow_steps or "final" not in state:
        n_dit = sum(p.numel() for p in flow.dit.parameters())
        n_text = sum(p.numel() for p in flow.text.parameters())
        log(f"[3/4] text encoder ({n_text / 1e6:.2f} M, of which the token table {49408 * S.TEXT_WIDTH / 1e6:.2f} M) and "
            f"flow model (MMDiT depth {S.DEPTH}, {n_dit / 1e6:.2f} M) together, {opts.flow_steps} steps of batch {BATCH}, longest prompt {longest} tokens")
        flow = train_flow(flow, latents, tokens, empty_tokens, opts.flow_steps, torch.Generator().manual_seed(1), state)
        save_ckpt("flow", {"flow": flow.state_dict(), "step": opts.flow_steps, "final": True})
    else:
        flow.load_state_dict(state["flow"])
        flow.eval()
        log("[3/4] flow model: from its checkpoint")

    # Scenes that their prompt describes completely teach a model whose sample of a prompt is one
    # image: an edit then keeps the rest by the prompt alone, whatever eta and gamma do. Scenes
    # with a tint and moves that no prompt says make the input image matter.
    state = load_ckpt("flow_varied")
    if state is None or "final" not in state:
        gen = torch.Generator().manual_seed(6)
        with torch.no_grad():
            varied = [random_scenes(objects, train_t, 128, gen, vary=True) for _ in range(opts.varied_copies * len(train) // 128)]
            pool = (torch.cat([enc(x) for x, _ in varied]) - mean) / std
            row = {t: i for i, t in enumerate(train)}
            pool_tokens = torch.cat([tokens[[row[tuple(t)] for t in ts.tolist()]] for _, ts in varied])
        log(f"[3b] the flow model again on {len(pool)} scenes with an unprompted tint and moves, {opts.varied_steps} steps, lr 5e-4")
        flow.train()
        flow = train_flow(flow, pool, pool_tokens, empty_tokens, opts.varied_steps, gen, state, lr=5e-4, name="flow_varied")
        save_ckpt("flow_varied", {"flow": flow.state_dict(), "step": opts.varied_steps, "final": True})
    else:
        flow.load_state_dict(state["flow"])
        flow.eval()
        log("[3b] flow model on varied scenes: from its checkpoint")

    state = load_ckpt("classifier")
    if state is None:
        log(f"[4/4] slot classifier, {opts.classifier_steps} steps")
        clf = train_classifier(objects, train_t, dec, enc, opts.classifier_steps, torch.Generator().manual_seed(2))
        save_ckpt("classifier", {"clf": clf.state_dict()})
    else:
        clf = S.SlotClassifier()
        clf.load_state_dict(state["clf"])
        clf.eval()
        log("[4/4] slot classifier: from its checkpoint")

    held_t = torch.tensor(held)
    with torch.no_grad():
        real = S.render(objects, held_t[:, 0], held_t[:, 1], held_t[:, 2])
        recon = torch.cat([dec(enc(x)) for x in real.split(128)]).clamp(0, 1)
        acc = [float((clf.read(x, s) == held_t[:, s]).float().mean()) for x in (real, recon) for s in (0, 1)]
        log(f"  held-out scenes: classifier accuracy {(acc[0] + acc[1]) / 2:.3f} on the scenes, {(acc[2] + acc[3]) / 2:.3f} "
            f"on their autoencoder reconstructions; autoencoder PSNR {C.psnr(recon, real).mean():.1f} dB")
        pick = torch.randperm(len(held), generator=torch.Generator().manual_seed(3))[:64]
        lat = sample(flow, torch.tensor([small_clip.tokens(flow.clip, S.prompt(*held[i])) for i in pick.tolist()]), empty_tokens,
                     torch.Generator().manual_seed(4))
        samples = dec(lat * std + mean).clamp(0, 1)
        ok = [(clf.read(samples, s) == held_t[pick, s]).float() for s in (0, 1)]
        log(f"  samples of 64 held-out prompts (euler 20 steps, cfg 4): {float(torch.cat(ok).mean()):.3f} of the objects "
            f"read as prompted, both objects in {float((ok[0] * ok[1]).mean()):.3f} of the scenes")

    for path in (S.UNET_FILE, S.VAE_FILE, S.CLIP_FILE, S.CLASSIFIER_FILE):
        path.parent.mkdir(parents=True, exist_ok=True)
    about = "RF-Inversion demo, emoji scenes (Noto Emoji, Apache-2.0: demo/NOTICE-emoji.txt)"
    save_file(C.taesd_file_state(enc, dec, mean, std), str(S.VAE_FILE), metadata={"about": f"{about}: TAESD"})
    save_file({k: v.half().contiguous() for k, v in flow.dit.state_dict().items()}, str(S.UNET_FILE),
              metadata={"about": f"{about}: SD3-family MMDiT conditioned on the small CLIP's hidden states and pooled vector"})
    small_clip.save(flow.clip, S.CLIP_FILE, S.TEXT_CONFIG, f"{about}: small CLIP text transformer; the tokenizer is ComfyUI's CLIP tokenizer")
    save_file(clf.state_dict(), str(S.CLASSIFIER_FILE))
    save_file({"rgba": (objects * 255).round().to(torch.uint8)}, str(S.OBJECTS_FILE),
              metadata={"about": f"{about}: the vocabulary's emoji at 28 px", "names": ", ".join(S.NAMES)})
    make_inputs(objects, held)
    files = (S.UNET_FILE, S.VAE_FILE, S.CLIP_FILE, S.CLASSIFIER_FILE, S.OBJECTS_FILE)
    log("files (MB): " + ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f}" for p in files))
    log(f"done in {(time.time() - start) / 60:.1f} min this run")


if __name__ == "__main__":
    main()
