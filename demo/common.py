"""What the demo's training, evaluation, demo run and test share: the images, the file names, and
the host's own network classes.

The images are scikit-learn's 8x8 handwritten digits, drawn at 64x64 as smooth strokes in a colour
on a dark background, with a stroke thickness. The colour, the background and the thickness are the
"style" that an edit should keep; the digit is what the prompt changes.
"""
import colorsys
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

DEMO = Path(__file__).resolve().parent
ROOT = DEMO.parent
MODELS = DEMO / "models"
UNET_NAME = "rfdemo_digits_mmdit.safetensors"
VAE_NAME = "rfdemo_digits_taesd.safetensors"
UNET_FILE = MODELS / "diffusion_models" / UNET_NAME
VAE_FILE = MODELS / "vae" / VAE_NAME
CLASSIFIER_FILE = DEMO / "eval" / "digit_classifier.safetensors"
TEST_DIGITS_FILE = DEMO / "eval" / "test_digits.safetensors"
INPUTS = DEMO / "inputs"

SIZE = 64            # image side in pixels
LATENT_SIDE = SIZE // 8
NULL_CLASS = 10      # the "empty prompt": index 10 of the 11-way one-hot
N_COND = 11
DEPTH = 2            # MMDiT depth: hidden size 64 * depth, heads = depth (what ComfyUI's detection assumes)

# The SD3 latent format that ComfyUI applies to every SD3-family model (comfy/latent_formats.py).
SD3_SCALE, SD3_SHIFT = 1.5305, 0.0609


def one_hot(labels):
    """Class labels (0-9, or NULL_CLASS for the empty prompt) -> the 11-dim conditioning vector."""
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    return F.one_hot(labels, N_COND).float()


def render(glyphs, stroke, background, threshold):
    """Draw 8x8 glyphs (N, 8, 8) in [0, 1] as (N, 3, 64, 64) images in [0, 1].

    A bicubic upsampling gives the stroke's shape, a soft threshold gives it crisp edges: a lower
    threshold draws a thicker stroke."""
    up = F.interpolate(glyphs[:, None].float(), size=SIZE, mode="bicubic", align_corners=False).clamp(0, 1)
    mask = torch.sigmoid((up - threshold.reshape(-1, 1, 1, 1)) * 14.0)
    return background[:, :, None, None] * (1 - mask) + stroke[:, :, None, None] * mask


def random_style(n, generator):
    """Random stroke colours (bright, saturated), dark background colours and thresholds."""
    r = torch.rand(n, 7, generator=generator).tolist()
    stroke = [colorsys.hsv_to_rgb(a, 0.5 + 0.5 * b, 0.85 + 0.15 * c) for a, b, c, *_ in r]
    background = [colorsys.hsv_to_rgb(d, 0.3 + 0.5 * e, 0.05 + 0.3 * f) for *_, d, e, f, _ in r]
    threshold = [0.35 + 0.2 * g for *_, g in r]
    return torch.tensor(stroke), torch.tensor(background), torch.tensor(threshold)


def style(stroke_rgb, background_rgb, threshold, n=1):
    return (torch.tensor([stroke_rgb] * n, dtype=torch.float32), torch.tensor([background_rgb] * n, dtype=torch.float32),
            torch.full((n,), float(threshold)))


def load_digits_split():
    """scikit-learn's digits (training only needs scikit-learn), split with a fixed permutation."""
    from sklearn.datasets import load_digits
    d = load_digits()
    glyphs = torch.tensor(d.images, dtype=torch.float32) / 16.0
    labels = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    n_test = 300
    test, train = perm[:n_test], perm[n_test:]
    return (glyphs[train], labels[train]), (glyphs[test], labels[test])


def _import_file(name, path):
    import importlib.util
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def demo_nodes():
    """The demo's prompt-node module (demo/demo_nodes), imported without registering its node."""
    return _import_file("rfdemo_demo_nodes", DEMO / "demo_nodes" / "__init__.py")


def rf_math():
    """The pack's sampler math (sampler/rf_inversion.py: pure torch), without the host."""
    return _import_file("rfdemo_rf_inversion", ROOT / "sampler" / "rf_inversion.py")


# Network calls per pass at which the solvers are compared: the workflow's 28 (euler 28 steps,
# midpoint 14, fireflow 27), and a small budget where the integrator's error shows more.
SOLVER_BUDGETS = (28, 8)


def steps_for_calls(solver, calls):
    """The most steps of ``solver`` whose network calls per pass fit in ``calls``."""
    rf = rf_math()
    return max(n for n in range(1, calls + 1) if rf.network_calls(solver, n) <= calls)


def host_path():
    """Make the host's ``comfy`` package importable on the CPU, without loading any nodes."""
    from harness import host
    host.import_comfy()


TAESD_WIDTH = 16   # channels trained; ComfyUI's TAESD has 64, and the rest are zero (see widen_taesd)


def taesd_layers(width, latent_channels=16):
    """ComfyUI's TAESD encoder and decoder (comfy/taesd/taesd.py), built from the host's own layers
    in the same order, with ``width`` channels instead of 64. The module indices, and so the
    state-dict keys, are those of the host's ``Encoder``/``Decoder``."""
    host_path()
    from comfy.taesd.taesd import Block, Clamp, conv
    w, relu, up = width, torch.nn.ReLU, torch.nn.Upsample
    enc = torch.nn.Sequential(
        conv(3, w), Block(w, w),
        conv(w, w, stride=2, bias=False), Block(w, w), Block(w, w), Block(w, w),
        conv(w, w, stride=2, bias=False), Block(w, w), Block(w, w), Block(w, w),
        conv(w, w, stride=2, bias=False), Block(w, w), Block(w, w), Block(w, w),
        conv(w, latent_channels))
    dec = torch.nn.Sequential(
        Clamp(), conv(latent_channels, w), relu(),
        Block(w, w), Block(w, w), Block(w, w), up(scale_factor=2), conv(w, w, bias=False),
        Block(w, w), Block(w, w), Block(w, w), up(scale_factor=2), conv(w, w, bias=False),
        Block(w, w), Block(w, w), Block(w, w), up(scale_factor=2), conv(w, w, bias=False),
        Block(w, w), conv(w, 3))
    for m in list(enc.modules()) + list(dec.modules()):
        if isinstance(m, torch.nn.Conv2d):  # comfy.ops layers skip their own initialisation
            torch.nn.Conv2d.reset_parameters(m)
    return enc, dec


def widen_taesd(small_state, full_state):
    """Embed a narrow TAESD's weights into the 64-channel one: every extra channel gets zero weights
    and zero bias, so it stays zero through every ReLU and skip, and the wide network computes
    exactly the narrow one's function. (Training at width 16 costs about 1/16 of width 64.)"""
    out = {}
    for k, full in full_state.items():
        small = small_state[k]
        wide = torch.zeros_like(full)
        wide[tuple(slice(0, n) for n in small.shape)] = small
        out[k] = wide
    return out


def build_taesd():
    """The narrow TAESD that training optimises."""
    return taesd_layers(TAESD_WIDTH)


def build_mmdit(depth=DEPTH, pooled=N_COND, context=N_COND, latent_side=LATENT_SIDE, patch=2):
    """The host's own MMDiT (SD3 family) at the size ComfyUI's detection reads back from the weights:
    ``pooled`` and ``context`` are the widths of the pooled vector and the context tokens; ``patch``
    (detection reads it from x_embedder) the side of a token in latent cells."""
    host_path()
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT
    hidden = 64 * depth
    grid = latent_side // patch
    model = MMDiT(input_size=None, patch_size=patch, in_channels=16, out_channels=16, depth=depth,
                  adm_in_channels=pooled, pos_embed_max_size=grid, num_patches=grid ** 2,
                  pos_embed_scaling_factor=None,
                  context_embedder_config={"target": "torch.nn.Linear", "params": {"in_features": context, "out_features": hidden}},
                  operations=comfy.ops.disable_weight_init)
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
        elif isinstance(m, torch.nn.Conv2d):
            torch.nn.init.xavier_uniform_(m.weight.view(m.weight.shape[0], -1))
            torch.nn.init.zeros_(m.bias)
    # DiT's adaLN-zero start: every block begins as the identity, the output as zero.
    for name, m in model.named_modules():
        if name.endswith("adaLN_modulation"):
            torch.nn.init.zeros_(m[-1].weight)
            torch.nn.init.zeros_(m[-1].bias)
    torch.nn.init.zeros_(model.final_layer.linear.weight)
    torch.nn.init.zeros_(model.final_layer.linear.bias)
    torch.nn.init.normal_(model.pos_embed, std=0.02)
    return model


class DigitClassifier(torch.nn.Module):
    """A small CNN that reads the digit of a 64x64 image, whatever its colours (for the metrics)."""

    def __init__(self):
        super().__init__()
        c = torch.nn.Conv2d
        self.net = torch.nn.Sequential(
            torch.nn.AvgPool2d(2), c(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            c(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            c(64, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(64 * 16, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))

    def forward(self, images):
        """images (N, 3, 64, 64) in [0, 1] -> logits (N, 10)."""
        x = images - images.mean(dim=(2, 3), keepdim=True)  # colour-independent: contrast, not hue
        x = x / (x.flatten(1).std(dim=1).reshape(-1, 1, 1, 1) + 1e-3)
        return self.net(x)


def load_classifier():
    from safetensors.torch import load_file
    model = DigitClassifier()
    model.load_state_dict(load_file(str(CLASSIFIER_FILE)))
    return model.eval()


def ssim(a, b):
    """Mean SSIM of two image batches (N, 3, H, W) in [0, 1], with a 7x7 uniform window."""
    return ssim_map(a, b).flatten(1).mean(1)


def ssim_map(a, b):
    """The SSIM of every pixel and channel (N, 3, H, W), with a 7x7 uniform window."""
    c1, c2, k = 0.01 ** 2, 0.03 ** 2, 7
    pool = lambda x: F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False)  # noqa: E731
    mu_a, mu_b = pool(a), pool(b)
    var_a = pool(a * a) - mu_a ** 2
    var_b = pool(b * b) - mu_b ** 2
    cov = pool(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))


def psnr(a, b):
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)



def init_taesd(enc, dec):
    """Start the autoencoder at a crude but useful solution, so that a few hundred CPU steps suffice:
    every residual block starts as the identity (its last conv at zero), and channels 0-2 carry the
    colour straight through (the encoder averages it over 8x8 blocks, the decoder repeats it back).
    That starts at about 20 dB PSNR, where a default start sits on a plateau near 15 dB for hundreds
    of steps."""
    host_path()
    from comfy.taesd.taesd import Block
    with torch.no_grad():
        for m in list(enc.modules()) + list(dec.modules()):
            if isinstance(m, Block):
                torch.nn.init.zeros_(m.conv[-1].weight)
                torch.nn.init.zeros_(m.conv[-1].bias)
        for m in [m for m in list(enc) + list(dec) if isinstance(m, torch.nn.Conv2d)]:
            m.weight[:3].zero_()
            if m.bias is not None:
                m.bias[:3].zero_()
            for c in range(3):
                if m.stride[0] == 2:
                    m.weight[c, c, 1:, 1:] = 0.25
                else:
                    m.weight[c, c, 1, 1] = 1.0


def sample_sigmas(n, gen):
    """Half uniform, half through SD3's shift 3 (the schedule the demo samples on)."""
    u = torch.rand(n, generator=gen)
    shifted = 3 * u / (1 + 2 * u)
    use = torch.rand(n, generator=gen) < 0.5
    return torch.where(use, shifted, u).clamp(1e-4, 1.0)


def save_png(image, path):
    from PIL import Image
    arr = (image.clamp(0, 1).permute(1, 2, 0) * 255).round().byte().numpy()
    Image.fromarray(arr).save(path)


def taesd_file_state(enc, dec, mean, std):
    """The TAESD file's state dict: ComfyUI's VAE loader reads taesd_encoder.* / taesd_decoder.* /
    vae_scale / vae_shift. TAESD.encode gives enc / vae_scale + vae_shift; SD3's latent format then maps
    l -> (l - 0.0609) * 1.5305. These two numbers make that chain equal (enc - mean) / std: the
    normalised latents the flow model learned."""
    from comfy.taesd.taesd import Decoder, Encoder
    wide_enc = widen_taesd(enc.state_dict(), Encoder(latent_channels=16).state_dict())
    wide_dec = widen_taesd(dec.state_dict(), Decoder(latent_channels=16).state_dict())
    vae_sd = {f"taesd_encoder.{k}": v.half() for k, v in wide_enc.items()}
    vae_sd.update({f"taesd_decoder.{k}": v.half() for k, v in wide_dec.items()})
    vae_sd["vae_scale"] = torch.tensor(SD3_SCALE * std)
    vae_sd["vae_shift"] = torch.tensor(SD3_SHIFT - mean / (SD3_SCALE * std))
    return vae_sd


def train_autoencoder(enc, dec, next_images, steps, lr, eta_min, log):
    """Adam on the MSE of dec(enc(x)) for ``steps`` batches from ``next_images()``, the rate on a
    cosine from ``lr`` to ``eta_min``."""
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=eta_min)
    t0 = time.time()
    for step in range(steps):
        x = next_images()
        y = dec(enc(x))
        loss = F.mse_loss(y, x)
        optimise(opt, sched, loss)
        if step % 50 == 0 or step == steps - 1:
            log(f"  vae step {step:5d}/{steps}  mse {loss.item():.5f}  psnr {psnr(y.clamp(0, 1), x).mean():.1f} dB  "
                f"{time.time() - t0:.0f} s")
    return enc.eval(), dec.eval()


def rectified_flow_loss(predict, x0, gen):
    """The rectified-flow loss: x = (1 - sigma) x0 + sigma eps, velocity target eps - x0, sigma from
    ``sample_sigmas``; ``predict(x, sigma)`` is the network's velocity."""
    eps = torch.randn(x0.shape, generator=gen).to(x0.device)  # drawn on the CPU: the same on any device
    sigma = sample_sigmas(len(x0), gen).to(x0.device)
    s = sigma.reshape(-1, 1, 1, 1)
    return F.mse_loss(predict((1 - s) * x0 + s * eps, sigma), eps - x0)


def optimise(opt, sched, loss, clip_params=None):
    """One optimiser step (gradients clipped to norm 1 over ``clip_params`` when given)."""
    opt.zero_grad()
    loss.backward()
    if clip_params is not None:
        torch.nn.utils.clip_grad_norm_(clip_params, 1.0)
    opt.step()
    sched.step()


@torch.no_grad()
def ema_update(ema, module, decay):
    for k, v in module.state_dict().items():
        ema[k].mul_(decay).add_(v, alpha=1 - decay)
