"""Print the excitation-module table from the registry and the model summary table.

    uv run python tools/modules.py [--channels 256] [--size 56] [--num-segments 8] [--json]
                                   [--models tsn tsm tam action se tsm_se] [--no-models]

The model table builds each ``configs/model/<name>.yaml`` as ResNet-50, T=8, 174 classes
(Something-Something) and counts parameters and multiply-adds per 224x224 clip.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from videoattn.cli import ArgumentParser, user_errors  # noqa: E402
from videoattn.config import model_configs
from videoattn.errors import ConfigError  # noqa: E402
from videoattn.models import build_model  # noqa: E402
from videoattn.summary import attention_table, model_summary  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"
PAPER = {"tsm": "24.3M / 33G", "tam": "25.6M / 33G", "action": "28.1M / 34.7G"}  # 400 classes in TSM/TAM


def main() -> None:
    ap = ArgumentParser(description=__doc__)
    ap.add_argument("--channels", type=int, default=256)
    ap.add_argument("--size", type=int, default=56, help="feature-map side for the FLOP count")
    ap.add_argument("--num-segments", type=int, default=8)
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument(
        "--models",
        nargs="+",
        default=["tsn", "tsm", "tam", "action", "se", "tsm_se"],
        help="model configs (configs/model/<name>.yaml) to summarise",
    )
    ap.add_argument("--no-models", action="store_true", help="only the module table")
    args = ap.parse_args()
    with user_errors():
        tables(args)


def tables(args) -> None:
    rows = attention_table(channels=args.channels, size=args.size, num_segments=args.num_segments)
    models = [] if args.no_models else [summarise(name, args.num_segments) for name in args.models]
    if args.json:
        print(json.dumps({"modules": [asdict(r) for r in rows], "models": [asdict(m) for m in models]}, indent=2))
        return
    c, s = args.channels, args.size
    print(f"| name | kind | default slot | paper | params @ C={c} | extra MMACs / frame @ {c}x{s}x{s} |")
    print("|---|---|---|---|---:|---:|")
    for r in rows:
        ref = f"arXiv {r.arxiv}" if r.arxiv else "no arXiv"
        paper = f"{r.paper} ({r.venue}, {ref})"
        print(f"| `{r.name}` | {r.kind} | `{r.slot}` | {paper} | {r.params:,} | {r.macs_per_frame / 1e6:.2f} |")
    if models:
        t = args.num_segments
        print(
            f"\n| model (ResNet-50, T={t}, 224x224, 174 classes) | params (M) "
            "| GFLOPs (multiply-adds) per clip | paper |"
        )
        print("|---|---:|---:|---|")
        for m in models:
            print(f"| `{m.name}` | {m.params / 1e6:.2f} | {m.macs_per_clip / 1e9:.1f} | {PAPER.get(m.name, '')} |")


def summarise(name: str, num_segments: int):
    configs = model_configs(CONFIGS.parent)
    if name not in configs:
        raise ConfigError(f"--models: no model config {name!r}; available: {', '.join(configs)}")
    cfg = configs[name]
    model = build_model({**cfg, "num_classes": 174, "num_segments": num_segments, "pretrained": None})
    return model_summary(model, name=name)


if __name__ == "__main__":
    main()
