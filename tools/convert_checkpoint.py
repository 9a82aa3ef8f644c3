"""Convert an official TSM / TAM / ACTION-Net / TDN / TAda2D checkpoint into a videoattn checkpoint.

    uv run python tools/convert_checkpoint.py \\
        --src TSM_somethingv2_RGB_resnet50_shift8_blockres_avg_segment8_e45/ckpt.best.pth.tar \\
        --dst tsm_ssv2.pth --classes /data/ssv2/labels.json

The source (tsm / tam / action / tdn / tada2d) is read from the weights (--source to insist), T
from the file name or its folder ("segment8", ACTION-Net's "clip_len_8"), TAM's weights or
TAda2D's stored cfg (--num-segments otherwise, e.g. for TDN's best.pth.tar; a value that
contradicts them is refused). TDN's FBResNet conv biases are folded into the BNs they feed;
TAda2D's .pyth (model_state) has its 5-D kernels squeezed. The converted checkpoint records the
official test views (TDN: 1 view of 5-frame snippets; TAda2D: 2 x 3 or 10 x 3 crops of 256 with
its mean / std), which test.py uses. --classes takes the dataset's label file
(SSv2 labels.json, SSv1 / Jester labels.csv, a Kinetics CSV, a class-per-line text file): the
names are stored in the project's order (sorted, as the official lists) after checking their
number against the classifier. Given a videoattn checkpoint as --src, it writes a copy with
--classes to --dst (never --src itself), or in the other --format.

--format safetensors writes the pickle-free form to share: a model folder --dst holding
model.safetensors (the weights) and config.json (model config, class names, clip settings,
origin, training history), which no reader can run code from:

    uv run python tools/convert_checkpoint.py --src runs/demo/tsm/best.pth --dst tsm_demo --format safetensors

The result works in tools/test.py, tools/infer.py, tools/export.py, tools/stream.py,
tools/benchmark.py and as model.pretrained of tools/train.py (fine-tuning). A --src that
pickles objects beyond tensors and the allowlist is refused unless --trust-checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videoattn.checkpoint import trust_checkpoints  # noqa: E402
from videoattn.cli import ArgumentParser, add_trust_argument, user_errors  # noqa: E402
from videoattn.data.annotations import read_class_names  # noqa: E402
from videoattn.models.convert import FORMATS, SOURCES, convert_checkpoint  # noqa: E402


def main() -> int:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument(
        "--src", required=True, help="official checkpoint (.pth / .pth.tar), or a videoattn one to name its classes"
    )
    ap.add_argument("--dst", required=True, help="where to write the videoattn checkpoint (a new path, not --src)")
    ap.add_argument(
        "--format",
        choices=FORMATS,
        default="pth",
        help="pth: a torch.save file; safetensors: a model folder --dst (model.safetensors + config.json), "
        "pickle-free, to share (default: pth)",
    )
    add_trust_argument(ap, what="--src")
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
    with user_errors(), trust_checkpoints(args.trust_checkpoint):
        classes = read_class_names(args.classes) if args.classes else None
        ckpt = convert_checkpoint(
            args.src,
            args.dst,
            source=args.source,
            num_segments=args.num_segments,
            classes=classes,
            shift_div=args.shift_div,
            sampling=args.sampling,
            format=args.format,
        )
    cfg = ckpt["model_config"]
    names = (
        f"{len(ckpt['classes'])} class names"
        if ckpt["classes"]
        else "no class names (add them with --classes LABEL_FILE)"
    )
    what = f"{args.dst} (model folder: model.safetensors + config.json)" if args.format == "safetensors" else args.dst
    print(
        f"wrote {what}: {ckpt['origin'].get('source', cfg['name'])} {cfg['arch']}, {cfg['num_classes']} classes, "
        f"T={cfg['num_segments']}, {names}; sampling {ckpt['data']['sampling']['mode']}, "
        f"inserts {cfg['inserts']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
