"""The model benchmark: speed, memory and numerics of model configs, side by side in one process.

Models are the model configs (``configs/model/<name>.yaml`` or a registry module's generated
config, built with ``pretrained: null``, ``num_classes`` classes, ``segments`` frames),
checkpoints' models, plus the baseline ``torchvision_tsn`` that is always measured: a plain
``torchvision.models.<arch>()`` whose ``fc`` is replaced by dropout + a new classifier, run on
the N*T frames and averaged over T (TSN), written inline below. Every row reports its time
relative to that baseline (and to our ``tsn``) in the same mode, so that the ratios, which are
what is stable on a shared machine, can be compared with the official implementations' ratios.

Modes are ``+``-joined options: ``fp32`` (plain float32, NCHW), ``channels_last`` (model and
input in NHWC memory format), ``bf16`` (``torch.autocast`` to bfloat16 on the device),
``compile`` (``torch.compile`` of the model; opt-in, compiling a ResNet-50 on a CPU takes
minutes), e.g. ``bf16+channels_last``.

- Timing: :mod:`videoattn.benchmark.timing` (interleaved rounds, per-round ratios with their
  95% confidence interval).
- The allocator: CPU activations of a video batch are tens of MB, which glibc serves with a
  fresh ``mmap`` every time, so every forward page-faults its activations in again.
  ``malloc_cache`` makes glibc keep freed memory (what a caching allocator, jemalloc or
  tcmalloc would do); the default measures the stock allocator.
- forward: ``model.eval()`` under ``torch.inference_mode``; train step: ``model.train()``,
  forward, cross-entropy, backward, SGD (momentum 0.9) step, at ``train_batch_size``.
- Peak memory: one extra call per variant (:func:`~videoattn.benchmark.timing.peak_memory_mib`).
- GMACs per clip and parameters come from :mod:`videoattn.summary` (convolutions and matrix
  products, as the papers count). On CUDA the achieved FLOP/s (2 FLOPs per multiply-add,
  3x the forward for a train step) is given as a fraction of the GPU's dense peak for the
  mode's precision (fp32: TF32's when ``tf32``, the default), for the GPUs in ``PEAK_TFLOPS``.
- Devices: ``args.device`` (``auto | cpu | cuda`` or a ``torch.device``; see
  :func:`~videoattn.benchmark.timing.bench_device`). Models and inputs are put there; CUDA times
  are CUDA events, peak memory ``torch.cuda.max_memory_allocated``. ``onnxruntime`` runs on the
  CPU only and is refused on a GPU.
- Agreement: each non-fp32 mode's eval logits against fp32 on the same weights and
  ``agree_clips`` random clips: top-1 agreement and the max abs logit difference relative
  to the largest fp32 logit. With random (untrained) weights the logits of different classes
  are close, so top-1 agreement is a harsh test; the relative error is the steadier number.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from ..config import model_configs
from ..engine.memory import cache_freed_memory
from ..errors import ConfigError
from ..models import build_model, get_backbone, load_model, to_channels_last
from ..summary import count_macs, count_params
from .timing import bench_device, environment, frozen_heap, interleaved, log, median_ci, median_ratio, peak_memory_mib

__all__ = ["BASELINE", "Mode", "bench_models", "build", "load_checkpoints", "models_markdown"]

BASELINE = "torchvision_tsn"
MODE_OPTIONS = ("fp32", "channels_last", "bf16", "compile", "onnxruntime")

# Dense peak TFLOP/s (no sparsity) by device-name substring, first match wins:
# (bf16 tensor cores, tf32 tensor cores, fp32 without tensor cores). Vendor data sheets.
PEAK_TFLOPS: dict[str, tuple[float, float, float]] = {
    "H100 PCIe": (756.0, 378.0, 51.0),
    "H100": (989.0, 494.0, 67.0),  # SXM
    "H200": (989.0, 494.0, 67.0),
    "A100": (312.0, 156.0, 19.5),
}


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


def model_config(
    name: str, *, config_dir: Path, num_classes: int, num_segments: int, arch: str | None = None
) -> dict[str, Any]:
    """The config of ``model=NAME`` (``<config_dir>/model/<name>.yaml`` or a registry module's)
    without pretrained weights, for ``num_classes`` / T."""
    configs = model_configs(config_dir)
    if name not in configs:
        raise ConfigError(f"--models: no model config {name!r}; available: {', '.join(configs)}")
    cfg = dict(configs[name])
    cfg.update(pretrained=None, num_classes=num_classes, num_segments=num_segments)
    # --arch replaces the backbone, but a topology variant of it (same ImageNet weights: TAda2D's
    # resnet50_tada for resnet50) is the model's own and stays
    if arch and get_backbone(cfg["arch"]).weights != get_backbone(arch).weights:
        cfg["arch"] = arch
    return cfg


def build(
    name: str,
    *,
    config_dir: Path,
    num_classes: int,
    num_segments: int,
    arch: str,
    overrides: dict | None = None,
    checkpoints: dict[str, nn.Module] | None = None,
) -> nn.Module:
    """A model by config name, a checkpoint's model (``checkpoints``: name -> model), or the
    ``torchvision_tsn`` baseline; ``overrides`` are extra model-config keys (``layers`` /
    ``widths`` for tiny test networks; ignored by the baseline)."""
    torch.manual_seed(0)
    if checkpoints and name in checkpoints:
        return checkpoints[name]
    if name == BASELINE:
        return TorchvisionTSN(arch, num_classes=num_classes, num_segments=num_segments)
    cfg = model_config(name, config_dir=config_dir, num_classes=num_classes, num_segments=num_segments, arch=arch)
    return build_model({**cfg, **(overrides or {})})


# ----------------------------------------------------------------------------- modes
@dataclass(frozen=True)
class Mode:
    """A ``+``-joined set of options: channels_last, bf16, compile (fp32: none of them), or
    onnxruntime alone (the model exported to ONNX, fp32, run by onnxruntime on the CPU)."""

    name: str
    channels_last: bool = False
    bf16: bool = False
    compile: bool = False
    onnx: bool = False

    @classmethod
    def parse(cls, name: str) -> Mode:
        opts = set(name.split("+"))
        unknown = opts - set(MODE_OPTIONS)
        alone = {"fp32", "onnxruntime"} & opts
        if unknown or not opts or (alone and len(opts) > 1):
            raise ConfigError(f"mode {name!r}: use '+'-joined options from {MODE_OPTIONS} (fp32, onnxruntime alone)")
        return cls(name, "channels_last" in opts, "bf16" in opts, "compile" in opts, "onnxruntime" in opts)

    def autocast(self, device: torch.device):
        if self.bf16:
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"


def make_input(
    n: int, t: int, size: int, device: torch.device, channels_last: bool, seed: int = 0, frames_per_segment: int = 1
) -> Tensor:
    """Random clips ``(N, T, F*3, H, W)`` (``F``: the model's frames per segment, TDN's 5); with
    ``channels_last`` the frames ``(N*T, F*3, H, W)`` are NHWC in memory (the layout the backbone
    then keeps)."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(n * t, 3 * frames_per_segment, size, size, generator=g)  # (N*T, F*3, H, W)
    if channels_last:
        frames = frames.contiguous(memory_format=torch.channels_last)
    return frames.to(device).unflatten(0, (n, t))  # (N*T, F*3, H, W) -> (N, T, F*3, H, W)


def frames_of(model: nn.Module) -> int:
    """The frames per segment a model takes (``VideoClassifier.frames_per_segment``; 1 for the
    torchvision baseline)."""
    return getattr(model, "frames_per_segment", 1)


@dataclass
class Variant:
    """One (model, mode) pair: the module to call (a channels_last copy, a compiled wrapper)."""

    model: str
    mode: Mode
    module: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    frames_per_segment: int = 1  # the model's F: its clips are (N, T, F*3, H, W)


def make_variants(
    models: dict[str, nn.Module], modes: Sequence[Mode], *, segments: int = 8, size: int = 224
) -> list[Variant]:
    """The modules of every (model, mode): NCHW modes share the model, channels_last modes
    share one NHWC copy of it (same weights), compile modes wrap one of the two, onnxruntime
    runs the model exported at ``segments`` x ``size`` px."""
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
            if mode.onnx:
                module = OnnxRuntime(model, segments=segments, size=size)
            variants.append(Variant(name, mode, module, frames_per_segment=frames_of(model)))
    return variants


class OnnxRuntime(nn.Module):
    """A model exported to ONNX and run by onnxruntime on the CPU, called like the model:
    ``(N, T, 3, H, W)`` -> logits; inference only. Its parity is the agreement section's (relative:
    the logits of random weights are far from a trained model's scale)."""

    def __init__(self, model: nn.Module, *, segments: int, size: int) -> None:
        super().__init__()
        import tempfile

        from ..deploy.onnx import OnnxModel, export_onnx

        model.eval()
        device = next(model.parameters()).device
        c = 3 * frames_of(model)  # F frames per segment on the channels
        x = torch.randn(2, segments, c, size, size, device=device)  # (N, T, F*3, S, S): a dynamic batch dimension
        with tempfile.TemporaryDirectory(prefix="videoattn-onnx-") as tmp:
            path = f"{tmp}/model.onnx"
            export_onnx(model, path, example=[x], metadata={}, tolerance=None)  # random weights: see the agreement
            self.session = OnnxModel.load(path, threads=torch.get_num_threads())

    def forward(self, x: Tensor) -> Tensor:
        return torch.from_numpy(self.session(x.contiguous())[0]).to(x.device)


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


def peak_tflops(device: torch.device, mode: Mode, *, tf32: bool = True) -> float | None:
    """The dense peak of the GPU for the mode's precision (fp32 matmuls and convolutions run on
    TF32 tensor cores with ``tf32``: :func:`~videoattn.engine.device.configure_backends`), else None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, (bf16, tf32_peak, fp32) in PEAK_TFLOPS.items():
        if key in name:
            if mode.bf16:
                return bf16
            return tf32_peak if tf32 else fp32
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
    inputs = {
        (cl, f): make_input(batch_size, args.segments, args.size, device, cl, frames_per_segment=f)
        for cl in (False, True)
        for f in sorted({v.frames_per_segment for v in variants})
    }
    y = torch.arange(batch_size, device=device) % args.num_classes
    fns = []
    if phase == "train":
        variants = [v for v in variants if not v.mode.onnx]  # onnxruntime runs inference only
    for v in variants:
        v.module.train(phase == "train")
        x = inputs[v.mode.channels_last, v.frames_per_segment]
        fns.append(forward_fn(v, x, device) if phase == "forward" else train_fn(v, x, y, device))
    log(f"{key}: {len(variants)} variants, {args.warmup} warm-up + {args.repeats} rounds")
    timed = interleaved(
        fns, label=key, repeats=args.repeats, warmup=args.warmup, min_sample_s=args.min_sample_s,
        device=device, clock=args.clock,
    )  # fmt: skip
    samples = [[t / batch_size for t in per_call] for per_call in timed.samples]  # seconds per clip
    index = {(v.model, v.mode.name): i for i, v in enumerate(variants)}
    rows = []
    for i, v in enumerate(variants):
        s = samples[i]
        med = statistics.median(s)
        row: dict[str, Any] = {
            "model": v.model, "mode": v.mode.name, "batch_size": batch_size,
            "ms_per_clip": med * 1e3, "ms_per_clip_min": min(s) * 1e3, "clips_per_s": 1.0 / med,
            "samples_ms_per_clip": [x * 1e3 for x in s],
            "calls_per_sample": timed.inner[i], "first_call_s": timed.first_call_s[i],
        }  # fmt: skip
        for ref in (BASELINE, "tsn"):
            j = index.get((ref, v.mode.name))
            row[f"ratio_{ref}"] = None if j is None else median_ratio(s, samples[j])
            ci = None if j is None or j == i else median_ci([x / y for x, y in zip(s, samples[j], strict=True)])
            row[f"ratio_{ref}_ci95"] = None if ci is None else list(ci)
        j = index.get((v.model, "fp32"))
        row["speedup_vs_fp32"] = None if j is None else median_ratio(samples[j], s)
        peak = peak_tflops(device, v.mode, tf32=args.tf32)
        flops = 2 * macs[v.model] * (3 if phase == "train" else 1) / med  # per second
        row["tflops"] = flops / 1e12
        row["peak_fraction"] = None if peak is None else flops / (peak * 1e12)
        rows.append(row)
    rss_means_nothing = device.type == "cpu" and args.malloc_cache  # a cache keeps the freed pages
    if not args.no_memory and not rss_means_nothing:
        with frozen_heap():
            for fn, row in zip(fns, rows, strict=True):
                row["peak_mem_mib"] = peak_memory_mib(fn, device)
    return rows


@torch.inference_mode()
def agreement(variants: list[Variant], args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """Eval logits of every non-fp32 mode against fp32 (same weights, same clips)."""
    if args.agree_clips < 1:
        return []
    x = {
        (cl, f): make_input(args.agree_clips, args.segments, args.size, device, cl, seed=1, frames_per_segment=f)
        for cl in (False, True)
        for f in sorted({v.frames_per_segment for v in variants})
    }
    ref: dict[str, Tensor] = {}
    for v in variants:  # fp32 reference logits, by model (bench_models always has fp32)
        if v.mode.name == "fp32":
            ref[v.model] = v.module.eval()(x[False, v.frames_per_segment]).float()
    rows = []
    for v in variants:
        if v.mode.name == "fp32":
            continue
        base = ref[v.model]
        with v.mode.autocast(device):
            out = v.module.eval()(x[v.mode.channels_last, v.frames_per_segment]).float()
        rows.append({
            "model": v.model, "mode": v.mode.name, "clips": args.agree_clips,
            "top1_agreement": (out.argmax(1) == base.argmax(1)).float().mean().item(),
            "max_abs_diff": (out - base).abs().max().item(),
            "rel_err": ((out - base).abs().max() / base.abs().max().clamp_min(1e-30)).item(),
        })  # fmt: skip
    return rows


def bench_models(
    args: argparse.Namespace, *, overrides: dict | None = None, checkpoints: dict[str, nn.Module] | None = None
) -> dict[str, Any]:
    """The whole model benchmark for parsed ``args`` (``tools/benchmark.py``'s options; the model
    configs are read from ``args.config_dir``); returns the JSON-ready results. ``overrides`` are
    extra model-config keys (tiny networks in the tests)."""
    device = bench_device(args.device, tf32=args.tf32, clock=args.clock)
    torch.set_num_threads(args.threads)
    if args.malloc_cache and not cache_freed_memory():
        raise RuntimeError("--malloc-cache needs glibc (mallopt)")
    modes = [Mode.parse(m) for m in args.modes]
    if device.type != "cpu" and any(m.onnx for m in modes):
        raise ConfigError(f"--modes onnxruntime: onnxruntime is measured on the CPU only (--device cpu), not {device}")
    if "fp32" not in args.modes:
        modes.insert(0, Mode.parse("fp32"))  # the reference of the speed-ups and agreement
    if checkpoints is None:
        checkpoints = load_checkpoints(args)
    names = [BASELINE, *[m for m in args.models if m != BASELINE], *checkpoints]
    models, info = {}, {}
    for name in names:
        log(f"building {name}")
        model = build(
            name,
            config_dir=args.config_dir,
            num_classes=args.num_classes,
            num_segments=args.segments,
            arch=args.arch,
            overrides=overrides,
            checkpoints=checkpoints,
        )
        models[name] = model = model.to(device)
        c = 3 * frames_of(model)  # F frames per segment on the channels
        clip = torch.zeros(1, args.segments, c, args.size, args.size, device=device)  # (N, T, F*3, H, W)
        info[name] = {"params_m": count_params(model) / 1e6, "gmacs_per_clip": count_macs(model, clip) / 1e9}
    macs = {n: int(i["gmacs_per_clip"] * 1e9) for n, i in info.items()}
    variants = make_variants(models, modes, segments=args.segments, size=args.size)
    results: dict[str, Any] = {
        "environment": environment(device, args.threads),
        "settings": {
            "models": names, "arch": args.arch, "segments": args.segments, "size": args.size,
            "num_classes": args.num_classes, "batch_sizes": args.batch_sizes,
            "train_batch_size": args.train_batch_size if args.train else None,
            "modes": [m.name for m in modes], "repeats": args.repeats, "warmup": args.warmup,
            "min_sample_s": args.min_sample_s, "clock": args.clock, "malloc_cache": args.malloc_cache,
            "device": str(device), "tf32": args.tf32 if device.type == "cuda" else None,
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
        for key, value in (
            ("segments", cfg["num_segments"]),
            ("num_classes", cfg["num_classes"]),
            ("arch", cfg["arch"]),
            ("size", ckpt["data"]["eval_transform"].get("size", 224)),
        ):
            if getattr(args, key) not in (None, value):
                raise ConfigError(
                    f"--{key.replace('_', '-')} {getattr(args, key)} contradicts {path} ({key} {value}); "
                    "leave it out: a checkpoint sets it"
                )
            setattr(args, key, value)
        name = Path(path).stem
        out[name if name not in out else f"{name}_{len(out)}"] = model
    for key, default in (("segments", 8), ("num_classes", 174), ("arch", "resnet50"), ("size", 224)):
        if getattr(args, key) is None:
            setattr(args, key, default)
    return out


# ----------------------------------------------------------------------------- Markdown
def _fmt(v: float | None, spec: str, suffix: str = "") -> str:
    return "" if v is None else f"{v:{spec}}{suffix}"


def _ratio(row: dict[str, Any], ref: str) -> str:
    """``1.012 (0.998-1.021)``: the ratio and its 95% interval when there is one."""
    ci = row.get(f"ratio_{ref}_ci95")
    text = _fmt(row[f"ratio_{ref}"], ".3f")
    return text if ci is None else f"{text} ({ci[0]:.3f}-{ci[1]:.3f})"


def _math(settings: dict[str, Any]) -> str:
    """``, fp32 math TF32`` / ``IEEE`` for a GPU run; nothing on a CPU (or for older results)."""
    tf32 = settings.get("tf32")
    return "" if tf32 is None else f", fp32 math {'TF32' if tf32 else 'IEEE'}"


def models_markdown(results: dict[str, Any]) -> str:
    env, st = results["environment"], results["settings"]
    cuda = env["device"].startswith("cuda")
    bf16 = f", bf16 instructions: {env['cpu_bf16']}" if "cpu_bf16" in env else ""
    where = env.get("device_name", f"{env['processor']}{bf16}, {env['threads']} threads")
    lines = [
        f"## Benchmark: {st['arch']}, T={st['segments']}, {st['size']}x{st['size']}, {st['num_classes']} classes",
        "",
        f"{where}{_math(st)}; torch {env['torch']}; {env['date']}. Medians of {st['repeats']} interleaved "
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
