"""Sampler overhead: each of the pack's samplers against ComfyUI's own ``euler`` (KSamplerSelect), in
the real host in-process, on the same model, the same sigmas, the same noise and latent inputs and
the same number of network calls (counted with a hook on the network, not assumed). A second-order
solver's row runs the pack with fewer steps, as many network calls as euler's (graph.STEPS_FOR_CALLS).

The model is a Flux built from ComfyUI's classes with initialised weights (tiny_flux; NET below), big
enough that the network dominates a step, as it does in real use. Runs are paired and interleaved
(the order inside a pair alternates), and the reported number is the median of the per-pair ratios
pack time / euler time, which cancels slow drifts of a shared machine. On the CPU, time is the
process's CPU time (torch on one thread), so that other jobs on a shared machine do not show up as
overhead, and the wall-clock ratio is reported beside it; on CUDA it is wall time with the device
synchronised at each run's ends, and the network's share is GPU time (device.py).
"""
import gc
import statistics
import time

import torch

from benchmarks import device as dev
from benchmarks.graph import side_by_side
from harness import exact_models as em

# The network: big enough that it dominates a step, as it does in real use. On the CPU a small Flux;
# on a GPU, where that one would be all kernel launches, Flux-dev's width and heads at 1024² (4096
# image tokens) in bf16, with fewer blocks (2 double, 4 single against Flux-dev's 19 and 38).
NET = {"cpu": dict(hidden_size=256, num_heads=4, axes_dim=[16, 24, 24], depth=2, depth_single_blocks=2),
       "cuda": dict(hidden_size=3072, num_heads=24, axes_dim=[16, 56, 56], depth=2, depth_single_blocks=4)}
LATENT = {"cpu": (1, 16, 32, 32),     # 256 image tokens after Flux's 2 x 2 patches
          "cuda": (1, 16, 128, 128)}  # 4096: 1024 x 1024
DTYPE = {"cpu": torch.float32, "cuda": torch.bfloat16}
SEED = 3


def setup(device):
    """The network, latent and weight type the overhead runs on ``device``, for the report."""
    return {"net": NET[device], "latent": list(LATENT[device]), "dtype": str(DTYPE[device]).replace("torch.", "")}


def run_overhead(M, steps=8, pairs=16, warmup=2, log=print, device="cpu"):
    torch.manual_seed(0)
    model = em.tiny_flux(SEED, DTYPE[device], **NET[device])
    clock = dev.NetworkClock(model.model.diffusion_model, device)
    now = dev.run_clock(device)
    image = {"samples": torch.randn(LATENT[device], generator=torch.Generator().manual_seed(SEED)) * 0.5}
    g = side_by_side(M, model, steps, image, SEED)
    euler = g.euler
    cases = dict(g.cases)
    # an A/A control: euler against a second euler object, measured the same way; how far its ratio
    # strays from 1 is the noise floor of the direct ratio on this machine
    cases["euler against euler (noise floor)"] = (M["KSamplerSelect"].execute("euler")[0], g.no_noise, g.sigmas, image, g.sigmas)

    def timed(sampler, noise, sigmas, latent):
        gc.collect()
        clock.reset()
        w0, t0 = time.perf_counter(), now()
        g.run(sampler, noise, sigmas, latent)
        t = now() - t0
        return t, clock.calls, clock.seconds, time.perf_counter() - w0

    rows = []
    for name, (sampler, noise, sigmas, latent, euler_sigmas) in cases.items():
        for _ in range(warmup):
            timed(sampler, noise, sigmas, latent)
            timed(euler, noise, euler_sigmas, latent)
        ratios, wall_ratios, t_pack, t_euler, net_share, calls = [], [], [], [], [], set()
        outside = {"pack": [], "euler": []}  # time outside the network, per run
        for r in range(pairs):
            order = ("pack", "euler") if r % 2 == 0 else ("euler", "pack")
            got = {}
            for who in order:
                got[who] = timed(sampler, noise, sigmas, latent) if who == "pack" else timed(euler, noise, euler_sigmas, latent)
            for who in got:
                outside[who].append(got[who][0] - got[who][2])
            calls.add((got["pack"][1], got["euler"][1]))
            t_pack.append(got["pack"][0])
            t_euler.append(got["euler"][0])
            ratios.append(got["pack"][0] / got["euler"][0])
            wall_ratios.append(got["pack"][3] / got["euler"][3])
            net_share.append(got["euler"][2] / got["euler"][0])
        if len(calls) != 1 or len(set(next(iter(calls)))) != 1:
            raise RuntimeError(f"{name}: network calls differ between the pack and euler: {calls}")
        n_calls = next(iter(calls))[0]
        q = statistics.quantiles(ratios, n=4)
        row = {
            "sampler": name, "steps": len(sigmas) - 1, "euler_steps": len(euler_sigmas) - 1, "pairs": pairs,
            "calls": n_calls, "device": device,
            "ratio_median": statistics.median(ratios), "ratio_q1": q[0], "ratio_q3": q[2], "ratios": ratios,
            "wall_ratio_median": statistics.median(wall_ratios),
            "pack_s": statistics.median(t_pack), "euler_s": statistics.median(t_euler),
            "euler_step_ms": 1000 * statistics.median(t_euler) / (len(euler_sigmas) - 1),
            "network_share": statistics.median(net_share),
            "outside_pack_ms": 1000 * statistics.median(outside["pack"]),
            "outside_euler_ms": 1000 * statistics.median(outside["euler"]),
            # per network call: what a solver adds around each call, comparable across step rules
            "outside_pack_call_ms": 1000 * statistics.median(outside["pack"]) / n_calls,
            "outside_euler_call_ms": 1000 * statistics.median(outside["euler"]) / n_calls,
            # the same network is called the same number of times on each side, so the difference a
            # sampler makes lies outside it: a low-noise estimate of the same ratio
            "sampler_ratio": 1 + statistics.median(p - e for p, e in zip(outside["pack"], outside["euler"]))
                             / statistics.median(t_euler),
        }
        rows.append(row)
        log(f"  overhead {name}: ratio {row['ratio_median']:.4f}, outside-network estimate {row['sampler_ratio']:.4f} (IQR {q[0]:.4f}-{q[2]:.4f}), "
            f"wall {row['wall_ratio_median']:.4f}, pack {row['pack_s']:.3f} s, euler {row['euler_s']:.3f} s, {row['calls']} calls, "
            f"network {100 * row['network_share']:.1f}% of euler's run; outside the network "
            f"pack {row['outside_pack_ms']:.1f} ms, euler {row['outside_euler_ms']:.1f} ms")
    return rows
