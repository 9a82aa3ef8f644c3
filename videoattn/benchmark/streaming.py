"""The streaming benchmark: ms per frame of online models, one frame of one stream at a time.

Models are streamable model configs (``tsm_online``: ResNet-50, ``tsm_online_mobilenet_v2``;
each config's own backbone unless ``arch`` is given), built with ``pretrained: null``. Each is
run as :class:`~videoattn.models.StreamingModel` (``step`` on a ``(1, 3, size, size)`` frame,
the shift buffers carried from call to call, as in a live stream) in every mode:

- ``fp32``, ``bf16``, ``channels_last`` and their ``+``-joins (:class:`~.models.Mode`): PyTorch
  under ``torch.inference_mode`` (bf16: autocast; channels_last: an NHWC copy, NHWC frames);
- ``onnxruntime``: the per-frame step exported with
  :func:`~videoattn.deploy.onnx.export_streaming_step` (states as inputs and outputs) and run
  by :class:`~videoattn.deploy.onnx.OnnxStream` on the CPU.

The device is ``args.device`` (``auto | cpu | cuda`` or a ``torch.device``:
:func:`~.timing.bench_device`): the model, the frames and the states are there; on a GPU a
step's time is CUDA events'. ``onnxruntime`` is CPU-only: left out of the default modes on a GPU
(logged), refused when asked for.

Timing is :func:`~.timing.interleaved` (rounds round-robin over every (model, mode)); the
speed-up is the per-round median ratio against the model's fp32. Agreement: ``frames`` frames
streamed in each mode against fp32 from zero states (max abs logit difference over the stream,
relative to the largest fp32 logit; random weights, the logits' scale is set to N(0, 1/F) so
that they are not ~1e-3).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..models import StreamingModel, build_model, to_channels_last
from .models import Mode, model_config
from .timing import bench_device, interleaved, log, median_ci, median_ratio

DEFAULT_STREAM_MODELS = ("tsm_online", "tsm_online_mobilenet_v2")
DEFAULT_STREAM_MODES = ("fp32", "bf16+channels_last", "onnxruntime")


def _stepper(
    model: torch.nn.Module, mode: Mode, *, size: int, device: torch.device
) -> tuple[Callable[[Tensor], Tensor], Any]:
    """``step(frame (1, 3, S, S)) -> logits (1, K)`` float32 for ``mode`` on ``device`` (where
    ``model`` is), and its stream (to reset)."""
    if mode.onnx:
        from ..deploy.onnx import OnnxStream, export_streaming_step

        frames = torch.zeros(1, 1, 3, size, size)  # (F, N, 3, S, S): only the shape matters, no check
        with tempfile.TemporaryDirectory(prefix="videoattn-onnx-") as tmp:
            path = Path(tmp) / "step.onnx"
            export_streaming_step(StreamingModel(model), path, check_frames=frames, metadata={}, tolerance=None)
            stream = OnnxStream.load(path, threads=torch.get_num_threads())
        return lambda x: torch.from_numpy(stream.step(x)), stream
    if mode.compile:
        raise ConfigError("--stream-modes: compile is not measured for streaming (one frame per call)")
    stream = StreamingModel(to_channels_last(copy.deepcopy(model)) if mode.channels_last else model)

    def step(x: Tensor) -> Tensor:
        if mode.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), mode.autocast(device):
            return stream.step(x).float()

    return step, stream


def stream_modes(requested: list[str] | None, device: torch.device) -> list[str]:
    """The modes to measure: ``requested``, or the defaults (on a GPU without ``onnxruntime``, which
    runs on the CPU only: logged). ``onnxruntime`` asked for on a GPU is refused."""
    if requested is not None:
        if device.type != "cpu" and "onnxruntime" in requested:
            raise ConfigError(f"--stream-modes onnxruntime: measured on the CPU only (--device cpu), not {device}")
        return list(requested)
    if device.type == "cpu":
        return list(DEFAULT_STREAM_MODES)
    log(f"streaming: onnxruntime left out on {device} (it is measured on the CPU only: --device cpu)")
    return [m for m in DEFAULT_STREAM_MODES if m != "onnxruntime"]


def bench_streaming(args: argparse.Namespace, *, arch: str | None = None, overrides: dict | None = None) -> dict:
    """ms per frame of ``args.stream_models`` in ``args.stream_modes`` (``tools/benchmark.py``'s
    options: ``size``, ``num_classes``, ``threads``, ``repeats``, ``warmup``, ``min_sample_s``,
    ``clock``, ``stream_frames``, ``device``, ``tf32``; ``stream_modes`` None: the defaults);
    ``arch`` replaces every config's backbone, ``overrides`` are extra model-config keys (tiny
    networks in the tests)."""
    device = bench_device(args.device, tf32=args.tf32, clock=args.clock)
    torch.set_num_threads(args.threads)
    names = stream_modes(args.stream_modes, device)
    modes = [Mode.parse(m) for m in names]
    if "fp32" not in names:
        modes.insert(0, Mode.parse("fp32"))  # the reference of the speed-ups and agreement
    size, classes = args.size, args.num_classes
    g = torch.Generator().manual_seed(0)
    frame = torch.randn(1, 3, size, size, generator=g).to(device)  # (1, 3, S, S)
    check = torch.randn(args.stream_frames, 1, 3, size, size, generator=g).to(device)  # (F, 1, 3, S, S)
    steppers, keys, rows_info = [], [], {}
    agreement = []
    for name in args.stream_models:
        cfg = model_config(name, config_dir=args.config_dir, num_classes=classes, num_segments=args.segments, arch=arch)
        torch.manual_seed(0)
        model = build_model({**cfg, **(overrides or {})}).eval().to(device)
        with torch.no_grad():  # logits of a trained model's scale, not N(0, 0.001)'s ~1e-3
            model.fc.weight.normal_(0, model.fc.in_features**-0.5)
        log(f"streaming: building {name} ({cfg['arch']})")
        reference = None
        for mode in modes:
            step, stream = _stepper(model, mode, size=size, device=device)
            stream.reset()
            logits = torch.cat([step(f) for f in check])  # (F, K)
            stream.reset()
            if mode.name == "fp32":
                reference = logits
            else:
                diff = (logits - reference).abs().max()
                agreement.append({
                    "model": name, "mode": mode.name, "frames": len(check), "max_abs_diff": diff.item(),
                    "rel_err": (diff / reference.abs().max().clamp_min(1e-30)).item(),
                    "top1_agreement": (logits.argmax(1) == reference.argmax(1)).float().mean().item(),
                })  # fmt: skip
            steppers.append(lambda step=step: step(frame))
            keys.append((name, mode.name))
        states = StreamingModel(model).initial_states(frame.shape)
        rows_info[name] = {
            "arch": cfg["arch"], "states": len(states),
            "state_kib": sum(s.numel() * s.element_size() for s in states) / 1024,
        }  # fmt: skip
    log(f"streaming: {len(steppers)} variants, {args.warmup} warm-up + {args.repeats} rounds")
    timed = interleaved(steppers, label="streaming", repeats=args.repeats, warmup=args.warmup,
                        min_sample_s=args.min_sample_s, device=device, clock=args.clock)  # fmt: skip
    index = {k: i for i, k in enumerate(keys)}
    rows = []
    for i, (name, mode) in enumerate(keys):
        s, ref = timed.samples[i], timed.samples[index[(name, "fp32")]]
        med = statistics.median(s)
        ci = median_ci([a / b for a, b in zip(ref, s, strict=True)]) if mode != "fp32" else None
        rows.append({
            "model": name, **rows_info[name], "mode": mode, "ms_per_frame": med * 1e3,
            "ms_per_frame_min": min(s) * 1e3, "frames_per_s": 1 / med,
            "speedup_vs_fp32": median_ratio(ref, s), "speedup_ci95": None if ci is None else list(ci),
            "samples_ms": [x * 1e3 for x in s], "calls_per_sample": timed.inner[i],
            "first_call_ms": timed.first_call_s[i] * 1e3,
        })  # fmt: skip
    return {
        "settings": {"models": list(args.stream_models), "modes": [m.name for m in modes], "size": size,
                     "num_classes": classes, "arch": arch, "threads": args.threads, "repeats": args.repeats,
                     "warmup": args.warmup, "clock": args.clock, "agreement_frames": len(check),
                     "device": str(device), "tf32": args.tf32 if device.type == "cuda" else None},
        "rows": rows, "agreement": agreement,
    }  # fmt: skip


def _where(settings: dict[str, Any]) -> str:
    """``cuda:0, fp32 math TF32`` on a GPU, ``2 threads`` on the CPU."""
    device = settings.get("device", "cpu")
    if device == "cpu":
        return f"{settings['threads']} threads"
    return f"{device}, fp32 math {'TF32' if settings.get('tf32') else 'IEEE'}"


def streaming_markdown(results: dict[str, Any]) -> str:
    st = results["settings"]
    lines = [
        f"## Streaming: ms per frame, one stream, {st['size']}x{st['size']} frames, {st['num_classes']} classes",
        "",
        f"{_where(st)}; medians of {st['repeats']} interleaved rounds after {st['warmup']} warm-up "
        f"({st['clock']} clock); speed-up: per-round median against fp32 (95% CI from 6 rounds on).",
        "",
        "| model | backbone | states (KiB) | mode | ms / frame | frames / s | speed-up vs fp32 |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for r in results["rows"]:
        ci = r["speedup_ci95"]
        speed = f"{r['speedup_vs_fp32']:.2f}x" + (f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else "")
        lines.append(
            f"| `{r['model']}` | {r['arch']} | {r['states']} ({r['state_kib']:.0f}) | {r['mode']} | "
            f"{r['ms_per_frame']:.2f} | {r['frames_per_s']:.1f} | {speed} |"
        )
    if results["agreement"]:
        lines += ["", f"Agreement with fp32 over {st['agreement_frames']} streamed frames (random weights):", "",
                  "| model | mode | top-1 agreement | max abs diff / max abs logit |",
                  "|---|---|---:|---:|"]  # fmt: skip
        for r in results["agreement"]:
            lines.append(f"| `{r['model']}` | {r['mode']} | {r['top1_agreement']:.2f} | {r['rel_err']:.2e} |")
    return "\n".join(lines) + "\n"
