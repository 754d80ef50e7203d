"""Sampler overhead: each of the pack's samplers against ComfyUI's own ``euler`` (KSamplerSelect), in
the real host in-process, on the same model, the same sigmas, the same noise and latent inputs and
the same number of network calls (counted with a hook on the network, not assumed).

The model is a small Flux built from ComfyUI's classes with initialised weights (tiny_flux), big
enough that the network dominates a step, as it does in real use. Runs are paired and interleaved
(the order inside a pair alternates), and the reported number is the median of the per-pair ratios
pack time / euler time, which cancels slow drifts of a shared machine. Time is the process's CPU
time (torch on one thread), so that other jobs on a shared machine do not show up as overhead; the
wall-clock ratio is reported beside it.
"""
import gc
import statistics
import time

import torch

import exact_models as em
from graph import side_by_side

NET = dict(hidden_size=256, num_heads=4, axes_dim=[16, 24, 24], depth=2, depth_single_blocks=2)
LATENT = (1, 16, 32, 32)  # 256 image tokens after Flux's 2 x 2 patches
SEED = 3


class NetworkClock:
    """Counts the network's calls and the time spent inside them (forward hooks on the network)."""

    def __init__(self, network):
        self.calls, self.seconds, self._t0 = 0, 0.0, None
        network.register_forward_pre_hook(self._pre)
        network.register_forward_hook(self._post)

    def _pre(self, module, args):
        self._t0 = time.process_time()

    def _post(self, module, args, output):
        self.seconds += time.process_time() - self._t0
        self.calls += 1

    def reset(self):
        self.calls, self.seconds = 0, 0.0


def run_overhead(M, steps=8, pairs=16, warmup=2, log=print):
    torch.manual_seed(0)
    model = em.tiny_flux(SEED, **NET)
    clock = NetworkClock(model.model.diffusion_model)
    image = {"samples": torch.randn(LATENT, generator=torch.Generator().manual_seed(SEED)) * 0.5}
    g = side_by_side(M, model, steps, image, SEED)
    euler = g.euler
    cases = dict(g.cases)
    # an A/A control: euler against a second euler object, measured the same way; how far its ratio
    # strays from 1 is the noise floor of the direct ratio on this machine
    cases["euler against euler (noise floor)"] = (M["KSamplerSelect"].execute("euler")[0], g.no_noise, g.sigmas, image)

    def timed(sampler, noise, sigmas, latent):
        gc.collect()
        clock.reset()
        w0, t0 = time.perf_counter(), time.process_time()
        g.run(sampler, noise, sigmas, latent)
        return time.process_time() - t0, clock.calls, clock.seconds, time.perf_counter() - w0

    rows = []
    for name, (sampler, noise, sigmas, latent) in cases.items():
        for _ in range(warmup):
            timed(sampler, noise, sigmas, latent)
            timed(euler, noise, sigmas, latent)
        ratios, wall_ratios, t_pack, t_euler, net_share, calls = [], [], [], [], [], set()
        outside = {"pack": [], "euler": []}  # CPU time outside the network, per run
        for r in range(pairs):
            order = ("pack", "euler") if r % 2 == 0 else ("euler", "pack")
            got = {}
            for who in order:
                got[who] = timed(sampler if who == "pack" else euler, noise, sigmas, latent)
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
        q = statistics.quantiles(ratios, n=4)
        row = {
            "sampler": name, "steps": steps, "pairs": pairs, "calls": next(iter(calls))[0],
            "ratio_median": statistics.median(ratios), "ratio_q1": q[0], "ratio_q3": q[2], "ratios": ratios,
            "wall_ratio_median": statistics.median(wall_ratios),
            "pack_s": statistics.median(t_pack), "euler_s": statistics.median(t_euler),
            "euler_step_ms": 1000 * statistics.median(t_euler) / steps,
            "network_share": statistics.median(net_share),
            "outside_pack_ms": 1000 * statistics.median(outside["pack"]),
            "outside_euler_ms": 1000 * statistics.median(outside["euler"]),
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
