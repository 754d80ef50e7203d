"""A small CLIP text encoder from ComfyUI's own classes, as a real ``comfy.sd.CLIP``.

ComfyUI's CLIP tokenizer (``SD1Tokenizer``) and its CLIP text transformer (``SDClipModel`` inside
``SD1ClipModel``) at the width and depth a config dict gives. ``CLIPTextEncode`` encodes a typed
prompt with it like with any CLIP: hidden states (tokens x width) and the pooled vector at the end
token. ComfyUI's own text-encoder loaders cannot build it: they build CLIP-L, -G and -H from fixed
configs (comfy/sd.py ``detect_te_model``, ``sd1_clip_config.json``).

The tests' tiny text encoder (tests/test_nodes/tiny_models.py, seeded weights) and the demo's trained
one (demo/demo_nodes, weights and config from its file) are both built here.
"""
import json
import math

import torch


def seeded_init_(module, seed):
    """Seeded initialisation, in place: norms to identity, biases to zero, the rest N(0, 1/fan_in).
    (comfy.ops layers skip their own initialisation and hold garbage until something fills them.)"""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if "norm" in name.lower() or name.endswith("ln_q.weight") or name.endswith("ln_k.weight"):
                value = torch.ones(p.shape) if leaf == "weight" else torch.zeros(p.shape)
            elif leaf == "bias" or p.ndim == 0:
                value = torch.zeros(p.shape) if p.ndim else p.detach().clone().float()
            else:
                fan_in = math.prod(p.shape[1:]) if p.ndim > 1 else p.shape[0]
                value = torch.randn(p.shape, generator=generator) / math.sqrt(max(fan_in, 1))
            p.copy_(value.to(p.dtype))
    return module


def checked(module):
    """Every parameter and buffer finite: comfy.ops and register_buffer leave memory uninitialised."""
    bad = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise RuntimeError(f"small model left uninitialised: {bad}")
    return module


def clip_target(config):
    """A ClipTarget whose text model is ComfyUI's CLIP text transformer built from ``config``."""
    import comfy.sd1_clip
    import comfy.supported_models_base

    class SmallTextEncoder(torch.nn.Module):
        def __new__(cls, device="cpu", dtype=None, model_options={}):  # noqa: B006  ComfyUI's signature
            return comfy.sd1_clip.SD1ClipModel(device=device, dtype=dtype, model_options=model_options,
                                               clip_model=comfy.sd1_clip.SDClipModel, textmodel_json_config=dict(config))

    return comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, SmallTextEncoder)


def build_clip(config, state_dict=None, seed=None):
    """A comfy.sd.CLIP whose tokenizer pads to the config's ``max_position_embeddings``, with the
    transformer's weights from ``state_dict`` (keys as ``transformer(clip)`` names them), or seeded."""
    import comfy.sd
    clip = comfy.sd.CLIP(target=clip_target(config), model_options={"dtype": torch.float32},
                         tokenizer_data={"clip_l_max_length": config["max_position_embeddings"]})
    if state_dict is not None:
        # strict: ComfyUI's own load_sd ignores missing keys, and a missing key would stay garbage
        transformer(clip).load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True)
    else:
        seeded_init_(clip.cond_stage_model, 0 if seed is None else seed)
    checked(clip.cond_stage_model)
    return clip


def transformer(clip):
    """The CLIP text transformer inside a CLIP that build_clip made (its weights are the file's)."""
    return clip.cond_stage_model.clip_l.transformer


def encoder(clip):
    """The SDClipModel that CLIPTextEncode runs: token lists -> (hidden states, pooled)."""
    return clip.cond_stage_model.clip_l


def tokens(clip, text):
    """The token ids that CLIPTextEncode gives ``text`` (one padded chunk)."""
    return [t for t, _ in clip.tokenize(text)["l"][0]]


def save(clip, path, config, about):
    from safetensors.torch import save_file
    sd = {k: v.half().contiguous() for k, v in transformer(clip).state_dict().items()}
    save_file(sd, str(path), metadata={"clip_config": json.dumps(config), "about": about})


def load(path):
    """A CLIP built from a file that ``save`` wrote: its config from the file's metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if "clip_config" not in meta:
        raise ValueError(f"{path}: no clip_config in the file's metadata; it was not written by small_clip.save")
    return build_clip(json.loads(meta["clip_config"]), state_dict=load_file(str(path)))
