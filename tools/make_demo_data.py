"""Write the built-in demo dataset: small real videos in the SSv2 and Kinetics-400 formats.

    uv run python tools/make_demo_data.py                     # -> data/demo (888 clips, about 6 MB)
    uv run python tools/make_demo_data.py --root /tmp/demo --train-per-class 8 --overwrite

Twelve classes: four time-reversed pairs (a frame-averaging TSN model cannot tell the two
classes of a pair apart, a temporal model can) and four appearance classes (recognisable from
one frame). See ``videoattn/data/synthetic.py``. The same seed always gives the same dataset.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402, F401  (before decord, which videoattn.data imports: see write_video)

from videoattn.cli import ArgumentParser, fail  # noqa: E402
from videoattn.data.synthetic import (  # noqa: E402
    APPEARANCE_CLASSES,
    DEFAULT_FPS,
    DEFAULT_NUM_FRAMES,
    DEFAULT_SIZE,
    FORMATS,
    REVERSED_PAIRS,
    read_manifest,
    write_demo_dataset,
)


def _size_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20


def main(argv: list[str] | None = None) -> None:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument(
        "--root",
        type=Path,
        default=None,
        help="output folder (default data/demo in the working directory, or $VIDEOATTN_DEMO_ROOT)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-per-class", type=int, default=48, help="SSv2-format train clips per class")
    ap.add_argument("--val-per-class", type=int, default=12, help="SSv2-format validation clips per class")
    ap.add_argument("--test-clips", type=int, default=24, help="SSv2-format unlabelled test clips")
    ap.add_argument("--kinetics-train-per-class", type=int, default=8)
    ap.add_argument("--kinetics-val-per-class", type=int, default=4)
    ap.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=DEFAULT_SIZE,
        metavar=("H", "W"),
        help="frame size, even numbers (default %(default)s)",
    )
    ap.add_argument(
        "--frames",
        type=int,
        nargs=2,
        default=DEFAULT_NUM_FRAMES,
        metavar=("MIN", "MAX"),
        help="frames per clip, drawn per clip in [MIN, MAX] (default %(default)s)",
    )
    ap.add_argument("--fps", type=int, default=DEFAULT_FPS)
    ap.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    ap.add_argument("--workers", type=int, default=None, help="processes (default min(2, cpu count))")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing demo dataset at --root")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    try:
        root = write_demo_dataset(
            args.root,
            seed=args.seed,
            train_per_class=args.train_per_class,
            val_per_class=args.val_per_class,
            test_clips=args.test_clips,
            kinetics_train_per_class=args.kinetics_train_per_class,
            kinetics_val_per_class=args.kinetics_val_per_class,
            size=tuple(args.size),
            num_frames=tuple(args.frames),
            fps=args.fps,
            formats=args.formats,
            workers=args.workers,
            overwrite=args.overwrite,
        )
    except FileExistsError as e:
        fail(str(e).replace("pass overwrite=True", "pass --overwrite"))
    except ValueError as e:
        fail(str(e))
    seconds = time.perf_counter() - t0

    manifest = read_manifest(root) or {}
    print(f"wrote the demo dataset to {root}")
    for fmt, counts in manifest.get("counts", {}).items():
        splits = ", ".join(f"{split} {n}" for split, n in counts.items())
        print(f"  {fmt:9s} {splits}")
    print(
        f"  {manifest.get('total_clips', 0)} clips, {manifest.get('total_frames', 0)} frames, "
        f"{len(manifest.get('classes', []))} classes, {_size_mb(root):.1f} MiB, {seconds:.1f} s"
    )
    print("  time-reversed pairs: " + "; ".join(f"{a} / {b}" for a, b in REVERSED_PAIRS))
    print("  appearance classes: " + "; ".join(APPEARANCE_CLASSES))


if __name__ == "__main__":
    main()
