"""The data-loader benchmark, on an SSv2-format split (by default the demo data).

- Reads alone, the frames a TSN sampler picks per clip: decord sampled reads, PyAV sequential
  reads up to the last sampled frame (the fallback), torchcodec sampled reads (when it can load
  FFmpeg), and the full-decode baseline of many codebases (PyAV decodes every frame, then the
  sampled ones are picked).
- Realistic clips (``--realistic-clips``; textured, encoded as SSv2 and Kinetics are) read by
  each backend on the original files, re-encoded and as JPEG frames: clips/s per core and the
  cores needed to feed a target rate (:func:`bench_forms`).
- The whole training loader (read + multi-scale crop + flip + normalise, batched by a
  ``DataLoader``) with each backend at several worker counts.

Each reader and each loader is a variant of :func:`videoattn.benchmark.timing.interleaved`
(one pass over the clips per round, after one untimed pass that warms the page cache);
clips/s are over the median pass.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .timing import interleaved, log

__all__ = ["bench_data", "bench_loader", "bench_reads", "full_decode", "loader_markdown"]


def backends() -> list[str]:
    """The video backends installed here (torchcodec needs FFmpeg's shared libraries)."""
    from ..data.video import decord, torchcodec_available

    return [*(["decord"] if decord is not None else []), "pyav", *(["torchcodec"] if torchcodec_available() else [])]


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

    readers: dict[str, Callable[[Path, Callable], Any]] = {}
    if "decord" in backends():
        readers["decord, sampled frames"] = lambda p, c: read_clip(p, c, backend="decord", fallback=False)
    readers["PyAV, sequential to the last sampled frame"] = lambda p, c: read_clip(p, c, backend="pyav")
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


# (frames, height, width, fps, codec, encoder options): how the datasets are encoded
KINDS: dict[str, tuple[int, int, int, int, str, dict[str, str]]] = {
    "SSv2-like": (48, 240, 426, 12, "libvpx-vp9", {}),  # 427x240 webm, ~4 s at 12 fps
    "K400-like": (300, 256, 340, 30, "libx264", {"preset": "veryfast", "qp": "23", "g": "250"}),  # x264's GOP
}


def textured_clip(name: str, seed: int, frames: int, height: int, width: int) -> np.ndarray:
    """A demo clip with camera-like detail: a noise field drifting one pixel per frame and
    per-frame sensor noise over the rendered scene (flat colours would decode unrealistically
    fast). ``(T, H, W, 3)`` uint8."""
    from ..data.synthetic import render_clip

    rng = np.random.default_rng(seed)
    base = render_clip(name, rng, num_frames=frames, size=(height, width)).astype(np.int16)
    field = rng.integers(-40, 40, (height, width + frames, 3))
    noise = [rng.integers(-6, 6, (height, width, 3)) for _ in range(frames)]
    return np.clip(np.stack([base[i] + field[:, i : i + width] + noise[i] for i in range(frames)]), 0, 255).astype(
        np.uint8
    )


def realistic_videos(folder: Path, *, clips: int, scale: float = 1.0) -> dict[str, list[Path]]:
    """``clips`` textured videos of each kind in ``folder`` (kept: later runs reuse them);
    ``scale`` shrinks frames and sizes (tests)."""
    from ..data.synthetic import DEMO_CLASSES, write_video

    out: dict[str, list[Path]] = {}
    for kind, (t, h, w, fps, codec, opts) in KINDS.items():
        t, h, w = max(8, int(t * scale)), max(32, int(h * scale) // 2 * 2), max(64, int(w * scale) // 2 * 2)
        paths = []
        for k in range(clips):
            path = folder / f"{kind}_{h}x{w}_{t}_{k}{'.webm' if codec == 'libvpx-vp9' else '.mp4'}"
            if not path.exists():
                frames = textured_clip(DEMO_CLASSES[k % len(DEMO_CLASSES)], k, t, h, w)
                write_video(path, frames, codec=codec, fps=fps, options=opts)
            paths.append(path)
        out[kind] = paths
    return out


def bench_forms(
    videos: dict[str, list[Path]], *, segments: int, repeats: int, short_side: int = 256, target: float = 400.0
) -> dict[str, Any]:
    """Clips/s per core (one process, one thread) of every installed backend on the original
    files, on them re-encoded (H.264, ``short_side``, GOP 16) and as JPEG frames (quality 90),
    with the cores needed to feed ``target`` clips/s."""
    from ..data.prepare import extract_frames, prepared, reencode
    from ..data.sampling import segment_sample
    from ..data.video import read_clip

    rows = []
    for kind, paths in videos.items():
        forms = {"original": paths, "re-encoded": [], "JPEG frames": []}
        for p in paths:
            r, f = p.with_name(f"{p.stem}.{short_side}.mp4"), p.with_name(f"{p.stem}.{short_side}.frames")
            if not prepared(r):
                reencode(p, r, short_side=short_side, gop=16)
            if not prepared(f):
                extract_frames(p, f, short_side=short_side, quality=90)
            forms["re-encoded"].append(r)
            forms["JPEG frames"].append(f)
        variants = [(form, b) for form in ("original", "re-encoded") for b in backends()] + [("JPEG frames", "frames")]

        def one_pass(form: str, backend: str, forms: dict[str, list[Path]] = forms) -> Callable[[], None]:
            def run() -> None:
                rng = np.random.default_rng(0)
                for p in forms[form]:
                    read_clip(p, lambda n: segment_sample(n, segments, rng=rng), backend=backend, fallback=False)

            return run

        with _threads(1):
            timed = interleaved([one_pass(*v) for v in variants], label=kind, repeats=repeats)
        base = None
        for (form, backend), t in zip(variants, timed.medians(), strict=True):
            per_core = len(paths) / t
            base = base or per_core  # the first backend (decord where installed) on the originals
            size = sum(_bytes(q) for q in forms[form])
            rows.append({
                "kind": kind, "form": form, "backend": backend, "clips_per_s_per_core": per_core,
                "x_decord_original": per_core / base, "cores_for_target": target / per_core,
                "kib_per_clip": size / len(paths) / 1024,
            })  # fmt: skip
    return {"target_clips_per_s": target, "reference": backends()[0], "rows": rows}


def _bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(x.stat().st_size for x in path.iterdir())


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def forms_markdown(data: dict[str, Any]) -> str:
    target = data["target_clips_per_s"]
    lines = [
        "### Reads per core: each backend on the original files and each prepared form",
        "",
        f"| clip | form | backend | clips / s per core | x {data['reference']} on the original "
        f"| cores to feed {target:.0f} clips/s "
        "| KiB / clip |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['kind']} | {r['form']} | {r['backend']} | {r['clips_per_s_per_core']:.1f} | "
            f"{r['x_decord_original']:.2f} | {r['cores_for_target']:.0f} | {r['kib_per_clip']:.0f} |"
        )
    return "\n".join(lines) + "\n"


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
    forms = None
    if args.realistic_clips > 0:
        folder = Path(args.realistic_dir)
        folder.mkdir(parents=True, exist_ok=True)
        log(f"realistic clips: {args.realistic_clips} of each kind in {folder} (written once)")
        videos = realistic_videos(folder, clips=args.realistic_clips, scale=args.realistic_scale)
        forms = bench_forms(videos, segments=args.segments, repeats=args.loader_repeats, target=args.target_clips_per_s)
    return {
        "forms": forms,
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
    lines = [forms_markdown(data["forms"]), ""] if data.get("forms") else []
    lines += [
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
