"""Classify one video with a trained checkpoint.

    uv run python tools/infer.py VIDEO --checkpoint runs/demo/tsm/best.pth
    uv run python tools/infer.py VIDEO --checkpoint CKPT --json              # machine-readable
    uv run python tools/infer.py VIDEO --checkpoint CKPT --explain out.png   # frames, prediction, module gains
    uv run python tools/infer.py VIDEO --checkpoint CKPT --precision bf16 --compile
    uv run python tools/infer.py VIDEO --onnx tsm.onnx                        # onnxruntime (tools/export.py)
    uv run python tools/infer.py VIDEO --checkpoint CKPT --device cuda --precision bf16

The clip is sampled and cropped as in validation (T segment centres, centre crop), with the
settings stored in the checkpoint (or in the ONNX file's metadata). VIDEO may be a file (decord,
PyAV fallback) or a JPEG folder. CKPT is a ``.pth`` file or a model folder (model.safetensors +
config.json); a ``.pth`` that pickles objects beyond tensors and the allowlist is refused unless
``--trust-checkpoint`` (see README, "Checkpoints from elsewhere").

``--device`` is where the forward pass runs (the clip is read and preprocessed on the host, then
copied there): auto, the default, takes the GPU when CUDA works and says why when it falls back
to the CPU. With ``--onnx`` a GPU means onnxruntime's CUDAExecutionProvider (the onnxruntime-gpu
package): ``--device cuda`` without it is an error, auto then runs on the CPU with a warning. The
device is printed with the result (``"device"`` in ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from videoattn.checkpoint import add_classes_command, input_paths, same_path, trust_checkpoints
from videoattn.cli import ArgumentParser, add_device_arguments, add_trust_argument, user_errors
from videoattn.data.build import sampling_for_model
from videoattn.data.dataset import stack_segments
from videoattn.data.sampling import Sampling
from videoattn.data.transforms import EvalTransform
from videoattn.data.video import BACKENDS, read_clip
from videoattn.engine.device import configure_backends, select_device
from videoattn.engine.evaluate import autocast, set_inference_layout
from videoattn.engine.memory import cache_freed_memory
from videoattn.errors import ConfigError, MissingFileError
from videoattn.models import frames_per_segment, load_model


def main() -> int:
    p = ArgumentParser(description=__doc__)
    p.add_argument("video")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="a videoattn checkpoint (PyTorch): a .pth file or a model folder")
    model.add_argument("--onnx", help="a model exported by tools/export.py, run in onnxruntime")
    add_trust_argument(p)
    p.add_argument("--topk", type=int, default=5, help="classes shown (at most the model's; default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--explain",
        metavar="PNG",
        help="draw the frames, the prediction and the excitation modules' gains into this image (.png, .jpg, .svg, "
        ".pdf, ...: the extension says the format)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16: autocast on the device (GPUs; CPUs with AVX-512 BF16 / AMX)",
    )
    add_device_arguments(p, what="where the forward pass runs (with --onnx: onnxruntime's execution provider)")
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="NHWC activations (default: with bf16, whose oneDNN kernels run in NHWC: "
        "2.2x fp32 vs 1.7x in NCHW for a ResNet-50 on a CPU; tensor cores prefer NHWC too)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow first call, faster after)")
    p.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="video reader (auto: decord, PyAV fallback; frames for JPEG folders)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--no-malloc-cache",
        action="store_true",
        help="keep glibc's default of unmapping large freed blocks (slower CPU forward)",
    )
    args = p.parse_args()
    with user_errors(), trust_checkpoints(args.trust_checkpoint):
        return infer(args)


def _check_args(args) -> None:
    """Every setting checked before anything is read: one line, exit code 2."""
    if args.topk < 1:
        raise ConfigError(f"--topk {args.topk}: must be at least 1 (the number of classes shown)")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads {args.threads}: must be at least 1 (torch CPU threads)")
    if args.explain:
        from matplotlib.backend_bases import FigureCanvasBase

        formats = FigureCanvasBase.get_supported_filetypes()
        ext = Path(args.explain).suffix.lower().lstrip(".")
        if ext not in formats:
            raise ConfigError(
                f"--explain {args.explain}: the file name must end in an image format matplotlib writes "
                f"({', '.join('.' + f for f in sorted(formats))})"
            )
        for flag, given in (("VIDEO", args.video), ("--checkpoint", args.checkpoint)):
            if given and any(same_path(args.explain, q) for q in input_paths(given)):
                raise ConfigError(f"--explain {args.explain} is {flag} {given}: writing it would replace the input")


def _onnx_model(args):
    """The exported model (in a session on ``--device``) and what its metadata says: config, class
    names, sampling, transform."""
    from videoattn.deploy.onnx import OnnxModel, require_deploy, select_onnx_device

    if not Path(args.onnx).exists():
        raise MissingFileError(f"ONNX model not found: {args.onnx}")
    require_deploy()
    device = select_onnx_device(args.device)  # the session's providers are chosen when it is made
    model = OnnxModel.load(args.onnx, threads=args.threads, device=device, tf32=args.tf32)
    meta = model.metadata
    missing = [k for k in ("model_config", "classes", "eval_transform") if k not in meta]
    if missing:
        raise ConfigError(f"{args.onnx}: no videoattn metadata ({', '.join(missing)}); export it with tools/export.py")
    if "streaming" in meta:
        raise ConfigError(f"{args.onnx} is a per-frame step (tools/export.py --streaming): run it with tools/stream.py")
    return model, meta["model_config"], meta["classes"], meta.get("sampling", {}), meta["eval_transform"]


def infer(args) -> int:
    _check_args(args)
    if not Path(args.video).exists():  # before loading the model
        raise MissingFileError(f"video not found: {args.video}")
    if args.onnx:  # PyTorch-only settings are an error with --onnx, not ignored
        torch_only = {"--explain": args.explain, "--compile": args.compile, "--channels-last": args.channels_last}
        for flag, value in torch_only.items():
            if value:
                raise ConfigError(f"{flag} is for PyTorch models; it does not apply to --onnx {args.onnx}")
        if args.precision != "fp32":
            raise ConfigError(f"--precision {args.precision}: --onnx runs the exported fp32 graph")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    if args.onnx:
        onnx_model, cfg, names, sampling_kw, transform_kw = _onnx_model(args)
        device, channels_last = onnx_model.device, None
    else:
        model, ckpt = load_model(args.checkpoint)  # a training run's or a converted checkpoint (on the CPU)
        cfg, names = ckpt["model_config"], ckpt["classes"]
        sampling_kw, transform_kw = ckpt["data"].get("sampling", {}), ckpt["data"]["eval_transform"]
        device = select_device(args.device)  # after the checkpoint's checks; auto says why it falls back
        if device.type == "cuda":  # TF32 and cuDNN: CUDA's settings (the CPU keeps PyTorch's defaults)
            configure_backends(device, tf32=args.tf32)
            torch.backends.cudnn.benchmark = False  # one forward pass: autotuning would cost more than it saves
        channels_last = set_inference_layout(model, precision=args.precision, channels_last=args.channels_last)
        model.to(device)
    if device.type == "cpu" and not args.no_malloc_cache:
        cache_freed_memory()  # far fewer page faults per step (videoattn.engine.memory)
    fps = frames_per_segment(cfg)  # F frames per segment, stacked on the channels (TDN's 5)
    sampling = Sampling(num_segments=cfg["num_segments"], **sampling_for_model(sampling_kw, fps))
    transform = EvalTransform(**{**transform_kw, "normalize": True})  # one clip: on the host
    frames, indices = read_clip(args.video, sampling.val, backend=args.backend)  # (T*F, 3, H, W) uint8
    clip = stack_segments(transform(frames, squeeze=True), fps).unsqueeze(0)  # -> (1, T, F*3, S, S)
    load_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    if args.onnx:
        logits = torch.from_numpy(onnx_model(clip)[0])  # (1, K); onnxruntime copies the clip to its device
    else:
        clip = clip.to(device)  # (1, T, 3, S, S); with channels_last the stem's output is NHWC
        runner = torch.compile(model) if args.compile else model
        with torch.no_grad(), autocast(device, args.precision):
            if args.explain:
                from videoattn.explain import trace_excitation

                logits, traces = trace_excitation(model, clip)
            else:
                logits = runner(clip)
    probs = torch.softmax(logits.float(), dim=1)[0].cpu()  # the copy waits for the device's work
    infer_s = time.perf_counter() - t1
    if args.topk > cfg["num_classes"]:
        print(
            f"note: --topk {args.topk}: the model has {cfg['num_classes']} classes; showing them all", file=sys.stderr
        )
    top = probs.topk(min(args.topk, cfg["num_classes"]))
    result = [
        (names[i] if names else f"class {i}", float(p), int(i)) for p, i in zip(top.values, top.indices, strict=True)
    ]

    if args.explain:
        from videoattn.explain import plot_explanation

        title = f"{args.video}: {result[0][0]} ({result[0][1]:.2f}) - {cfg.get('name') or cfg['arch']}"
        plot_explanation(args.explain, frames, [(c, p) for c, p, _ in result], traces, title=title)
    if args.json:
        print(
            json.dumps(
                {
                    "video": args.video,
                    "frames": indices.tolist(),
                    "top": [{"index": i, "class": c if names else None, "prob": p} for c, p, i in result],
                    "seconds": {"load": load_s, "forward": infer_s},
                    "explain": args.explain,
                    "precision": args.precision,
                    "runtime": "onnxruntime" if args.onnx else "pytorch",
                    "device": str(device),
                    "channels_last": channels_last,
                    "compile": args.compile,
                },
                indent=2,
            )
        )
    else:
        print(
            f"{args.video}  (frames {indices.tolist()}; model {cfg.get('name') or cfg['arch']}"
            f"{' in onnxruntime' if args.onnx else ''} on {device}, forward {infer_s * 1000:.0f} ms)"
        )
        for c, prob, _ in result:
            print(f"  {prob:6.3f}  {c}")
        if args.explain:
            print(f"wrote {args.explain}")
    if not names and args.onnx:
        print(f"note: {args.onnx} carries no class names (nor did its checkpoint), so classes are shown by index")
    elif not names:
        print(
            f"note: {args.checkpoint} carries no class names, so classes are shown by index; write a copy with "
            f"them: {add_classes_command(args.checkpoint)}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
