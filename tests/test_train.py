"""tools/train.py end to end on a tiny dataset of real videos: resume after SIGKILL, a
2-process gloo run, a corrupt video, a wrong config key."""

from __future__ import annotations

import csv
import json
import re
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from cli import TINY_RUN, run, start

TINY = [*TINY_RUN, "deterministic=true"]


@pytest.fixture(scope="module")
def dataset(tiny_demo):
    return tiny_demo / "ssv2"


def train_cmd(run_dir, data_root, *extra, launcher=()):
    return [
        *launcher,
        "tools/train.py",
        f"run_dir={run_dir}",
        f"data.root={data_root}",
        "data.demo=false",
        *TINY,
        *extra,
    ]


def weights(run_dir):
    return torch.load(Path(run_dir) / "last.pth", map_location="cpu", weights_only=False)


RESUME_ARGS = ("optim.epochs=3", "max_steps_per_epoch=4")


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    """A 3-epoch TSM run (the uninterrupted reference of the resume test) and a 1-epoch TSN run
    (progress=true, its output redirected to files: no progress bar)."""
    runs = tmp_path_factory.mktemp("runs")
    for model, args in (("tsm", RESUME_ARGS), ("tsn", ("optim.epochs=1", "max_steps_per_epoch=2", "progress=true"))):
        out = run(train_cmd(runs / model, dataset, f"model={model}", *args))
        assert out.returncode == 0, out.stderr[-3000:]
        assert "val top-1" in out.stdout
        # every epoch's line shows where a step's time goes: waiting for clips, computing
        assert re.search(
            r"epoch 1/\d+: .*train_data_s_per_step=[\d.e-]+ train_compute_s_per_step=[\d.e-]+", out.stdout + out.stderr
        )
        assert_logged_once(out.stdout, runs / model / "train.log", epochs=int(args[0].split("=")[1]))
        assert "\r" not in out.stdout + out.stderr  # not a terminal: no progress bar, whatever `progress` says
    return runs


def assert_logged_once(stdout: str, train_log: Path, *, epochs: int) -> None:
    """Every epoch line and the result line are once on stdout (the bare message) and once in
    RUN_DIR/train.log (with time, logger and level); the result line ends the log."""
    log = train_log.read_text()
    lines = [rf"epoch {e}/{epochs}: epoch={e} lr=.* train_data_s_per_step=.*val_top1=.*" for e in range(1, epochs + 1)]
    result = rf"val top-1 [\d.]+ \(best [\d.]+\).*; checkpoints in {re.escape(str(train_log.parent))}"
    for line in [*lines, result]:
        assert len(re.findall(rf"^{line}$", stdout, re.M)) == 1, (line, stdout)
        assert len(re.findall(rf"^\[[^]]+\]\[train\]\[INFO\] - {line}$", log, re.M)) == 1, (line, log)
    assert re.fullmatch(rf"\[[^]]+\]\[train\]\[INFO\] - {result}", log.splitlines()[-1]), log


def test_sigkill_then_resume_matches_an_uninterrupted_run(dataset, trained, tmp_path):
    args = ("model=tsm", *RESUME_ARGS)

    killed_dir = tmp_path / "killed"
    proc = start(train_cmd(killed_dir, dataset, *args))
    for _ in range(12_000):  # poll for up to 4 minutes
        if (killed_dir / "last.pth").exists() or proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()  # SIGKILL, in epoch 2, just after the epoch-1 checkpoint
    proc = proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert weights(killed_dir)["epoch"] == 0

    resumed = run(train_cmd(killed_dir, dataset, *args))  # resume=auto is the default
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout + resumed.stderr
    a, b = weights(trained / "tsm"), weights(killed_dir)
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    untimed = [[{k: v for k, v in row.items() if "per_s" not in k} for row in c["history"]] for c in (a, b)]
    assert untimed[0] == untimed[1]  # same losses and accuracies, epoch by epoch


def test_two_process_gloo_torchrun_keeps_the_ranks_identical(dataset, tmp_path):
    launcher = ("-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517")
    out = run(
        train_cmd(
            tmp_path / "ddp", dataset, "optim.epochs=1", "max_steps_per_epoch=3", "batch_size=2", launcher=launcher
        )
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "weights identical on all 2 ranks: max abs difference 0" in out.stdout
    assert "2 process(es)" in out.stdout + out.stderr
    assert json.loads((tmp_path / "ddp" / "results.json").read_text())["epochs"] == 1

    # the validation of both ranks' shards used the BatchNorm statistics that rank 0 saved (each rank
    # trained its own into its buffers): one process evaluating last.pth gives the logged numbers
    from videoattn.data.build import build_dataset, normalize_data_config
    from videoattn.engine.distributed import World
    from videoattn.engine.evaluate import evaluate
    from videoattn.models import load_model

    model, ckpt = load_model(tmp_path / "ddp" / "last.pth")
    val_set = build_dataset(normalize_data_config(ckpt["config"]["data"]), "val", mode="val", num_segments=4)
    loader = torch.utils.data.DataLoader(val_set, batch_size=2)
    result = evaluate(model, loader, num_classes=len(val_set.classes), world=World())
    logged = ckpt["history"][-1]
    assert result.num_clips == logged["val_videos"] == len(val_set)
    assert result.loss == pytest.approx(logged["val_loss"], rel=1e-6, abs=1e-7)
    assert result.top1 == logged["val_top1"]


def test_a_corrupt_video_is_reported_and_training_finishes(dataset, tmp_path):

    root = tmp_path / "ssv2"
    shutil.copytree(dataset, root)
    video = sorted((root / "20bn-something-something-v2").glob("*.webm"))[0]
    video.write_bytes(b"\x1aE\xdf\xa3 this is not a video" * 20)
    # with gradient accumulation: 3 updates of 2 batches
    out = run(train_cmd(tmp_path / "run", root, "optim.epochs=1", "max_steps_per_epoch=3", "optim.accumulate=2"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "global batch 8" in out.stdout + out.stderr  # batch_size 4 x 1 process x 2 batches per update
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["bad_files"] == [str(video)]
    assert "1 bad files were skipped" in out.stdout and video.name in out.stdout + out.stderr


@pytest.mark.parametrize("override, key", [("model.dropuot=0.1", "dropuot"), ("+data.flipp=on", "flipp")])
def test_a_wrong_config_key_fails_with_its_name(dataset, tmp_path, override, key):
    out = run(train_cmd(tmp_path / "bad", dataset, override))
    assert out.returncode != 0
    assert key in out.stdout + out.stderr


def test_test_tool_writes_metrics_predictions_and_confusion(trained, dataset):
    out_dir = trained / "tsm" / "test"
    out = run(
        [
            "tools/test.py",
            f"checkpoint={trained / 'tsm' / 'last.pth'}",
            f"data.root={dataset}",
            "data.demo=false",
            "split=val",
            f"out_dir={out_dir}",
            "workers=0",
            "data.eval_transform.size=48",
            "data.eval_transform.resize=56",
            "data.test.num_crops=3",
        ]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["num_clips"] == 2 and metrics["num_crops"] == 3 and metrics["videos"] == 12
    assert 0 <= metrics["top1"] <= metrics["top5"] <= 1 and len(metrics["per_class_accuracy"]) == 12
    lines = (out_dir / "predictions.csv").read_text().splitlines()
    assert len(lines) == 13 and lines[0].startswith("video_id,label,top1")
    assert (out_dir / "confusion.png").stat().st_size > 1000
    sub = run(
        [
            "tools/test.py",
            f"checkpoint={trained / 'tsm' / 'last.pth'}",
            f"data.root={dataset}",
            "data.demo=false",
            "split=test",
            "data.splits.test=test",
            f"out_dir={out_dir}_sub",
            "workers=0",
            "data.eval_transform.size=48",
            "data.eval_transform.resize=56",
        ]
    )
    assert sub.returncode == 0, sub.stderr[-3000:]
    rows = (Path(f"{out_dir}_sub") / "submission.csv").read_text().splitlines()
    assert len(rows) == 2 and all(";" in r for r in rows)
    # bf16 against the fp32 predictions: the agreement is the share of equal top-1 columns
    bf16 = run(
        [
            "tools/test.py",
            f"checkpoint={trained / 'tsm' / 'last.pth'}",
            f"data.root={dataset}",
            "data.demo=false",
            "split=val",
            f"out_dir={out_dir}_bf16",
            "workers=0",
            "data.eval_transform.size=48",
            "data.eval_transform.resize=56",
            "data.test.num_crops=3",
            "precision=bf16",
            f"reference={out_dir / 'predictions.csv'}",
        ]
    )
    assert bf16.returncode == 0, bf16.stderr[-3000:]
    metrics = json.loads((Path(f"{out_dir}_bf16") / "metrics.json").read_text())
    assert metrics["precision"] == "bf16" and metrics["channels_last"] is True  # NHWC with bf16 by default
    ref = metrics["reference"]
    top1 = [
        {r["video_id"]: r["top1"] for r in csv.DictReader(open(d / "predictions.csv"))}
        for d in (out_dir, Path(f"{out_dir}_bf16"))
    ]
    assert ref["videos"] == 12 and ref["top1_agreement"] == sum(top1[0][v] == top1[1][v] for v in top1[0]) / 12
    assert "top-1 agreement with" in bf16.stdout


def test_infer_prints_top5_and_draws_the_explanation(trained, dataset):
    video = sorted((dataset / "20bn-something-something-v2").glob("*.webm"))[0]
    png = trained / "explain.png"
    infer = ["tools/infer.py", str(video), "--checkpoint", str(trained / "tsm" / "last.pth"), "--json"]
    out = run([*infer, "--explain", str(png)])
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout)
    assert len(res["top"]) == 5 and abs(sum(t["prob"] for t in res["top"])) <= 1.0 + 1e-6
    assert res["top"][0]["prob"] >= res["top"][-1]["prob"] and len(res["frames"]) == 4
    assert png.stat().st_size > 5000
    assert res["precision"] == "fp32" and res["channels_last"] is False
    bf16 = run([*infer, "--precision", "bf16"])
    assert bf16.returncode == 0, bf16.stderr[-3000:]
    res16 = json.loads(bf16.stdout)
    assert res16["channels_last"] is True and res16["frames"] == res["frames"] and len(res16["top"]) == 5


def test_ablate_collects_runs_into_a_table_and_a_chart(trained, tmp_path):
    argv = ["tools/ablate.py", "--models", "tsn,tsm", "--collect", str(trained), "--out", str(tmp_path)]
    mixed = run(argv)  # a 1-epoch and a 3-epoch run: not comparable
    assert mixed.returncode == 2 and "runs of different lengths (epochs: tsn 1, tsm 3)" in mixed.stderr
    out = run([*argv, "--allow-mixed"])
    assert out.returncode == 0, out.stderr[-3000:]
    table = (tmp_path / "ablation.md").read_text()
    assert "| tsn | none | 1 |" in table and "| tsm | temporal | 3 |" in table and "order-dependent" in table
    assert (tmp_path / "ablation.png").stat().st_size > 5000


def test_normalising_on_the_device_trains_the_same_weights(dataset, tmp_path):
    """uint8 batches (the default: transforms with normalize: false) normalised after the copy to
    the device give the run of host normalisation, bit for bit."""
    args = ("optim.epochs=1", "max_steps_per_epoch=2", "seed=3")
    host = ("data.train_transform.normalize=true", "data.eval_transform.normalize=true")
    for name, extra in (("host", host), ("device", ())):
        out = run(train_cmd(tmp_path / name, dataset, *args, *extra))
        assert out.returncode == 0, out.stderr[-3000:]
    host, device = weights(tmp_path / "host"), weights(tmp_path / "device")
    assert all(torch.equal(host["model"][k], device["model"][k]) for k in host["model"])
    assert host["history"][0]["val_top1"] == device["history"][0]["val_top1"]
