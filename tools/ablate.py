"""Ablate temporal vs static excitation on one dataset: train (or collect) a set of model
configs and write a Markdown table and a bar chart.

    uv run python tools/ablate.py                                   # tsn se tsm action tam on the demo data
    uv run python tools/ablate.py --models tsn,tsm,tam -- optim.epochs=6
    uv run python tools/ablate.py --collect runs/demo               # after `tools/train.py -m model=tsn,se,tsm`

Each run is `tools/train.py model=NAME [overrides]` in runs/<data>/<NAME> (resumed if it was
interrupted; skipped if it already finished, unless --rerun). The table reports the final
validation top-1 / top-5, the top-1 on the order-dependent classes (those a model without
temporal modelling cannot separate: the demo's time-reversed pairs) and on the others, params,
GFLOPs (multiply-adds per clip) and training throughput.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from videoattn.attention import get_spec
from videoattn.cli import ArgumentParser, fail, user_errors
from videoattn.config import model_configs
from videoattn.errors import DataError, MissingFileError
from videoattn.files import write_atomic

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = "tsn,se,tsm,action,tam"


def kind(model: str) -> str:
    """temporal / static / none, from the model config's inserts."""
    cfg = model_configs(REPO / "configs").get(model)
    if cfg is None:
        return "?"
    inserts = [{"name": i} if isinstance(i, str) else i for i in cfg.get("inserts") or []]
    kinds = {"temporal" if get_spec(i["name"]).temporal else "static" for i in inserts}
    return "+".join(sorted(kinds)) or "none"


def run_one(model: str, overrides: list[str], *, rerun: bool, runs: Path | None) -> Path:
    run_dir = (runs / model) if runs else None
    cmd = [sys.executable, str(REPO / "tools" / "train.py"), f"model={model}", *overrides]
    if run_dir is not None:
        cmd.append(f"run_dir={run_dir}")
        if rerun:
            cmd += [
                "resume=none",
                "overwrite=true",
            ]  # train.py replaces the old run (and says so), unless one is running
        elif finished(run_dir):
            print(f"[{model}] done before: {run_dir / 'results.json'}", file=sys.stderr)
            return run_dir
    print(f"[{model}] {' '.join(cmd[1:])}", file=sys.stderr)
    out = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    sys.stderr.write(out.stdout[-2000:])
    if out.returncode != 0:
        fail(f"[{model}] training failed (exit {out.returncode}); its output is above")
    if run_dir is None:  # the default run folder: read it back from the config train.py saved
        line = [ln for ln in out.stdout.splitlines() if "checkpoints in" in ln][-1]
        run_dir = Path(line.rsplit("checkpoints in", 1)[1].strip())
    return run_dir


def finished(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` ran all its epochs (train.py rewrites results.json every
    epoch; ``complete`` says whether it is the last; files of older versions were final)."""
    try:
        return json.loads((run_dir / "results.json").read_text()).get("complete", True)
    except (OSError, ValueError):
        return False


def collect(run_dirs: list[Path]) -> list[dict]:
    rows = []
    for d in run_dirs:
        try:
            res = json.loads((d / "results.json").read_text())
        except json.JSONDecodeError as err:
            raise DataError(f"{d / 'results.json'} is not valid JSON ({err}); train that run again") from err
        rows.append(
            {
                "model": res["model"],
                "kind": kind(res["model"]),
                "top1": res.get("last_val_top1"),
                "top5": res.get("last_val_top5"),
                "order": res.get("last_val_top1_order"),
                "appearance": res.get("last_val_top1_appearance"),
                "best_top1": res.get("best_val_top1"),
                "params_m": res["params"] / 1e6,
                "gflops": res["macs"] / 1e9,
                "clips_s": res.get("last_train_clips_per_s"),
                "epochs": res.get("epochs"),
                "run_dir": str(d),
            }
        )
    return rows


def markdown(rows: list[dict], data: str) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"

    head = (
        "| model | excitation | val top-1 | val top-5 | top-1 order-dependent | top-1 other classes "
        "| params (M) | GFLOPs/clip | train clips/s |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['model']} | {r['kind']} | {pct(r['top1'])} | {pct(r['top5'])} "
        f"| {pct(r['order'])} | {pct(r['appearance'])} "
        f"| {r['params_m']:.2f} | {r['gflops']:.3f} | {r['clips_s'] or 0:.1f} |\n"
        for r in rows
    )
    return f"Ablation on `{data}` (final epoch, validation split, 1 clip x centre crop)\n\n{head}{body}"


def bar_chart(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    series = [("all classes", "top1"), ("order-dependent", "order"), ("other classes", "appearance")]
    series = [(label, key) for label, key in series if any(r[key] is not None for r in rows)]
    x = np.arange(len(rows))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 3, 4.5), constrained_layout=True)
    for i, (label, key) in enumerate(series):
        vals = [100 * (r[key] or 0) for r in rows]
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, vals, width, label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(x, [f"{r['model']}\n({r['kind']})" for r in rows])
    ax.set_ylabel("val top-1 (%)")
    ax.set_ylim(0, 105)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    p = ArgumentParser(description=__doc__)
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"model configs (default {DEFAULT_MODELS})")
    p.add_argument("--collect", type=Path, help="only collect finished runs under this folder (a multirun sweep dir)")
    p.add_argument("--runs", type=Path, default=None, help="run folders: RUNS/<model> (default: train.py's run_dir)")
    p.add_argument(
        "--out", type=Path, default=None, help="where to write ablation.md / .png / .json (default: the runs' parent)"
    )
    p.add_argument("--rerun", action="store_true", help="train again even if a run finished")
    p.add_argument("overrides", nargs="*", help="train.py overrides after --, e.g. -- data=ssv2 data.root=/data/ssv2")
    args = p.parse_args()
    with user_errors():
        return ablate(args)


def ablate(args) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.collect:
        if not args.collect.is_dir():
            raise MissingFileError(f"--collect {args.collect}: no such folder (the folder holding the runs)")
        dirs = [d for d in (args.collect / m for m in models) if finished(d)]
        dirs += sorted(d for d in args.collect.iterdir() if finished(d) and d not in dirs)
        for d in sorted(args.collect.iterdir()):
            if (d / "results.json").exists() and not finished(d):
                print(f"{d}: not finished (results.json: complete false); left out", file=sys.stderr)
        if not dirs:
            raise MissingFileError(f"no finished runs (results.json) under {args.collect}")
    else:
        dirs = [run_one(m, args.overrides, rerun=args.rerun, runs=args.runs) for m in models]
    rows = collect(dirs)
    data = json.loads((dirs[0] / "results.json").read_text())["data"]
    out = args.out or dirs[0].parent
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, data)
    write_atomic(out / "ablation.md", text)
    write_atomic(out / "ablation.json", json.dumps(rows, indent=2) + "\n")
    bar_chart(rows, out / "ablation.png", f"temporal vs static excitation on {data}")
    print(text)
    print(f"wrote {out / 'ablation.md'}, {out / 'ablation.png'}, {out / 'ablation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
