"""The pack on the models that users of the peers' packs load: the emoji demo model through ComfyUI's
own loader nodes, in-process (tests/conftest.py's host), with a LoRA applied by the core
LoraLoaderModelOnly node (from a small LoRA file made here) and with UNETLoader's fp8_e4m3fn weights.

On each model the paper's edit (RF-Inversion Sampler -> Controlled Reverse Sampler, each through
SamplerCustomAdvanced, as demo/evaluate.py wires it) runs and is finite; the LoRA changes it, and at
strength 0 it is the unpatched edit; fp8 lands close to the default-dtype edit. The three samplers run
with the exact path (record_path on, the reverse's inversion input wired) and the Rectified SDE
Sampler generates, and the Edit Region node runs on the LoRA-patched model. GGUF loaders come from a
third-party pack (ComfyUI-GGUF) that is not installed here: they are not checked.

The numbers that the bounds come from are printed (pytest -s) and written in docs/testing.md.
"""
import pytest
import torch

from demo import common as C
from demo import scenes as S
from harness import small_clip

STEPS = 28  # the demo's
CFG = 4.0
LORA_NAME = "rf_test_lora.safetensors"
RANK = 4
# The LoRA's modules, in the two key formats that ComfyUI's model_lora_keys_unet maps onto an MMDiT's
# weights: the generic "diffusion_model.<module>" and kohya's "lora_unet_<module with underscores>".
LORA_MODULES = {
    "diffusion_model.joint_blocks.0.x_block.attn.qkv": "diffusion_model.joint_blocks.0.x_block.attn.qkv",
    "diffusion_model.joint_blocks.0.x_block.mlp.fc2": "diffusion_model.joint_blocks.0.x_block.mlp.fc2",
    "diffusion_model.joint_blocks.1.x_block.attn.proj": "diffusion_model.joint_blocks.1.x_block.attn.proj",
    "lora_unet_joint_blocks_1_x_block_mlp_fc1": "diffusion_model.joint_blocks.1.x_block.mlp.fc1",
    "lora_unet_joint_blocks_0_context_block_attn_qkv": "diffusion_model.joint_blocks.0.context_block.attn.qkv",
}
ALPHA = 2.0  # the LoRA's scale is alpha / rank = 0.5
SCENES = (3, 57, 181, 402)  # held-out scenes, by index in demo.scenes.split()'s held-out list


def lora_tensors(model):
    """A rank-4 LoRA on LORA_MODULES, seeded, whose update is about a third of each weight's norm."""
    weights = model.model.state_dict()
    generator = torch.Generator().manual_seed(3)
    out = {}
    for key, weight_key in LORA_MODULES.items():
        w = weights[weight_key + ".weight"].float()
        up = torch.randn(w.shape[0], RANK, generator=generator)
        down = torch.randn(RANK, w.shape[1], generator=generator)
        scale = 0.35 * w.norm() / (ALPHA / RANK * up @ down).norm()
        out[f"{key}.lora_up.weight"] = (up * scale.sqrt()).contiguous()
        out[f"{key}.lora_down.weight"] = (down * scale.sqrt()).contiguous()
        out[f"{key}.alpha"] = torch.tensor(ALPHA)
    return out


def rel(a, b):
    return float((a - b).norm() / b.norm())


class Demo:
    """The emoji demo model's edit graph, node by node, on a model that the loader nodes give."""

    def __init__(self, nodes, lora_dir):
        import folder_paths
        self.nodes, self.lora_dir = nodes, lora_dir
        folder_paths.add_model_folder_path("diffusion_models", str(C.MODELS / "diffusion_models"))
        folder_paths.add_model_folder_path("vae", str(C.MODELS / "vae"))
        folder_paths.add_model_folder_path("loras", str(lora_dir))
        self.vae = nodes.VAELoader().load_vae(S.VAE_NAME)[0]
        self.clip = small_clip.load(S.CLIP_FILE)  # what RFDemoTextEncoderLoader returns for the file
        self.empty = self.text([""])

    def node(self, node_id):
        return self.nodes.NODE_CLASS_MAPPINGS[node_id]

    def unet(self, weight_dtype="default"):
        return self.nodes.UNETLoader().load_unet(S.UNET_NAME, weight_dtype)[0]

    def sampling(self, model):
        return self.node("ModelSamplingSD3")().patch(model, 3.0)[0]

    def lora(self, model, strength=1.0):
        return self.nodes.LoraLoaderModelOnly().load_lora_model_only(model, LORA_NAME, strength)[0]

    def text(self, texts):
        conds = [self.nodes.CLIPTextEncode().encode(self.clip, t)[0][0] for t in texts]
        return [[torch.cat([c[0] for c in conds]), {"pooled_output": torch.cat([c[1]["pooled_output"] for c in conds])}]]

    @torch.no_grad()
    def encode(self, images):
        return self.node("VAEEncode")().encode(self.vae, images.permute(0, 2, 3, 1))[0]

    @torch.no_grad()
    def decode(self, latent):
        return self.node("VAEDecode")().decode(self.vae, latent)[0].permute(0, 3, 1, 2).clamp(0, 1)

    def sample(self, model, positive, negative, cfg, sampler, sigmas, latent, noise=None):
        guider = self.node("CFGGuider").execute(model, positive, negative, cfg)[0]
        noise = noise or self.node("DisableNoise").execute()[0]
        return self.node("SamplerCustomAdvanced").execute(noise, guider, sampler, sigmas, latent)[0]

    def sigmas(self, model):
        return self.node("BasicScheduler").execute(model, "simple", STEPS, 1.0)[0]

    def invert(self, model, latent, record_path=False):
        """The paper's inversion (gamma 0.5, empty prompt at cfg 1): (inverted latent, its SAMPLER)."""
        sampler = self.node("RFInversionSampler").execute(0.5, 0, "euler", record_path)[0]
        sigmas = self.node("FlipSigmas").execute(self.sigmas(model))[0]
        return self.sample(model, self.empty, self.empty, 1.0, sampler, sigmas, latent), sampler

    def reverse(self, model, inverted, reference, cond, cfg=CFG, inversion=None, eta=0.9):
        """The paper's reverse (eta 0.9 over the first quarter of the steps) under ``cond``."""
        sampler = self.node("ControlledReverseSampler").execute(reference, eta, 0.0, 0.25, "constant", False, 0, "euler",
                                                                inversion)[0]
        return self.sample(model, cond, self.empty, cfg, sampler, self.sigmas(model), inverted)

    def edit(self, model, latent, cond):
        inverted, _ = self.invert(model, latent)
        return self.decode(self.reverse(model, inverted, latent, cond))

    def generate(self, model, cond, latent):
        """The Rectified SDE Sampler from seeded noise, under ``cond`` at the edit's cfg."""
        sampler = self.node("RectifiedSDESampler").execute(1.0)[0]
        noise = self.node("RandomNoise").execute(7)[0]
        return self.decode(self.sample(model, cond, self.empty, CFG, sampler, self.sigmas(model), latent, noise))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as demo/evaluate.py runs: the demo's network is so small that on shared cores
    a second thread makes each call some 40 times slower (0.01 s against 0.47 s, measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo(host, tmp_path_factory):
    return Demo(host, tmp_path_factory.mktemp("loras"))


@pytest.fixture(scope="module")
def scenes(demo):
    """Four held-out scenes (object pair, order and background never seen in training), the right
    slot's emoji to change: (images, latent, source cond, edit cond, target objects)."""
    _, held = S.split()
    triples = [held[i] for i in SCENES]
    targets = [(b + 7) % S.N_OBJ if (b + 7) % S.N_OBJ != a else (b + 8) % S.N_OBJ for a, b, _ in triples]
    images = S.render(S.load_objects(), *zip(*triples))
    return (images, demo.encode(images), demo.text([S.prompt(*t) for t in triples]),
            demo.text([S.prompt(a, t, g) for (a, _, g), t in zip(triples, targets)]), torch.tensor(targets))


@pytest.fixture(scope="module")
def models(demo):
    """The models as the loader nodes give them: the default weights, with the LoRA at strength 1
    and 0, and fp8_e4m3fn weights; each then through ModelSamplingSD3 (shift 3), as the workflow wires it."""
    from safetensors.torch import save_file
    base = demo.unet()
    save_file(lora_tensors(base), str(demo.lora_dir / LORA_NAME))
    return {"default": demo.sampling(base), "lora": demo.sampling(demo.lora(base)),
            "lora_0": demo.sampling(demo.lora(base, 0.0)), "fp8": demo.sampling(demo.unet("fp8_e4m3fn"))}


@pytest.fixture(scope="module")
def edits(demo, models, scenes):
    """The paper's edit on each model, in the order default, lora, lora_0, fp8, then default again
    (after the LoRA's weights were loaded into the shared network)."""
    _, latent, _, edit_cond, _ = scenes
    out = {name: demo.edit(models[name], latent, edit_cond) for name in ("default", "lora", "lora_0", "fp8")}
    out["default_again"] = demo.edit(models["default"], latent, edit_cond)
    return out


@pytest.fixture(scope="module")
def classifier():
    return S.load_classifier(strict=True)  # the strict reader


def test_lora_loader_maps_every_key_of_the_file_onto_the_mmdit(models):
    """Every module of the LoRA file, in both key formats, is patched, and loaded as the host loads a
    model to sample, each patched weight is W + (alpha / rank) up @ down; no other weight moves."""
    import comfy.model_management
    from safetensors.torch import load_file
    import folder_paths
    patched = set(models["lora"].patches)
    expected = {m + ".weight" for m in LORA_MODULES.values()}
    print(f"LoRA keys patched by LoraLoaderModelOnly: {len(patched & expected)} of {len(expected)}")
    assert patched == expected
    assert not models["lora_0"].patches and not models["default"].patches
    lora = load_file(folder_paths.get_full_path_or_raise("loras", LORA_NAME))
    comfy.model_management.load_models_gpu([models["default"]])  # the unpatched weights, whatever ran before
    base = {k: v.clone() for k, v in models["default"].model.state_dict().items()}
    comfy.model_management.load_models_gpu([models["lora"]])
    loaded = models["lora"].model.state_dict()
    worst = 0.0
    for key, weight in base.items():
        module = next((m for m, w in LORA_MODULES.items() if w + ".weight" == key), None)
        if module is None:
            assert torch.equal(loaded[key], weight), key
            continue
        want = weight + ALPHA / RANK * lora[module + ".lora_up.weight"] @ lora[module + ".lora_down.weight"]
        worst = max(worst, rel(loaded[key], want))
        assert rel(weight, want) > 0.25  # the update is a third of the weight: a missed patch fails below
    print(f"patched weights against W + (alpha / rank) up @ down: worst relative difference {worst:.1e}")
    assert worst < 1e-6


def test_the_edit_runs_on_the_lora_patched_model_and_the_lora_changes_it(edits, scenes, classifier):
    targets = scenes[-1]
    default, lora = edits["default"], edits["lora"]
    assert torch.isfinite(lora).all()
    change = float((lora - default).abs().mean())
    psnr = C.psnr(lora, default)
    read = {name: [int(v) for v in classifier.read(edits[name], 1)] for name in ("default", "lora")}
    print(f"LoRA (strength 1) against the unpatched edit: mean |difference| {change:.4f} of the [0, 1] range, "
          f"PSNR {psnr.mean():.1f} dB (per scene {[round(float(p), 1) for p in psnr]}); edited slot reads {read}, "
          f"targets {targets.tolist()}")
    assert change > 0.01
    # Strength 0 is the unpatched edit, bit for bit; so is the unpatched model's edit run after the
    # LoRA's: the patch does not leak into the network that the clones share.
    assert torch.equal(edits["lora_0"], default)
    assert torch.equal(edits["default_again"], default)


def test_the_edit_runs_on_fp8_weights_close_to_the_default_dtype(models, edits, scenes, classifier):
    dtypes = {p.dtype for p in models["fp8"].model.diffusion_model.parameters()}
    assert dtypes == {torch.float8_e4m3fn}, dtypes
    targets = scenes[-1]
    fp8, default = edits["fp8"], edits["default"]
    assert torch.isfinite(fp8).all()
    change = float((fp8 - default).abs().mean())
    psnr = C.psnr(fp8, default)
    read = {name: [int(v) for v in classifier.read(edits[name], 1)] for name in ("default", "fp8")}
    print(f"fp8_e4m3fn against the default-dtype edit: mean |difference| {change:.4f}, PSNR {psnr.mean():.1f} dB "
          f"(lowest {psnr.min():.1f}); edited slot reads {read}, targets {targets.tolist()}")
    assert change < 0.05  # 0.025 on the 128 px emoji model (0.02 on the 64 px one)
    # the 128 px emoji model: 25.6 dB mean, 23.0 lowest, every edited slot read the same (its first
    # version, trained on varied scenes alone in the last stage: 22.8 dB lowest, one slot read otherwise);
    # the 64 px model: above 27 dB
    assert float(psnr.min()) > 20
    assert sum(a == b for a, b in zip(read["fp8"], read["default"])) >= 3


@pytest.mark.parametrize("name", ["lora", "fp8"])
def test_the_three_samplers_with_the_exact_path(demo, models, scenes, classifier, name):
    """RF-Inversion Sampler with record_path on (the paper's gamma 0.5), Controlled Reverse Sampler with
    its inversion input wired: under the inversion's own prompt (empty, cfg 1) and eta 0 the photo's
    latent comes back (docs/exact_path.md); under the edit prompt at the paper's eta 0.9 the edit runs.
    The Rectified SDE Sampler generates the scenes' prompts."""
    _, latent, source_cond, edit_cond, _ = scenes
    model = models[name]
    inverted, inversion = demo.invert(model, latent, record_path=True)
    assert torch.isfinite(inverted["samples"]).all()
    back = demo.reverse(model, inverted, latent, demo.empty, cfg=1.0, inversion=inversion, eta=0.0)["samples"]
    error = rel(back, latent["samples"])
    edited = demo.decode(demo.reverse(model, inverted, latent, edit_cond, inversion=inversion))
    generated = demo.generate(model, source_cond, latent)
    prompted = torch.tensor([S.split()[1][i] for i in SCENES])[:, :2]
    reads = torch.stack([classifier.read(generated, s) for s in (0, 1)], 1)
    print(f"{name}: Rectified SDE samples of the scenes' prompts, {float((reads == prompted).float().mean()):.2f} of the "
          "objects read as prompted")
    print(f"{name}: exact-path round trip, relative error {error:.1e} in the latent; linked edit and Rectified SDE "
          f"sample finite: {bool(torch.isfinite(edited).all())}, {bool(torch.isfinite(generated).all())}")
    assert error < 1e-5
    assert torch.isfinite(edited).all() and torch.isfinite(generated).all()
    # the strict reader on 4 scenes' 8 emoji: 8 of 8 with the LoRA, 7 of 8 in fp8 on the 128 px model
    assert float((reads == prompted).float().mean()) >= 0.75
    assert edited.shape == generated.shape == (len(latent["samples"]), 3, S.SIZE, S.SIZE)


def test_the_edit_region_runs_on_the_lora_patched_model(demo, models, scenes):
    _, latent, source_cond, edit_cond, _ = scenes
    mask, soft = demo.node("RFEditRegion").execute(models["lora"], source_cond, edit_cond, latent, 0.2, 3, 2, 0).args
    assert mask.shape == soft.shape == (len(latent["samples"]), S.SIZE, S.SIZE)
    assert torch.isfinite(soft).all()
    slot = ~S.outside(1)
    inside = float(mask[:, slot].mean())
    outside = float(mask[:, ~slot].mean())
    print(f"Edit Region on the LoRA-patched model: {inside:.2f} of the edited slot's box marked, {outside:.2f} of the rest")
    assert inside >= 0.8 and outside <= 0.2
