"""Experiment tracking (videoattn.engine.trackers): ``loggers`` checked in one line, every listed
tracker holding the rows of ``metrics.csv``, one left out writing nothing, and a resumed run
continuing its W&B (offline) and MLflow (file store) runs. In-process tiny runs on the tiny demo."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import struct
from pathlib import Path

import pytest
import torch
from cli import TINY_RUN

from videoattn.compose import check_overrides
from videoattn.engine.fit import fit
from videoattn.engine.trackers import LOGGERS, TRACKERS, resolve_loggers
from videoattn.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
STEPS = 2  # optimiser steps per epoch


def _fit(tiny_demo: Path, run_dir: Path, *extra: str) -> float:
    tiny = [a for a in TINY_RUN if not a.startswith("tensorboard=")]  # the loggers are what these tests set
    argv = [*tiny, f"run_dir={run_dir}", f"data.root={tiny_demo / 'ssv2'}", "data.demo=false", "device=cpu",
            f"max_steps_per_epoch={STEPS}", "log_every=1", "malloc_cache=false", *extra]  # fmt: skip
    cfg = check_overrides(CONFIGS, "train", argv)
    with torch.random.fork_rng():
        return fit(cfg)


def _metrics_csv(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _epoch_scalars(rows: list[dict[str, float]]) -> dict[tuple[str, int], float]:
    """metrics.csv as ``(epoch/<column>, epoch) -> value``, finite values only (what trackers log)."""
    return {
        (f"epoch/{k}", int(row["epoch"])): v
        for row in rows
        for k, v in row.items()
        if k != "epoch" and math.isfinite(v)
    }


# ----------------------------------------------------------------------------- the setting
def test_loggers_are_checked_in_one_line_and_the_older_tensorboard_switch_still_works(monkeypatch):
    assert resolve_loggers(["tensorboard", "csv"]) == ["tensorboard", "csv"]
    assert resolve_loggers(["tensorboard", "csv"], tensorboard=False) == ["csv"]  # tensorboard=false: as before
    assert resolve_loggers(["csv"], tensorboard=True) == ["tensorboard", "csv"]
    assert resolve_loggers(["CSV", "csv"]) == ["csv"]
    with pytest.raises(ConfigError, match=r"loggers: 'tensorbord' is not a logger \(did you mean tensorboard\?\)"):
        resolve_loggers(["tensorbord"])
    assert set(TRACKERS) | {"csv"} == set(LOGGERS)  # every logger is a tracker class or the run folder's csv
    real = importlib.util.find_spec
    for name in ("wandb", "mlflow"):  # not installed: the extra to install, before anything runs
        monkeypatch.setattr(importlib.util, "find_spec", lambda mod, *a, n=name: None if mod == n else real(mod, *a))
        with pytest.raises(ConfigError, match=rf"{name} is not installed; install the extra: uv sync --extra {name}"):
            resolve_loggers(["csv", name])


def test_an_uninstalled_logger_stops_the_run_before_it_writes(tiny_demo, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda mod, *a: None if mod == "wandb" else real(mod, *a))
    with pytest.raises(ConfigError, match=r"uv sync --extra wandb"):
        _fit(tiny_demo, tmp_path / "run", "optim.epochs=1", "loggers=[csv,wandb]")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- csv and tensorboard
def _tensorboard_scalars(run_dir: Path) -> dict[tuple[str, int], float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return {(tag, e.step): e.value for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)}


@pytest.mark.parametrize(
    "loggers, extra",
    [("[tensorboard,csv]", []), ("[csv]", []), ("[tensorboard]", []), ("[tensorboard,csv]", ["tensorboard=false"])],
    ids=["both", "csv", "tensorboard", "tensorboard=false"],
)
def test_csv_and_tensorboard_each_written_exactly_when_listed(loggers, extra, tiny_demo, tmp_path):
    run_dir = tmp_path / "run"
    _fit(tiny_demo, run_dir, "optim.epochs=2", f"loggers={loggers}", *extra)
    wants_csv = "csv" in loggers
    wants_tb = "tensorboard" in loggers and "tensorboard=false" not in extra
    assert (run_dir / "metrics.csv").exists() == wants_csv
    assert (run_dir / "tb").exists() == wants_tb
    assert (run_dir / "results.json").exists() and (run_dir / "last.pth").exists()  # the run's record, always
    history = torch.load(run_dir / "last.pth", weights_only=True)["history"]
    expected = _epoch_scalars([{k: float(v) for k, v in row.items()} for row in history])
    if wants_csv:
        assert _epoch_scalars(_metrics_csv(run_dir)) == pytest.approx(expected)
    if wants_tb:
        scalars = _tensorboard_scalars(run_dir)
        epochs = {key: v for key, v in scalars.items() if key[0].startswith("epoch/") and math.isfinite(v)}
        assert epochs == pytest.approx(expected, rel=1e-6)  # float32 in the event file
        for tag in ("train/loss", "train/lr"):  # every log_every=1 step
            assert sorted(step for t, step in scalars if t == tag) == list(range(1, 2 * STEPS + 1))


# ----------------------------------------------------------------------------- W&B and MLflow
def _wandb_records(path: Path):
    """The records of a W&B ``.wandb`` file (a LevelDB-style log: a 7-byte file header ``:W&B``...,
    then 32 KiB blocks of records, each with a 7-byte header: CRC-32C, length, type FULL / FIRST /
    MIDDLE / LAST), parsed as W&B's protobuf ``Record``."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, parts = path.read_bytes(), 7, 32768, []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:  # the rest of the block is padding
            pos += left
            continue
        parts.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # FULL, LAST
            record = pb.Record()
            record.ParseFromString(b"".join(parts))
            parts = []
            yield record


def _wandb_runs(run_dir: Path) -> tuple[set[str], dict[tuple[str, int], float], dict[str, float]]:
    """The run ids, the ``epoch/*`` history (by epoch) and the summary of the offline runs in ``run_dir``."""
    ids, history, summary = set(), {}, {}
    for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        for record in _wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                ids.add(record.run.run_id)
            elif kind == "history":
                items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
                for k, v in items.items():
                    if k.startswith("epoch/"):
                        history[k, items["epoch"]] = v
            elif kind == "summary":
                for i in record.summary.update:
                    summary[i.key or "/".join(i.nested_key)] = json.loads(i.value_json)
    return ids, history, summary


def _mlflow_run(uri: str, run_id: str) -> tuple[dict[tuple[str, int], float], dict[str, float], dict[str, str], str]:
    """The ``epoch/*`` history (by epoch), the last metrics, the params and the status of an MLflow run."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    metrics = {
        (key, m.step): m.value
        for key in run.data.metrics
        if key.startswith("epoch/")
        for m in client.get_metric_history(run_id, key)
    }
    return metrics, run.data.metrics, run.data.params, run.info.status


# backend -> the store it writes to (no network): W&B offline in RUN_DIR/wandb; MLflow's default SQLite store
# in the run folder, and its file store (MLflow 3.x: in maintenance, opted in) under tmp_path
BACKENDS = {"wandb": {}, "mlflow": {}, "mlflow-file-store": {"MLFLOW_ALLOW_FILE_STORE": "true"}}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_resumed_run_continues_its_tracker_run_which_holds_the_rows_of_metrics_csv(
    backend, tiny_demo, tmp_path, monkeypatch
):
    logger = backend.split("-")[0]
    pytest.importorskip(logger, reason=f"the {logger} extra (uv sync --extra {logger})")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    uri = f"sqlite:///{run_dir / 'mlflow.db'}"  # the default
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    if backend == "mlflow-file-store":
        uri = (tmp_path / "mlruns").as_uri()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for key, value in BACKENDS[backend].items():
        monkeypatch.setenv(key, value)
    _fit(tiny_demo, run_dir, "optim.epochs=1", f"loggers=[csv,{logger}]")
    first = json.loads((run_dir / "trackers.json").read_text())[logger]
    _fit(tiny_demo, run_dir, "optim.epochs=2", f"loggers=[csv,{logger}]")  # resume=auto: epoch 2
    assert json.loads((run_dir / "trackers.json").read_text()) == {logger: first}  # the same tracker run
    expected = _epoch_scalars(_metrics_csv(run_dir))
    assert len(_metrics_csv(run_dir)) == 2 and {("epoch/val_top1", 1), ("epoch/val_top1", 2)} <= expected.keys()
    results = json.loads((run_dir / "results.json").read_text())
    if logger == "wandb":
        ids, history, summary = _wandb_runs(run_dir)
        assert ids == {first}  # both parts of the run under one id (wandb sync joins them)
        assert history == pytest.approx(expected)
        assert summary["results/best_val_top1"] == pytest.approx(results["best_val_top1"])
    else:
        history, last, params, status = _mlflow_run(uri, first)
        assert history == pytest.approx(expected)
        assert params["optim.epochs"] == "1" and params["model.layers"] == "[1, 1, 1, 1]"  # the config at start
        assert status == "FINISHED"
        assert last["results/best_val_top1"] == pytest.approx(results["best_val_top1"])


def test_a_run_started_anew_gets_new_tracker_runs(tiny_demo, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra (uv sync --extra mlflow)")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # RUN_DIR/mlflow.db
    run_dir = tmp_path / "run"
    _fit(tiny_demo, run_dir, "optim.epochs=1", "loggers=[mlflow]")
    first = json.loads((run_dir / "trackers.json").read_text())["mlflow"]
    _fit(tiny_demo, run_dir, "optim.epochs=1", "loggers=[mlflow]", "resume=none", "overwrite=true")
    second = json.loads((run_dir / "trackers.json").read_text())["mlflow"]
    assert second != first
