"""Models whose velocity field is known in closed form, standing where the network stands inside
ComfyUI's own model class of a flow family (Flux, Flux.2, Qwen-Image, Lumina 2, Z-Image, Wan 2.2 5B,
HunyuanImage 2.1's refiner, HunyuanVideo), and a small Flux built from ComfyUI's classes.

For data x0 ~ N(mu, s^2 I) and x_sigma = (1 - sigma) x0 + sigma eps (ALGORITHM.md, exact fields):

    E[x0 | x_sigma] = mu + (1 - sigma) s^2 (x_sigma - (1 - sigma) mu) / ((1 - sigma)^2 s^2 + sigma^2)

and a mixture weights each component's posterior mean by its responsibility. The network slot of
the family's ``comfy.model_base`` class gets a module that returns the raw velocity (x - D) / sigma,
so ComfyUI's own ``calculate_denoised`` recovers D, and the family's latent format (Flux's scale and
shift, Wan's per-channel mean and std, the refiner's reshape), its model sampling, conditioning and
guider all stay on the path. Latents may be of any rank: (B, C, H, W) images, (B, C, T, H, W) videos
and Qwen-Image's one-frame latents. Needs the host imported (``harness.host.import_host``) first.
"""
import math
import types

import torch

# A small Flux and Flux.2: the sizes the tests choose. Everything else comes from the host's own model
# detection (flux_unet_config), so the config carries whatever this host's classes want.
FLUX_SIZES = dict(hidden_size=64, num_heads=2, axes_dim=[8, 12, 12], depth=1, depth_single_blocks=1,
                  context_in_dim=64, vec_in_dim=64)
FLUX2_SIZES = dict(hidden_size=64, num_heads=2, axes_dim=[8, 8, 8, 8], depth=1, depth_single_blocks=1,
                   context_in_dim=64, vec_in_dim=None)


class GaussianMixture:
    """x0 ~ sum_k w_k N(mu_k, s_k^2 I) over whole latents (one component per sample), in model space.

    ``means`` are tensors of one latent's model-space shape, (C, H, W) or (C, T, H, W); one
    component is the Gaussian case."""

    def __init__(self, means, stds, weights=None):
        self.means = [m.double() for m in means]
        self.stds = [float(s) for s in stds]
        k = len(self.means)
        self.weights = [1.0 / k] * k if weights is None else [float(w) for w in weights]

    def denoise(self, x, sigma):
        """E[x0 | x_sigma = x] for a batch x (B, ...) of the means' shape and sigma (B,) or a scalar."""
        x64 = x.double()
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1, *[1] * (x.ndim - 1))
        a = 1.0 - sigma
        logits, posts = [], []
        dims = x[0].numel()
        for mu, s, w in zip(self.means, self.stds, self.weights):
            mu = mu.to(x.device)
            var = a * a * s * s + sigma * sigma
            resid = x64 - a * mu
            posts.append(mu + a * s * s * resid / var)
            quad = (resid * resid / var).flatten(1).sum(1)
            logits.append(math.log(w) - 0.5 * quad - 0.5 * dims * torch.log(var.flatten()))
        if len(posts) == 1:
            return posts[0]
        resp = torch.softmax(torch.stack(logits, 0), 0)  # (K, B)
        return sum(r.reshape(-1, *[1] * (x.ndim - 1)) * p for r, p in zip(resp, posts))

    def sample(self, n, generator):
        """n exact samples of x0, in model space."""
        comp = torch.multinomial(torch.tensor(self.weights), n, replacement=True, generator=generator)
        out = []
        for c in comp.tolist():
            mu, s = self.means[c], self.stds[c]
            out.append(mu + s * torch.randn(mu.shape, generator=generator, dtype=torch.float64))
        return torch.stack(out).float()


class PromptedGaussian:
    """x0 ~ N(mu + c * where, s^2 I) with c the mean of the prompt's context: a prompt moves the data
    only where ``where`` (H, W) is nonzero, in every channel and frame. Two prompts' denoised
    estimates then differ by (c_t - c_s) * where * sigma^2 / ((1 - sigma)^2 s^2 + sigma^2): exactly
    there, the edit region of the two prompts. ``mu`` has one latent's model-space shape."""

    reads_prompt = True

    def __init__(self, mu, s, where):
        self.mu, self.s, self.where = mu.double(), float(s), where.double()

    def mean(self, context, like):
        c = context.to(like.device, torch.float64).flatten(1).mean(1).reshape(-1, *[1] * (like.ndim - 1))
        return self.mu.to(like.device) + c * self.where.to(like.device)

    def denoise(self, x, sigma, context):
        """E[x0 | x_sigma = x] under the prompt whose context is ``context``."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1, *[1] * (x.ndim - 1))
        a, mean = 1.0 - sigma, self.mean(context, x)
        return mean + a * self.s ** 2 * (x.double() - a * mean) / (a * a * self.s ** 2 + sigma * sigma)

    def sample(self, n, generator, context):
        """n exact samples of x0 under the prompt whose context is ``context``, in model space."""
        noise = torch.randn((n, *self.mu.shape), generator=generator, dtype=torch.float64)
        return (self.mean(context, noise) + self.s * noise).float()


class ExactVelocity(torch.nn.Module):
    """Fills a flow model's network slot: returns the raw velocity (x - D) / sigma of an exact field.

    ComfyUI passes the model's timestep (sigma for Flux, 1000 sigma under SD3's sampling, one per
    frame under Wan 2.2's mask), so the sigma itself is read from ``transformer_options["sigmas"]``,
    which the host sets on every call. Channels the model class concatenates after the latent
    (``c_concat``: the refiner's image, image-to-video conditioning) are conditioning the field
    ignores, as it ignores the prompt: the network's output has the latent's channels only."""

    def __init__(self, field, dtype=torch.float32, channels=None):
        super().__init__()
        self.field, self.dtype, self.channels = field, dtype, channels
        self.calls = 0
        self.seen = None  # set it to a list to record each call's input, timestep and sigma

    def forward(self, x, timestep, context=None, y=None, guidance=None, control=None, transformer_options={}, **kwargs):
        self.calls += 1
        x = x[:, :self.channels]
        if self.seen is not None:
            self.seen.append({"x": x.detach().clone(), "timestep": timestep.detach().clone(),
                              "sigma": transformer_options["sigmas"].detach().clone()})
        sigma = transformer_options["sigmas"].to(torch.float64).reshape(-1, *[1] * (x.ndim - 1))
        if getattr(self.field, "reads_prompt", False):
            denoised = self.field.denoise(x, sigma.flatten(), context)
        else:
            denoised = self.field.denoise(x, sigma.flatten())
        return ((x.double() - denoised) / sigma).to(x.dtype)


def model_patcher(model):
    """A ComfyUI MODEL around a ``comfy.model_base`` model, on the host's devices, as the loaders make it."""
    import comfy.model_management as mm
    import comfy.model_patcher

    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


def flux_unet_config(flux2=False, **sizes):
    """Flux's (or Flux.2's) unet_config as this host's model detection (what UNETLoader runs on a
    checkpoint) reads it off the keys of a checkpoint of these sizes (FLUX_SIZES / FLUX2_SIZES, which
    ``sizes`` change), so it carries whatever this host's constructors want (Flux's txt_ids_dims on
    0.33, Flux.2's hidden_size). Only the heads and rope axes are set here: detection fixes them at the
    full size. The keys are empty tensors on the meta device: detection reads names and shapes only."""
    import comfy.model_detection

    s = {**(FLUX2_SIZES if flux2 else FLUX_SIZES), **sizes}
    hidden, head = s["hidden_size"], s["hidden_size"] // s["num_heads"]
    shapes = {"img_in.weight": (hidden, 128 if flux2 else 16 * 2 * 2), "txt_in.weight": (hidden, s["context_in_dim"]),
              "guidance_in.in_layer.weight": (hidden, 256)}
    if flux2:
        shapes["double_stream_modulation_img.lin.weight"] = (6 * hidden, hidden)
    if s["vec_in_dim"] is not None:
        shapes["vector_in.in_layer.weight"] = (hidden, s["vec_in_dim"])
    for i in range(s["depth"]):
        shapes[f"double_blocks.{i}.img_attn.norm.key_norm.scale"] = (head,)
    for i in range(s["depth_single_blocks"]):
        shapes[f"single_blocks.{i}.norm.key_norm.scale"] = (head,)
    state_dict = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    detected = comfy.model_detection.detect_unet_config(state_dict, "")
    found = {k: detected.get(k) for k in ("hidden_size", "context_in_dim", "vec_in_dim", "depth", "depth_single_blocks")}
    if detected.get("image_model") != ("flux2" if flux2 else "flux") or any(found[k] != s[k] for k in found):
        raise RuntimeError(f"this host's model detection read {detected} off a small {'Flux.2' if flux2 else 'Flux'} "
                           f"checkpoint of sizes {s}")
    return {**detected, "num_heads": s["num_heads"], "axes_dim": list(s["axes_dim"])}


def flux_model(dtype=torch.float32, **sizes):
    """ComfyUI's Flux model class at FLUX_SIZES (``sizes`` change them); its layers are empty."""
    import comfy.supported_models

    config = comfy.supported_models.Flux(flux_unet_config(**sizes))
    config.set_inference_dtype(dtype, None)
    return config.get_model({})


# Each family's config in comfy.supported_models, and the unet_config keys its model class reads
# without a network (Flux's and Flux.2's whole detected config: their classes read their sizes in
# __init__ on newer hosts), Wan's counts the channels of its patch embedding (see exact_model).
FAMILIES = {
    "flux": ("Flux", flux_unet_config),
    "flux2": ("Flux2", lambda: flux_unet_config(flux2=True)),
    "qwen_image": ("QwenImage", dict(image_model="qwen_image")),
    "lumina2": ("Lumina2", dict(image_model="lumina2")),
    "zimage": ("ZImage", dict(image_model="lumina2", dim=3840)),
    "wan22_5b": ("WAN22_T2V", dict(image_model="wan2.1", model_type="t2v", in_dim=48, out_dim=48)),
    "hunyuan_image21_refiner": ("HunyuanImage21Refiner", dict(image_model="hunyuan_video", patch_size=[1, 1, 1])),
    "hunyuan_video": ("HunyuanVideo", dict(image_model="hunyuan_video")),
}


def family_config(family, dtype=torch.float32):
    """The model config of ``family`` (a key of FAMILIES), built without a network."""
    import comfy.supported_models

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    name, unet_config = FAMILIES[family]
    unet_config = unet_config() if callable(unet_config) else unet_config
    config = getattr(comfy.supported_models, name)({**unet_config, "disable_unet_model_creation": True})
    config.set_inference_dtype(dtype, None)
    return config


def latent_format(family):
    """The latent format of ``family``'s model class: its ``process_in`` gives a raw latent's model-space shape."""
    return family_config(family).latent_format


def exact_model(family, field, dtype=torch.float32):
    """A ComfyUI MODEL: ``family``'s model class (latent format, model sampling, conditioning) with
    the exact velocity of ``field`` (in the model's latent space) in the network's place."""
    config = family_config(family, dtype)
    model = config.get_model({})
    velocity = ExactVelocity(field, dtype, channels=config.latent_format.latent_channels)
    if family.startswith("wan"):
        # WAN21.concat_cond reads the input channels off the patch embedding's weight: the 5B model
        # takes the latent's 48 and nothing concatenated (its image conditioning is a noise mask).
        velocity.patch_embedding = types.SimpleNamespace(weight=torch.empty(1, config.unet_config["in_dim"], 1, 1, 1))
    model.diffusion_model = velocity
    return model_patcher(model)


def exact_flux(field, dtype=torch.float32):
    """A ComfyUI MODEL: Flux's model class with the exact velocity of ``field`` in the network's place."""
    return exact_model("flux", field, dtype)


def tiny_flux(seed=0, dtype=torch.float32, **sizes):
    """A small Flux network from ComfyUI's classes, its layers initialised (comfy.ops leaves them
    empty) from ``seed``, for overhead measurements. ``sizes`` change FLUX_SIZES."""
    model = flux_model(dtype, **sizes)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.diffusion_model.named_parameters():
            fan_in = p.shape[-1] if p.ndim > 1 else 1
            std = 0.0 if name.endswith("bias") else 1.0 / math.sqrt(fan_in)
            p.copy_((torch.randn(p.shape, generator=generator) * std).to(p.dtype))
    return model_patcher(model)


def shifted(M, model, shift):
    """``model`` under the schedule shift of "flux" (ModelSamplingFlux at 1024 x 1024, Flux-dev's
    largest shift) or "sd3" (ModelSamplingSD3, shift 3), through the host's own nodes ``M``."""
    if shift == "flux":
        return M["ModelSamplingFlux"]().patch(model, 1.15, 0.5, 1024, 1024)[0]
    if shift == "sd3":
        return M["ModelSamplingSD3"]().patch(model, 3.0)[0]
    raise ValueError(f"shift must be 'flux' or 'sd3', got {shift!r}")


def flux_conditioning(guidance=0.0, tokens=4, dim=64):
    """A CONDITIONING for the small Flux config (the exact field ignores it)."""
    return [[torch.zeros(1, tokens, dim), {"pooled_output": torch.zeros(1, dim), "guidance": guidance}]]
