"""Write the built-in demo dataset: small real videos in the SSv2 and Kinetics-400 formats.

    uv run python tools/make_demo_data.py                     # -> data/demo (888 clips, about 6 MB; once)
    uv run python tools/make_demo_data.py --root /tmp/demo --train-per-class 8 --overwrite

Twelve classes: four time-reversed pairs (a frame-averaging TSN model cannot tell the two
classes of a pair apart, a temporal model can) and four appearance classes (recognisable from
one frame). See ``videoattn/data/synthetic.py``. The same seed always gives the same dataset.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402, F401  (before decord, which videoattn.data imports: see write_video)

from videoattn.cli import ArgumentParser, fail  # noqa: E402
from videoattn.data.synthetic import (  # noqa: E402
    APPEARANCE_CLASSES,
    REVERSED_PAIRS,
    DemoParams,
    default_demo_root,
    holds_demo_dataset,
    read_manifest,
    write_demo_dataset,
)


def _size_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20


def parser() -> ArgumentParser:
    """The options: ``--root``, ``--workers``, ``--overwrite`` and one per field of DemoParams."""
    ap = ArgumentParser(description=__doc__)
    ap.add_argument(
        "--root", type=Path, default=None,
        help="output folder (default data/demo in the working directory, or $VIDEOATTN_DEMO_ROOT)",
    )  # fmt: skip
    for f in dataclasses.fields(DemoParams):
        flag, meta = "--" + f.name.replace("_", "-"), f.metadata
        if "choices" in meta:
            ap.add_argument(flag, nargs="+", choices=meta["choices"], default=list(f.default), help=meta["help"])
        elif "metavar" in meta:
            ap.add_argument(flag, type=int, nargs=len(meta["metavar"]), metavar=meta["metavar"], default=f.default,
                            help=f"{meta['help']} (default %(default)s)")  # fmt: skip
        else:
            ap.add_argument(flag, type=type(f.default), default=f.default, help=f"{meta['help']} (default %(default)s)")
    ap.add_argument("--workers", type=int, default=None, help="processes (default min(2, cpu count))")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing demo dataset at --root")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    params = {f.name: getattr(args, f.name) for f in dataclasses.fields(DemoParams)}
    t0 = time.perf_counter()
    if not args.overwrite and holds_demo_dataset(args.root, **params):  # e.g. written by train.py's first run
        print(f"{args.root or default_demo_root()} already holds the demo dataset with these settings: nothing written")
        return
    try:
        root = write_demo_dataset(args.root, workers=args.workers, overwrite=args.overwrite, **params)
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
