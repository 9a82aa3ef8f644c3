"""Speed, memory and numerics of the model configs, and the data loader's speed, in one process.

    uv run python tools/benchmark.py [--models tsn,tsm,tam,action,se,tsm_se] [--arch resnet50]
        [--segments 8] [--size 224] [--batch-sizes 1,2] [--train] [--train-batch-size 2]
        [--modes fp32,channels_last,bf16,bf16+channels_last] [--repeats 5] [--warmup 1]
        [--threads 2] [--sections models,loader] [--json PATH] [--markdown PATH]

    uv run python tools/benchmark.py --sections loader                     # demo data, 0/1/2 workers
    uv run python tools/benchmark.py --sections models,loader --loader-root data/ssv2 --loader-workers 0,4,8
    uv run python tools/benchmark.py --sections streaming                  # ms/frame, online TSM (R50, MNv2)
    uv run python tools/benchmark.py --device cuda --modes fp32,bf16+channels_last --batch-sizes 8,32

``--sections models`` (the default) is :mod:`videoattn.benchmark.models`: every model config
(``configs/model/<name>.yaml`` or a registry module's) and ``--checkpoint`` model against the
``torchvision_tsn`` baseline in every ``--modes`` mode; ``--sections loader`` is
:mod:`videoattn.benchmark.loader`; ``--sections streaming`` is
:mod:`videoattn.benchmark.streaming` (ms per frame of online models, one frame at a time, in
PyTorch and onnxruntime). How each is measured (interleaved rounds, ratios with their 95%
confidence interval, peak memory) is written in those modules and
:mod:`videoattn.benchmark.timing`. The numbers of this project's machines are in ``docs/``.

``--device`` is where the models and streaming sections run (auto, the default: the GPU when
CUDA works, else the CPU with a warning saying why); it is logged once and recorded in the
results. On a GPU the times are CUDA events, peak memory ``torch.cuda.max_memory_allocated``,
``--tf32`` (on by default) sets fp32's math, and the CPU-only measurements are refused
(``--modes onnxruntime``, ``--stream-modes onnxruntime``, ``--clock cpu``) or, among the default
streaming modes, left out with a message. The loader and index sections measure the host.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from videoattn.benchmark.index import bench_index, index_markdown  # noqa: E402
from videoattn.benchmark.loader import bench_data, loader_markdown  # noqa: E402
from videoattn.benchmark.models import BASELINE, Mode, bench_models, load_checkpoints, models_markdown  # noqa: E402
from videoattn.benchmark.streaming import (  # noqa: E402
    DEFAULT_STREAM_MODELS,
    DEFAULT_STREAM_MODES,
    bench_streaming,
    streaming_markdown,
)
from videoattn.benchmark.timing import bf16_note, cpu_bf16, log  # noqa: E402
from videoattn.checkpoint import refuse_overwrite, same_path, trust_checkpoints  # noqa: E402
from videoattn.cli import ArgumentParser, add_device_arguments, add_trust_argument, user_errors  # noqa: E402
from videoattn.engine.device import select_device  # noqa: E402
from videoattn.errors import ConfigError  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_MODELS = ("tsn", "tsm", "tam", "action", "se", "tsm_se")
DEFAULT_MODES = ("fp32", "channels_last", "bf16", "bf16+channels_last")
SECTIONS = ("models", "loader", "index", "streaming")


def to_markdown(results: dict[str, Any]) -> str:
    """Markdown tables of whichever sections ``results`` holds."""
    parts = [models_markdown(results)] if "models" in results else []
    if "data_loader" in results:
        parts.append(loader_markdown(results["data_loader"]))
    if "index" in results:
        parts.append(index_markdown(results["index"]))
    if "streaming" in results:
        parts.append(streaming_markdown(results["streaming"]))
    return "\n".join(parts)


# ----------------------------------------------------------------------------- command line
def _csv(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    return lambda s: [kind(p) for p in s.split(",") if p.strip()]


def parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument(
        "--models",
        type=_csv(str),
        default=None,
        help=f"configs/model/<name>.yaml names, comma separated (default: {','.join(DEFAULT_MODELS)}, "
        f"none with --checkpoint); {BASELINE} is always added",
    )
    ap.add_argument(
        "--checkpoint",
        action="append",
        metavar="CKPT",
        help="also measure the model of a checkpoint (trained or converted, .pth or model folder; repeatable); its "
        "T, classes, arch and crop size become the benchmark's",
    )
    add_trust_argument(ap)
    ap.add_argument("--arch", default=None, help="backbone override for every model (default resnet50)")
    ap.add_argument("--segments", type=int, default=None, help="T, frames per clip (default 8)")
    ap.add_argument("--num-classes", type=int, default=None, help="default 174")
    ap.add_argument("--size", type=int, default=None, help="default 224")
    ap.add_argument("--batch-sizes", type=_csv(int), default=[1, 2], help="clips per forward call")
    ap.add_argument(
        "--modes",
        type=_csv(str),
        default=list(DEFAULT_MODES),
        help="'+'-joined options from fp32, channels_last, bf16, compile (compile is slow on CPU); onnxruntime alone: "
        "the model exported to ONNX and run by onnxruntime (CPU; uv sync --extra deploy)",
    )
    ap.add_argument("--train", action="store_true", help="also time the train step")
    ap.add_argument("--train-batch-size", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds")
    ap.add_argument("--warmup", type=int, default=1, help="discarded rounds")
    ap.add_argument("--min-sample-s", type=float, default=0.2, help="shortest timed sample (GPU: many calls)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    add_device_arguments(ap, what="where the models and streaming sections run (loader and index: the host)")
    ap.add_argument("--agree-clips", type=int, default=4, help="clips for the agreement with fp32 (0: skip)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory calls")
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: CPU time of this process, robust to other processes on a shared "
        "machine (use with --threads 1: with more, it counts OpenMP spin-waits)",
    )
    ap.add_argument(
        "--malloc-cache",
        action="store_true",
        help="keep freed memory in the process (glibc mallopt: no mmap, no trim); "
        "where page faults are slow, a large share of a CPU forward is spent in "
        "them; no peak-memory numbers then",
    )
    ap.add_argument(
        "--config-dir", type=Path, default=CONFIGS, help="where model/<name>.yaml are (default %(default)s)"
    )
    ap.add_argument("--sections", type=_csv(str), default=["models"], help=f"{', '.join(SECTIONS)} (comma separated)")
    ap.add_argument(
        "--loader-root",
        type=Path,
        default=None,
        help="SSv2-format folder for the loader section (default: the demo data, written on first use)",
    )
    ap.add_argument("--loader-split", default="train")
    ap.add_argument("--loader-clips", type=int, default=96)
    ap.add_argument("--loader-batch-size", type=int, default=8)
    ap.add_argument("--loader-workers", type=_csv(int), default=[0, 1, 2], help="DataLoader worker counts")
    ap.add_argument("--loader-repeats", type=int, default=3)
    ap.add_argument(
        "--realistic-clips", type=int, default=4, help="loader section: textured clips of each kind (0: skip)"
    )
    ap.add_argument("--realistic-dir", default=str(Path(tempfile.gettempdir()) / "videoattn-bench-videos"),
                    help="where the realistic clips and their prepared forms are kept between runs")  # fmt: skip
    ap.add_argument("--realistic-scale", type=float, default=1.0, help="shrink the realistic clips (tests)")
    ap.add_argument("--target-clips-per-s", type=float, default=400.0,
                    help="the loader section's 'cores to feed N clips/s' (one H100: several hundred)")  # fmt: skip
    ap.add_argument("--index-size", type=int, default=168_913, help="entries of the index section (SSv2's train split)")
    ap.add_argument("--index-kinetics", type=int, default=240_436, help="rows of its Kinetics-format CSV")
    ap.add_argument("--index-workers", type=int, default=2, help="DataLoader workers of its epoch")
    ap.add_argument("--index-batch-size", type=int, default=64)
    ap.add_argument(
        "--index-backends",
        type=_csv(str),
        default=None,
        help="backends whose workers' memory the index section follows (default: every installed video backend)",
    )
    ap.add_argument("--stream-models", type=_csv(str), default=list(DEFAULT_STREAM_MODELS),
                    help="streaming section: streamable model configs (own backbones unless --arch)")  # fmt: skip
    ap.add_argument("--stream-modes", type=_csv(str), default=None,
                    help="streaming section: as --modes (no compile); onnxruntime: the exported step (default: "
                         f"{','.join(DEFAULT_STREAM_MODES)}; on a GPU without onnxruntime)")  # fmt: skip
    ap.add_argument("--stream-frames", type=int, default=12, help="streaming section: frames of the agreement check")
    ap.add_argument("--json", type=Path, help="write the results as JSON")
    ap.add_argument("--markdown", type=Path, help="write the Markdown tables")
    return ap


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    progress = logging.getLogger("videoattn.benchmark")
    if not progress.handlers:  # the progress lines on stderr, the tables on stdout
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)
    with user_errors(), trust_checkpoints(args.trust_checkpoint):
        return run(args)


def run(args: argparse.Namespace) -> dict[str, Any]:
    for flag in ("json", "markdown"):  # before anything is measured: no output replaces an input or the other
        for checkpoint in args.checkpoint or []:
            if getattr(args, flag) is not None:
                refuse_overwrite(getattr(args, flag), {"--checkpoint": checkpoint}, flag=f"--{flag}")
    if args.json is not None and args.markdown is not None and same_path(args.json, args.markdown):
        raise ConfigError(f"--json and --markdown are both {args.json}: the second would replace the first")
    if args.models is None:
        args.models = [] if args.checkpoint else list(DEFAULT_MODELS)
    for m in args.modes:
        Mode.parse(m)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown or not args.sections:
        raise ConfigError(f"--sections: unknown {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    if "index" in args.sections and args.index_workers < 1:
        raise ConfigError(
            f"--index-workers {args.index_workers}: the index section measures the DataLoader workers' memory; "
            "give 1 or more"
        )
    for m in (args.stream_modes or []) if "streaming" in args.sections else []:
        Mode.parse(m)
    arch = args.arch  # the streaming models keep their configs' backbones unless it is given
    checkpoints = load_checkpoints(args)  # also settles T, classes, arch and size
    if {"models", "streaming"} & set(args.sections):
        args.device = select_device(args.device)  # after the checks; auto says why it falls back
        name = f" ({torch.cuda.get_device_name(args.device)})" if args.device.type == "cuda" else ""
        log(f"device: {args.device}{name}")
    elif args.device == "cuda":
        raise ConfigError("--device cuda: the loader and index sections measure the host; add models or streaming "
                          "to --sections")  # fmt: skip
    if getattr(args.device, "type", "cpu") == "cpu":  # what bf16 does here: hardware or emulated
        log(bf16_note(cpu_bf16()))
    sections: dict[str, Callable[[], Any]] = {
        "models": lambda: bench_models(args, checkpoints=checkpoints),
        "loader": lambda: bench_data(args),
        "index": lambda: bench_index(args),
        "streaming": lambda: bench_streaming(args, arch=arch),
    }
    results: dict[str, Any] = {}
    todo = [name for name in SECTIONS if name in args.sections]
    for i, name in enumerate(todo, 1):  # each section's start and end; the rounds estimate what is left
        log(f"section {i}/{len(todo)} {name}: start")
        t0 = time.perf_counter()
        out = sections[name]()
        if name == "models":
            results.update(out)
        else:
            results[{"loader": "data_loader"}.get(name, name)] = out
        log(f"section {i}/{len(todo)} {name}: done in {time.perf_counter() - t0:.0f}s")
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
