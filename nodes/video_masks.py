"""A noise mask in the model classes whose timestep cannot say that part of a frame is clean.

ComfyUI's KSamplerX0Inpaint feeds the network, outside a mask, what the model class's
``scale_latent_inpaint`` gives: in most classes the straight path sigma * noise + (1 - sigma) * clean
at the step's sigma, under a timestep of sigma. Some video classes feed the clean latent instead and
tell the network so through the timestep: Wan 2.2 5B (``WAN22``) one per frame, the mean of the mask
over the frame times t; HunyuanVideo one for the whole clip, which says nothing of it. For a mask that
keeps whole frames (image-to-video's first frame) that is the host's design, and stays. Under a mask
that varies within a frame, the network would be told a noise level its input does not carry (or a
per-frame mean of two): there the outside goes on its straight path at the true sigma, and the
network is told sigma, as in every other class.
"""
import comfy.model_base
import comfy.patcher_extension
import torch

WRAPPER_KEY = "rf_inversion_mask_timestep"


def varies_within_a_frame(mask):
    """Whether a denoise mask, (B, C, T, H, W) or (B, C, H, W) as the host prepares it, differs within a
    frame (an image latent is one frame)."""
    frame = (1, *range(3, mask.ndim)) if mask.ndim == 5 else tuple(range(1, mask.ndim))
    return bool((mask.amax(frame) != mask.amin(frame)).any())


def feeds_clean_outside(model):
    """Whether the model class feeds its network the clean latent outside a mask, whatever sigma (its
    scale_latent_inpaint at sigma 0.5 for noise 1 and clean 0; the straight path gives 0.5)."""
    clean, noise = torch.zeros(1, 1), torch.ones(1, 1)
    fed = model.scale_latent_inpaint(x=clean, sigma=torch.full((1,), 0.5), noise=noise, latent_image=clean)
    return bool(torch.equal(fed, clean))


def _timestep_without_mask(executor, x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
    """The model's apply_model without the mask in its conds: process_timestep then gives sigma's timestep."""
    kwargs.pop("denoise_mask", None)
    return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)


def inpaint(model_k, denoise_mask, extra_args):
    """What the sampler calls for a denoised: ComfyUI's ``model_k`` (a KSamplerX0Inpaint) as it is, or,
    in a class that feeds clean tokens under a mask that varies within a frame, the same blend with the
    outside on its straight path and the mask kept from the timestep (through the run's own copy of
    the model options, so the model and its other runs are untouched)."""
    model = model_k.inner_model.inner_model
    if denoise_mask is None or not varies_within_a_frame(denoise_mask) or not feeds_clean_outside(model):
        return model_k
    comfy.patcher_extension.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, WRAPPER_KEY,
                                                 _timestep_without_mask, extra_args["model_options"], is_model_options=True)

    def straight(x, sigma, denoise_mask, model_options={}, seed=None):
        if "denoise_mask_function" in model_options:  # as KSamplerX0Inpaint applies it
            denoise_mask = model_options["denoise_mask_function"](
                sigma, denoise_mask, extra_options={"model": model_k.inner_model, "sigmas": model_k.sigmas})
        keep = 1.0 - denoise_mask
        # the base class's scale_latent_inpaint: the model sampling's straight path at this sigma
        outside = comfy.model_base.BaseModel.scale_latent_inpaint(model, sigma=sigma, noise=model_k.noise,
                                                                  latent_image=model_k.latent_image)
        out = model_k(x * denoise_mask + outside * keep, sigma, None, model_options, seed)
        return out * denoise_mask + model_k.latent_image * keep

    return straight
