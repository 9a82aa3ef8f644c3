"""Speed, memory and numerics of the model configs, side by side in one process.

    uv run python tools/benchmark.py [--models tsn,tsm,tam,action,se,tsm_se] [--arch resnet50]
        [--segments 8] [--size 224] [--batch-sizes 1,2] [--train] [--train-batch-size 2]
        [--modes fp32,channels_last,bf16,bf16+channels_last] [--repeats 5] [--warmup 1]
        [--threads 2] [--sections models,loader] [--json PATH] [--markdown PATH]

Models are the configs ``configs/model/<name>.yaml`` (built with ``pretrained: null``,
``--num-classes`` classes, ``--segments`` frames), plus the baseline ``torchvision_tsn``
that is always measured: a plain ``torchvision.models.<arch>()`` whose ``fc`` is replaced by
dropout + a new classifier, run on the N*T frames and averaged over T (TSN), written inline
below. Every row reports its time relative to that baseline (and to our ``tsn``) in the same
mode, so that the ratios, which are what is stable on a shared machine, can be compared
with the official implementations' ratios.

Modes are ``+``-joined options: ``fp32`` (plain float32, NCHW), ``channels_last`` (model and
input in NHWC memory format), ``bf16`` (``torch.autocast`` to bfloat16 on the device),
``compile`` (``torch.compile`` of the model; opt-in, compiling a ResNet-50 on a CPU takes
minutes), e.g. ``bf16+channels_last``.

How it measures:

- Interleaved: every (model, mode) variant is timed once per round, round-robin (the start
  rotates from round to round), ``--warmup`` rounds are discarded and ``--repeats`` rounds
  kept; load drift of a shared machine hits all variants alike. Times are medians over the
  rounds; a ratio is the median over rounds of the two variants' times in the same round,
  given with the 95% confidence interval of that median (order statistics, distribution-free):
  on a shared 2-core VM single calls vary by +-10%, so a 2% difference needs ~20 rounds.
  Before the rounds, each variant runs once untimed (``first_call_s``: compilation for
  ``compile``, oneDNN primitive creation otherwise).
- A sample is ``inner`` back-to-back calls, ``inner`` chosen in the warm-up so that a sample
  lasts at least ``--min-sample-s`` (one call on a CPU, many for small models on a GPU).
  CUDA times use CUDA events around the calls. ``--clock cpu`` times the process' CPU time
  instead of the elapsed time: on a shared machine, other processes then cost nothing (with
  ``--threads 1``; with more threads it includes OpenMP's spin-waits for a preempted thread).
- The allocator: CPU activations of a video batch are tens of MB, which glibc serves with a
  fresh ``mmap`` every time, so every forward page-faults its activations in again (on a
  VM, that is a large share of a ResNet-50 forward, baseline included). ``--malloc-cache``
  makes glibc keep freed memory (what a caching allocator, jemalloc or tcmalloc would do);
  the default measures the stock allocator.
- forward: ``model.eval()`` under ``torch.inference_mode``; train step: ``model.train()``,
  forward, cross-entropy, backward, SGD (momentum 0.9) step, at ``--train-batch-size``.
- Peak memory, one extra call per variant: on CUDA ``torch.cuda.max_memory_allocated`` above
  what was allocated before the call (activations, autograd graph, gradients); on Linux CPUs
  the growth of the process' resident set during the call (``VmHWM`` after resetting it via
  ``/proc/self/clear_refs``, minus ``VmRSS`` before, after ``malloc_trim``): an estimate that
  can read low when the allocator reuses pages it already holds; elsewhere it is omitted.
- GMACs per clip and parameters come from :mod:`videoattn.summary` (convolutions and matrix
  products, as the papers count). On CUDA the achieved FLOP/s (2 FLOPs per multiply-add,
  3x the forward for a train step) is given as a fraction of the GPU's dense peak for the
  mode's precision, for the GPUs in ``PEAK_TFLOPS``.
- Agreement: each non-fp32 mode's eval logits against fp32 on the same weights and
  ``--agree-clips`` random clips: top-1 agreement and the max abs logit difference relative
  to the largest fp32 logit. With random (untrained) weights the logits of different classes
  are close, so top-1 agreement is a harsh test; the relative error is the steadier number.

The data loader (``--sections loader``, on an SSv2-format split, by default the demo data):

- reads alone, the frames a TSN sampler picks per clip: decord sampled reads (ours), PyAV
  sequential reads up to the last sampled frame (our fallback), and the full-decode baseline
  of many codebases (PyAV decodes every frame, then the sampled ones are picked);
- the whole training loader (read + multi-scale crop + flip + normalise, batched by a
  ``DataLoader``) with decord and with PyAV at ``--loader-workers`` worker counts.
Medians of ``--loader-repeats`` passes over ``--loader-clips`` clips.

    uv run python tools/benchmark.py --sections loader                     # demo data, 0/1/2 workers
    uv run python tools/benchmark.py --sections models,loader --loader-root data/ssv2 --loader-workers 0,4,8
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import gc
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from videoattn.cli import ArgumentParser, user_errors  # noqa: E402
from videoattn.config import model_configs
from videoattn.engine.memory import cache_freed_memory  # noqa: E402
from videoattn.errors import ConfigError  # noqa: E402
from videoattn.models import build_model, load_model, to_channels_last  # noqa: E402
from videoattn.summary import count_macs, count_params  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"
BASELINE = "torchvision_tsn"
DEFAULT_MODELS = ("tsn", "tsm", "tam", "action", "se", "tsm_se")
DEFAULT_MODES = ("fp32", "channels_last", "bf16", "bf16+channels_last")
MODE_OPTIONS = ("fp32", "channels_last", "bf16", "compile")

# Dense peak TFLOP/s (no sparsity) by device-name substring, first match wins:
# (bf16 tensor cores, tf32 tensor cores, fp32 without tensor cores). Vendor data sheets.
PEAK_TFLOPS: dict[str, tuple[float, float, float]] = {
    "H100 PCIe": (756.0, 378.0, 51.0),
    "H100": (989.0, 494.0, 67.0),  # SXM
    "H200": (989.0, 494.0, 67.0),
    "A100": (312.0, 156.0, 19.5),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- models
class TorchvisionTSN(nn.Module):
    """The baseline: a plain torchvision ResNet on the N*T frames, dropout + new ``fc``,
    average over T. ``(N, T, 3, H, W) -> (N, K)``."""

    def __init__(self, arch: str, *, num_classes: int, num_segments: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_segments = num_segments
        self.net = getattr(torchvision.models, arch)(weights=None)
        if arch.startswith("mobilenet"):  # MobileNetV2: classifier = (dropout, linear)
            self.net.classifier[-1] = nn.Linear(self.net.classifier[-1].in_features, num_classes)
        else:
            self.net.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.net.fc.in_features, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        n, t = x.shape[:2]
        logits = self.net(x.flatten(0, 1))  # (N, T, 3, H, W) -> (N*T, 3, H, W) -> (N*T, K)
        return logits.view(n, t, -1).mean(1)  # (N*T, K) -> (N, T, K) -> (N, K)


def model_config(name: str, *, num_classes: int, num_segments: int, arch: str | None = None) -> dict[str, Any]:
    """The config of ``model=NAME`` (``configs/model/<name>.yaml`` or a registry module's) without
    pretrained weights, for ``num_classes`` / T."""
    configs = model_configs(CONFIGS.parent)
    if name not in configs:
        raise ConfigError(f"--models: no model config {name!r}; available: {', '.join(configs)}")
    cfg = dict(configs[name])
    cfg.update(pretrained=None, num_classes=num_classes, num_segments=num_segments)
    if arch:
        cfg["arch"] = arch
    return cfg


def build(name: str, *, num_classes: int, num_segments: int, arch: str, overrides: dict | None = None,
          checkpoints: dict[str, nn.Module] | None = None) -> nn.Module:
    """A model by config name, a checkpoint's model (``checkpoints``: name -> model), or the
    ``torchvision_tsn`` baseline; ``overrides`` are extra model-config keys (``layers`` /
    ``widths`` for tiny test networks; ignored by the baseline)."""
    torch.manual_seed(0)
    if checkpoints and name in checkpoints:
        return checkpoints[name]
    if name == BASELINE:
        return TorchvisionTSN(arch, num_classes=num_classes, num_segments=num_segments)
    cfg = model_config(name, num_classes=num_classes, num_segments=num_segments, arch=arch)
    return build_model({**cfg, **(overrides or {})})


# ----------------------------------------------------------------------------- modes
@dataclass(frozen=True)
class Mode:
    """A ``+``-joined set of options: channels_last, bf16, compile (fp32: none of them)."""

    name: str
    channels_last: bool = False
    bf16: bool = False
    compile: bool = False

    @classmethod
    def parse(cls, name: str) -> Mode:
        opts = set(name.split("+"))
        unknown = opts - set(MODE_OPTIONS)
        if unknown or not opts or ("fp32" in opts and len(opts) > 1):
            raise ConfigError(f"mode {name!r}: use '+'-joined options from {MODE_OPTIONS} (fp32 alone)")
        return cls(name, "channels_last" in opts, "bf16" in opts, "compile" in opts)

    def autocast(self, device: torch.device):
        if self.bf16:
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"


def make_input(n: int, t: int, size: int, device: torch.device, channels_last: bool, seed: int = 0) -> Tensor:
    """Random clips ``(N, T, 3, H, W)``; with ``channels_last`` the frames ``(N*T, 3, H, W)``
    are NHWC in memory (the layout the backbone then keeps)."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(n * t, 3, size, size, generator=g)  # (N*T, 3, H, W)
    if channels_last:
        frames = frames.contiguous(memory_format=torch.channels_last)
    return frames.to(device).unflatten(0, (n, t))  # (N*T, 3, H, W) -> (N, T, 3, H, W)


@dataclass
class Variant:
    """One (model, mode) pair: the module to call (a channels_last copy, a compiled wrapper)."""

    model: str
    mode: Mode
    module: nn.Module
    first_call_s: dict[str, float] = field(default_factory=dict)
    inner: dict[str, int] = field(default_factory=dict)
    optimizer: torch.optim.Optimizer | None = None


def make_variants(models: dict[str, nn.Module], modes: Sequence[Mode]) -> list[Variant]:
    """The modules of every (model, mode): NCHW modes share the model, channels_last modes
    share one NHWC copy of it (same weights), compile modes wrap one of the two."""
    variants = []
    for name, model in models.items():
        nhwc = None
        for mode in modes:
            module = model
            if mode.channels_last:
                if nhwc is None:
                    nhwc = to_channels_last(copy.deepcopy(model))
                module = nhwc
            if mode.compile:
                module = torch.compile(module)
            variants.append(Variant(name, mode, module))
    return variants


# ----------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], inner: int, device: torch.device, clock: str = "wall") -> float:
    """Seconds for ``inner`` back-to-back calls of ``fn``: elapsed (``wall``; CUDA events on a
    GPU) or the CPU time of this process (``cpu``)."""
    if device.type == "cuda":
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


def _rss_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_memory_mib(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Peak memory one call of ``fn`` adds (see the module docstring for what is measured)."""
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


def forward_fn(v: Variant, x: Tensor, device: torch.device) -> Callable[[], Any]:
    def run():
        with torch.inference_mode(), v.mode.autocast(device):
            return v.module(x)

    return run


def train_fn(v: Variant, x: Tensor, y: Tensor, device: torch.device) -> Callable[[], Any]:
    if v.optimizer is None:
        v.optimizer = torch.optim.SGD(v.module.parameters(), lr=1e-3, momentum=0.9)
    opt = v.optimizer

    def run():
        with v.mode.autocast(device):
            loss = F.cross_entropy(v.module(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)  # frees the gradients while the other variants run

    return run


def run_rounds(
    variants: list[Variant],
    fns: list[Callable[[], Any]],
    *,
    key: str,
    clips_per_call: int,
    device: torch.device,
    repeats: int,
    warmup: int,
    min_sample_s: float,
    clock: str = "wall",
) -> list[list[float]]:
    """Interleaved timing: per variant, the kept samples in seconds per clip, round by round."""
    for v, fn in zip(variants, fns, strict=True):  # first call: compile / primitive creation
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        v.first_call_s[key] = time.perf_counter() - t0
    inner = [1] * len(variants)
    samples: list[list[float]] = [[] for _ in variants]
    for r in range(warmup + repeats):
        t0 = time.perf_counter()
        order = [(r + i) % len(variants) for i in range(len(variants))]  # rotate the start
        for i in order:
            s = time_calls(fns[i], inner[i], device, clock)
            if r < warmup:  # calibrate the calls per sample
                inner[i] = max(inner[i], math.ceil(min_sample_s / max(s / inner[i], 1e-9)))
            else:
                samples[i].append(s / inner[i] / clips_per_call)
        log(f"  {key}: round {r + 1}/{warmup + repeats}{' (warm-up)' if r < warmup else ''} "
            f"{time.perf_counter() - t0:.1f}s")
    for v, n in zip(variants, inner, strict=True):
        v.inner[key] = n
    return samples


def median_ratio(a: list[float], b: list[float]) -> float:
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


def peak_tflops(device: torch.device, mode: Mode) -> float | None:
    """The dense peak of the GPU for the mode's precision (fp32 convolutions run on TF32
    tensor cores when ``torch.backends.cudnn.allow_tf32``, PyTorch's default), else None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, (bf16, tf32, fp32) in PEAK_TFLOPS.items():
        if key in name:
            if mode.bf16:
                return bf16
            return tf32 if torch.backends.cudnn.allow_tf32 else fp32
    return None


# ----------------------------------------------------------------------------- the benchmark
def measure_phase(
    phase: str,
    variants: list[Variant],
    *,
    batch_size: int,
    args: argparse.Namespace,
    macs: dict[str, int],
    device: torch.device,
) -> list[dict[str, Any]]:
    """Time ``forward`` or ``train`` for every variant at one batch size; one row each."""
    key = f"{phase}@{batch_size}"
    inputs = {cl: make_input(batch_size, args.segments, args.size, device, cl) for cl in (False, True)}
    y = torch.arange(batch_size, device=device) % args.num_classes
    fns = []
    for v in variants:
        v.module.train(phase == "train")
        x = inputs[v.mode.channels_last]
        fns.append(forward_fn(v, x, device) if phase == "forward" else train_fn(v, x, y, device))
    log(f"{key}: {len(variants)} variants, {args.warmup} warm-up + {args.repeats} rounds")
    samples = run_rounds(
        variants, fns, key=key, clips_per_call=batch_size, device=device,
        repeats=args.repeats, warmup=args.warmup, min_sample_s=args.min_sample_s, clock=args.clock,
    )  # fmt: skip
    index = {(v.model, v.mode.name): i for i, v in enumerate(variants)}
    rows = []
    for i, v in enumerate(variants):
        s = samples[i]
        med = statistics.median(s)
        row: dict[str, Any] = {
            "model": v.model, "mode": v.mode.name, "batch_size": batch_size,
            "ms_per_clip": med * 1e3, "ms_per_clip_min": min(s) * 1e3, "clips_per_s": 1.0 / med,
            "samples_ms_per_clip": [x * 1e3 for x in s],
            "calls_per_sample": v.inner[key], "first_call_s": v.first_call_s[key],
        }  # fmt: skip
        for ref in (BASELINE, "tsn"):
            j = index.get((ref, v.mode.name))
            row[f"ratio_{ref}"] = None if j is None else median_ratio(s, samples[j])
            ci = None if j is None or j == i else median_ci([x / y for x, y in zip(s, samples[j], strict=True)])
            row[f"ratio_{ref}_ci95"] = None if ci is None else list(ci)
        j = index.get((v.model, "fp32"))
        row["speedup_vs_fp32"] = None if j is None else median_ratio(samples[j], s)
        peak = peak_tflops(device, v.mode)
        flops = 2 * macs[v.model] * (3 if phase == "train" else 1) / med  # per second
        row["tflops"] = flops / 1e12
        row["peak_fraction"] = None if peak is None else flops / (peak * 1e12)
        rows.append(row)
    if not args.no_memory and not args.malloc_cache:  # with a cache, RSS growth means nothing
        for fn, row in zip(fns, rows, strict=True):
            row["peak_mem_mib"] = peak_memory_mib(fn, device)
    return rows


@torch.inference_mode()
def agreement(variants: list[Variant], args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """Eval logits of every non-fp32 mode against fp32 (same weights, same clips)."""
    if args.agree_clips < 1:
        return []
    x = {cl: make_input(args.agree_clips, args.segments, args.size, device, cl, seed=1) for cl in (False, True)}
    ref: dict[str, Tensor] = {}
    for v in variants:  # fp32 reference logits, by model (bench_models always has fp32)
        if v.mode.name == "fp32":
            ref[v.model] = v.module.eval()(x[False]).float()
    rows = []
    for v in variants:
        if v.mode.name == "fp32":
            continue
        base = ref[v.model]
        with v.mode.autocast(device):
            out = v.module.eval()(x[v.mode.channels_last]).float()
        rows.append({
            "model": v.model, "mode": v.mode.name, "clips": args.agree_clips,
            "top1_agreement": (out.argmax(1) == base.argmax(1)).float().mean().item(),
            "max_abs_diff": (out - base).abs().max().item(),
            "rel_err": ((out - base).abs().max() / base.abs().max().clamp_min(1e-30)).item(),
        })  # fmt: skip
    return rows


def environment(device: torch.device, threads: int) -> dict[str, Any]:
    env = {
        "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "platform": platform.platform(),
        "processor": _cpu_name(), "threads": threads, "device": str(device),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }  # fmt: skip
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    return env


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def bench_models(args: argparse.Namespace, *, overrides: dict | None = None,
                 checkpoints: dict[str, nn.Module] | None = None) -> dict[str, Any]:
    """The whole model benchmark for parsed ``args``; returns the JSON-ready results.
    ``overrides`` are extra model-config keys (tiny networks in the tests)."""
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if args.malloc_cache and not cache_freed_memory():
        raise RuntimeError("--malloc-cache needs glibc (mallopt)")
    if checkpoints is None:
        checkpoints = load_checkpoints(args)
    names = [BASELINE, *[m for m in args.models if m != BASELINE], *checkpoints]
    modes = [Mode.parse(m) for m in args.modes]
    if "fp32" not in args.modes:
        modes.insert(0, Mode.parse("fp32"))  # the reference of the speed-ups and agreement
    models, info = {}, {}
    for name in names:
        log(f"building {name}")
        model = build(name, num_classes=args.num_classes, num_segments=args.segments, arch=args.arch, overrides=overrides,
                      checkpoints=checkpoints)
        clip = torch.zeros(1, args.segments, 3, args.size, args.size)  # (N, T, 3, H, W)
        info[name] = {"params_m": count_params(model) / 1e6, "gmacs_per_clip": count_macs(model, clip) / 1e9}
        models[name] = model.to(device)
    macs = {n: int(i["gmacs_per_clip"] * 1e9) for n, i in info.items()}
    variants = make_variants(models, modes)
    results: dict[str, Any] = {
        "environment": environment(device, args.threads),
        "settings": {
            "models": names, "arch": args.arch, "segments": args.segments, "size": args.size,
            "num_classes": args.num_classes, "batch_sizes": args.batch_sizes,
            "train_batch_size": args.train_batch_size if args.train else None,
            "modes": [m.name for m in modes], "repeats": args.repeats, "warmup": args.warmup,
            "min_sample_s": args.min_sample_s, "clock": args.clock, "malloc_cache": args.malloc_cache,
        },
        "models": info, "forward": [], "train": [], "agreement": [],
    }  # fmt: skip
    results["agreement"] = agreement(variants, args, device)
    for bs in args.batch_sizes:
        results["forward"] += measure_phase("forward", variants, batch_size=bs, args=args, macs=macs, device=device)
    if args.train:
        results["train"] = measure_phase(
            "train", variants, batch_size=args.train_batch_size, args=args, macs=macs, device=device
        )
    return results


def load_checkpoints(args: argparse.Namespace) -> dict[str, nn.Module]:
    """The models of ``--checkpoint`` files (trained or converted), named by file; they set the
    benchmark's T, classes, arch and size (a contradicting ``--segments`` etc. is an error)."""
    out: dict[str, nn.Module] = {}
    for path in args.checkpoint or []:
        model, ckpt = load_model(path)
        cfg = ckpt["model_config"]
        for key, value in (("segments", cfg["num_segments"]), ("num_classes", cfg["num_classes"]), ("arch", cfg["arch"]),
                           ("size", ckpt["data"]["eval_transform"].get("size", 224))):
            if getattr(args, key) not in (None, value):
                raise ConfigError(f"--{key.replace('_', '-')} {getattr(args, key)} contradicts {path} ({key} {value}); "
                                  "leave it out: a checkpoint sets it")
            setattr(args, key, value)
        name = Path(path).stem
        out[name if name not in out else f"{name}_{len(out)}"] = model
    for key, default in (("segments", 8), ("num_classes", 174), ("arch", "resnet50"), ("size", 224)):
        if getattr(args, key) is None:
            setattr(args, key, default)
    return out


# ----------------------------------------------------------------------------- data loader
def full_decode(path: Path, choose: Callable[[int], np.ndarray]) -> np.ndarray:
    """The baseline of many codebases: decode every frame with PyAV, then pick. ``(T, H, W, 3)``."""
    import av

    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])  # (F, H, W, 3)
    return frames[choose(len(frames))]


def bench_reads(paths: list[Path], *, segments: int, repeats: int) -> list[dict[str, Any]]:
    """Clips/s of the three ways to get a clip's sampled frames; ``x_baseline`` against full decode."""
    from videoattn.data.sampling import segment_sample
    from videoattn.data.video import read_clip

    readers: dict[str, Callable[[Path, Callable], Any]] = {
        "decord, sampled frames": lambda p, c: read_clip(p, c, backend="decord", fallback=False),
        "PyAV, sequential to the last sampled frame": lambda p, c: read_clip(p, c, backend="pyav"),
        "PyAV, full decode (baseline)": full_decode,
    }
    rows = []
    for name, read in readers.items():
        times = []
        for _ in range(repeats):
            rng = np.random.default_rng(0)  # the same frames for every reader and pass

            def choose(n: int, rng: np.random.Generator = rng) -> np.ndarray:
                return segment_sample(n, segments, rng=rng)

            t0 = time.perf_counter()
            for p in paths:
                read(p, choose)
            times.append(time.perf_counter() - t0)
        rows.append({"reader": name, "clips_per_s": len(paths) / statistics.median(times)})
    for r in rows:
        r["x_baseline"] = r["clips_per_s"] / rows[-1]["clips_per_s"]
    return rows


def bench_loader(records: list, *, segments: int, size: int, batch_size: int, workers: list[int],
                 repeats: int) -> list[dict[str, Any]]:
    """Clips/s of the training loader (read, multi-scale crop, flip, normalise, collate)."""
    from videoattn.data.dataset import VideoDataset
    from videoattn.data.sampling import Sampling
    from videoattn.data.transforms import TrainTransform

    rows = []
    for w in workers:
        for backend in ("decord", "pyav"):
            ds = VideoDataset(records, sampling=Sampling(num_segments=segments), transform=TrainTransform(size=size),
                              backend=backend)
            times = []
            for _ in range(repeats):
                loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=w)
                t0 = time.perf_counter()
                n = sum(len(batch[1]) for batch in loader)
                times.append(time.perf_counter() - t0)
            rows.append({"backend": backend, "workers": w, "clips_per_s": n / statistics.median(times)})
    return rows


def bench_data(args: argparse.Namespace) -> dict[str, Any]:
    """The data-loader section for parsed ``args``; returns the JSON-ready results."""
    from videoattn.data.annotations import load_ssv2

    torch.set_num_threads(args.threads)
    root = args.loader_root
    if root is None:
        from videoattn.data.synthetic import ensure_demo_dataset

        root = ensure_demo_dataset() / "ssv2"
    records = load_ssv2(root, args.loader_split).records[: args.loader_clips]
    log(f"data loader: {len(records)} clips of {root} ({args.loader_split}), T={args.segments}")
    return {
        "settings": {"root": str(root), "split": args.loader_split, "clips": len(records), "segments": args.segments,
                     "size": args.size, "batch_size": args.loader_batch_size, "repeats": args.loader_repeats},
        "reads": bench_reads([r.path for r in records], segments=args.segments, repeats=args.loader_repeats),
        "loader": bench_loader(records, segments=args.segments, size=args.size, batch_size=args.loader_batch_size,
                               workers=args.loader_workers, repeats=args.loader_repeats),
    }


def loader_markdown(data: dict[str, Any]) -> str:
    st = data["settings"]
    lines = [f"### Reads: T={st['segments']} sampled frames per clip, {st['clips']} clips of {st['root']} "
             f"({st['split']}), median of {st['repeats']}", "",
             "| reader | clips / s | x full-decode baseline |", "|---|---:|---:|"]
    lines += [f"| {r['reader']} | {r['clips_per_s']:.1f} | {r['x_baseline']:.2f} |" for r in data["reads"]]
    lines += ["", f"### Training loader: T={st['segments']}, {st['size']}x{st['size']} multi-scale crops, "
              f"batch {st['batch_size']}", "", "| backend | workers | clips / s |", "|---|---:|---:|"]
    lines += [f"| {r['backend']} | {r['workers']} | {r['clips_per_s']:.1f} |" for r in data["loader"]]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- output
def _fmt(v: float | None, spec: str, suffix: str = "") -> str:
    return "" if v is None else f"{v:{spec}}{suffix}"


def _ratio(row: dict[str, Any], ref: str) -> str:
    """``1.012 (0.998-1.021)``: the ratio and its 95% interval when there is one."""
    ci = row.get(f"ratio_{ref}_ci95")
    text = _fmt(row[f"ratio_{ref}"], ".3f")
    return text if ci is None else f"{text} ({ci[0]:.3f}-{ci[1]:.3f})"


def to_markdown(results: dict[str, Any]) -> str:
    """Markdown tables of whichever sections ``results`` holds."""
    parts = [models_markdown(results)] if "models" in results else []
    if "data_loader" in results:
        parts.append(loader_markdown(results["data_loader"]))
    return "\n".join(parts)


def models_markdown(results: dict[str, Any]) -> str:
    env, st = results["environment"], results["settings"]
    cuda = env["device"].startswith("cuda")
    where = env.get("device_name", f"{env['processor']}, {env['threads']} threads")
    lines = [
        f"## Benchmark: {st['arch']}, T={st['segments']}, {st['size']}x{st['size']}, "
        f"{st['num_classes']} classes",
        "",
        f"{where}; torch {env['torch']}; {env['date']}. Medians of {st['repeats']} interleaved "
        f"rounds after {st['warmup']} warm-up ({st['clock']} clock"
        f"{', malloc cache' if st['malloc_cache'] else ''}); ratios are per-round medians against "
        f"`{BASELINE}` / `tsn` in the same mode, with the 95% confidence interval of that median "
        "in parentheses (order statistics; from 6 rounds on).",
        "",
        "| model | params (M) | GMACs / clip |",
        "|---|---:|---:|",
    ]
    lines += [f"| `{n}` | {i['params_m']:.2f} | {i['gmacs_per_clip']:.2f} |" for n, i in results["models"].items()]
    for phase, title in (("forward", "Forward (eval)"), ("train", "Train step")):
        rows = results[phase]
        for bs in sorted({r["batch_size"] for r in rows}):
            lines += ["", f"### {title}, batch {bs}", ""]
            head = "| model | mode | ms / clip | clips / s | x torchvision_tsn | x tsn | speed-up vs fp32 | peak MiB |"
            sep = "|---|---|---:|---:|---:|---:|---:|---:|"
            if cuda:
                head += " TFLOP/s | % of peak |"
                sep += "---:|---:|"
            lines += [head, sep]
            for r in sorted((r for r in rows if r["batch_size"] == bs), key=lambda r: st["modes"].index(r["mode"])):
                line = (
                    f"| `{r['model']}` | {r['mode']} | {r['ms_per_clip']:.1f} | {r['clips_per_s']:.2f} | "
                    f"{_ratio(r, BASELINE)} | {_ratio(r, 'tsn')} | "
                    f"{_fmt(r['speedup_vs_fp32'], '.2f', 'x')} | {_fmt(r.get('peak_mem_mib'), '.0f')} |"
                )
                if cuda:
                    frac = r["peak_fraction"]
                    line += f" {r['tflops']:.1f} | {_fmt(None if frac is None else 100 * frac, '.1f')} |"
                lines.append(line)
    if results["agreement"]:
        lines += ["", "### Agreement with fp32 (eval logits, random weights)", "",
                  "| model | mode | clips | top-1 agreement | max abs diff / max abs logit |",
                  "|---|---|---:|---:|---:|"]  # fmt: skip
        for r in results["agreement"]:
            lines.append(
                f"| `{r['model']}` | {r['mode']} | {r['clips']} | {r['top1_agreement']:.2f} | {r['rel_err']:.2e} |"
            )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- command line
def _csv(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    return lambda s: [kind(p) for p in s.split(",") if p.strip()]


def parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--models", type=_csv(str), default=None,
                    help=f"configs/model/<name>.yaml names, comma separated (default: {','.join(DEFAULT_MODELS)}, "
                         f"none with --checkpoint); {BASELINE} is always added")
    ap.add_argument("--checkpoint", action="append", metavar="CKPT",
                    help="also measure the model of a checkpoint (trained or converted; repeatable); its T, classes, "
                         "arch and crop size become the benchmark's")
    ap.add_argument("--arch", default=None, help="backbone override for every model (default resnet50)")
    ap.add_argument("--segments", type=int, default=None, help="T, frames per clip (default 8)")
    ap.add_argument("--num-classes", type=int, default=None, help="default 174")
    ap.add_argument("--size", type=int, default=None, help="default 224")
    ap.add_argument("--batch-sizes", type=_csv(int), default=[1, 2], help="clips per forward call")
    ap.add_argument("--modes", type=_csv(str), default=list(DEFAULT_MODES),
                    help="'+'-joined options from fp32, channels_last, bf16, compile (compile is slow on CPU)")
    ap.add_argument("--train", action="store_true", help="also time the train step")
    ap.add_argument("--train-batch-size", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds")
    ap.add_argument("--warmup", type=int, default=1, help="discarded rounds")
    ap.add_argument("--min-sample-s", type=float, default=0.2, help="shortest timed sample (GPU: many calls)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--agree-clips", type=int, default=4, help="clips for the agreement with fp32 (0: skip)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory calls")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: CPU time of this process, robust to other processes on a shared "
                         "machine (use with --threads 1: with more, it counts OpenMP spin-waits)")
    ap.add_argument("--malloc-cache", action="store_true",
                    help="keep freed memory in the process (glibc mallopt: no mmap, no trim); "
                         "where page faults are slow, a large share of a CPU forward is spent in "
                         "them; no peak-memory numbers then")
    ap.add_argument("--sections", type=_csv(str), default=["models"], help="models, loader (comma separated)")
    ap.add_argument("--loader-root", type=Path, default=None,
                    help="SSv2-format folder for the loader section (default: the demo data, written on first use)")
    ap.add_argument("--loader-split", default="train")
    ap.add_argument("--loader-clips", type=int, default=96)
    ap.add_argument("--loader-batch-size", type=int, default=8)
    ap.add_argument("--loader-workers", type=_csv(int), default=[0, 1, 2], help="DataLoader worker counts")
    ap.add_argument("--loader-repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, help="write the results as JSON")
    ap.add_argument("--markdown", type=Path, help="write the Markdown tables")
    return ap


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    with user_errors():
        return run(args)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.models is None:
        args.models = [] if args.checkpoint else list(DEFAULT_MODELS)
    for m in args.modes:
        Mode.parse(m)
    unknown = set(args.sections) - {"models", "loader"}
    if unknown or not args.sections:
        raise ConfigError(f"--sections: unknown {sorted(unknown)}; choose from models, loader")
    checkpoints = load_checkpoints(args)  # also settles T, classes, arch and size
    results: dict[str, Any] = bench_models(args, checkpoints=checkpoints) if "models" in args.sections else {}
    if "loader" in args.sections:
        results["data_loader"] = bench_data(args)
    md = to_markdown(results)
    print(md)
    if args.markdown:
        args.markdown.write_text(md)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


# Convenience for callers that want a default namespace (tests, notebooks).
def default_args(**overrides: Any) -> argparse.Namespace:
    args = parser().parse_args([])
    for k, v in overrides.items():
        if not hasattr(args, k):
            raise ValueError(f"unknown benchmark option {k!r}")
        setattr(args, k, v)
    return args


if __name__ == "__main__":
    main()
