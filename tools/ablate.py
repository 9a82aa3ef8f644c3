"""Ablate temporal vs static excitation on one dataset: train (or collect) a set of model
configs and write a Markdown table and a bar chart.

    uv run python tools/ablate.py --short      # tsn se tsm action, the demo's short schedule: about 10 min on 2 cores
    uv run python tools/ablate.py              # tsn se tsm action tam, 30 epochs each: about 30 min on 2 cores
    uv run python tools/ablate.py --models tsn,tsm --runs runs/demo_6ep -- optim.epochs=6
    uv run python tools/ablate.py --collect runs/demo     # after `tools/train.py -m model=tsn,se,tsm`

Each run is the training of ``tools/train.py model=NAME [overrides]``, in this process
(``videoattn.engine.fit.fit``), in ``RUNS/<NAME>`` (``--runs``; by default train.py's
``runs/<data>/<NAME>``, and ``runs/<data>_short/<NAME>`` with ``--short``): resumed if it was
interrupted, skipped if it already finished, unless ``--rerun``. A folder that holds a run of
another schedule (epochs, lr, schedule, warm-up, batch, T, steps per epoch) is refused in one line
naming both: ``--rerun`` replaces it, another ``--runs`` keeps it. Each run's start, epochs and end
are printed with an estimate of the time left. ``--short`` is ``num_segments=4 optim.epochs=16
optim.lr=8e-3`` (4 frames, twice the lr): enough for TSM and ACTION to separate the demo's
time-reversed pairs, which TSN and SE cannot.

The table reports the final validation top-1 / top-5, the top-1 on the order-dependent classes
(those a model without temporal modelling cannot separate: the demo's time-reversed pairs) and on
the others, the epochs, params, GFLOPs (multiply-adds per clip) and training throughput.
``--collect`` refuses runs of different lengths (``--allow-mixed`` tabulates them anyway).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from videoattn.attention import get_spec
from videoattn.cli import ArgumentParser, user_errors
from videoattn.compose import check_overrides
from videoattn.config import model_configs
from videoattn.engine.fit import fit
from videoattn.errors import ConfigError, DataError, MissingFileError
from videoattn.files import write_atomic

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
DEFAULT_MODELS = "tsn,se,tsm,action,tam"
SHORT_MODELS = "tsn,se,tsm,action"
SHORT = ["num_segments=4", "optim.epochs=16", "optim.lr=8e-3"]
# what makes two runs of one model different trainings (resuming one with the other's is refused)
SCHEDULE = (
    "optim.epochs",
    "optim.lr",
    "optim.schedule",
    "optim.warmup_epochs",
    "batch_size",
    "num_segments",
    "max_steps_per_epoch",
)


def kind(model: str) -> str:
    """temporal / static / none, from the model config's inserts."""
    cfg = model_configs(CONFIGS).get(model)
    if cfg is None:
        return "?"
    inserts = [{"name": i} if isinstance(i, str) else i for i in cfg.get("inserts") or []]
    kinds = {"temporal" if get_spec(i["name"]).temporal else "static" for i in inserts}
    return "+".join(sorted(kinds)) or "none"


def schedule(cfg: DictConfig) -> str:
    """``optim.epochs=16 optim.lr=0.008 ...``: the keys of :data:`SCHEDULE` in ``cfg``."""
    return " ".join(f"{key}={OmegaConf.select(cfg, key)}" for key in SCHEDULE)


class Clock(logging.Handler):
    """Turns the engine's epoch lines (``epoch 3/16: ...``) into ``[tsm] epoch 3/16, ~40s left in
    this run, ~5 min in all``; the runs to come are estimated at the mean epoch time so far."""

    def __init__(self, epochs_total: int) -> None:
        super().__init__(logging.INFO)
        self.epochs_total, self.epochs_done, self.seconds = epochs_total, 0, 0.0
        self.model, self.t0, self.first = "", time.perf_counter(), 0

    def start(self, model: str) -> None:
        self.model, self.t0, self.first = model, time.perf_counter(), 0  # first: the first epoch of this start

    def emit(self, record: logging.LogRecord) -> None:
        match = re.match(r"epoch (\d+)/(\d+): ", record.getMessage())
        if not match or record.levelno < logging.INFO:
            return
        epoch, epochs = int(match[1]), int(match[2])
        self.first = self.first or epoch  # a resumed run starts later than epoch 1
        per_epoch = (time.perf_counter() - self.t0) / (epoch - self.first + 1)  # includes this run's start-up
        left_run = per_epoch * (epochs - epoch)
        left_all = left_run + per_epoch * (self.epochs_total - self.epochs_done - epochs)
        print(f"[{self.model}] epoch {epoch}/{epochs}, ~{_dur(left_run)} left in this run, ~{_dur(left_all)} in all",
              file=sys.stderr, flush=True)  # fmt: skip

    def finished(self, epochs: int, seconds: float) -> None:
        self.epochs_done += epochs
        self.seconds += seconds


def _dur(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f} min"


def plan(models: list[str], overrides: list[str], *, runs: Path | None) -> list[tuple[str, DictConfig]]:
    """Each model's composed config (Hydra's compose API, as tools/train.py composes it)."""
    out = []
    for model in models:
        argv = [f"model={model}", *overrides] + ([f"run_dir={runs / model}"] if runs is not None else [])
        cfg = check_overrides(CONFIGS, "train", argv)  # a bad override: one line, exit 2
        if cfg is None:  # a flag that makes Hydra print instead, or another primary config folder
            raise ConfigError(f"{' '.join(overrides)}: ablate.py takes overrides and --config-name / --config-dir only")
        out.append((model, cfg))
    return out


def run_one(model: str, cfg: DictConfig, *, rerun: bool, clock: Clock) -> Path:
    run_dir = Path(cfg.run_dir)
    old = run_dir / "config.yaml"
    if old.exists() and not rerun:
        before, now = schedule(OmegaConf.load(old)), schedule(cfg)
        if before != now:
            raise ConfigError(
                f"[{model}] {run_dir} holds a run of another schedule ({before}) than this one ({now}); "
                "--rerun replaces it, another --runs folder keeps it"
            )
        if finished(run_dir):
            print(f"[{model}] done before: {run_dir / 'results.json'}", file=sys.stderr)
            clock.finished(cfg.optim.epochs, 0.0)
            return run_dir
    if rerun:
        cfg.resume, cfg.overwrite = "none", True  # fit replaces the old run (and says so), unless one is running
    print(f"[{model}] start: {run_dir} ({schedule(cfg)})", file=sys.stderr, flush=True)
    clock.start(model)
    t0 = time.perf_counter()
    with torch.random.fork_rng():  # each run seeds the global RNG: the next starts as it would alone
        fit(cfg)
    seconds = time.perf_counter() - t0
    clock.finished(cfg.optim.epochs, seconds)
    print(f"[{model}] done in {_dur(seconds)}: {run_dir / 'results.json'}", file=sys.stderr, flush=True)
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


def check_lengths(rows: list[dict], *, allow_mixed: bool) -> str:
    """Runs of different lengths are not comparable: refused in one line naming them, or (with
    ``allow_mixed``) a note for the table."""
    if len({r["epochs"] for r in rows}) <= 1:
        return ""
    lengths = ", ".join(f"{r['model']} {r['epochs']}" for r in rows)
    if not allow_mixed:
        raise ConfigError(
            f"runs of different lengths (epochs: {lengths}): collect runs of one schedule, or --allow-mixed"
        )
    return f"\n**Runs of different lengths** (epochs: {lengths}): not comparable as they stand.\n"


def markdown(rows: list[dict], data: str) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}"

    head = (
        "| model | excitation | epochs | val top-1 | val top-5 | top-1 order-dependent | top-1 other classes "
        "| params (M) | GFLOPs/clip | train clips/s |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    body = "".join(
        f"| {r['model']} | {r['kind']} | {r['epochs'] if r['epochs'] is not None else '-'} | {pct(r['top1'])} "
        f"| {pct(r['top5'])} | {pct(r['order'])} | {pct(r['appearance'])} "
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


def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(description=__doc__)
    p.add_argument("--models", default=None, help=f"model configs (default {DEFAULT_MODELS}; --short: {SHORT_MODELS})")
    p.add_argument("--short", action="store_true", help=f"the demo's short schedule: {' '.join(SHORT)}")
    p.add_argument("--collect", type=Path, help="only collect finished runs under this folder (a multirun sweep dir)")
    p.add_argument("--allow-mixed", action="store_true", help="--collect: tabulate runs of different lengths")
    p.add_argument("--runs", type=Path, default=None, help="run folders: RUNS/<model> (default: train.py's run_dir)")
    p.add_argument(
        "--out", type=Path, default=None, help="where to write ablation.md / .png / .json (default: the runs' parent)"
    )
    p.add_argument("--rerun", action="store_true", help="train again even if a run finished")
    p.add_argument("overrides", nargs="*", help="train.py overrides after --, e.g. -- data=ssv2 data.root=/data/ssv2")
    args = p.parse_args(argv)
    if not logging.getLogger().handlers:  # the engine's log records (epoch lines, results) on stderr
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with user_errors():
        return ablate(args)


def ablate(args) -> int:
    models = [m.strip() for m in (args.models or (SHORT_MODELS if args.short else DEFAULT_MODELS)).split(",")]
    models = [m for m in models if m]
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
        overrides = [*SHORT, *args.overrides] if args.short else list(args.overrides)
        runs = args.runs
        if runs is None and args.short:  # never the full runs' folders
            runs = Path("runs") / f"{plan(models[:1], overrides, runs=None)[0][1].data.name}_short"
        configs = plan(models, overrides, runs=runs)  # every override checked before the first run
        clock = Clock(sum(cfg.optim.epochs for _, cfg in configs))
        root, level = logging.getLogger(), logging.getLogger().level
        root.addHandler(clock)
        root.setLevel(min(level or logging.WARNING, logging.INFO))  # the epoch lines reach the clock
        try:
            dirs = [run_one(m, cfg, rerun=args.rerun, clock=clock) for m, cfg in configs]
        finally:
            root.removeHandler(clock)
            root.setLevel(level)
        print(f"{len(dirs)} runs in {_dur(clock.seconds)}", file=sys.stderr)
    rows = collect(dirs)
    note = check_lengths(rows, allow_mixed=args.allow_mixed)
    data = json.loads((dirs[0] / "results.json").read_text())["data"]
    out = args.out or dirs[0].parent
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(rows, data) + note
    write_atomic(out / "ablation.md", text)
    write_atomic(out / "ablation.json", json.dumps(rows, indent=2) + "\n")
    bar_chart(rows, out / "ablation.png", f"temporal vs static excitation on {data}")
    print(text)
    print(f"wrote {out / 'ablation.md'}, {out / 'ablation.png'}, {out / 'ablation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
