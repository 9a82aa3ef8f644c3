"""The annotation index at real dataset size: load time, size, and DataLoader workers' memory.

- Load: an SSv2-format ``train.json`` of ``index_size`` entries (169k: SSv2's train split) with
  one empty ``.webm`` per entry, so that the existence checks list a real folder, loaded with
  :func:`videoattn.data.annotations.load_ssv2`; the same for a Kinetics-format CSV (240k rows in
  ``<label>/<clip>.mp4`` class folders). Seconds, the index's bytes, and the peak-RSS growth of
  the process during the load (the parsed JSON / CSV, freed afterwards).
- Workers: a :class:`~videoattn.data.dataset.VideoDataset` over an index of ``index_size``
  records that point at a few tiny real videos, read by a ``DataLoader`` with persistent
  workers for one epoch; each worker's PSS (``/proc/<pid>/smaps_rollup``: its share of the
  pages it uses) after the first batches and at the end. An index of Python objects grows a
  forked worker by copy-on-read as the epoch touches every record; a :class:`RecordTable` does
  not.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .timing import log

__all__ = ["bench_index", "index_markdown", "worker_pss"]


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _timed_load(load) -> dict[str, Any]:
    rss0 = _peak_rss_mib()
    t0 = time.perf_counter()
    ann = load()
    seconds = time.perf_counter() - t0
    return {
        "records": len(ann),
        "seconds": seconds,
        "index_mib": ann.records.nbytes / 2**20,
        "peak_rss_growth_mib": _peak_rss_mib() - rss0,
    }


def _ssv2_split(root: Path, n: int) -> None:
    templates = [f"Doing thing {i} with [something]" for i in range(174)]
    labels = {t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(templates)}
    (root / "labels.json").write_text(json.dumps(labels))
    entries = [
        {"id": str(i + 1), "label": "", "template": templates[i % 174], "placeholders": ["a cup"]} for i in range(n)
    ]
    (root / "train.json").write_text(json.dumps(entries))
    videos = root / "20bn-something-something-v2"
    videos.mkdir()
    for i in range(n):
        (videos / f"{i + 1}.webm").touch()


def _kinetics_split(root: Path, n: int) -> None:
    classes = [f"class number {i}" for i in range(400)]
    for c in classes:
        (root / "train" / c).mkdir(parents=True)
    with open(root / "train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        for i in range(n):
            writer.writerow([classes[i % 400], f"{i:011d}", 10, 20, "train"])
            (root / "train" / classes[i % 400] / f"{i:011d}_000010_000020.mp4").touch()


def worker_pss(pid: int) -> float | None:
    """A process's proportional set size in MiB (Linux), else None."""
    return _smaps(pid).get("Pss")


def worker_uss(pid: int) -> float | None:
    """A process's unique set size in MiB (its private pages: what its exit would free)."""
    fields = _smaps(pid)
    return fields["Private_Clean"] + fields["Private_Dirty"] if "Private_Dirty" in fields else None


def _smaps(pid: int) -> dict[str, float]:
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    except OSError:
        return {}
    return {k: int(v.split()[0]) / 1024 for k, v in (line.split(":", 1) for line in lines)}


class _WithPid(torch.utils.data.Dataset):
    """The dataset's items, each with the pid of the worker that read it."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[i][1], os.getpid()


def bench_workers(
    size: int,
    *,
    workers: int,
    batch_size: int,
    folder: Path,
    layout: str = "table",
    backend: str = "pyav",
    context: str | None = None,
) -> dict[str, Any]:
    """PSS of each DataLoader worker over an epoch of an index of ``size`` records read with
    ``backend``, held as a :class:`RecordTable` (``layout="table"``, what the datasets use) or,
    for comparison, as a list of :class:`VideoRecord` objects (``"objects"``, what they used
    before)."""
    from ..data.dataset import VideoDataset
    from ..data.records import RecordTable
    from ..data.sampling import Sampling
    from ..data.synthetic import render_clip, write_video
    from ..data.transforms import TrainTransform

    videos = []
    for k, name in enumerate(
        ("Moving something up", "Something blinking", "Showing something on a striped background")
    ):
        path = folder / f"tiny{k}.webm"
        write_video(path, render_clip(name, np.random.default_rng(k), num_frames=8, size=(32, 64)), codec="libvpx-vp9")
        videos.append(path)
    builder = RecordTable.Builder()
    for i in range(size):
        builder.add(folder, videos[i % len(videos)].name, i % 174, str(i))
    records = builder.build()
    dataset = VideoDataset(
        records, sampling=Sampling(num_segments=1), transform=TrainTransform(size=32), backend=backend, fallback=False
    )
    if layout == "objects":
        dataset.records = list(records)  # one Python object (record, Path, strings) per video
    loader = torch.utils.data.DataLoader(
        _WithPid(dataset),
        batch_size=batch_size,
        num_workers=workers,
        persistent_workers=True,
        shuffle=True,
        multiprocessing_context=context,
    )
    start: dict[int, float] = {}
    start_uss: dict[int, float] = {}
    marks = {int(len(loader) * f) for f in (0.25, 0.5, 0.75)}
    trace: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for step, (_, pids) in enumerate(loader):
        for pid in set(pids.tolist()):
            if pid not in start and step >= 2 * workers:  # after the first batches: imports and buffers settled
                start[pid] = worker_pss(pid) or 0.0
                start_uss[pid] = worker_uss(pid) or 0.0
        if step in marks:
            trace.append({p: worker_pss(p) or 0.0 for p in start})
    seconds = time.perf_counter() - t0
    end = {p: worker_pss(p) or 0.0 for p in start}
    end_uss = {p: worker_uss(p) or 0.0 for p in start}
    rows = [
        {
            "pid": p,
            "pss_start_mib": start[p],
            "pss_end_mib": end[p],
            "growth": end[p] / start[p] - 1 if start[p] else None,
            "uss_start_mib": start_uss[p],
            "uss_end_mib": end_uss[p],
        }
        for p in sorted(start)
    ]
    return {
        "layout": layout,
        "backend": backend,
        "context": context or "fork",
        "records": size,
        "index_mib": records.nbytes / 2**20,
        "workers": rows,
        "trace_mib": [[t[p] for p in sorted(start)] for t in trace],
        "epoch_s": seconds,
    }


def bench_index(args: argparse.Namespace) -> dict[str, Any]:
    """The index section for parsed ``args``; returns the JSON-ready results."""
    from ..data.annotations import load_kinetics, load_ssv2

    n = args.index_size
    with tempfile.TemporaryDirectory(prefix="videoattn-index-") as tmp:
        tmp = Path(tmp)
        (tmp / "ssv2").mkdir()
        (tmp / "kinetics").mkdir()
        log(f"index: writing an SSv2-format split of {n} entries and a Kinetics-format one of {args.index_kinetics}")
        _ssv2_split(tmp / "ssv2", n)
        _kinetics_split(tmp / "kinetics", args.index_kinetics)
        loads = {
            "ssv2": _timed_load(lambda: load_ssv2(tmp / "ssv2", "train")),
            "kinetics": _timed_load(lambda: load_kinetics(tmp / "kinetics", "train")),
        }
        from .loader import backends

        runs = [("objects", "pyav")] + [("table", b) for b in args.index_backends or backends()]
        workers = []
        for layout, backend in runs:
            log(f"index: one epoch over {n} records held as {layout}, {backend}, {args.index_workers} workers")
            workers.append(
                bench_workers(
                    n,
                    workers=args.index_workers,
                    batch_size=args.index_batch_size,
                    folder=tmp,
                    layout=layout,
                    backend=backend,
                )
            )
    return {"settings": {"index_size": n, "kinetics_rows": args.index_kinetics}, "loads": loads, "workers": workers}


def index_markdown(data: dict[str, Any]) -> str:
    lines = [
        "### Annotation index",
        "",
        "| split | records | load s | index MiB | peak RSS growth while loading, MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in data["loads"].items():
        lines.append(
            f"| {name} | {r['records']} | {r['seconds']:.2f} | {r['index_mib']:.1f} | {r['peak_rss_growth_mib']:.0f} |"
        )
    for w in data["workers"]:
        held = "a RecordTable" if w["layout"] == "table" else "a list of VideoRecord objects (before)"
        lines += [
            "",
            f"DataLoader workers ({w.get('backend', 'pyav')}) over one epoch of {w['records']} records held as {held} "
            f"({w['index_mib']:.1f} MiB as a table, epoch {w['epoch_s']:.0f} s):",
            "",
            "| worker | PSS after the first batches, MiB | PSS at the end, MiB | growth |",
            "|---|---:|---:|---:|",
        ]
        for k, r in enumerate(w["workers"]):
            growth = "" if r["growth"] is None else f"{100 * r['growth']:+.1f}%"
            lines.append(f"| {k} | {r['pss_start_mib']:.0f} | {r['pss_end_mib']:.0f} | {growth} |")
    return "\n".join(lines) + "\n"
