"""The device a benchmark runs on: the host imported for it, and the clocks and memory meters that
read it honestly.

On the CPU the host is imported as the tests import it (``harness.host.import_host`` forces ``--cpu``).
On CUDA it is imported without that flag, so ComfyUI's model management picks the GPU itself and
places models and latents there, as it does in a real run.
"""
import time

from harness import host

DEVICES = ("cpu", "cuda")


def check(device):
    """Refuse, before anything runs, a device this machine does not have."""
    if device not in DEVICES:
        raise SystemExit(f"--device must be one of {DEVICES}, got {device!r}")
    if device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise SystemExit(f"--device cuda: torch {torch.__version__} (built for CUDA {torch.version.cuda}) sees no "
                             "CUDA device here (torch.cuda.is_available() is False). Run on a machine with a GPU, "
                             "or with --device cpu.")


def import_host(device):
    """ComfyUI's ``nodes`` module with the pack loaded, its model management on ``device``."""
    check(device)
    if device == "cuda":
        # host.import_host sets args.cpu = True before it imports comfy.model_management, which reads
        # the flag once, at import. Importing it first, with the flag unset, lets it pick the GPU; the
        # later assignment then changes nothing (nothing else in the host reads args.cpu).
        host.import_comfy(cpu=False)
        import comfy.model_management as mm
        if mm.get_torch_device().type != "cuda":
            raise SystemExit(f"--device cuda: ComfyUI's model management chose {mm.get_torch_device()}, not a GPU")
    nodes, _ = host.import_host()
    if device == "cuda":
        import comfy.model_management as mm
        assert mm.get_torch_device().type == "cuda", "the host was imported on the CPU before --device cuda took effect"
    return nodes


def name(device):
    """The device in words, for the report."""
    if device == "cuda":
        import torch
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    return "CPU"


def synchronize(device):
    if device == "cuda":
        import torch
        torch.cuda.synchronize()


class NetworkClock:
    """Counts the network's calls and the time spent inside them (forward hooks on the network).

    CPU: the process's CPU time between the hooks. CUDA: the GPU time between two events recorded
    on the stream at the hooks, read after the run, so that the clock adds no host synchronisation
    (a sampler that synchronised per step would otherwise have its cost hidden by the clock's)."""

    def __init__(self, network, device="cpu"):
        self.device = device
        self.calls, self._seconds, self._events, self._t0 = 0, 0.0, [], None
        network.register_forward_pre_hook(self._pre)
        network.register_forward_hook(self._post)

    def _pre(self, module, args):
        if self.device == "cuda":
            import torch
            self._t0 = torch.cuda.Event(enable_timing=True)
            self._t0.record()
        else:
            self._t0 = time.process_time()

    def _post(self, module, args, output):
        if self.device == "cuda":
            import torch
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._events.append((self._t0, end))
        else:
            self._seconds += time.process_time() - self._t0
        self.calls += 1

    @property
    def seconds(self):
        """Time inside the network since the last reset (on CUDA, call after synchronize)."""
        if self._events:
            self._seconds += sum(start.elapsed_time(end) for start, end in self._events) / 1000
            self._events = []
        return self._seconds

    def reset(self):
        self.calls, self._seconds, self._events = 0, 0.0, []


def run_clock(device):
    """The clock a whole run is timed by: the process's CPU time on the CPU (other jobs on a shared
    machine do not show up in it); on CUDA wall time, the device synchronised before and after."""
    if device == "cuda":
        def clock():
            synchronize(device)
            return time.perf_counter()
        return clock
    return time.process_time
