"""Benchmarks of the pack's samplers, measured side by side in the real ComfyUI host, in one command:

    .venv/bin/python -m benchmarks.run                 # about 3 minutes on 2 shared CPU cores
    .venv/bin/python -m benchmarks.run --quick         # a smoke run, about a minute; numbers are rough
    .venv/bin/python -m benchmarks.run --device cuda   # the same report on a GPU

from the repository root, on the host that the run uses (COMFYUI_DIR's tree, or the project's own).

1. Overhead: each sampler, and each second-order solver, against ComfyUI's ``euler`` on the same
   Flux network, inputs and number of network calls (benchmarks/overhead.py).
2. Accuracy per network call on exact velocity fields, for each solver and against two public
   time conventions (benchmarks/accuracy.py, benchmarks/baselines.py).
3. Peak memory over a plain euler run, in latent copies (benchmarks/memory.py, its own process).

It prints a Markdown report and writes it to docs/benchmarks.md, and the report, the raw numbers
(results.json) and SVG plots to output/bench/. Not part of the test run: tests do not import it.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from harness import host

ROOT = host.ROOT

OVERHEAD_GOAL = 1.02
MEMORY_GOAL = 3.0
METHOD_NAMES = {"euler": "euler", "midpoint": "midpoint", "fireflow": "fireflow",
                "controller_linear": "(a) controller at i/N", "model_linear": "(b) model at i/N (diffusers inversion)"}
METHOD_STEPS = {"euler": "N", "midpoint": "N/2", "fireflow": "N − 1", "controller_linear": "N", "model_linear": "N"}
METRIC_TITLES = {
    "gamma1": "γ = 1 target error: inversion's end state against y₁ (exact answer: 0)",
    "eta1": "η = 1 target error: reverse's end state, from y₁, against y₀ (exact answer: 0)",
    "recon": "Reconstruction error: inversion with γ = 0, then reverse with η = 0, against y₀",
}
# The GPU figures the issue gives (issue 9), cited, not measured by this command.
CITED_GPU = (
    "**GPU**, cited: measured by the issue's author on 2026-11-27 on an NVIDIA H100, not by this command. "
    "A full-size Flux-dev architecture (random bf16 weights) at 1024 × 1024, 28 steps, against ComfyUI's `euler` "
    "in the same run, on the samplers as they were when issue 9 was filed (Euler only): `euler` 174 ms/step; "
    "RF-Inversion 1.012 of that; Controlled Reverse 1.011; a full edit (inversion plus reverse, 56 network calls) "
    "9.8 s; peak memory 22.7 GiB, the same as `euler`. Rectified SDE: 1.038 as then landed, 1.022 with the sigmas "
    "read on the host once per run, 1.018 with its per-step noise also drawn on the device; ComfyUI's own "
    "`euler_ancestral` 1.025. The pack now reads the sigmas once per run and still draws the SDE's noise on the "
    "CPU, from a seeded generator, so that a seed gives the same image on every device: by these figures that "
    "choice costs 1.022 against 1.018, 0.4 % of a step. The solvers had not landed then and have no GPU figures.")


def machine(device):
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    from benchmarks import device as dev
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), **host_of_run(),
            "device": device, "device_name": dev.name(device)}


def host_of_run():
    """The ComfyUI that this run imports, as the line every run prints names it (host.host_line()):
    COMFYUI_DIR's tree when it is set, else the project's own."""
    return {"comfyui": host.host_version(), "comfyui_dir": str(host.COMFY)}


def loadavg():
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except OSError:
        return float("nan")


def run_memory(out_dir, quick, log, device):
    """benchmarks/memory.py in a fresh process, with glibc's mmap threshold fixed (see its docstring)."""
    path = out_dir / "memory.json"
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1")
    if quick:
        env["RF_BENCH_MEMORY_REPEATS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.memory", str(path), device], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the memory benchmark failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    result = json.loads(path.read_text())
    for r in result["rows"]:
        log(f"  memory {r['sampler']}: {r['extra_copies']:+.2f} latent copies at peak "
            f"(euler's peak {r['euler_copies']:.1f}), {r['extra_at_network_copies']:+.2f} at network entry")
    return result


# --- the report ---------------------------------------------------------------------------------

def e(v):
    return f"{v:.2e}"


def overhead_md(rows, device):
    clock = "wall time, synchronised" if device == "cuda" else "CPU time"
    lines = [f"| sampler | steps: pack / euler | network calls, each side | ratio, {clock}: median of pairs (IQR) | "
             "ratio, wall clock | **ratio from the time outside the network** | outside the network per call: pack / euler | "
             "pack / euler per run | euler per step | network share of euler's run |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ms = 3 if r["outside_euler_call_ms"] < 0.1 else 2
        lines.append(f"| {r['sampler']} | {r['steps']} / {r['euler_steps']} | {r['calls']} | **{r['ratio_median']:.3f}** "
                     f"({r['ratio_q1']:.3f}–{r['ratio_q3']:.3f}) | {r['wall_ratio_median']:.3f} | "
                     f"**{r['sampler_ratio']:.4f}** | {r['outside_pack_call_ms']:.{ms}f} ms / {r['outside_euler_call_ms']:.{ms}f} ms | "
                     f"{r['pack_s']:.3f} s / {r['euler_s']:.3f} s | {r['euler_step_ms']:.1f} ms | "
                     f"{100 * r['network_share']:.1f} % |")
    return "\n".join(lines)


def recon_md(rows):
    methods = list(METHOD_NAMES)
    lines = ["| field | shift | network calls per pass (N) | "
             + " | ".join(f"{METHOD_NAMES[m]}, {METHOD_STEPS[m]} steps" for m in methods) + " |",
             "|---|---|---|" + "---|" * len(methods)]
    for r in rows:
        best = min(r[f"recon:{m}"] for m in methods)
        lines.append(f"| {r['field']} | {r['shift']} | {r['calls']} | "
                     + " | ".join((f"**{e(r[f'recon:{m}'])}**" if r[f"recon:{m}"] == best else e(r[f"recon:{m}"]))
                                  for m in methods) + " |")
    return "\n".join(lines)


def targets_md(rows):
    top = max(r["calls"] for r in rows)

    def span(metric, m, only_top=False):
        vals = [r[f"{metric}:{m}"] for r in rows if not only_top or r["calls"] == top]
        return f"{e(min(vals))} – {e(max(vals))}"
    lines = [f"| method | steps per pass for N calls | γ = 1: all {len(rows)} cases | γ = 1: at {top} calls | "
             f"η = 1: all {len(rows)} cases | η = 1: at {top} calls |", "|---|---|---|---|---|---|"]
    for m in METHOD_NAMES:
        lines.append(f"| {METHOD_NAMES[m]} | {METHOD_STEPS[m]} | {span('gamma1', m)} | {span('gamma1', m, True)} | "
                     f"{span('eta1', m)} | {span('eta1', m, True)} |")
    return "\n".join(lines)


def path_md(rows):
    solvers = ("euler", "midpoint", "fireflow")
    lines = ["| field | shift | N | " + " | ".join(f"{m}: unlinked / through the path, γ 0 / γ 0.5 | {m}: inversion calls"
                                                   for m in solvers) + " |",
             "|---|---|---|" + "---|---|" * len(solvers)]
    for r in rows:
        lines.append(f"| {r['field']} | {r['shift']} | {r['calls']} | " + " | ".join(
            f"{e(r[f'recon:{m}'])} / **{e(r[f'path0:{m}'])}** / **{e(r[f'path5:{m}'])}** | {r[f'path_calls:{m}']}"
            for m in solvers) + " |")
    return "\n".join(lines)


def path_reading(acc):
    solvers = ("euler", "midpoint", "fireflow")
    worst = max(r[f"path{g}:{m}"] for r in acc for m in solvers for g in (0, 5))
    best_plain = min(r[f"recon:{m}"] for r in acc for m in solvers)
    return (f"Reading: through the exact path every solver returns y₀ to float32 rounding (worst {e(worst)} RMS, "
            f"γ 0 or 0.5, every field, shift and call count), where the best unlinked round trip misses by "
            f"{e(best_plain)}, with the same reverse calls. The recording inversion's calls, counted: euler N + 1, "
            "midpoint 3·(N/2) + 1, fireflow 2·(N − 1) + 2 for N calls per pass (the reverse's calls along the path, "
            "less the network outputs the inversion already has).")


def memory_md(mem):
    lines = ["| sampler | peak above baseline: pack | same for euler | **extra latent copies at peak** | "
             "held at network entry: pack / euler (copies) |", "|---|---|---|---|---|"]
    for r in mem["rows"]:
        lines.append(f"| {r['sampler']} | {r['pack_peak_mib']:.2f} MiB | {r['euler_peak_mib']:.2f} MiB | "
                     f"**{r['extra_copies']:+.2f}** | {r['pack_at_network_copies']:.2f} / {r['euler_at_network_copies']:.2f} |")
    return "\n".join(lines)


def solver_of(sampler):
    """The step rule a benchmark row's sampler uses: its name says so unless it is euler."""
    for solver in ("midpoint", "fireflow"):
        if sampler.endswith(f"{solver})"):
            return solver
    return "euler"


def verdicts(over, mem):
    control = [r for r in over if r["sampler"].startswith("euler against euler")]
    over = [r for r in over if not r["sampler"].startswith("euler against euler")]
    worst_ratio = max(r["ratio_median"] for r in over)
    edit_rows = [r for r in mem["rows"] if not r["sampler"].startswith("calibration")]
    worst_mem = max(r["extra_copies"] for r in edit_rows)
    implied = max(r["sampler_ratio"] for r in over)
    widest = max(r["ratio_q3"] - r["ratio_q1"] for r in over)
    return [
        f"- Overhead goal (≤ {OVERHEAD_GOAL}): from the time outside the network, worst {implied:.4f}: "
        f"**{'met' if implied <= OVERHEAD_GOAL else 'not met'}**. The direct whole-run ratio, worst median "
        f"{worst_ratio:.3f}, is {'within' if worst_ratio <= OVERHEAD_GOAL else 'above'} the goal, with paired ratios "
        f"spread over an interquartile range up to {widest:.3f} wide"
        + (f", while euler against itself, measured the same way, reads {control[0]['ratio_median']:.3f} "
           f"(IQR {control[0]['ratio_q1']:.3f}–{control[0]['ratio_q3']:.3f})" if control else "")
        + ": the direct ratio carries the noise of the network's time, which both sides spend "
        "alike (same network, same number of calls), so the difference a sampler makes is read more precisely "
        "outside the network.",
        f"- Memory goal (≤ {MEMORY_GOAL:g} extra latent copies): worst {worst_mem:+.2f}: "
        f"**{'met' if worst_mem <= MEMORY_GOAL else 'not met'}**"
        + (". Above it: " + ", ".join(f"{r['sampler']} {r['extra_copies']:+.2f}" for r in edit_rows
                                      if r["extra_copies"] > MEMORY_GOAL)
           + f"; the euler rule's worst is {max(r['extra_copies'] for r in edit_rows if solver_of(r['sampler']) == 'euler'):+.2f}"
           " (section 3 says what a copy weighs against a real network)" if worst_mem > MEMORY_GOAL else "") + ".",
    ]


def network_words(net):
    n = net["net"]
    return (f"a Flux from ComfyUI's classes, hidden {n['hidden_size']}, {n['num_heads']} heads, {n['depth']} double and "
            f"{n['depth_single_blocks']} single blocks, initialised weights in {net['dtype']}, Flux shift at 1024²; latent "
            f"{' × '.join(map(str, net['latent'][1:]))} ({net['latent'][2] * net['latent'][3] // 4} image tokens)")


def accuracy_reading(acc):
    solvers = ("euler", "midpoint", "fireflow")
    top = max(r["calls"] for r in acc)
    worst = {m: max(max(r[f"gamma1:{m}"], r[f"eta1:{m}"]) for r in acc) for m in solvers}
    keys = ("gamma1:controller_linear", "gamma1:model_linear", "eta1:controller_linear")
    public = [r[k] for r in acc for k in keys]
    public_top = min(r[k] for r in acc for k in keys if r["calls"] == top)
    gauss = [r for r in acc if r["field"] == "gaussian"]
    paper = next((r for r in gauss if r["shift"] == "flux" and r["calls"] == 28), None)
    gain = {m: [r["recon:euler"] / r[f"recon:{m}"] for r in gauss] for m in ("midpoint", "fireflow")}
    halves = sorted({r["calls"] for r in acc})[-2:]

    def shrink(m, field="gaussian", shift="flux"):
        a, b = (next(r for r in acc if r["field"] == field and r["shift"] == shift and r["calls"] == c) for c in halves)
        return a[f"recon:{m}"] / b[f"recon:{m}"]
    b_worse_at_top = all(r["recon:model_linear"] > max(r[f"recon:{m}"] for m in solvers) for r in acc if r["calls"] == top)
    b_better_below = any(r["recon:model_linear"] < r["recon:euler"] for r in acc if r["calls"] < top)
    b_note = ((f": it is below euler's at fewer calls (on these fields its error happens to offset Euler's), but above "
               f"every solver's in every case at {top} calls") if b_worse_at_top and b_better_below else "")
    a_agrees = max(abs(r["recon:controller_linear"] / r["recon:euler"] - 1) for r in acc)
    mix = [r for r in acc if r["field"] == "mixture"]
    shifts = sorted({r["shift"] for r in mix})
    switched = []
    for m in solvers:
        at = {}
        for r in mix:
            if r[f"recon:{m}"] > 0.5:
                at.setdefault(r["calls"], []).append(r["shift"])
        if at:
            switched.append(f"{m} at " + ", ".join(
                f"{c} calls ({'both shifts' if len(sh) == len(shifts) else ' and '.join(sh) + ' shift'})"
                for c, sh in sorted(at.items())))
    mix_rest = [r["recon:euler"] / min(r["recon:midpoint"], r["recon:fireflow"]) for r in mix
                if max(r[f"recon:{m}"] for m in ("midpoint", "fireflow")) <= 0.5]
    text = [
        "Reading:",
        f"- Targets: every solver reaches y₁ (γ = 1) and y₀ (η = 1) to float32 rounding, at every call count, field "
        f"and shift: worst " + ", ".join(f"{m} {e(worst[m])}" for m in solvers) + ". Under a shifted schedule the public "
        f"conventions miss them by {e(min(public))} to {e(max(public))}, and still by {e(public_top)} or more at {top} "
        "calls.",
    ]
    if paper:
        text.append(
            f"- Reconstruction at equal calls: at the paper's 28 calls per pass (56 for the edit's two passes), Gaussian "
            f"field under Flux's shift, euler misses by {e(paper['recon:euler'])}, midpoint by {e(paper['recon:midpoint'])} "
            f"({paper['recon:euler'] / paper['recon:midpoint']:.0f} times less), fireflow by {e(paper['recon:fireflow'])} "
            f"({paper['recon:euler'] / paper['recon:fireflow']:.0f} times less). Over the Gaussian cases midpoint is "
            f"{min(gain['midpoint']):.0f} to {max(gain['midpoint']):.0f} times more accurate than euler at the same "
            f"calls, fireflow {min(gain['fireflow']):.0f} to {max(gain['fireflow']):.0f} times. From {halves[0]} to "
            f"{halves[1]} calls (Gaussian, Flux) euler's error falls {shrink('euler'):.1f} times (first order), "
            f"midpoint's {shrink('midpoint'):.1f} and fireflow's {shrink('fireflow'):.1f}: second order, and more on "
            "the round trip, whose two passes' errors partly cancel.")
    text.append(
        "- (a) calls the network at the right σ and its controller drops out at γ = η = 0, so it reconstructs exactly "
        "as euler does (an independent re-implementation, agreeing "
        + (f"to a relative {a_agrees:.0e}" if a_agrees else "bit for bit") + "). (b), whose network is told the "
        "wrong noise level, stops falling" + b_note + ".")
    text.append(
        "- On the mixture, whose two modes are far apart in 4096 dimensions, a coarse inversion can send latents to "
        "the other mode, and the reconstruction then misses by about the distance between them (error above 0.5): "
        + ("; ".join(switched) if switched else "no case") + " per pass. That is the ODE's discretisation, "
        "shared by every convention that calls the network at the right σ"
        + (f"; where neither second-order solver switches modes, the better of them is {min(mix_rest):.0f} to "
           f"{max(mix_rest):.0f} times more accurate than euler." if mix_rest else "."))
    return "\n".join(text)


def report(info, over, acc, mem, seconds, quick, load, net, command):
    today = datetime.date.today().isoformat()
    cuda = info["device"] == "cuda"
    clock = ("wall time, the device synchronised at the start and end of each run; the network's share is GPU time "
             "between CUDA events at its hooks, which add no synchronisation" if cuda else "the process's CPU time")
    out = [
        "# Benchmarks",
        "",
        f"Made on {today} by `{command}` in {seconds:.0f} s, "
        f"on {info['cpu']} ({info['cores']} cores, shared with other jobs: load average {load[0]:.1f} at the start, "
        f"{load[1]:.1f} at the end)" + (f" and {info['device_name']}" if cuda else "") + f", {info['platform']}, "
        f"Python {info['python']}, torch {info['torch']} on {info['torch_threads']} thread, ComfyUI {info['comfyui']} "
        "in-process. Plots and raw numbers: `output/bench/`.",
        "",
        CITED_GPU + (f" The tables below were measured by this command on {info['device_name']}, with the network "
                     "that section 1 describes." if cuda else " This command ran on the CPU; `--device cuda` runs it on a GPU."),
        "",
        *(["**This is a `--quick` smoke run: few pairs and repeats, rough numbers.**", ""] if quick else []),
        "## Goals",
        "",
        *verdicts(over, mem),
        "",
        "## 1. Overhead against ComfyUI's `euler`",
        "",
        f"Each sampler and `KSamplerSelect` \"euler\" run through `SamplerCustomAdvanced` on {'the GPU' if cuda else 'the CPU'}, "
        f"on the same model ({network_words(net)}), the same sigmas (the inversion's are `FlipSigmas` of the scheduler's, "
        "and euler gets those too), the same noise and latent, and the same number of network calls (counted by a hook on "
        "the network). A second-order solver's row runs the pack with the steps that make as many network calls as "
        "euler's 8 (midpoint 4, fireflow 7), so those rows compare the same network work; the sigmas then differ, which "
        "changes no network's cost. Runs are paired, the order inside a pair alternating; the ratio is pack / euler of "
        f"{clock}, median of the pairs. The time outside the network (run minus the time inside the network's forward) "
        "is the part a sampler can add to; the ratio from it is 1 + median over pairs of (pack − euler outside the "
        "network) / euler's median run, and it is shown per network call. The last row runs euler against a second "
        "euler object in the same way: an A/A control, whose distance from 1 is the noise floor of the direct ratio "
        "on this machine.",
        "",
        overhead_md(over, info["device"]),
        "",
        overhead_reading(over),
        "",
        "## 2. Accuracy per network call (exact velocity fields)",
        "",
        "The network slot of ComfyUI's Flux model holds the closed-form field of a Gaussian (x₀ ~ N(μ, 0.5²)) or of "
        "a two-component mixture (means ±μ, std 0.5 and 0.3, equal weights), on a batch of 4 latents of 16 × 16 × 16; "
        "everything else (latent format, model sampling, guider) is the host's. Shifts: `ModelSamplingFlux` at "
        "1024 × 1024 (shift e^1.15 ≈ 3.16) and `ModelSamplingSD3` shift 3; `simple` scheduler. Errors are RMS per "
        "element in model space. Every method runs, on each pass, the steps that make N network calls: euler and the "
        "two conventions N steps, midpoint N/2, fireflow N − 1; the calls of each inversion and each reverse are read "
        "from the exact model's counter, and the run stops if they are not N.",
        "",
        "Methods:",
        "- **euler**, **midpoint**, **fireflow**: this pack's RF-Inversion and Controlled Reverse Sampler with that "
        "`solver`, every field at the schedule's own σᵢ (ALGORITHM.md, SOLVERS.md).",
        "- **(a) controller at i/N**, a public convention re-implemented from its equations in "
        "`benchmarks/baselines.py` (Euler steps): the network at σᵢ, but the conditional fields use the unshifted "
        "time: (y₁ − Y)/(1 − i/N) in the inversion, (X − y₀)/(1 − i/N) in the reverse.",
        "- **(b) model at i/N**, the same for the diffusers-style inversion: the network is told noise level i/N (the "
        "first call, at 0, gets the schedule's first sigma, 1e-4, since D/σ is singular there), the controller uses "
        "i/N, and the state moves by the generation schedule's steps in generation order. Its reverse uses the "
        "scheduler's σᵢ, i.e. the pack's euler equation.",
        "",
        f"### {METRIC_TITLES['recon']}",
        "",
        "Lowest error of each row in bold.",
        "",
        recon_md(acc),
        "",
        "### γ = 1 and η = 1 target errors (exact answer: 0)",
        "",
        "γ = 1: the inversion's end state against y₁. η = 1 over the whole window: the reverse's end state, from y₁, "
        f"against y₀. Smallest and largest over the fields, shifts and call counts ({len(acc)} cases); every case is "
        "in `output/bench/results.json` and the plots.",
        "",
        targets_md(acc),
        "",
        accuracy_reading(acc),
        "",
        "### Reconstruction through the exact path (`record_path` and the reverse's `inversion` input)",
        "",
        "The same fields, shifts and call counts; inversion with γ 0 or 0.5 and `record_path` on, then the reverse "
        "with η = 0 and its `inversion` input wired (EXACT_PATH.md), against y₀; the unlinked round trip (γ 0) beside it.",
        "",
        path_md(acc),
        "",
        path_reading(acc),
        "",
        "## 3. Memory over a plain `euler` run",
        "",
        memory_method(mem),
        "",
        memory_md(mem),
        "",
        memory_reading(mem),
        "",
    ]
    return "\n".join(out)


def overhead_reading(over):
    """What the time outside the network per call says about the step rules."""
    def added(solver):
        rows = [r for r in over if solver_of(r["sampler"]) == solver and not r["sampler"].startswith("euler against")]
        return [r["outside_pack_call_ms"] - r["outside_euler_call_ms"] for r in rows]
    second = added("midpoint") + added("fireflow")
    if not second:
        return ""
    first = added("euler")
    euler_ms = [r["outside_euler_call_ms"] for r in over]
    return ("Reading: per network call, the time outside the network is mostly ComfyUI's own (the model wrapper, "
            f"the guider: {min(euler_ms):.2f} to {max(euler_ms):.2f} ms per call for its euler), plus the step rule's "
            "element-wise work: the second-order rules also make a half-step state, and fireflow evaluates the "
            "controlled field twice per call, at the step's start from the carried velocity and at its midpoint. They "
            f"add {min(second):+.3f} to {max(second):+.3f} ms per call over euler; the pack's Euler rows (Rectified SDE "
            f"included) add {min(first):+.3f} to {max(first):+.3f} ms. Against a step of euler's "
            f"({min(r['euler_step_ms'] for r in over):.1f} ms or more here) that is at most "
            f"{100 * max(second + first) / min(r['euler_step_ms'] for r in over):.1f} %, and less where the network is larger.")


def memory_method(mem):
    steps = (f"{mem['steps']} steps, against euler on the same inputs (a second-order solver's row with the steps that "
             "make as many network calls: midpoint 2, fireflow 3)")
    if mem.get("device") == "cuda":
        return (f"One `SamplerCustomAdvanced` call on the GPU at a latent of {' × '.join(map(str, mem['shape'][1:]))} "
                f"({mem['latent_mib']:.0f} MiB in float32) with the exact Gaussian model, {steps}; medians of "
                f"{mem['repeats']} interleaved repeats after warm-up. Peak = torch's CUDA allocator's peak "
                "(`torch.cuda.max_memory_allocated`, reset before the call) minus what it held just before the call: the "
                "device's tensors, not the process's resident set. The last column is the most held above the same base "
                "at any entry into the network. The calibration row (euler keeping two extra latents alive) shows that "
                "the method sees +2 copies as +2.")
    return (f"One `SamplerCustomAdvanced` call at a latent of {' × '.join(map(str, mem['shape'][1:]))} "
            f"({mem['latent_mib']:.0f} MiB in float32) with the exact Gaussian model, {steps}; medians of "
            f"{mem['repeats']} interleaved repeats after warm-up. This is the CPU's memory (`--device cuda` measures the "
            "GPU's allocator instead). Peak = the kernel's peak resident set (VmHWM, reset through /proc/self/clear_refs) "
            "minus the resident set just before the call, in a process where glibc gives every block of 64 KiB or more "
            "back on free (MALLOC_MMAP_THRESHOLD_=65536), so the resident set follows torch's live tensors. The last "
            "column is the most resident above the same base at any entry into the network: what stays alive across a "
            "network call, which a real network's activations add to. The calibration row (euler keeping two extra "
            "latents alive) shows that the method sees +2 copies as +2.")


def memory_reading(mem):
    rows = [r for r in mem["rows"] if not r["sampler"].startswith("calibration")]
    peak = max(r["euler_copies"] for r in rows)
    solvers = [s for s in ("euler", "midpoint", "fireflow") if any(solver_of(r["sampler"]) == s for r in rows)]

    def most(key, solver):
        return max(r[key] for r in rows if solver_of(r["sampler"]) == solver
                   and r["sampler"].startswith(("RF-Inversion", "Controlled Reverse")))
    at_net = {s: most("extra_at_network_copies", s) for s in solvers}
    text = (f"Reading: euler's own peak (up to {peak:.0f} latents) is set inside the network call by the exact "
            "model's float64 arithmetic, which stands in for a network's activations. An edit is an inversion call "
            "followed by a reverse call, so its peak over euler's is the larger of its two rows: "
            + ", ".join(f"{s} {most('extra_copies', s):+.2f}" for s in solvers) + " latent copies. ")
    if max(at_net.values()) <= 0.05:
        text += "The pack keeps no more alive than euler at any network call, whatever the solver. "
    else:
        text += ("That much is held across a network call (the last column: at most "
                 + ", ".join(f"{s} {v:+.2f}" for s, v in at_net.items()) + "), where a network's activations add to it. ")
    return text + ("For scale, a Flux latent at 1024 × 1024 (16 × 128 × 128 in float32) is 1 MiB, against the cited "
                   "22.7 GiB peak of a full-size Flux edit on a GPU.")


def short_name(sampler):
    """'RF-Inversion (gamma 0.5, midpoint)' -> 'Inversion midpoint', for the plot's narrow columns."""
    head = {"RF-Inversion": "Inversion", "Controlled Reverse": "Reverse"}.get(sampler.split(" (")[0], sampler.split(" (")[0])
    solver = solver_of(sampler)
    return head if solver == "euler" else f"{head} {solver}"


def plots(out_dir, over, acc, device):
    from benchmarks import svgplot
    clock = "wall time" if device == "cuda" else "CPU time"
    svgplot.strip(out_dir / "overhead.svg", f"Per-pair time ratio pack / euler ({clock}); bar = median",
                  [(short_name(r["sampler"]), r["ratios"]) for r in over], "pack / euler",
                  refs=(1.0, OVERHEAD_GOAL), width=130 * len(over))
    styles = {"euler": "solid", "midpoint": "solid", "fireflow": "solid", "controller_linear": "dash", "model_linear": "dot"}
    for metric, title in METRIC_TITLES.items():
        panels = []
        for field in ("gaussian", "mixture"):
            for shift in ("flux", "sd3"):
                rows = [r for r in acc if r["field"] == field and r["shift"] == shift]
                series = [(METHOD_NAMES[m], [r["calls"] for r in rows], [r[f"{metric}:{m}"] for r in rows], styles[m])
                          for m in METHOD_NAMES]
                panels.append((f"{field}, {shift} shift", series))
        svgplot.line_panels(out_dir / f"accuracy_{metric}.svg", title, panels, "network calls per pass",
                            "RMS error (floor 1e-9)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "output" / "bench"), help="folder for the report, plots and raw numbers")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"), help="where the report goes ('' for nowhere)")
    parser.add_argument("--pairs", type=int, default=16, help="paired runs per sampler in the overhead benchmark")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few pairs and repeats")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="where models and latents go; the overhead rows compare against euler on it (default cpu)")
    opts = parser.parse_args()
    from benchmarks import device as dev
    dev.check(opts.device)  # before anything runs
    out_dir = Path(opts.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0, load0 = time.monotonic(), loadavg()

    import torch
    torch.set_num_threads(1)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731

    log("memory (its own process) ...")
    mem = run_memory(out_dir, opts.quick, log, opts.device)

    log(f"importing the host on {opts.device} ...")
    log(host.host_line())
    nodes = dev.import_host(opts.device)
    import comfy.utils
    comfy.utils.PROGRESS_BAR_ENABLED = False  # both sides alike; keeps the console readable
    M = nodes.NODE_CLASS_MAPPINGS
    from benchmarks import accuracy, overhead

    log("accuracy ...")
    acc = accuracy.run_accuracy(M, log=log)
    log("overhead ...")
    over = overhead.run_overhead(M, pairs=3 if opts.quick else opts.pairs, warmup=1 if opts.quick else 2, log=log,
                                 device=opts.device)

    info = machine(opts.device)
    net = overhead.setup(opts.device)
    seconds = time.monotonic() - t0
    command = " ".join([".venv/bin/python -m benchmarks.run", *(["--quick"] if opts.quick else []),
                        *(["--device", opts.device] if opts.device != "cpu" else [])])
    text = report(info, over, acc, mem, seconds, opts.quick, (load0, loadavg()), net, command)
    (out_dir / "benchmarks.md").write_text(text)
    (out_dir / "results.json").write_text(json.dumps(
        {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": info, "seconds": seconds,
         "quick": opts.quick, "device": opts.device, "overhead_network": net, "overhead": over, "accuracy": acc,
         "memory": mem}, indent=1))
    plots(out_dir, over, acc, opts.device)
    if opts.doc:
        Path(opts.doc).parent.mkdir(parents=True, exist_ok=True)
        Path(opts.doc).write_text(text)
    print(text)
    log(f"written: {out_dir}/ (benchmarks.md, results.json, memory.json, *.svg)"
        + (f" and {opts.doc}" if opts.doc else "") + f" in {seconds:.0f} s")


if __name__ == "__main__":
    main()
