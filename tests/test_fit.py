"""The training engine in-process (videoattn.engine.fit): the config composed as tools/train.py
composes it, one tiny epoch, its checkpoint and its log."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import pytest
import torch
from cli import TINY_RUN

from videoattn.compose import check_overrides
from videoattn.engine.fit import fit
from videoattn.models import build_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_fit_trains_in_process_and_returns_the_best_val_top1(tiny_demo, tmp_path, caplog):
    run_dir = tmp_path / "run"
    argv = [
        *TINY_RUN,
        f"run_dir={run_dir}",
        f"data.root={tiny_demo / 'ssv2'}",
        "data.demo=false",
        "optim.epochs=1",
        "max_steps_per_epoch=2",
        "device=cpu",
        "malloc_cache=false",  # process-wide: not in the test process
    ]
    run_dir.mkdir()
    (run_dir / ".lock").write_text('{"pid": 4242, "host": "gone", "started": "then", "command": "killed"}\n')
    cfg = check_overrides(CONFIGS, "train", argv)  # composed with Hydra's compose API, as the tool's check does
    with torch.random.fork_rng(), caplog.at_level(logging.INFO):  # the run seeds the global RNG
        best = fit(cfg)
    assert isinstance(best, float) and 0.0 <= best <= 1.0 and not math.isnan(best)
    last = torch.load(run_dir / "last.pth", map_location="cpu", weights_only=True)
    assert last["epoch"] == 0 and last["best_top1"] == best and len(last["history"]) == 1
    lines = (run_dir / "train.log").read_text().splitlines()  # RunFolder.buffer_logs / open_log
    # the records of the start (the killed run's lock taken over), kept until the folder was the run's
    assert "(pid 4242 on gone, started then: killed)" in lines[0] and "taking it over" in lines[0]
    assert "run folder" in lines[1]
    assert len([line for line in lines if re.search(r"\] - epoch 1/1: .*train_data_s_per_step=", line)]) == 1
    result = rf"\] - val top-1 [\d.]+ \(best {best:.4f}\).*; checkpoints in {re.escape(str(run_dir))}$"
    assert len([line for line in lines if re.search(result, line)]) == 1 and re.search(result, lines[-1])
    assert not (run_dir / ".lock").exists()  # the lock went with the run
    handlers = [h for h in logging.getLogger().handlers if getattr(h, "baseFilename", "").endswith("train.log")]
    assert not handlers  # train.log is closed at the end of the run


@pytest.mark.parametrize(
    "model, arch, frames",
    [("tdn", "resnet50", 5), ("tada2d", "resnet50_tada", 1)],  # TDN's stem row: 5 frames per segment
)
def test_fit_trains_the_new_models_on_the_demo(model, arch, frames, tiny_demo, tmp_path):
    """``model=tdn`` / ``model=tada2d`` on their bottleneck backbones (tiny widths, no ImageNet
    weights; the demo's train.yaml sets resnet18): one epoch of 2 steps on the demo clips, the data
    side sampling the frames per segment the model's rows ask for."""
    run_dir = tmp_path / "run"
    argv = [
        *TINY_RUN,
        f"model={model}",
        f"model.arch={arch}",
        "model.pretrained=null",
        f"run_dir={run_dir}",
        f"data.root={tiny_demo / 'ssv2'}",
        "data.demo=false",
        "optim.epochs=1",
        "max_steps_per_epoch=2",
        "device=cpu",
        "malloc_cache=false",
    ]
    cfg = check_overrides(CONFIGS, "train", argv)
    with torch.random.fork_rng():
        best = fit(cfg)
    assert 0.0 <= best <= 1.0
    last = torch.load(run_dir / "last.pth", map_location="cpu", weights_only=True)
    assert last["model_config"]["name"] == model and last["epoch"] == 0
    model_obj = build_model({**last["model_config"], "pretrained": None})
    assert model_obj.frames_per_segment == frames
    model_obj.load_state_dict(last["model"])  # strictly: the trained weights are the model's
