"""Tiny models built from ComfyUI's own classes, behind nodes with the loaders' output types.

- MODEL: a Flux (``exact_models.tiny_flux``), an SD3 MMDiT, a Flux.2, a Qwen-Image, a Z-Image
  (Lumina 2) or a Wan 2.2 5B (5-D video latent) from ``comfy.supported_models``, each one or two
  blocks at width 64, its layers initialised from a seed (comfy.ops leaves them empty); or Flux's
  model class with the exact velocity field of standard-normal data (``exact_models.exact_flux``).
- CLIP: a real ``comfy.sd.CLIP`` with ComfyUI's CLIP tokenizer and its CLIP text transformer at
  width 64 and two layers. Its hidden states (77 x 64) and pooled output (64) are what the tiny
  Flux and MMDiT take as context and pooled vector.
- VAE: seeded weights written to a safetensors file and loaded through ``comfy.sd.VAE`` the way
  VAELoader loads a VAE file, which detects the family from the keys: a TAESD with 16 latent
  channels (Flux, SD3, Z-Image), Flux.2's autoencoder (32 channels with the batch-norm latent,
  128 channels at 1/16), the Wan 2.1 video autoencoder at a small width (Qwen-Image's, a 5-D latent
  of one frame), or the Wan 2.2 one (48 channels, 1/16 in space and 1/4 in time) at a small width.
"""
import functools
import tempfile
from pathlib import Path

import torch
from comfy_api.latest import io

# The repository root is on the path: pytest.ini's pythonpath in-process, PYTHONPATH in the server
# (harness.host.start_server).
from harness import exact_models, small_clip

CATEGORY = "testing/rf_inversion"
WIDTH = 64  # text width: context and pooled dimension of every tiny model
ARCHITECTURES = ("flux", "sd3", "flux_exact_gaussian", "flux2", "qwen_image", "zimage", "wan22")
VAE_ARCHITECTURES = ("taesd16", "flux2", "qwen_image", "wan22")

TEXT_CONFIG = {"num_hidden_layers": 2, "hidden_size": WIDTH, "num_attention_heads": 2, "intermediate_size": 4 * WIDTH,
               "hidden_act": "quick_gelu", "max_position_embeddings": 77, "vocab_size": 49408,
               "eos_token_id": 49407, "projection_dim": WIDTH, "layer_norm_eps": 1e-5}

SD3_CONFIG = {"in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 2, "input_size": None,
              "adm_in_channels": WIDTH, "pos_embed_max_size": 32, "num_patches": 32 * 32,
              "pos_embed_scaling_factor": None, "x_block_self_attn_layers": [],
              "context_embedder_config": {"target": "torch.nn.Linear",
                                          "params": {"in_features": WIDTH, "out_features": 2 * 64}}}

# Each family's own config class with its network at width 64 (context width WIDTH), the other
# settings as model detection gives the full-size model. Flux.2's comes from the host's detection
# itself (exact_models.flux_unet_config), as its constructor's arguments changed between hosts.
FAMILY_CONFIGS = {
    "qwen_image": ("QwenImage", dict(image_model="qwen_image", in_channels=64, out_channels=16, num_layers=1,
                                     attention_head_dim=32, num_attention_heads=2, joint_attention_dim=WIDTH,
                                     axes_dims_rope=(8, 12, 12))),
    # Z-Image's modulation takes a 256-wide time embedding into min(dim, 256): width 256 is its smallest.
    "zimage": ("ZImage", dict(image_model="lumina2", patch_size=2, in_channels=16, dim=256, cap_feat_dim=WIDTH, n_layers=1,
                              n_refiner_layers=1, n_heads=2, n_kv_heads=2, qk_norm=True, axes_dims=[32, 48, 48],
                              axes_lens=[1536, 512, 512], rope_theta=256.0, ffn_dim_multiplier=8.0 / 3.0,
                              z_image_modulation=True, time_scale=1000.0)),
    "wan22": ("WAN22_T2V", dict(image_model="wan2.1", model_type="t2v", patch_size=(1, 2, 2), in_dim=48, out_dim=48, dim=64,
                                ffn_dim=128, freq_dim=256, text_dim=WIDTH, num_heads=2, num_layers=1, window_size=(-1, -1),
                                qk_norm=True, cross_attn_norm=True, eps=1e-6)),
}


_init_ = small_clip.seeded_init_
_checked = small_clip.checked


@functools.lru_cache(maxsize=None)
def tiny_model(architecture, seed):
    import comfy.supported_models
    if architecture == "flux":
        patcher = exact_models.tiny_flux(seed=seed, context_in_dim=WIDTH, vec_in_dim=WIDTH)
        _checked(patcher.model)
        return patcher
    if architecture == "flux_exact_gaussian":
        # Flux's model class with the exact velocity field of standard-normal data (model space)
        # in the network's place: no attention, so a 1024 x 1024 generation stays cheap, and the
        # samples' statistics are known.
        field = exact_models.GaussianMixture([torch.zeros(16, 1, 1)], [1.0])
        return exact_models.exact_flux(field)
    if architecture == "sd3":
        config = comfy.supported_models.SD3(dict(SD3_CONFIG))
        config.set_inference_dtype(torch.float32, None)
        model = config.get_model({})
        _init_(model.diffusion_model, seed)
        # pos_embed is a buffer that a checkpoint fills (torch.empty until then): SD3's fixed 2D
        # sin-cos table, from ComfyUI's own function.
        from comfy.ldm.modules.diffusionmodules.mmdit import get_2d_sincos_pos_embed
        net = model.diffusion_model
        table = get_2d_sincos_pos_embed(net.pos_embed.shape[-1], SD3_CONFIG["pos_embed_max_size"])
        with torch.no_grad():
            net.pos_embed.copy_(torch.from_numpy(table).float().unsqueeze(0))
        return exact_models.model_patcher(_checked(model))
    if architecture in FAMILY_CONFIGS or architecture == "flux2":
        name, unet_config = FAMILY_CONFIGS.get(architecture) or ("Flux2", exact_models.flux_unet_config(flux2=True, context_in_dim=WIDTH))
        config = getattr(comfy.supported_models, name)(dict(unet_config))
        config.set_inference_dtype(torch.float32, None)
        model = config.get_model({})
        _init_(model.diffusion_model, seed)
        return exact_models.model_patcher(_checked(model))
    raise ValueError(f"unknown architecture {architecture!r}")


@functools.lru_cache(maxsize=None)
def tiny_clip(seed):
    """ComfyUI's CLIP tokenizer and text transformer at width 64, two layers, seeded."""
    return small_clip.build_clip(TEXT_CONFIG, seed=seed)


def _autoencoder(architecture):
    """The autoencoder module whose state dict comfy.sd.VAE recognises as ``architecture``."""
    if architecture == "taesd16":
        import comfy.taesd.taesd
        return comfy.taesd.taesd.TAESD(latent_channels=16)
    if architecture == "flux2":
        # Flux.2's own: comfy.sd fixes its width (ch 128, about 84 M parameters, the smallest it
        # loads); the batch-norm latent (fresh: mean 0, variance 1) makes it 128 channels at 1/16.
        from comfy.ldm.models.autoencoder import AutoencoderKL
        ddconfig = {"double_z": True, "z_channels": 32, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                    "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0, "batch_norm_latent": True}
        return AutoencoderKL(ddconfig=ddconfig, embed_dim=32)
    if architecture == "qwen_image":
        import comfy.ldm.wan.vae  # Wan 2.1's video autoencoder; comfy.sd reads its width from the keys
        return comfy.ldm.wan.vae.WanVAE(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                        temperal_downsample=[False, True, True], dropout=0.0)
    if architecture == "wan22":
        import comfy.ldm.wan.vae2_2
        return comfy.ldm.wan.vae2_2.WanVAE(**WAN22_VAE_SMALL)
    raise ValueError(f"unknown VAE architecture {architecture!r}")


# Wan 2.2's autoencoder at width 8 instead of 160 (decoder 256): comfy.sd builds it with its full
# widths fixed (about 700 M parameters), so tiny_vae builds this one in its place (see there).
WAN22_VAE_SMALL = dict(dim=8, dec_dim=8, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=1, attn_scales=[],
                       temperal_downsample=[False, True, True], dropout=0.0)


@functools.lru_cache(maxsize=None)
def tiny_vae(seed, architecture="taesd16"):
    import comfy.ldm.wan.vae2_2
    import comfy.sd
    import comfy.utils
    from safetensors.torch import save_file
    module = _checked(_init_(_autoencoder(architecture), seed))
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    path = Path(tempfile.mkdtemp(prefix="tiny_vae_")) / f"tiny_{architecture}.safetensors"
    save_file(state, str(path))
    sd = comfy.utils.load_torch_file(str(path))
    if architecture != "wan22":
        return comfy.sd.VAE(sd=sd)
    # comfy.sd's Wan 2.2 branch (ratios, 48 channels, 5-D latents) builds WanVAE at its full widths:
    # build the small one there instead, for this call only.
    full = comfy.ldm.wan.vae2_2.WanVAE
    comfy.ldm.wan.vae2_2.WanVAE = lambda **_: full(**WAN22_VAE_SMALL)
    try:
        return comfy.sd.VAE(sd=sd)
    finally:
        comfy.ldm.wan.vae2_2.WanVAE = full


def _seed_input(default=0):
    return io.Int.Input("seed", default=default, min=0, max=2**31 - 1, control_after_generate=False,
                        tooltip="Seed of the initial weights.")


# The nodes below are alike in shape only (duplicates pairs them): V3's declarative schema and an
# execute that calls one function. What they share beyond that has one home already (_seed_input,
# _stats, the tiny_* builders); a helper that built the schemas would only move each node's inputs
# and outputs away from it.
class TinyDiffusionModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="RFTestTinyDiffusionModel", display_name="Tiny Diffusion Model (test)", category=CATEGORY,
                         description="Stands in for UNETLoader: a small network of one family from ComfyUI's classes.",
                         inputs=[io.Combo.Input("architecture", options=list(ARCHITECTURES), default="flux"), _seed_input()],
                         outputs=[io.Model.Output()])

    @classmethod
    def execute(cls, architecture, seed) -> io.NodeOutput:
        return io.NodeOutput(tiny_model(architecture, seed))


class TinyTextEncoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="RFTestTinyTextEncoder", display_name="Tiny Text Encoder (test)", category=CATEGORY,
                         description="Stands in for DualCLIPLoader / TripleCLIPLoader / CLIPLoader: a comfy.sd.CLIP with "
                                     "ComfyUI's CLIP tokenizer and a two-layer CLIP text transformer of width 64.",
                         inputs=[_seed_input(1)], outputs=[io.Clip.Output()])

    @classmethod
    def execute(cls, seed) -> io.NodeOutput:
        return io.NodeOutput(tiny_clip(seed))


class TinyVAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="RFTestTinyVAE", display_name="Tiny VAE (test)", category=CATEGORY,
                         description="Stands in for VAELoader: an autoencoder of one family with seeded weights, loaded "
                                     "with comfy.sd.VAE.",
                         inputs=[_seed_input(2), io.Combo.Input("architecture", options=list(VAE_ARCHITECTURES), default="taesd16")],
                         outputs=[io.Vae.Output()])

    @classmethod
    def execute(cls, seed, architecture="taesd16") -> io.NodeOutput:
        return io.NodeOutput(tiny_vae(seed, architecture))


class TinyCheckpoint(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="RFTestTinyCheckpoint", display_name="Tiny Checkpoint (test)", category=CATEGORY,
                         description="Stands in for CheckpointLoaderSimple: the tiny MODEL, CLIP and VAE together.",
                         inputs=[io.Combo.Input("architecture", options=list(ARCHITECTURES), default="sd3"), _seed_input()],
                         outputs=[io.Model.Output(), io.Clip.Output(), io.Vae.Output()])

    @classmethod
    def execute(cls, architecture, seed) -> io.NodeOutput:
        return io.NodeOutput(tiny_model(architecture, seed), tiny_clip(seed + 1), tiny_vae(seed + 2))


def _stats(tensor):
    t = tensor.detach().float()
    finite = bool(torch.isfinite(t).all())
    return {"shape": list(t.shape), "finite": finite,
            "min": float(t.min()) if finite else None, "max": float(t.max()) if finite else None,
            "mean": float(t.mean()) if finite else None, "std": float(t.std()) if finite and t.numel() > 1 else None}


# ImageStats and LatentStats: one logic (_stats), two declarations (see the note above TinyDiffusionModel).
class ImageStats(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="RFTestImageStats", display_name="Image Stats (test)", category=CATEGORY,
                         description="Reports the image's shape, finiteness and range in the prompt's history.",
                         inputs=[io.Image.Input("image")], outputs=[], is_output_node=True)

    @classmethod
    def execute(cls, image) -> io.NodeOutput:
        return io.NodeOutput(ui={"rf_test_stats": [_stats(image)]})


class LatentStats(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="RFTestLatentStats", display_name="Latent Stats (test)", category=CATEGORY,
                         description="Reports the latent's shape, finiteness and range in the prompt's history.",
                         inputs=[io.Latent.Input("latent")], outputs=[], is_output_node=True)

    @classmethod
    def execute(cls, latent) -> io.NodeOutput:
        return io.NodeOutput(ui={"rf_test_stats": [_stats(latent["samples"])]})


NODES = [TinyDiffusionModel, TinyTextEncoderLoader, TinyVAELoader, TinyCheckpoint, ImageStats, LatentStats]
