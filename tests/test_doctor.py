"""tools/doctor.py and videoattn.doctor: the environment report, the measurements through the
real training step and loader, the bottleneck line's wording, and mistakes in one line."""

from __future__ import annotations

import json

import pytest
import torch
from cli import TINY_RUN, run

from videoattn.data.build import build_dataset, loader_options, normalize_data_config
from videoattn.doctor import (
    bottleneck,
    data_form,
    environment,
    environment_lines,
    measure_loader,
    measure_training,
    split_variant,
    variant_flags,
)
from videoattn.engine.optim import normalize_optim_config
from videoattn.errors import ConfigError

TINY_MODEL = {"arch": "resnet18", "layers": [1, 1, 1, 1], "widths": [8, 16, 32, 64], "inserts": [{"name": "tsm"}]}


def test_the_command_line_on_the_demo_data_prints_the_environment_and_the_bottleneck(tiny_demo, tmp_path):
    report = tmp_path / "doctor.json"
    cmd = ["tools/doctor.py", *TINY_RUN, f"data.root={tiny_demo}/ssv2", "data.demo=false", f"run_dir={tmp_path}/run"]
    res = run([*cmd, "--seconds", "0.2", "--warmup", "1", "--precisions", "fp32", "--json", str(report)])
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for name in ("python", "torch", "CUDA", "NVIDIA driver", "TF32", "decord", "PyAV", "torchcodec", "/dev/shm", "RAM"):
        assert f"  {name}" in out, name
    assert "disk (run_dir)" in out and "disk (data)" in out
    lines = out.strip().splitlines()
    verdict = next(line for line in lines if line.startswith("bottleneck: "))
    assert "clips/s" in verdict and "loader feeds" in verdict
    data = json.loads(report.read_text())  # the whole report, as one object
    assert data["bottleneck"] == verdict
    assert data["training"][0]["variant"] == "fp32" and data["training"][0]["clips_per_s"] > 0
    assert data["loader"]["clips_per_s"] > 0 and data["loader"]["workers"] == 0
    assert data["config"]["form"] == "videos" and data["config"]["num_segments"] == 4
    assert data["environment"]["cpu"]["cores"] >= 1
    assert not (tmp_path / "run").exists()  # the doctor writes no run folder


@pytest.mark.parametrize(
    "argv, message",
    [
        (["model.dropuot=0.1"], "the config has no key 'model.dropuot' (did you mean model.dropout?)"),
        (["data.root=/no/such/dataset", "data.demo=false"], "data.root=/no/such/dataset: no such folder"),
        (["--secs", "1"], "unrecognized argument --secs"),
    ],
)
def test_a_mistake_is_one_line_and_exit_code_2(argv, message):
    res = run(["tools/doctor.py", *argv])
    err = res.stderr.strip()
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err
    assert "Traceback" not in res.stdout + res.stderr


def test_the_loader_bound_line_names_frames_and_the_workers_needed():
    line = bottleneck(
        loader_clips_s=95,
        training_clips_s={"fp32": 300.0, "bf16": 610.0},
        configured="bf16",
        device="cuda",
        data_form="videos",
        workers=8,
        cores=64,
        source="ssv2",
        root="/data/ssv2",
    )
    assert line == (
        "bottleneck: the loader feeds 95 clips/s, the GPU trains 610 clips/s (bf16): prepare JPEG frames "
        "(tools/prepare_data.py --source ssv2 --root /data/ssv2 --prepare frames, then data.source=list "
        "data.root=/data/ssv2/lists) or give 52 workers (workers=52)"
    )
    # frames already: only workers; more of them than the cores of the machine says so
    line = bottleneck(
        loader_clips_s=100,
        training_clips_s={"fp32": 500.0},
        configured="fp32",
        device="cuda",
        data_form="frames",
        workers=4,
        cores=16,
        processes=2,
    )
    assert line == (
        "bottleneck: the loader feeds 100 clips/s, the GPU trains 500 clips/s (fp32): give 20 workers "
        "(workers=20; 40 in all for 2 processes, more than the 16 cores here)"
    )


def test_the_model_bound_line_names_the_faster_settings():
    line = bottleneck(
        loader_clips_s=900,
        training_clips_s={"fp32": 300.0, "bf16": 520.0, "bf16+channels_last": 700.0},
        configured="fp32",
        device="cuda",
        workers=8,
        cores=32,
    )
    assert line == (
        "bottleneck: the model: the loader feeds 900 clips/s, the GPU trains 300 clips/s (fp32): train with "
        "precision=bf16 channels_last=true (measured 700 clips/s) and try compile=true (measured here without it)"
    )
    line = bottleneck(
        loader_clips_s=400,
        training_clips_s={"fp32": 300.0, "bf16+channels_last": 700.0},
        configured="fp32",
        device="cuda",
        compile=True,
    )
    assert line.endswith(
        "train with precision=bf16 channels_last=true (measured 700 clips/s, then the loader's 400 clips/s limits it)"
    )
    # on the CPU the CPU is the bottleneck, and a GPU the advice
    line = bottleneck(
        loader_clips_s=40,
        training_clips_s={"fp32": 5.1, "bf16": 7.0},
        configured="fp32",
        device="cpu",
        cuda_reason="this PyTorch is a CPU-only build (install a CUDA build to use a GPU)",
    )
    assert line == (
        "bottleneck: the CPU trains 5.1 clips/s (fp32), the loader feeds 40 clips/s: train on a GPU (CUDA is "
        "not available here: this PyTorch is a CPU-only build (install a CUDA build to use a GPU)); on this CPU "
        "precision=bf16 trains 7 clips/s"
    )


def test_variants_and_their_flags():
    assert split_variant("bf16+channels_last") == ("bf16", True) and split_variant("fp32") == ("fp32", False)
    assert variant_flags("fp16+channels_last", relative_to="bf16+channels_last") == "precision=fp16"
    with pytest.raises(ConfigError, match="fp8"):
        split_variant("fp8")


def test_environment_is_plain_data_and_reads_as_lines(tmp_path):
    env = environment(paths={"data": tmp_path / "not" / "yet"})
    json.dumps(env)  # JSON-ready as it is
    assert env["torch"]["version"] == torch.__version__
    assert env["cuda"]["available"] == torch.cuda.is_available()
    assert env["cuda"]["available"] or env["cuda"]["reason"]
    assert env["decoders"]["auto"] in ("torchcodec", "decord", "pyav")
    assert env["disk"]["data"]["measured_at"] == str(tmp_path) and env["disk"]["data"]["free_bytes"] > 0
    lines = environment_lines(env)
    assert any(line.strip().startswith("CPU") for line in lines)


def test_measurements_in_process(tiny_demo):
    optim = normalize_optim_config({})
    r = measure_training(
        TINY_MODEL,
        num_classes=12,
        num_segments=4,
        batch_size=2,
        size=32,
        optim_cfg=optim,
        device=torch.device("cpu"),
        variant="fp32+channels_last",
        steps=2,
        warmup=1,
    )
    assert r["steps"] == 2 and r["clips_per_s"] > 0 and r["channels_last"] and r["error"] is None
    data = normalize_data_config({"name": "t", "source": "ssv2", "root": str(tiny_demo / "ssv2"), "demo": False,
                                  "splits": {"train": "train"}, "train_transform": {"size": 32}})  # fmt: skip
    dataset = build_dataset(data, "train", mode="train", num_segments=2)
    assert data_form(dataset) == "videos"
    loader = measure_loader(
        dataset, batch_size=4, options=loader_options("auto", workers=0, pin_memory=False), batches=7
    )  # past an epoch (6 batches): the next one follows
    assert loader["batches"] == 7 and loader["clips_per_s"] > 0
