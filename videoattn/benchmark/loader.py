"""The data-loader benchmark, on an SSv2-format split (by default the demo data).

- Reads alone, the frames a TSN sampler picks per clip: decord sampled reads, PyAV sequential
  reads up to the last sampled frame (the fallback), torchcodec sampled reads (when it can load
  FFmpeg), and the full-decode baseline of many codebases (PyAV decodes every frame, then the
  sampled ones are picked).
- The whole training loader (read + multi-scale crop + flip + normalise, batched by a
  ``DataLoader``) with each backend at several worker counts.

Each reader and each loader is a variant of :func:`videoattn.benchmark.timing.interleaved`
(one pass over the clips per round, after one untimed pass that warms the page cache);
clips/s are over the median pass.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .timing import interleaved, log

__all__ = ["bench_data", "bench_loader", "bench_reads", "full_decode", "loader_markdown"]


def backends() -> list[str]:
    """The video backends installed here (torchcodec needs FFmpeg's shared libraries)."""
    from ..data.video import torchcodec_available

    return ["decord", "pyav", *(["torchcodec"] if torchcodec_available() else [])]


def full_decode(path: Path, choose: Callable[[int], np.ndarray]) -> np.ndarray:
    """The baseline of many codebases: decode every frame with PyAV, then pick. ``(T, H, W, 3)``."""
    import av

    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])  # (F, H, W, 3)
    return frames[choose(len(frames))]


def bench_reads(paths: list[Path], *, segments: int, repeats: int) -> list[dict[str, Any]]:
    """Clips/s of the three ways to get a clip's sampled frames; ``x_baseline`` against full decode."""
    from ..data.sampling import segment_sample
    from ..data.video import read_clip

    readers: dict[str, Callable[[Path, Callable], Any]] = {
        "decord, sampled frames": lambda p, c: read_clip(p, c, backend="decord", fallback=False),
        "PyAV, sequential to the last sampled frame": lambda p, c: read_clip(p, c, backend="pyav"),
    }
    if "torchcodec" in backends():
        readers["torchcodec, sampled frames"] = lambda p, c: read_clip(p, c, backend="torchcodec", fallback=False)
    readers["PyAV, full decode (baseline)"] = full_decode

    def one_pass(read: Callable[[Path, Callable], Any]) -> Callable[[], None]:
        def run() -> None:
            rng = np.random.default_rng(0)  # the same frames for every reader and pass
            for p in paths:
                read(p, lambda n: segment_sample(n, segments, rng=rng))

        return run

    timed = interleaved([one_pass(read) for read in readers.values()], label="reads", repeats=repeats)
    rows = [{"reader": name, "clips_per_s": len(paths) / t} for name, t in zip(readers, timed.medians(), strict=True)]
    for r in rows:
        r["x_baseline"] = r["clips_per_s"] / rows[-1]["clips_per_s"]
    return rows


def bench_loader(
    records: list, *, segments: int, size: int, batch_size: int, workers: list[int], repeats: int
) -> list[dict[str, Any]]:
    """Clips/s of the training loader (read, multi-scale crop, flip, normalise, collate)."""
    from ..data.dataset import VideoDataset
    from ..data.sampling import Sampling
    from ..data.transforms import TrainTransform

    variants = [(backend, w) for w in workers for backend in backends()]

    def one_epoch(backend: str, w: int) -> Callable[[], None]:
        ds = VideoDataset(
            records, sampling=Sampling(num_segments=segments), transform=TrainTransform(size=size), backend=backend
        )

        def run() -> None:
            for _ in torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=w):
                pass

        return run

    timed = interleaved([one_epoch(b, w) for b, w in variants], label="loader", repeats=repeats)
    return [
        {"backend": b, "workers": w, "clips_per_s": len(records) / t}
        for (b, w), t in zip(variants, timed.medians(), strict=True)
    ]


def bench_data(args: argparse.Namespace) -> dict[str, Any]:
    """The data-loader section for parsed ``args``; returns the JSON-ready results."""
    from ..data.annotations import load_ssv2

    torch.set_num_threads(args.threads)
    root = args.loader_root
    if root is None:
        from ..data.synthetic import ensure_demo_dataset

        root = ensure_demo_dataset() / "ssv2"
    records = load_ssv2(root, args.loader_split).records[: args.loader_clips]
    log(f"data loader: {len(records)} clips of {root} ({args.loader_split}), T={args.segments}")
    return {
        "settings": {
            "root": str(root),
            "split": args.loader_split,
            "clips": len(records),
            "segments": args.segments,
            "size": args.size,
            "batch_size": args.loader_batch_size,
            "repeats": args.loader_repeats,
        },
        "reads": bench_reads([r.path for r in records], segments=args.segments, repeats=args.loader_repeats),
        "loader": bench_loader(
            records,
            segments=args.segments,
            size=args.size,
            batch_size=args.loader_batch_size,
            workers=args.loader_workers,
            repeats=args.loader_repeats,
        ),
    }


def loader_markdown(data: dict[str, Any]) -> str:
    st = data["settings"]
    lines = [
        f"### Reads: T={st['segments']} sampled frames per clip, {st['clips']} clips of {st['root']} "
        f"({st['split']}), median of {st['repeats']}",
        "",
        "| reader | clips / s | x full-decode baseline |",
        "|---|---:|---:|",
    ]
    lines += [f"| {r['reader']} | {r['clips_per_s']:.1f} | {r['x_baseline']:.2f} |" for r in data["reads"]]
    lines += [
        "",
        f"### Training loader: T={st['segments']}, {st['size']}x{st['size']} multi-scale crops, "
        f"batch {st['batch_size']}",
        "",
        "| backend | workers | clips / s |",
        "|---|---:|---:|",
    ]
    lines += [f"| {r['backend']} | {r['workers']} | {r['clips_per_s']:.1f} |" for r in data["loader"]]
    return "\n".join(lines) + "\n"
