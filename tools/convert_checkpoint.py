"""Convert an official TSM / TAM / ACTION-Net checkpoint into a videoattn checkpoint.

    uv run python tools/convert_checkpoint.py --source tsm --src TSM_..._segment8_e45.pth --dst tsm.pth
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videoattn.models.convert import SOURCES, convert_checkpoint  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, choices=SOURCES, help="which official code wrote the checkpoint")
    ap.add_argument("--src", required=True, help="official checkpoint (.pth / .pth.tar)")
    ap.add_argument("--dst", required=True, help="where to write the videoattn checkpoint")
    ap.add_argument("--num-segments", type=int, help="T the model was trained with (default: from the file name)")
    ap.add_argument("--shift-div", type=int, default=8)
    args = ap.parse_args()
    try:
        ckpt = convert_checkpoint(args.src, args.dst, source=args.source, num_segments=args.num_segments, shift_div=args.shift_div)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")
    cfg = ckpt["model_config"]
    print(f"wrote {args.dst}: {cfg['arch']}, {cfg['num_classes']} classes, T={cfg['num_segments']}, inserts={cfg['inserts']}")


if __name__ == "__main__":
    main()
