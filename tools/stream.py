"""Online recognition: a video file or a live camera classified one frame at a time by a causal
model (TSM's online shift, ``model=tsm_online``), as TSM's online demo does.

    uv run python tools/stream.py VIDEO --checkpoint runs/demo/tsm_online/best.pth
    uv run python tools/stream.py /dev/video0 --format v4l2 --checkpoint runs/demo/tsm_online/best.pth  # a camera
    uv run python tools/export.py --checkpoint runs/demo/tsm_online/best.pth --out step.onnx --streaming  # one step
    uv run python tools/stream.py VIDEO --onnx step.onnx                                   # ... in onnxruntime
    uv run python tools/stream.py VIDEO --onnx step.onnx --checkpoint runs/demo/tsm_online/best.pth  # checked

Frames are read with PyAV as they come (any file or URL FFmpeg opens; a capture device with
``--format``: ``v4l2`` on Linux, ``avfoundation`` on macOS, ``dshow`` on Windows; FFmpeg options
with ``--option video_size=640x480``), each preprocessed as in validation (short side resized,
centre crop, mean/std: the checkpoint's or the ONNX file's) and run through the per-frame step,
whose shift buffers carry 1/8 of the channels of the previous frame into the next
(:class:`videoattn.models.StreamingModel`). The prediction printed for a frame is the softmax of
the frame logits averaged over the last ``--average`` frames (default T; TSM's demo: 12).
``--stride S`` steps every S-th frame (the offline model was trained on frames a segment
apart). The times are the step's (ms per frame) and the reading's (decode + preprocess).
With ``--onnx`` and ``--checkpoint`` both run, each with its own states, and every frame's logits are compared:
a max abs difference above ``--tolerance`` stops with exit code 2. A model with modules that look
at later frames (TAM, ACTION-Net, the two-way TSM shift) is refused, naming them.

``--device`` is where the per-frame step runs (each frame is decoded and preprocessed on the host,
then copied there; the states stay there): auto, the default, takes the GPU when CUDA works and
says why when it falls back to the CPU. With ``--onnx`` a GPU means onnxruntime's
CUDAExecutionProvider (the onnxruntime-gpu package; ``--device cuda`` without it is an error,
auto then runs onnxruntime on the CPU with a warning). TF32 is on for PyTorch on a GPU, except
where PyTorch is the reference of ``--onnx``'s check (IEEE fp32 there, unless ``--tf32``). The
device is printed in the first line (``"device"`` in the ``--json`` summary).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import statistics
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from videoattn.checkpoint import trust_checkpoints
from videoattn.cli import ArgumentParser, add_device_arguments, add_trust_argument, user_errors
from videoattn.data.transforms import EvalTransform
from videoattn.data.video import stream_frames
from videoattn.engine.device import configure_backends, select_device
from videoattn.engine.evaluate import autocast, set_inference_layout
from videoattn.engine.interrupt import StopRequests
from videoattn.engine.memory import cache_freed_memory
from videoattn.errors import ConfigError, MissingFileError
from videoattn.models import StreamingModel, load_model


def main() -> int:
    p = ArgumentParser(description=__doc__)
    p.add_argument("video", help="a video file, a URL, or a capture device (with --format)")
    p.add_argument("--checkpoint", help="a videoattn checkpoint of a streamable model (PyTorch; .pth or model folder)")
    add_trust_argument(p)
    p.add_argument("--onnx", help="a per-frame step exported by tools/export.py --streaming, run in onnxruntime")
    p.add_argument("--average", type=int, default=None, help="frames the prediction is averaged over (default T)")
    p.add_argument("--stride", type=int, default=1, help="step every S-th frame of the source")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many steps")
    p.add_argument("--every", type=int, default=1, help="print every N-th step's line")
    p.add_argument("--topk", type=int, default=3, help="classes in the final summary")
    p.add_argument("--json", action="store_true", help="one JSON object per step, then a summary object")
    p.add_argument("--format", default=None, help="FFmpeg input format of a device: v4l2, avfoundation, dshow")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="an FFmpeg input option")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="PyTorch: bf16 autocast")
    add_device_arguments(
        p, what="where the per-frame step runs (with --onnx: onnxruntime's execution provider)", tf32=None,
        tf32_default="on, off where PyTorch is the reference of --onnx's check",
    )  # fmt: skip
    p.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction, default=None,
        help="PyTorch: NHWC activations (default: with bf16)",
    )  # fmt: skip
    p.add_argument("--tolerance", type=float, default=1e-4, help="--onnx with --checkpoint: max abs difference")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch and onnxruntime)")
    p.add_argument("--no-malloc-cache", action="store_true", help="keep glibc's default of unmapping freed blocks")
    args = p.parse_args()
    with user_errors(), trust_checkpoints(args.trust_checkpoint):
        return stream(args)


def _check_args(args) -> dict[str, str]:
    if not args.checkpoint and not args.onnx:
        raise ConfigError("give the model: --checkpoint CKPT, --onnx STEP.onnx, or both (to check the ONNX step)")
    for flag in ("average", "stride", "max_frames", "every", "topk", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} {value}: must be at least 1")
    if args.onnx and (args.precision != "fp32" or args.channels_last):
        raise ConfigError(
            "--precision / --channels-last are for PyTorch; --onnx runs the exported fp32 step "
            "(and with --checkpoint, PyTorch fp32 is its reference)"
        )
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {item!r}: use KEY=VALUE (e.g. video_size=640x480)")
        options[key] = value
    if options and not args.format:
        raise ConfigError("--option goes with --format (the FFmpeg input format of a device)")
    if args.format is None and "://" not in args.video and not Path(args.video).exists():  # before loading a model
        raise MissingFileError(f"video not found: {args.video} (a capture device needs --format, e.g. v4l2)")
    for flag in ("checkpoint", "onnx"):
        path = getattr(args, flag)
        if path and not Path(path).exists():
            raise MissingFileError(f"--{flag}: {path} not found")
    return options


def _torch_streamer(args):
    """The checkpoint's model as a :class:`StreamingModel` (on the CPU), and the checkpoint."""
    model, ckpt = load_model(args.checkpoint)
    try:
        streamer = StreamingModel(model)
    except ConfigError as err:
        raise ConfigError(f"{args.checkpoint}: {err}") from None
    set_inference_layout(model, precision=args.precision, channels_last=args.channels_last)
    return streamer, ckpt


def _onnx_streamer(args, device: torch.device | None):
    """The exported step in onnxruntime on ``--device`` (``device``: PyTorch's, chosen already) and
    its metadata."""
    from videoattn.deploy.onnx import OnnxStream, require_deploy, select_onnx_device

    require_deploy()
    onnx_device = select_onnx_device(args.device, selected=device)
    onnx_stream = OnnxStream.load(args.onnx, threads=args.threads, device=onnx_device, tf32=_tf32(args))
    meta = onnx_stream.model.metadata
    missing = [k for k in ("model_config", "eval_transform") if k not in meta]
    if missing:
        raise ConfigError(f"{args.onnx}: no videoattn metadata ({', '.join(missing)}); export it with tools/export.py")
    return onnx_stream, meta


def _tf32(args) -> bool:
    """``--tf32`` as given; by default on, off where PyTorch is the reference of the ONNX step."""
    return args.tf32 if args.tf32 is not None else not (args.onnx and args.checkpoint)


def stream(args) -> int:
    options = _check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    streamer = ckpt = onnx_stream = device = None
    if args.checkpoint:
        streamer, ckpt = _torch_streamer(args)
        device = select_device(args.device)  # after the checkpoint's checks; auto says why it falls back
        if device.type == "cuda":  # TF32, and cuDNN autotuning (every frame has the same shape)
            configure_backends(device, tf32=_tf32(args))
        streamer.to(device)
    if args.onnx:
        onnx_stream, meta = _onnx_streamer(args, device)
        cfg, names, transform_kw = meta["model_config"], meta.get("classes"), meta["eval_transform"]
        if ckpt is not None and json.loads(json.dumps(ckpt["model_config"])) != cfg:  # as the metadata holds it
            raise ConfigError(f"{args.onnx} was not exported from {args.checkpoint} (another model config)")
    else:
        cfg, names, transform_kw = ckpt["model_config"], ckpt["classes"], ckpt["data"]["eval_transform"]
    runs_on = onnx_stream.model.device if onnx_stream is not None else device  # the step that is timed
    if not args.no_malloc_cache and "cpu" in (runs_on.type, device and device.type):
        cache_freed_memory()  # far fewer page faults per step (videoattn.engine.memory)
    transform = EvalTransform(**{**transform_kw, "crops": "center", "normalize": True})
    average = args.average or cfg["num_segments"]
    runtime = "onnxruntime" if onnx_stream else f"PyTorch {args.precision}"
    label = f"{cfg['name']} ({cfg['arch']})" if cfg.get("name") else cfg["arch"]
    label += f" in {runtime} on {runs_on}"
    if onnx_stream is not None and streamer is not None:
        label += f", checked against PyTorch fp32 on {device}"
    if not args.json:
        print(f"{args.video}: {label}, {transform.size} px frames, prediction averaged over the last {average}")

    history: deque[np.ndarray] = deque(maxlen=average)
    step_ms, read_ms, worst = [], [], 0.0
    source_shape = None
    # Ctrl-C / SIGTERM, the normal end of a camera's stream: the frame in progress finishes, then the summary
    with (
        StopRequests().installed() as stop,
        contextlib.closing(stream_frames(args.video, format=args.format, options=options)) as frames,
    ):
        t_read = time.perf_counter()
        for i, (seconds, frame) in enumerate(frames):  # frame (3, H, W) uint8
            if i % args.stride:
                continue
            source_shape = tuple(frame.shape[1:])
            x = transform(frame.unsqueeze(0), squeeze=True)  # (1, 3, H, W) -> (1, 3, S, S), on the host
            t0 = time.perf_counter()
            if onnx_stream is not None:
                logits = onnx_stream.step(x)[0]  # (K,); onnxruntime copies the frame to its device
            else:
                with autocast(device, args.precision):
                    logits = streamer.step(x.to(device))[0].float().cpu().numpy()  # the copy waits for the step
            t1 = time.perf_counter()
            step_ms.append((t1 - t0) * 1e3)
            read_ms.append((t0 - t_read) * 1e3)
            if onnx_stream is not None and streamer is not None:  # both: the ONNX step against PyTorch
                ref = streamer.step(x.to(device))[0].cpu().numpy()  # each runtime carries its own states
                diff = float(np.abs(logits - ref).max())
                worst = max(worst, diff)
                if not diff <= args.tolerance:
                    raise ConfigError(
                        f"{args.onnx}: the ONNX step differs from PyTorch ({args.checkpoint}) by {diff:.3g} > "
                        f"{args.tolerance:g} at step {len(step_ms)}"
                    )
            history.append(logits)
            probs = _softmax(np.mean(history, axis=0))
            n = len(step_ms)
            if (n - 1) % args.every == 0:
                top = int(probs.argmax())
                if args.json:
                    print(json.dumps({
                        "step": n, "frame": i, "seconds": seconds, "step_ms": step_ms[-1], "read_ms": read_ms[-1],
                        "index": top, "class": names[top] if names else None, "prob": float(probs[top]),
                    }))  # fmt: skip
                else:
                    when = f"{seconds:7.2f} s" if seconds is not None else f"frame {i}"
                    print(f"{n:6d}  {when}  step {step_ms[-1]:6.1f} ms  read {read_ms[-1]:5.1f} ms  "
                          f"{probs[top]:.3f} {_name(names, top)}")  # fmt: skip
            if (args.max_frames and n >= args.max_frames) or stop.requested:
                break
            t_read = time.perf_counter()
        if not step_ms:
            stop.check("before the first frame was predicted")

    summary = _summary(step_ms, read_ms, probs, names, args.topk)
    stopped_by = signal.Signals(stop.signum).name if stop.signum else None  # Ctrl-C / SIGTERM ended the stream
    summary.update(runtime=runtime, device=str(runs_on), average=average, stride=args.stride,
                   source=list(source_shape), stopped_by=stopped_by)  # fmt: skip
    if onnx_stream is not None and streamer is not None:
        summary.update(max_abs_diff=worst, reference_device=str(device))
    if args.json:
        print(json.dumps({"summary": summary}))
        return 0
    t = summary["step_ms"]
    if stopped_by:
        print(f"stopped by {stopped_by} after {summary['steps']} steps")
    print(
        f"{summary['steps']} steps of {source_shape[1]}x{source_shape[0]} frames: step {t['median']:.1f} ms/frame "
        f"median (mean {t['mean']:.1f}, p90 {t['p90']:.1f}; the first {t['first']:.1f}), "
        f"read + preprocess {summary['read_ms']['median']:.1f} ms/frame"
    )
    print(f"prediction (the last {min(average, len(step_ms))} frames):")
    for entry in summary["top"]:
        print(f"  {entry['prob']:6.3f}  {_name(names, entry['index'])}")
    if "max_abs_diff" in summary:
        print(
            f"onnxruntime vs PyTorch over {summary['steps']} steps, each carrying its own states: max abs logit "
            f"diff {worst:.2e} (tolerance {args.tolerance:g})"
        )
    return 0


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def _name(names, i: int) -> str:
    return names[i] if names else f"class {i}"


def _summary(step_ms, read_ms, probs, names, topk: int) -> dict:
    """Step and read times (the first step, which allocates, apart) and the final prediction."""
    warm = step_ms[1:] or step_ms
    order = np.argsort(-probs)[:topk]
    return {
        "steps": len(step_ms),
        "step_ms": {
            "median": statistics.median(warm), "mean": statistics.fmean(warm),
            "p90": float(np.percentile(warm, 90)), "first": step_ms[0],
        },
        "read_ms": {"median": statistics.median(read_ms[1:] or read_ms)},
        "top": [{"index": int(j), "class": names[j] if names else None, "prob": float(probs[j])} for j in order],
    }  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
