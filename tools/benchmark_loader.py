"""Data-loader throughput on an SSv2-format split (default: the demo dataset).

    uv run python tools/benchmark_loader.py                       # T=8, 224 crops, 0/1/2 workers
    uv run python tools/benchmark_loader.py --root data/ssv2 --clips 512 --workers 0 4 8

Two tables: the reads alone (the frames a TSN sampler picks, per clip) for decord sampled
reads, PyAV sequential reads (our fallback) and the usual full-decode PyAV baseline (decode
every frame, then pick); and the full training loader (read + multi-scale crop + flip +
normalise, batched by a DataLoader) for decord and PyAV at several worker counts.
Medians of --repeats passes; ratios are what compare across machines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch

from videoattn.data.annotations import load_ssv2
from videoattn.data.dataset import VideoDataset
from videoattn.data.sampling import Sampling, segment_sample
from videoattn.data.transforms import TrainTransform
from videoattn.data.video import read_clip


def full_decode(path: Path, choose) -> np.ndarray:
    """The baseline of many codebases: decode every frame with PyAV, then pick."""
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])  # (F, H, W, 3)
    return frames[choose(len(frames))]


def bench_reads(paths: list[Path], t: int, repeats: int) -> list[dict]:
    readers = {
        "decord, sampled frames": lambda p, c: read_clip(p, c, backend="decord", fallback=False),
        "PyAV, sequential to the last sampled frame": lambda p, c: read_clip(p, c, backend="pyav"),
        "PyAV, full decode (baseline)": full_decode,
    }
    rows = []
    for name, read in readers.items():
        times = []
        for _ in range(repeats):
            rng = np.random.default_rng(0)

            def choose(n: int, rng: np.random.Generator = rng) -> np.ndarray:
                return segment_sample(n, t, rng=rng)

            t0 = time.perf_counter()
            for p in paths:
                read(p, choose)
            times.append(time.perf_counter() - t0)
        rows.append({"reader": name, "clips_per_s": len(paths) / statistics.median(times)})
    base = rows[-1]["clips_per_s"]
    for r in rows:
        r["x_baseline"] = r["clips_per_s"] / base
    return rows


def bench_loader(records, t: int, size: int, batch: int, workers: list[int], repeats: int) -> list[dict]:
    rows = []
    for w in workers:
        for backend in ("decord", "pyav"):
            ds = VideoDataset(records, sampling=Sampling(num_segments=t), transform=TrainTransform(size=size), backend=backend)
            times = []
            for _ in range(repeats):
                loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=w)
                t0 = time.perf_counter()
                n = sum(len(b[1]) for b in loader)
                times.append(time.perf_counter() - t0)
            rows.append({"backend": backend, "workers": w, "clips_per_s": n / statistics.median(times)})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=None, help="SSv2-format folder (default: the demo dataset)")
    p.add_argument("--split", default="train")
    p.add_argument("--clips", type=int, default=96)
    p.add_argument("--segments", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.root is None:
        from videoattn.data.synthetic import ensure_demo_dataset

        args.root = ensure_demo_dataset() / "ssv2"
    records = load_ssv2(args.root, args.split).records[: args.clips]
    print(f"{len(records)} clips of {args.root} ({args.split}), T={args.segments}", file=sys.stderr)
    reads = bench_reads([r.path for r in records], args.segments, args.repeats)
    loads = bench_loader(records, args.segments, args.size, args.batch_size, args.workers, args.repeats)
    print(f"### Reads (T={args.segments} sampled frames per clip)\n\n| reader | clips/s | x full-decode baseline |\n|---|---:|---:|")
    for r in reads:
        print(f"| {r['reader']} | {r['clips_per_s']:.1f} | {r['x_baseline']:.2f} |")
    print(f"\n### Training loader (T={args.segments}, {args.size}x{args.size} multi-scale crops, batch {args.batch_size})\n")
    print("| backend | workers | clips/s |\n|---|---:|---:|")
    for r in loads:
        print(f"| {r['backend']} | {r['workers']} | {r['clips_per_s']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"reads": reads, "loader": loads, "args": {k: str(v) for k, v in vars(args).items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
