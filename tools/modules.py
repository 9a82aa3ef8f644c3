"""Print the excitation-module table from the registry.

    uv run python tools/modules.py [--channels 256] [--size 56] [--num-segments 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videoattn.summary import attention_table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--size", type=int, default=56, help="feature-map side for the FLOP count")
    ap.add_argument("--num-segments", type=int, default=8)
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args()

    rows = attention_table(channels=args.channels, size=args.size, num_segments=args.num_segments)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return
    c, s = args.channels, args.size
    print(f"| name | kind | default slot | paper | params @ C={c} | extra MMACs / frame @ {c}x{s}x{s} |")
    print("|---|---|---|---|---:|---:|")
    for r in rows:
        ref = f"arXiv {r.arxiv}" if r.arxiv else "no arXiv"
        paper = f"{r.paper} ({r.venue}, {ref})"
        print(f"| `{r.name}` | {r.kind} | `{r.slot}` | {paper} | {r.params:,} | {r.macs_per_frame / 1e6:.2f} |")


if __name__ == "__main__":
    main()
