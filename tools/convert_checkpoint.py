"""Convert an official TSM / TAM / ACTION-Net checkpoint into a videoattn checkpoint.

    uv run python tools/convert_checkpoint.py \\
        --src TSM_somethingv2_RGB_resnet50_shift8_blockres_avg_segment8_e45/ckpt.best.pth.tar \\
        --dst tsm_ssv2.pth --classes /data/ssv2/labels.json

The source (tsm / tam / action) is read from the weights (--source to insist), T from the file
name or its folder ("segment8", ACTION-Net's "clip_len_8") or TAM's weights (--num-segments
otherwise; a value that contradicts them is refused). --classes takes the dataset's label file
(SSv2 labels.json, SSv1 / Jester labels.csv, a Kinetics CSV, a class-per-line text file): the
names are stored in the project's order (sorted, as the official lists) after checking their
number against the classifier. Given a videoattn checkpoint as --src, it stores --classes in it.
The result works in tools/test.py, tools/infer.py, tools/benchmark.py and as model.pretrained
of tools/train.py (fine-tuning).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videoattn.cli import ArgumentParser, user_errors  # noqa: E402
from videoattn.data.annotations import read_class_names  # noqa: E402
from videoattn.models.convert import SOURCES, convert_checkpoint  # noqa: E402


def main() -> int:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument(
        "--src", required=True, help="official checkpoint (.pth / .pth.tar), or a videoattn one to name its classes"
    )
    ap.add_argument("--dst", required=True, help="where to write the videoattn checkpoint")
    ap.add_argument("--source", choices=SOURCES, help="which official code wrote it (default: read from the weights)")
    ap.add_argument("--classes", metavar="LABEL_FILE", help="the dataset's label file, for the class names")
    ap.add_argument(
        "--num-segments", type=int, help="T the model was trained with (default: from the name, or TAM's weights)"
    )
    ap.add_argument("--shift-div", type=int, default=8, help="TSM / ACTION: 1/shift_div of the channels shift each way")
    ap.add_argument(
        "--sampling",
        choices=("segment", "dense"),
        help="how infer.py samples frames for it (default: dense if the name says 'dense', else segment)",
    )
    args = ap.parse_args()
    with user_errors():
        classes = read_class_names(args.classes) if args.classes else None
        ckpt = convert_checkpoint(
            args.src,
            args.dst,
            source=args.source,
            num_segments=args.num_segments,
            classes=classes,
            shift_div=args.shift_div,
            sampling=args.sampling,
        )
    cfg = ckpt["model_config"]
    names = (
        f"{len(ckpt['classes'])} class names"
        if ckpt["classes"]
        else "no class names (add them with --classes LABEL_FILE)"
    )
    print(
        f"wrote {args.dst}: {ckpt['origin'].get('source', cfg['name'])} {cfg['arch']}, {cfg['num_classes']} classes, "
        f"T={cfg['num_segments']}, {names}; sampling {ckpt['data']['sampling']['mode']}, "
        f"inserts {cfg['inserts']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
