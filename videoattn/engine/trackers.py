"""Experiment tracking: the run's scalars, config and results, in the trackers the user lists.

``loggers`` (configs/common.yaml; default ``[tensorboard, csv]``) is any subset of

===============  ================================================================================
``tensorboard``  ``RUN_DIR/tb`` (:class:`TensorBoardTracker`)
``csv``          ``RUN_DIR/metrics.csv``: one row per epoch, written by the run folder with each
                 checkpoint (:mod:`videoattn.engine.run_folder`: it must agree with ``last.pth``
                 after a kill, so it is not a tracker here); leaving ``csv`` out leaves it out
``wandb``        Weights & Biases (:class:`WandbTracker`; ``uv sync --extra wandb``): project
                 ``$WANDB_PROJECT`` (default ``videoattn``), files under ``RUN_DIR/wandb``;
                 ``WANDB_MODE=offline`` runs without a network (``wandb sync`` uploads later)
``mlflow``       MLflow (:class:`MlflowTracker`; ``uv sync --extra mlflow``): the tracking
                 server or store ``$MLFLOW_TRACKING_URI`` (default: the SQLite store
                 ``RUN_DIR/mlflow.db``, MLflow's own default backend; a ``file:`` store needs
                 MLflow's ``MLFLOW_ALLOW_FILE_STORE=true``), experiment
                 ``$MLFLOW_EXPERIMENT_NAME`` (default ``videoattn``); ``mlflow ui
                 --backend-store-uri sqlite:///RUN_DIR/mlflow.db`` shows it
===============  ================================================================================

Every tracker gets the same things (:class:`Tracker`): the resolved config when the run starts,
the training loss and lr every ``log_every`` steps (``train/loss``, ``train/lr`` at the global
step), the epoch's row of ``metrics.csv`` (``epoch/<column>``; non-finite values, the columns of
an epoch without validation, are left out), and the final results (``results.json``'s numbers)
at the end. A resumed run continues its tracker runs: the W&B run id and the MLflow run id are
stored in ``RUN_DIR/trackers.json`` when they start and reused when the run resumes (a run
started anew, ``overwrite=true``, gets new ones); TensorBoard drops the points a killed run wrote
beyond the checkpoint it resumes from.

A logger that is listed but not installed is one line naming the extra to install (exit 2),
before the run reads its data.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError
from ..files import write_atomic

__all__ = [
    "LOGGERS",
    "TRACKERS",
    "MlflowTracker",
    "TensorBoardTracker",
    "Tracker",
    "Trackers",
    "WandbTracker",
    "open_trackers",
    "resolve_loggers",
]

log = logging.getLogger(__name__)

IDS_FILE = "trackers.json"  # RUN_DIR/trackers.json: {"wandb": run id, "mlflow": run id}


def _numbers(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of ``values`` (bools and text left out), keys prefixed."""
    out = {}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[f"{prefix}{key}"] = float(value)
    return out


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are values)."""
    if isinstance(node, Mapping):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


class Tracker:
    """One backend. Made by ``cls(run_dir=..., name=..., config=..., run_id=..., start_step=...)``
    when the run starts (``config``: the resolved config, logged then; ``run_id``: the id of the
    tracker run a resumed run continues, else None; ``start_step``: the global step the run starts
    at). ``run_id`` is then the id to store for a resume (None: nothing to store)."""

    name: ClassVar[str]
    extra: ClassVar[str | None] = None  # the pyproject extra that installs it
    module: ClassVar[str] = ""  # the module it needs

    run_id: str | None = None

    def log_step(self, scalars: Mapping[str, float], *, step: int) -> None:
        """Training scalars (``train/loss``, ``train/lr``) at the global optimiser ``step``."""
        raise NotImplementedError

    def log_epoch(self, row: Mapping[str, Any], *, epoch: int, step: int) -> None:
        """The row of ``metrics.csv`` of epoch ``epoch`` (1-based), logged at global ``step``."""
        raise NotImplementedError

    def finish(self, results: Mapping[str, Any] | None, *, ok: bool) -> None:
        """Close the tracker run: ``results`` (results.json) when the run ended, ``ok`` False on
        an error or an interruption (the run may resume)."""
        raise NotImplementedError


class TensorBoardTracker(Tracker):
    """``RUN_DIR/tb``: ``train/*`` at the global step, ``epoch/*`` at the epoch, the config and the
    results as text. A resumed run purges the points beyond its start (``purge_step``)."""

    name, module = "tensorboard", "tensorboard"

    def __init__(
        self, *, run_dir: Path, name: str, config: Mapping[str, Any], run_id: str | None, start_step: int
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=start_step + 1 if start_step > 0 else None)
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```", start_step)

    def log_step(self, scalars: Mapping[str, float], *, step: int) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)

    def log_epoch(self, row: Mapping[str, Any], *, epoch: int, step: int) -> None:
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(f"epoch/{key}", value, epoch)

    def finish(self, results: Mapping[str, Any] | None, *, ok: bool) -> None:
        if results is not None:
            self.writer.add_text("results", "```\n" + json.dumps(results, indent=2) + "\n```")
        self.writer.close()


class WandbTracker(Tracker):
    """A Weights & Biases run (``wandb.init`` in ``RUN_DIR``, resumed by its id); ``epoch/*`` and
    ``train/*`` at the global step (W&B's steps only increase), with ``epoch`` as a column."""

    name, extra, module = "wandb", "wandb", "wandb"

    def __init__(
        self, *, run_dir: Path, name: str, config: Mapping[str, Any], run_id: str | None, start_step: int
    ) -> None:
        import wandb

        try:
            self.run = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "videoattn"),
                name=name,
                id=run_id,
                resume="allow" if run_id else None,
                dir=str(run_dir),
                config=dict(config) if run_id is None else None,  # a resumed run keeps the config it started with
            )
        except Exception as err:  # noqa: BLE001 (not logged in, no network, a bad setting: one line)
            text = " ".join(str(err).split())[:200]
            raise ConfigError(
                f"loggers=[wandb]: W&B could not start a run ({type(err).__name__}: {text}); log in (wandb login) "
                "or run offline (WANDB_MODE=offline), or leave wandb out of loggers"
            ) from None
        self.run_id = self.run.id

    def log_step(self, scalars: Mapping[str, float], *, step: int) -> None:
        self.run.log(dict(scalars), step=step)

    def log_epoch(self, row: Mapping[str, Any], *, epoch: int, step: int) -> None:
        self.run.log({**_numbers({k: v for k, v in row.items() if k != "epoch"}, "epoch/"), "epoch": epoch}, step=step)

    def finish(self, results: Mapping[str, Any] | None, *, ok: bool) -> None:
        if results is not None:
            self.run.summary.update(_numbers(results, "results/"))
        self.run.finish(exit_code=0 if ok else 1)


class MlflowTracker(Tracker):
    """An MLflow run (through ``MlflowClient``: no global state), resumed by its id: the config as
    params (flattened keys), ``train/*`` at the global step, ``epoch/*`` at the epoch, the results
    as ``results/*``; the run's status FINISHED, or KILLED when the run stopped early (it may resume)."""

    name, extra, module = "mlflow", "mlflow", "mlflow"

    def __init__(
        self, *, run_dir: Path, name: str, config: Mapping[str, Any], run_id: str | None, start_step: int
    ) -> None:
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
        try:
            self.client = MlflowClient(tracking_uri=uri)
            if run_id is not None:
                self.client.update_run(run_id, status="RUNNING")
                self.run_id = run_id
            else:
                experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "videoattn")
                found = self.client.get_experiment_by_name(experiment)
                exp_id = found.experiment_id if found is not None else self.client.create_experiment(experiment)
                self.run_id = self.client.create_run(exp_id, run_name=name).info.run_id
                self._batch(params={k: str(v)[:6000] for k, v in _flat(config).items()})
        except Exception as err:  # noqa: BLE001 (an unreachable server, a bad URI: one line)
            text = " ".join(str(err).split())[:200]
            raise ConfigError(
                f"loggers=[mlflow]: MLflow could not start a run at {uri} ({type(err).__name__}: {text}); check "
                "MLFLOW_TRACKING_URI, or leave mlflow out of loggers"
            ) from None

    def _batch(self, *, metrics: Mapping[str, float] | None = None, params=None, step: int = 0) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in (metrics or {}).items()]
        items += [Param(k, v) for k, v in (params or {}).items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            chunk = items[i : i + 100]
            self.client.log_batch(
                self.run_id,
                metrics=[m for m in chunk if isinstance(m, Metric)],
                params=[p for p in chunk if isinstance(p, Param)],
            )

    def log_step(self, scalars: Mapping[str, float], *, step: int) -> None:
        self._batch(metrics=_numbers(scalars), step=step)

    def log_epoch(self, row: Mapping[str, Any], *, epoch: int, step: int) -> None:
        self._batch(metrics=_numbers({k: v for k, v in row.items() if k != "epoch"}, "epoch/"), step=epoch)

    def finish(self, results: Mapping[str, Any] | None, *, ok: bool) -> None:
        if results is not None:
            self._batch(metrics=_numbers(results, "results/"))
        self.client.set_terminated(self.run_id, status="FINISHED" if ok else "KILLED")


# name -> class: the trackers a run opens. "csv" is the run folder's metrics.csv (see the module docstring).
TRACKERS: dict[str, type[Tracker]] = {
    "tensorboard": TensorBoardTracker,
    "wandb": WandbTracker,
    "mlflow": MlflowTracker,
}
LOGGERS = ("tensorboard", "csv", "wandb", "mlflow")  # what ``loggers`` may list


def resolve_loggers(loggers: Sequence[str], *, tensorboard: bool | None = None) -> list[str]:
    """The checked ``loggers`` list (each once, in order), with the older switch ``tensorboard``
    (true adds it, false drops it, null: as listed). An unknown name, or a tracker whose extra is
    not installed, is one line (:class:`~videoattn.errors.ConfigError`)."""
    names = list(dict.fromkeys(str(n).strip().lower() for n in loggers))
    for name in names:
        if name not in LOGGERS:
            close = difflib.get_close_matches(name, LOGGERS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"loggers: {name!r} is not a logger{hint}; any of {', '.join(LOGGERS)}")
    if tensorboard is True and "tensorboard" not in names:
        names.insert(0, "tensorboard")
    elif tensorboard is False and "tensorboard" in names:
        names.remove("tensorboard")
    for name in names:
        cls = TRACKERS.get(name)
        if cls is not None and cls.extra and importlib.util.find_spec(cls.module) is None:
            raise ConfigError(
                f"loggers=[{', '.join(names)}]: {name} is not installed; install the extra: "
                f"uv sync --extra {cls.extra} (or leave {name} out of loggers)"
            )
    return names


class Trackers:
    """The run's open trackers, called as one (rank 0; an empty one elsewhere)."""

    def __init__(self, trackers: Sequence[Tracker] = ()) -> None:
        self.trackers = list(trackers)

    def log_step(self, scalars: Mapping[str, float], *, step: int) -> None:
        for t in self.trackers:
            t.log_step(scalars, step=step)

    def log_epoch(self, row: Mapping[str, Any], *, epoch: int, step: int) -> None:
        for t in self.trackers:
            t.log_epoch(row, epoch=epoch, step=step)

    def finish(self, results: Mapping[str, Any] | None, *, ok: bool = True) -> None:
        """Close every tracker (once)."""
        trackers, self.trackers = self.trackers, []
        for t in trackers:
            t.finish(results, ok=ok)


@contextlib.contextmanager
def open_trackers(
    loggers: Sequence[str],
    *,
    run_dir: Path,
    config: Mapping[str, Any],
    resumed: bool,
    start_step: int,
    name: str | None = None,
) -> Iterator[Trackers]:
    """The trackers of ``loggers`` (:func:`resolve_loggers`'s) for the run in ``run_dir``, closed
    at the end of the block (as failed if it raises, unless :meth:`Trackers.finish` closed them).
    A ``resumed`` run reuses the tracker run ids of ``RUN_DIR/trackers.json``; the ids of the
    runs opened are written there."""
    ids_path = Path(run_dir) / IDS_FILE
    stored: dict[str, str] = {}
    if resumed and ids_path.is_file():
        try:
            stored = dict(json.loads(ids_path.read_text()))
        except (ValueError, TypeError, UnicodeDecodeError):
            log.warning("%s cannot be read: the trackers start new runs", ids_path)
    opened = Trackers()
    try:
        for logger in loggers:
            cls = TRACKERS.get(logger)
            if cls is None:
                continue  # csv: the run folder's metrics.csv
            opened.trackers.append(
                cls(
                    run_dir=Path(run_dir),
                    name=name or Path(run_dir).name,
                    config=config,
                    run_id=stored.get(logger),
                    start_step=start_step,
                )
            )
        ids = {**stored, **{t.name: t.run_id for t in opened.trackers if t.run_id}}
        if ids != stored:  # new tracker runs (rank 0 only: the other ranks open none)
            write_atomic(ids_path, json.dumps(ids, indent=2) + "\n")
        for t in opened.trackers:
            if t.run_id and stored.get(t.name) == t.run_id:
                log.info("%s: continuing the tracker run %s", t.name, t.run_id)
        yield opened
    except BaseException:
        opened.finish(None, ok=False)
        raise
    else:
        opened.finish(None, ok=True)
