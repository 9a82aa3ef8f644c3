"""The timing helper under every benchmark: interleaved rounds, medians, their confidence
intervals, peak memory of one call, and the machine a result was measured on.

- Interleaved: every variant (a function to time) runs once per round, round-robin, the start
  rotating from round to round; ``warmup`` rounds are discarded and ``repeats`` kept, so load
  drift of a shared machine hits all variants alike. Before the rounds each variant runs once
  untimed (``first_call_s``: compilation, oneDNN primitive creation, a first file open).
- A sample is ``inner`` back-to-back calls, ``inner`` chosen in the warm-up so that a sample
  lasts at least ``min_sample_s`` (one call of a ResNet-50 on a CPU, many small calls on a GPU).
  CUDA times use CUDA events around the calls (the device synchronised before the first);
  ``clock="cpu"`` times the CPU time of this process instead of the elapsed time (CPU devices
  only: :func:`bench_device` refuses it on a GPU, whose work it would not see).
- A ratio of two variants is the median over rounds of their times in the same round, with the
  distribution-free 95% confidence interval of that median (order statistics).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import math
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..engine.device import configure_backends, select_device
from ..errors import ConfigError

__all__ = [
    "Timings",
    "bench_device",
    "bf16_note",
    "cpu_bf16",
    "environment",
    "frozen_heap",
    "interleaved",
    "log",
    "median_ci",
    "median_ratio",
    "peak_memory_mib",
    "synchronize",
    "time_calls",
]


_logger = logging.getLogger("videoattn.benchmark")


def log(msg: str) -> None:
    """Progress, logged (``tools/benchmark.py`` shows it on stderr; results go to stdout)."""
    _logger.info(msg)


def bench_device(device: str | torch.device, *, tf32: bool = True, clock: str = "wall") -> torch.device:
    """The device a benchmark runs on: ``device`` itself, or :func:`select_device`'s choice for
    ``auto | cpu | cuda``; a GPU's math set by :func:`configure_backends` (TF32 ``tf32``, cuDNN
    autotuning: every variant has fixed shapes). ``clock="cpu"`` is refused on a GPU."""
    device = device if isinstance(device, torch.device) else select_device(device)
    if device.type == "cuda" and clock == "cpu":
        raise ConfigError(
            f"--clock cpu: the CPU time of this process does not see the work of {device}; "
            "on a GPU the times are CUDA events (use --clock wall, or --device cpu)"
        )
    if device.type == "cuda":  # the CPU keeps PyTorch's defaults
        configure_backends(device, tf32=tf32)
    return device


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (CUDA); nothing elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], inner: int, device: torch.device, clock: str = "wall") -> float:
    """Seconds for ``inner`` back-to-back calls of ``fn``: elapsed (``wall``; CUDA events on a
    GPU) or the CPU time of this process (``cpu``)."""
    if device.type == "cuda":
        with torch.cuda.device(device):  # the events on that GPU's current stream, where the calls queue work
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            synchronize(device)
            start.record()
            for _ in range(inner):
                fn()
            end.record()
            end.synchronize()
        return start.elapsed_time(end) / 1e3
    now = time.process_time if clock == "cpu" else time.perf_counter
    t0 = now()
    for _ in range(inner):
        fn()
    return now() - t0


@dataclass
class Timings:
    """What :func:`interleaved` measured, one entry per variant in the order given."""

    samples: list[list[float]]  # seconds per call, one per kept round
    inner: list[int]  # calls per sample
    first_call_s: list[float]  # the untimed first call

    def medians(self) -> list[float]:
        return [statistics.median(s) for s in self.samples]


def interleaved(
    fns: Sequence[Callable[[], Any]],
    *,
    label: str,
    repeats: int,
    warmup: int = 0,
    min_sample_s: float = 0.0,
    device: torch.device | None = None,
    clock: str = "wall",
) -> Timings:
    """Time every function once per round, round-robin (see the module docstring)."""
    device = device or torch.device("cpu")
    first = []
    for fn in fns:
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        first.append(time.perf_counter() - t0)
    inner = [1] * len(fns)
    samples: list[list[float]] = [[] for _ in fns]
    rounds = warmup + repeats
    estimate = max(sum(first), len(fns) * min_sample_s) * rounds  # the first calls include one-time costs
    log(f"  {label}: first calls {sum(first):.1f}s; {rounds} rounds, at most about {estimate:.0f}s")
    start = time.perf_counter()
    for r in range(warmup + repeats):
        t0 = time.perf_counter()
        for i in [(r + k) % len(fns) for k in range(len(fns))]:  # rotate the start
            s = time_calls(fns[i], inner[i], device, clock)
            if r < warmup:  # calibrate the calls per sample
                inner[i] = max(inner[i], math.ceil(min_sample_s / max(s / inner[i], 1e-9)))
            else:
                samples[i].append(s / inner[i])
        warm = " (warm-up)" if r < warmup else ""
        left = (time.perf_counter() - start) / (r + 1) * (warmup + repeats - r - 1)
        log(f"  {label}: round {r + 1}/{warmup + repeats}{warm} {time.perf_counter() - t0:.1f}s, ~{left:.0f}s left")
    return Timings(samples, inner, first)


def median_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """Median over rounds of ``a[r] / b[r]``."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def median_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free confidence interval of the median: the order statistics
    ``x_(k), x_(n+1-k)`` with the largest ``k`` such that ``P(k <= Binomial(n, 1/2) <= n-k)``
    is at least ``level``; None when ``n`` is too small for any (``n < 6`` at 95%)."""
    xs, n = sorted(values), len(values)
    best = None
    for k in range(1, n // 2 + 1):
        if sum(math.comb(n, i) for i in range(k, n - k + 1)) / 2**n < level:
            break
        best = (xs[k - 1], xs[n - k])
    return best


def _rss_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


@contextlib.contextmanager
def frozen_heap():
    """Collect once, then freeze what exists (imports, models: never garbage), so that the
    collections before each memory measurement scan only what the measurements made."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def peak_memory_mib(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Peak memory one call of ``fn`` adds. On CUDA ``torch.cuda.max_memory_allocated`` above
    what was allocated before the call; on Linux CPUs the growth of the resident set during the
    call (``VmHWM`` after resetting it via ``/proc/self/clear_refs``, minus ``VmRSS`` before,
    after ``malloc_trim``): an estimate that reads low when the allocator reuses pages it holds.
    None where neither applies. Call it inside :func:`frozen_heap`."""
    gc.collect()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back first
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current VmRSS
    except OSError:
        return None
    before = _rss_kib("VmRSS")
    fn()
    peak = _rss_kib("VmHWM")
    if before is None or peak is None:
        return None
    return max(0, peak - before) / 1024


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def cpu_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's bf16 instructions from ``/proc/cpuinfo`` (``avx512_bf16``, ``amx_bf16``; empty
    where there are none or no such file) and PyTorch's CPU capability, e.g. ``avx512_bf16 amx_bf16
    (torch: AVX512)``. Without them bf16 autocast is emulated: several times slower than fp32."""
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    found = " ".join(f for f in ("avx512_bf16", "amx_bf16") if f in flags) or "none"
    return f"{found} (torch: {torch.backends.cpu.get_cpu_capability()})"


def bf16_note(support: str) -> str:
    """One line on what bf16 does on this CPU, from :func:`cpu_bf16`."""
    if support.startswith("none"):
        return f"CPU bf16 instructions: {support}: bf16 is emulated here, several times slower than fp32"
    return f"CPU bf16 instructions: {support}: bf16 runs in hardware, about 2x fp32 with channels_last"


def environment(device: torch.device, threads: int) -> dict[str, Any]:
    """Versions, processor, threads and date of a measurement."""
    import torchvision

    env = {
        "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "platform": platform.platform(),
        "processor": _cpu_name(), "cpu_bf16": cpu_bf16(), "threads": threads, "device": str(device),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }  # fmt: skip
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    return env
