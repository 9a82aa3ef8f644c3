"""Export a checkpoint to ONNX, checked against PyTorch in onnxruntime, or as a shareable model folder.

    uv sync --extra deploy                                   # onnx, onnxscript, onnxruntime
    uv run python tools/export.py --checkpoint runs/demo/tsm/best.pth --out tsm.onnx
    uv run python tools/infer.py VIDEO --onnx tsm.onnx       # the exported model on one clip
    uv run python tools/export.py --checkpoint runs/demo/tsm_online/best.pth --out step.onnx --streaming  # online
    uv run python tools/stream.py VIDEO --onnx step.onnx     # ... per-frame step on a stream

The graph takes ``clips`` ``(N, T, 3, S, S)`` float32 (RGB, normalised with the file's mean/std;
N dynamic; S fixed: the checkpoint's crop, or ``--size``, which then is the deployed crop and is
said so) and returns ``logits`` ``(N, K)``. The file's metadata (``videoattn.*``) holds the
class names, T, the sampling and the eval transform (size, resize, mean, std) and the model
config, so that a deployment needs nothing else. The export is checked on a batch size other
than the traced one; a max abs difference above ``--tolerance`` writes nothing and exits 2.
``--opset`` is written as asked or refused (PyTorch's exporter writes 18 and up: below, or above
what the installed onnx knows, it would silently write 18); ``--out`` is never the checkpoint.

``--streaming`` exports the per-frame step of a causal model instead (``model=tsm_online``; see
:class:`videoattn.models.StreamingModel`): inputs ``frame`` ``(N, 3, S, S)`` and ``state_i``
(each streaming module's buffer, zeros at the first frame), outputs ``logits`` ``(N, K)`` and
``next_state_i``, the states to pass with the next frame; their shapes are in the metadata
(``videoattn.streaming``). It is checked by streaming T + 4 frames through PyTorch and
onnxruntime, each carrying its own states. A model that cannot stream is refused, naming its
modules.

``--format folder`` writes the model another person loads in one line instead (no extra needed):
``--out`` becomes a folder holding ``model.safetensors``, ``config.json`` (model config, classes,
sampling, preprocessing, test views, recipe and the measured metrics: the run's best val top-1 /
top-5 and the numbers of each ``tools/test.py`` metrics.json given with ``--metrics``, or else found
in the test folders beside the checkpoint) and a model card ``README.md`` (Hugging Face Hub
format). See :mod:`videoattn.share`::

    uv run python tools/export.py --format folder --checkpoint runs/demo/tsm/best.pth --out tsm_demo
    python -c 'import torch; m = torch.hub.load(".", "model", checkpoint="tsm_demo", source="local")'

The export itself does not depend on a device: the model is traced on the CPU, and the file is
checked in onnxruntime on the CPU. ``--device`` is where the PyTorch reference of that check
runs: ``cpu`` (the default: the numerics closest to onnxruntime's CPU kernels), or ``cuda`` to
check the graph against what the model computes on the GPU it was trained on (in IEEE fp32:
TF32 is off unless ``--tf32``, whose ~1e-3 relative error is above the default tolerance). The
device is printed with the result.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from videoattn.checkpoint import CONFIG_FILE, load_checkpoint, refuse_overwrite, trust_checkpoints
from videoattn.cli import ArgumentParser, add_device_arguments, add_trust_argument, user_errors
from videoattn.data.transforms import EvalTransform
from videoattn.deploy.onnx import DEFAULT_OPSET, ExportError, export_onnx, export_streaming_step, require_deploy
from videoattn.engine.device import configure_backends, select_device
from videoattn.errors import ConfigError, MissingFileError
from videoattn.files import temp_path
from videoattn.models import StreamingModel, load_model
from videoattn.share import find_test_metrics, write_shareable_folder

MIN_OPSET = 18  # torch.onnx's dynamo exporter: its own operators are opset 18; it converts up, never down
MIN_SIZE = 32  # the networks downsample by 32: a smaller crop leaves the last stage no pixel of its own


def main() -> int:
    p = ArgumentParser(description=__doc__)
    p.add_argument(
        "--checkpoint", required=True, help="a videoattn checkpoint (a run's or a converted one; .pth or model folder)"
    )
    add_trust_argument(p)
    p.add_argument(
        "--out", required=True, type=Path, help="the .onnx file (--format folder: the folder) to write; not an input"
    )
    p.add_argument(
        "--format",
        choices=("onnx", "folder"),
        default="onnx",
        help="onnx (default): an ONNX graph checked in onnxruntime; folder: the shareable model folder "
        "(model.safetensors, config.json, model card README.md)",
    )
    p.add_argument(
        "--metrics",
        type=Path,
        action="append",
        default=[],
        help="--format folder: a tools/test.py metrics.json of this checkpoint, for config.json and the card "
        "(repeatable; default: those found in the test folders beside the checkpoint)",
    )
    p.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, {MIN_OPSET} to the installed onnx's newest"
    )
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs logit difference accepted (fp32), in (0, 1)")
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help=f"the deployed crop size, S of the graph's input and of the file's eval transform (>= {MIN_SIZE}, at most "
        "the resize); default: the checkpoint's crop",
    )
    p.add_argument("--seed", type=int, default=0, help="of the random check clips")
    p.add_argument(
        "--streaming", action="store_true", help="export the per-frame step of a causal model (for tools/stream.py)"
    )
    add_device_arguments(
        p,
        what="where the PyTorch reference of the parity check runs (the model is traced, and onnxruntime checks "
        "the file, on the CPU whatever the device)",
        default="cpu",
        tf32=False,
        tf32_default="off: the check compares IEEE fp32 to --tolerance",
    )
    args = p.parse_args()
    with user_errors(), trust_checkpoints(args.trust_checkpoint):
        return export_folder(args, p) if args.format == "folder" else export(args)


ONNX_FLAGS = ("streaming", "size", "opset", "tolerance", "seed", "device", "tf32")  # settings of the ONNX export


def export_folder(args, parser: ArgumentParser) -> int:
    """``--format folder``: the shareable model folder (videoattn.share); an ONNX setting given is refused."""
    for dest in ONNX_FLAGS:
        if hasattr(args, dest) and getattr(args, dest) != parser.get_default(dest):
            flag = "--" + dest.replace("_", "-")
            raise ConfigError(f"{flag} is an ONNX export setting; it does not apply to --format folder")
    for metrics in args.metrics:
        refuse_overwrite(args.out, {"--metrics": metrics}, flag="--out")
    refuse_overwrite(args.out, {"--checkpoint": args.checkpoint}, flag="--out")
    if args.out.exists() and not (args.out / CONFIG_FILE).is_file() and any(args.out.iterdir()):
        raise ConfigError(f"--out {args.out}: a folder that holds other files; give a new folder for the model")
    if not Path(args.checkpoint).exists():
        raise MissingFileError(f"checkpoint not found: {args.checkpoint}")
    ckpt = load_checkpoint(args.checkpoint)
    tests = args.metrics or find_test_metrics(args.checkpoint)
    entries = write_shareable_folder(ckpt, args.out, tests=tests)
    cfg, val = ckpt["model_config"], entries["metrics"]["val"]
    measured = [f"val top-1 {val['top1']:.4f}"] if val and val.get("top1") is not None else []
    measured += [f"{t.get('split', 'test')} top-1 {t['top1']:.4f} ({t['file']})" for t in entries["metrics"]["test"]]
    print(
        f"wrote {args.out} (model.safetensors, config.json, README.md): {cfg.get('name') or cfg['arch']}, "
        f"{cfg['num_classes']} classes, T={cfg['num_segments']}; {'; '.join(measured) or 'no measured metrics'}; "
        f'load it with torch.hub.load(REPO, "model", checkpoint="{args.out}", source="local")'
    )
    return 0


def _check_args(args) -> None:
    """Every setting that does not need the checkpoint, checked before it is read: one line, exit 2."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= args.opset <= newest:
        raise ConfigError(
            f"--opset {args.opset}: the exporter writes opsets {MIN_OPSET} to {newest} here (PyTorch's exporter starts "
            f"at {MIN_OPSET}; onnx {onnx.__version__} knows up to {newest}); any other value would be written as "
            f"{MIN_OPSET}"
        )
    if not (math.isfinite(args.tolerance) and 0 < args.tolerance < 1):
        raise ConfigError(
            f"--tolerance {args.tolerance:g}: the max abs logit difference accepted, a number in (0, 1) (default 1e-4)"
        )
    if args.size is not None and args.size < MIN_SIZE:
        raise ConfigError(
            f"--size {args.size}: the deployed crop must be at least {MIN_SIZE} px (the network downsamples by "
            f"{MIN_SIZE}); leave it out for the checkpoint's"
        )
    refuse_overwrite(args.out, {"--checkpoint": args.checkpoint}, flag="--out")
    if args.out.suffix.lower() != ".onnx":
        raise ConfigError(f"--out {args.out}: the ONNX file's name ends in .onnx")


def export(args) -> int:
    if args.metrics:
        raise ConfigError("--metrics is for --format folder (the ONNX file's metadata holds no metrics)")
    require_deploy()  # before loading anything
    _check_args(args)
    if not Path(args.checkpoint).exists():
        raise MissingFileError(f"checkpoint not found: {args.checkpoint}")
    model, ckpt = load_model(args.checkpoint)  # on the CPU, where it is traced
    device = select_device(args.device)  # after the checkpoint's checks; auto says why it falls back
    if device.type == "cuda":  # TF32: CUDA's setting (the CPU keeps PyTorch's defaults)
        configure_backends(device, tf32=args.tf32)
    cfg = ckpt["model_config"]
    transform = EvalTransform(**{**ckpt["data"]["eval_transform"], "normalize": True})
    size, t = args.size or transform.size, cfg["num_segments"]
    if transform.resize and size > transform.resize:
        raise ConfigError(
            f"--size {size}: larger than the {transform.resize} px the frames' short side is resized to before the "
            f"crop ({args.checkpoint}'s eval transform); at most {transform.resize}"
        )
    crop_note = f" (the checkpoint's crop: {transform.size} px)" if size != transform.size else ""
    g = torch.Generator().manual_seed(args.seed)
    metadata = {
        "classes": ckpt.get("classes"),
        "num_segments": t,
        "sampling": ckpt["data"].get("sampling", {}),
        "eval_transform": {"size": size, "resize": transform.resize, "mean": transform.mean, "std": transform.std},
        "model_config": cfg,
        "input": f"clips (N, T, {3 * model.frames_per_segment}, S, S) float32 RGB"
        + (f" ({model.frames_per_segment} frames per segment on the channels)" if model.frames_per_segment > 1 else "")
        + ", (x / 255 - mean) / std",
        "outputs": ["logits (N, K)"],
        "checkpoint": str(args.checkpoint),
    }
    if args.streaming:
        return export_step(args, model, metadata, size=size, t=t, generator=g, device=device, crop_note=crop_note)
    c = 3 * model.frames_per_segment  # F frames per segment on the channels (TDN's 5)
    example = torch.randn(2, t, c, size, size, generator=g)  # (N, T, F*3, S, S)
    check = torch.randn(3, t, c, size, size, generator=g)  # another N: the batch dimension is dynamic
    with _checked_opset(args.out, args.opset) as tmp:
        diff = export_onnx(
            model, tmp, example=[example], check_inputs=[check], metadata=metadata, opset=args.opset,
            tolerance=args.tolerance, device=device,
        )  # fmt: skip
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB, opset {args.opset}): "
        f"{cfg.get('name') or cfg['arch']}, T={t}, {size} px{crop_note}; onnxruntime vs PyTorch max abs diff "
        f"{diff:.2e} (PyTorch on {_where(device, args.tf32)}, batch 3, tolerance {args.tolerance:g})"
    )
    return 0


@contextlib.contextmanager
def _checked_opset(out: Path, opset: int) -> Iterator[Path]:
    """A temporary file to export into; once written, the opset it holds is checked to be
    ``opset`` and it is put at ``out`` (on any failure nothing is written)."""
    import onnx

    tmp = temp_path(out)
    try:
        yield tmp
        versions = {o.domain: o.version for o in onnx.load(str(tmp), load_external_data=False).opset_import}
        written = versions.get("", versions.get("ai.onnx"))
        if written != opset:
            raise ExportError(f"--opset {opset}: the exporter wrote opset {written} instead; not written")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _where(device: torch.device, tf32: bool) -> str:
    """The device of the PyTorch reference, with its fp32 math on a GPU."""
    return f"{device} ({'TF32' if tf32 else 'IEEE fp32'})" if device.type == "cuda" else str(device)


def export_step(
    args, model, metadata, *, size: int, t: int, generator: torch.Generator, device: torch.device, crop_note: str = ""
) -> int:
    """The per-frame step of a streamable model, checked over T + 4 frames of 3 streams, PyTorch
    on ``device``."""
    try:
        stream = StreamingModel(model)
    except ConfigError as err:
        raise ConfigError(f"{args.checkpoint}: {err}") from None
    frames = torch.randn(t + 4, 3, 3, size, size, generator=generator)  # (F, N, 3, S, S)
    metadata = {
        **metadata,
        "input": "frame (N, 3, S, S) float32 RGB, (x / 255 - mean) / std; state_i: the previous step's next_state_i "
        "(zeros at the first frame)",
        "outputs": ["logits (N, K) of the frame", "next_state_i"],
    }
    with _checked_opset(args.out, args.opset) as tmp:
        diff = export_streaming_step(stream, tmp, check_frames=frames, metadata=metadata, opset=args.opset,
                                     tolerance=args.tolerance, device=device)  # fmt: skip
    cfg = metadata["model_config"]
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB, opset {args.opset}): the per-frame step of "
        f"{cfg.get('name') or cfg['arch']}, {size} px{crop_note}, {stream.num_states} states; onnxruntime vs "
        f"PyTorch max abs logit diff {diff:.2e} over {len(frames)} frames (PyTorch on {_where(device, args.tf32)}, "
        f"batch 3, tolerance {args.tolerance:g})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
