"""Check a dataset root and write its list files.

For every split: parse the official annotations (malformed lines and missing videos are
counted, not fatal), open every video and decode its first and last frame (the frame count is
what actually decodes), check that every class has videos, and write

    <out>/<split>.txt        path num_frames label   (TSM list format, paths relative to <out>)
    <out>/classes.txt        one class name per line, index = line number
    <out>/bad_files.txt      path <tab> reason, for the files that did not open or decode
    <out>/summary.json       counts per split and class, frame-count statistics

    uv run python tools/prepare_data.py --source ssv2 --root data/ssv2
    uv run python tools/prepare_data.py --source kinetics --root data/k400 --splits train val --workers 8

``--prepare reencode`` first re-encodes every video to ``<out>/videos/`` (H.264, short side
``--short-side`` 256, a keyframe every ``--gop`` 16 frames: sparse segment reads seek instead of
decoding the whole file); ``--prepare frames`` extracts ``<out>/frames/<video>/00001.jpg, ...``
(``--jpeg-quality`` 90). Both run in ``--workers`` processes with a progress bar, write each
video atomically, skip the videos a previous (interrupted) run finished, and list the videos
that failed in ``bad_files.txt``; the lists then point at the prepared files.

Train and test on the lists (only the videos that decode, with their frame counts) with
``data.source=list data.root=<out>``, whichever form they point at; the class names come from
``classes.txt``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from videoattn.cli import ArgumentParser, user_errors
from videoattn.data.annotations import load_annotations
from videoattn.data.prepare import extract_frames, prepared, reencode
from videoattn.data.video import DecodeError, read_clip
from videoattn.errors import ConfigError, DataError, MissingFileError
from videoattn.files import remove_temp_files, write_atomic


def probe(args: tuple[str, str]) -> tuple[int, str]:
    """``(decodable frames, "")`` or ``(0, reason)`` for one video file or frame folder, read
    as training reads it (:func:`~videoattn.data.video.read_clip`: decord, then PyAV for what
    decord rejects): its first and last frame, the count shrinking to what decodes."""
    path, backend = args
    try:
        _, indices = read_clip(path, lambda n: np.array([0, max(n - 1, 0)]), backend=backend, fallback=True)
        return int(indices.max()) + 1, ""
    except (DecodeError, OSError) as e:
        return 0, str(e)


def prepare_one(job: tuple[str, str, str, str, dict]) -> tuple[str, int, str]:
    """Prepare one video (``mode`` reencode / frames; skipped when done before), then probe the
    result: ``(path to list, decodable frames, "")`` or ``(path, 0, reason)``."""
    src, dst, mode, backend, opts = job
    if mode == "none" or Path(src).is_dir():
        return (src, *probe((src, backend)))
    try:
        if not prepared(dst):
            (reencode if mode == "reencode" else extract_frames)(src, dst, **opts)
    except (DecodeError, OSError, ValueError) as e:
        return src, 0, f"--prepare {mode}: {e}"
    except Exception as e:  # PyAV's FFmpeg errors (av.error.*) name the file and the cause
        return src, 0, f"--prepare {mode}: {type(e).__name__}: {e}"
    return (dst, *probe((dst, "frames" if mode == "frames" else backend)))


def _destination(path: Path, root: Path, out: Path, mode: str) -> str:
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:  # a list whose paths lie outside --root
        rel = Path(*path.resolve().parts[1:])
    if mode == "reencode":
        return str(out / "videos" / rel.with_suffix(".mp4"))
    return str(out / "frames" / rel.with_suffix(""))


def _remove_stale(destinations: list[str]) -> int:
    """Temporaries that killed runs left beside the prepared videos (one listing per folder of
    destinations: the results are written beside them, never inside another); returns how many."""
    return sum(len(remove_temp_files(folder)) for folder in {os.path.dirname(d) for d in destinations})


def main() -> int:
    p = ArgumentParser(description=__doc__)
    p.add_argument("--source", required=True, help="ssv2 | ssv1 | jester | kinetics | list")
    p.add_argument("--root", required=True, type=Path, help="dataset root (annotation files + videos)")
    p.add_argument("--splits", nargs="+", default=["train", "val"])
    p.add_argument("--out", type=Path, default=None, help="where to write the lists (default: ROOT/lists)")
    p.add_argument("--backend", default="auto", help="auto | decord | pyav | torchcodec | frames")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--no-decode", action="store_true", help="only parse and check that files exist")
    p.add_argument("--prepare", choices=("none", "reencode", "frames"), default="none",
                   help="re-encode the videos (H.264, short side, short GOP) or extract JPEG frames first")  # fmt: skip
    p.add_argument("--short-side", type=int, default=256, help="pixels of the prepared videos' shorter side")
    p.add_argument("--gop", type=int, default=16, help="--prepare reencode: frames between keyframes")
    p.add_argument("--jpeg-quality", type=int, default=90, help="--prepare frames: JPEG quality, 1-100")
    args = p.parse_args()
    with user_errors():
        return prepare(args)


def prepare(args) -> int:
    if not args.root.is_dir():
        raise MissingFileError(f"--root {args.root}: no such folder (the dataset root: annotation files and videos)")
    out = args.out or args.root / "lists"
    out.mkdir(parents=True, exist_ok=True)
    remove_temp_files(out)  # of a run killed while writing its lists
    if args.prepare != "none":
        if args.no_decode:
            raise ConfigError("--prepare decodes every video; leave out --no-decode")
        for flag, value, low, high in (("--short-side", args.short_side, 16, 4096), ("--gop", args.gop, 1, 1000),
                                       ("--jpeg-quality", args.jpeg_quality, 1, 100)):  # fmt: skip
            if not low <= value <= high:
                raise ConfigError(f"{flag} {value}: expected an integer from {low} to {high}")
    opts = (
        {"short_side": args.short_side, "gop": args.gop}
        if args.prepare == "reencode"
        else {"short_side": args.short_side, "quality": args.jpeg_quality}
    )
    summary: dict = {"source": args.source, "root": str(args.root.resolve()), "splits": {}}
    bad_lines: list[str] = []
    classes: list[str] | None = None
    lists: dict[Path, str] = {}
    for split in args.splits:
        t0 = time.perf_counter()
        ann = load_annotations(args.source, args.root, split, on_error="skip")
        if classes is None:
            classes = ann.classes
        elif ann.classes != classes:
            raise DataError(f"the class list of split {split!r} differs from that of split {args.splits[0]!r}")
        for s in ann.skipped:
            bad_lines.append(f"{s.file}:{s.line}\t{s.reason}")
        print(f"{split}: {ann.summary()}", file=sys.stderr)
        records = ann.records
        if not records:
            raise DataError(
                f"split {split!r} of {args.root} has no videos ({ann.summary()}); check its annotation "
                "file, or leave the split out with --splits"
            )
        if args.no_decode:
            paths = [str(r.path) for r in records]
            frames = [(r.num_frames or 0, "") for r in records]
        else:
            jobs = [
                (str(r.path), _destination(r.path, args.root, out, args.prepare), args.prepare, args.backend, opts)
                for r in records
            ]
            what = "decoded" if args.prepare == "none" else f"prepared ({args.prepare})"
            stale = _remove_stale([job[1] for job in jobs]) if args.prepare != "none" else 0
            if stale:
                print(f"  removed {stale} partial file(s) of an interrupted --prepare run", file=sys.stderr)
            with ProcessPoolExecutor(max_workers=args.workers) as pool:
                done = list(tqdm(pool.map(prepare_one, jobs, chunksize=4), total=len(jobs), desc=f"  {split}: {what}",
                                 unit="video", file=sys.stderr, dynamic_ncols=True))  # fmt: skip
            paths = [path for path, _, _ in done]
            frames = [(n, reason) for _, n, reason in done]
        good, counts = [], Counter()
        for r, path, (n, reason) in zip(records, paths, frames, strict=True):
            if reason:
                bad_lines.append(f"{r.path}\t{reason}")
                continue
            good.append(f"{os.path.relpath(path, out)} {n} {r.label}")
            counts[r.label] += 1
        if not good:
            raise DataError(
                f"split {split!r} of {args.root}: none of its {len(records)} videos can be read "
                f"(first: {bad_lines[-1]}); see the reasons with --workers 1"
            )
        list_file = out / f"{split}.txt"
        lists[list_file] = "".join(line + "\n" for line in good)  # written with the rest, once every split is done
        lengths = np.array([n for n, reason in frames if not reason] or [0])
        empty = [classes[k] for k in range(len(classes)) if counts[k] == 0] if split != "test" else []
        summary["splits"][split] = {
            "videos": len(good),
            "skipped_lines": len(ann.skipped),
            "bad_files": sum(1 for _, reason in frames if reason),
            "frames": {"min": int(lengths.min()), "median": float(np.median(lengths)), "max": int(lengths.max())},
            "classes_without_videos": empty,
            "per_class": {classes[k]: counts[k] for k in sorted(counts) if k >= 0},
        }
        s = summary["splits"][split]
        print(
            f"  {s['videos']} usable videos -> {list_file}; {s['skipped_lines']} skipped lines, "
            f"{s['bad_files']} bad files; frames min/median/max {s['frames']['min']}/"
            f"{s['frames']['median']:.0f}/{s['frames']['max']}; {time.perf_counter() - t0:.1f}s",
            file=sys.stderr,
        )
        if empty:
            print(f"  warning: {len(empty)} classes have no videos in {split}: {empty[:5]}...", file=sys.stderr)
    for list_file, text in lists.items():
        write_atomic(list_file, text)
    write_atomic(out / "classes.txt", "".join(name + "\n" for name in classes or []))
    write_atomic(out / "bad_files.txt", "".join(line + "\n" for line in bad_lines))
    write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(
        f"wrote {out}/{{{','.join(args.splits)}}}.txt, classes.txt, summary.json; "
        f"{len(bad_lines)} problems in {out / 'bad_files.txt'}"
    )
    print(f"train / test on these lists with: data.source=list data.root={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
