"""Peak memory of the pack's samplers over a plain ``euler`` run, in latent copies.

Run as its own process by benchmarks/run.py (``python -m benchmarks.memory OUT.json [cpu|cuda]``),
because on the CPU the measurement needs a fixed malloc configuration from the start:

- ``MALLOC_MMAP_THRESHOLD_=65536`` makes glibc serve every block of 64 KiB or more (every latent-
  sized tensor) with its own mmap and give it back to the kernel when it is freed, so the resident
  set follows torch's live CPU tensors instead of the heap's high-water mark.
- Writing 5 to /proc/self/clear_refs resets the kernel's peak resident set (VmHWM) to the current
  one (VmRSS), so peak minus baseline is the peak of one call, read from the kernel.

Each measurement is one SamplerCustomAdvanced call with the exact Gaussian model at a 16 x 128 x 128
latent (1 MiB in float32), after warm-up runs, repeated and interleaved with euler on exactly the
same inputs (noise, sigmas, latent); the median of each is reported. The difference is what the
sampler keeps alive beyond what euler keeps, at the moment of the call's peak. A second-order
solver's row runs as many network calls as euler's (graph.STEPS_FOR_CALLS).

On CUDA the same runs are measured with torch's CUDA allocator instead (``torch.cuda.
max_memory_allocated`` after ``reset_peak_memory_stats``, minus what was allocated before the call):
the device's tensors, not the process's resident set.
"""
import gc
import json
import os
import statistics
import sys
from pathlib import Path

SHAPE = (1, 16, 128, 128)
STEPS = 4
REPEATS = int(os.environ.get("RF_BENCH_MEMORY_REPEATS", "5"))


def status_kib():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0])
    return out


class AtNetwork:
    """The resident set at each entry into the network, the most over one call: what the sampler and
    the host keep alive across a network call, which a real network's activations add to."""

    def __init__(self, network):
        self.most = 0
        network.register_forward_pre_hook(self._pre)

    def _pre(self, module, args):
        self.most = max(self.most, METER.now())


class CpuMeter:
    """The process's resident set, its peak reset through /proc/self/clear_refs."""

    def reset_peak(self):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    def now(self):
        return status_kib()["VmRSS"]

    def peak(self):
        return status_kib()["VmHWM"]


class CudaMeter:
    """The bytes torch's CUDA allocator holds in tensors on the device (in KiB), and their peak."""

    def reset_peak(self):
        import torch
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    def now(self):
        import torch
        return torch.cuda.memory_allocated() / 1024

    def peak(self):
        import torch
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 1024


METER = CpuMeter()


def peak_kib(fn, at_network):
    """Peak memory of one call of ``fn`` above the memory just before it, and the most at a network
    entry above the same base, in KiB."""
    gc.collect()
    gc.disable()  # no cyclic collection inside the call: it would free memory at arbitrary moments
    try:
        METER.reset_peak()
        base = METER.now()
        at_network.most = base
        result = fn()
        peak = METER.peak()
        del result
    finally:
        gc.enable()
    return peak - base, at_network.most - base


def main(out_path, device="cpu"):
    global METER
    import torch
    torch.set_num_threads(1)
    from benchmarks import device as dev
    nodes = dev.import_host(device)
    METER = CudaMeter() if device == "cuda" else CpuMeter()
    import comfy.utils
    comfy.utils.PROGRESS_BAR_ENABLED = False
    from benchmarks.graph import side_by_side
    from harness import exact_models as em

    M = nodes.NODE_CLASS_MAPPINGS
    mu = 0.8 * torch.randn(SHAPE[1:], generator=torch.Generator().manual_seed(1))
    model = em.exact_flux(em.GaussianMixture([mu], [0.5]))
    at_network = AtNetwork(model.model.diffusion_model)
    y0 = model.model.process_latent_out(mu + 0.5 * torch.randn(SHAPE, generator=torch.Generator().manual_seed(2)))
    g = side_by_side(M, model, STEPS, {"samples": y0}, 5, stochastic_reverse=True)
    euler, no_noise, sig, inverted, cases = g.euler, g.no_noise, g.sigmas, g.inverted, dict(g.cases)
    latent_bytes = 4 * int(torch.tensor(SHAPE).prod())

    # Calibration: euler that keeps two extra latent-sized tensors alive for its whole run must read
    # as 2 extra copies, or the method does not see what it claims to.
    import comfy.samplers
    from comfy.k_diffusion import sampling as k_sampling

    def euler_holding_two(model_k, x, sigmas, **kwargs):
        held = [x.clone(), x.clone()]  # noqa: F841  kept alive on purpose
        return k_sampling.sample_euler(model_k, x, sigmas, **kwargs)
    cases["calibration: euler holding 2 extra latents"] = (comfy.samplers.KSAMPLER(euler_holding_two), no_noise, sig, inverted, sig)

    rows = []
    for name, (sampler, noise, sigmas, latent, euler_sigmas) in cases.items():
        def call(who):
            if who == "pack":
                return lambda: g.run(sampler, noise, sigmas, latent)
            return lambda: g.run(euler, noise, euler_sigmas, latent)
        for _ in range(2):  # warm-up: first-call allocations (caches, lazy imports) are not the sampler's
            call("pack")()
            call("euler")()
        got = {"pack": [], "euler": []}
        for r in range(REPEATS):
            for who in (("pack", "euler") if r % 2 == 0 else ("euler", "pack")):
                got[who].append(peak_kib(call(who), at_network))
        p, e = (statistics.median(k[0] for k in got[w]) for w in ("pack", "euler"))
        pn, en = (statistics.median(k[1] for k in got[w]) for w in ("pack", "euler"))
        copies = 1024 / latent_bytes
        rows.append({"sampler": name, "pack_peak_mib": p / 1024, "euler_peak_mib": e / 1024,
                     "extra_copies": (p - e) * copies, "euler_copies": e * copies,
                     "pack_at_network_copies": pn * copies, "euler_at_network_copies": en * copies,
                     "extra_at_network_copies": (pn - en) * copies,
                     "pack_runs_kib": got["pack"], "euler_runs_kib": got["euler"]})
    result = {"shape": list(SHAPE), "latent_mib": latent_bytes / 2**20, "steps": STEPS, "repeats": REPEATS,
              "device": device, "meter": "cuda allocator" if device == "cuda" else "resident set",
              "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"), "rows": rows}
    Path(out_path).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
