"""Smoke test of tools/benchmark.py and videoattn.benchmark on tiny networks: the structure of
their results, never their timings."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from videoattn.benchmark import timing
from videoattn.benchmark.loader import backends, full_decode
from videoattn.benchmark.models import Mode, bench_models, build
from videoattn.benchmark.streaming import DEFAULT_STREAM_MODES, bench_streaming, stream_modes
from videoattn.benchmark.timing import bench_device, interleaved, median_ci
from videoattn.errors import ConfigError

TOOL = Path(__file__).resolve().parents[1] / "tools" / "benchmark.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_bench_models_reports_every_variant(bench):
    args = bench.default_args(
        models=["tsn", "action"], arch="resnet18", segments=2, size=32, batch_sizes=[1, 2],
        modes=["channels_last", "bf16"], train=True, train_batch_size=1, repeats=1, warmup=0,
        min_sample_s=0.0, agree_clips=2, threads=1, device="cpu",
    )  # fmt: skip
    results = bench_models(args, overrides={"layers": [1, 1, 1, 1], "widths": [16, 16, 32, 32]})
    json.dumps(results)  # JSON-ready
    assert set(results) == {"environment", "settings", "models", "forward", "train", "agreement"}
    assert results["settings"]["modes"] == ["fp32", "channels_last", "bf16"]  # fp32 always measured
    assert list(results["models"]) == ["torchvision_tsn", "tsn", "action"]  # action: 5-D weights
    assert all(m["params_m"] > 0 and m["gmacs_per_clip"] > 0 for m in results["models"].values())
    assert len(results["forward"]) == 3 * 3 * 2 and len(results["train"]) == 3 * 3
    for row in results["forward"] + results["train"]:
        assert row["ms_per_clip"] > 0 and row["clips_per_s"] > 0 and len(row["samples_ms_per_clip"]) == 1
        assert row["ratio_torchvision_tsn"] > 0 and row["ratio_tsn"] > 0 and row["speedup_vs_fp32"] > 0
        assert "peak_mem_mib" in row
    base = [r for r in results["forward"] if r["model"] == "torchvision_tsn"]
    assert all(r["ratio_torchvision_tsn"] == 1.0 for r in base)
    agree = {(r["model"], r["mode"]) for r in results["agreement"]}
    assert agree == {(m, mode) for m in results["models"] for mode in ("channels_last", "bf16")}
    assert all(0 <= r["top1_agreement"] <= 1 for r in results["agreement"])
    md = bench.to_markdown(results)
    assert "### Forward (eval), batch 2" in md and "### Train step, batch 1" in md and "`action` | bf16" in md


def test_command_line_writes_json_and_markdown(bench, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="videoattn.benchmark")
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    bench.main([
        "--models", "tsn", "--arch", "resnet18", "--segments", "2", "--size", "32",
        "--batch-sizes", "1", "--modes", "fp32", "--repeats", "1", "--warmup", "0",
        "--min-sample-s", "0", "--agree-clips", "0", "--no-memory", "--threads", "1", "--device", "cpu",
        "--json", str(out_json), "--markdown", str(out_md),
    ])  # fmt: skip
    results = json.loads(out_json.read_text())
    assert results["environment"]["device"] == results["settings"]["device"] == "cpu"
    assert [r["model"] for r in results["forward"]] == ["torchvision_tsn", "tsn"]
    assert out_md.read_text() in capsys.readouterr().out
    assert results["environment"]["cpu_bf16"] in out_md.read_text()  # the CPU's bf16 support, in the table
    progress = caplog.messages  # each section's start and end, the rounds' estimates, what bf16 does here
    assert progress.count("section 1/1 models: start") == 1 and any(
        m.startswith("section 1/1 models: done in") for m in progress
    )
    assert any("rounds, at most about" in m for m in progress) and any(m.endswith("s left") for m in progress)
    assert any(m.startswith("CPU bf16 instructions: ") for m in progress)


@pytest.mark.parametrize(
    ("flags", "found"),
    [("fpu avx512f avx512_bf16 amx_bf16 amx_tile", "avx512_bf16 amx_bf16"), ("fpu avx2 avx512f", "none")],
)
def test_the_cpu_bf16_support_is_read_from_the_cpu_flags(flags, found, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: X\nflags\t\t: {flags}\n")
    support = timing.cpu_bf16(cpuinfo)
    assert support.startswith(f"{found} (torch: ")
    assert ("emulated" in timing.bf16_note(support)) == (found == "none")


def test_bad_mode_and_unknown_model_are_clear_errors(bench):
    with pytest.raises(ValueError, match="'\\+'-joined"):
        Mode.parse("fp16")
    with pytest.raises(ValueError, match="onnxruntime alone"):
        Mode.parse("onnxruntime+bf16")
    with pytest.raises(ValueError, match="no model config"):
        build("tsmm", config_dir=bench.CONFIGS, num_classes=3, num_segments=2, arch="resnet18")


def test_loader_section_compares_decord_pyav_and_full_decode(bench, tmp_path, capsys):
    from videoattn.data.synthetic import write_demo_dataset

    root = write_demo_dataset(
        tmp_path / "demo",
        train_per_class=1,
        val_per_class=1,
        test_clips=1,
        kinetics_train_per_class=1,
        kinetics_val_per_class=1,
        formats=("ssv2",),
    )
    results = bench.main([
        "--sections", "loader", "--loader-root", str(root / "ssv2"), "--loader-clips", "4", "--segments", "3",
        "--size", "32", "--loader-batch-size", "2", "--loader-workers", "0,1", "--loader-repeats", "1",
        "--threads", "1", "--realistic-clips", "1", "--realistic-scale", "0.1", "--realistic-dir", str(tmp_path / "rv"),
    ])  # fmt: skip
    data = results["data_loader"]
    forms = {(r["kind"], r["form"], r["backend"]) for r in data["forms"]["rows"]}
    per_kind = {(f, b) for f in ("original", "re-encoded") for b in backends()} | {("JPEG frames", "frames")}
    assert forms == {(k, f, b) for k in ("SSv2-like", "K400-like") for f, b in per_kind}
    assert all(r["clips_per_s_per_core"] > 0 and r["cores_for_target"] > 0 for r in data["forms"]["rows"])
    assert "models" not in results and data["settings"]["clips"] == 4
    readers = [r["reader"].split(",")[0] for r in data["reads"]]
    names = {"decord": "decord", "pyav": "PyAV", "torchcodec": "torchcodec"}
    assert readers == [*(names[b] for b in backends()), "PyAV"]  # the installed backends, then full decode
    assert data["reads"][-1]["x_baseline"] == 1.0 and all(r["clips_per_s"] > 0 for r in data["reads"])
    assert {(r["backend"], r["workers"]) for r in data["loader"]} == {(b, w) for b in backends() for w in (0, 1)}
    out = capsys.readouterr().out
    assert "x full-decode baseline" in out and "| pyav | 1 |" in out and "cores to feed 400 clips/s" in out


def test_full_decode_baseline_picks_the_sampled_frames(bench, tmp_path):
    from videos import decode_bars, write_video

    path = write_video(tmp_path / "bars.webm", 20)
    frames = full_decode(path, lambda n: np.array([0, 7, n - 1]))  # (T, H, W, 3)
    assert [decode_bars(f) for f in frames] == [0, 7, 19]


def test_interleaved_rounds_rotate_the_start_and_keep_the_calibrated_samples():
    calls = []
    fns = [lambda k=k: calls.append(k) for k in range(3)]
    timed = interleaved(fns, label="t", repeats=2, warmup=1)
    assert calls == [0, 1, 2] + [0, 1, 2] + [1, 2, 0] + [2, 0, 1]  # untimed first calls, then rotated rounds
    assert [len(s) for s in timed.samples] == [2, 2, 2] and timed.inner == [1, 1, 1] and len(timed.first_call_s) == 3


def test_median_ci_is_the_binomial_order_statistic_interval():
    assert median_ci([3.0, 1.0, 2.0, 5.0, 4.0]) is None  # 5 rounds: no 95% interval
    assert median_ci([6, 2, 4, 1, 5, 3]) == (1, 6)  # P(1 <= B(6, 1/2) <= 5) = 62/64
    # n = 20: x_(6) and x_(15), coverage 1 - 2 P(B(20, 1/2) <= 5) = 0.959 (x_(7): 0.885)
    assert median_ci(list(range(20, 0, -1))) == (6, 15)
    lo, hi = median_ci(list(range(101)), level=0.99)
    assert lo < 50 < hi


def test_a_checkpoint_is_measured_with_its_own_t_classes_and_size(bench, tmp_path):
    from videoattn.checkpoint import make_checkpoint, save_checkpoint
    from videoattn.errors import ConfigError
    from videoattn.models import build_model

    model = build_model(
        {
            "arch": "resnet18",
            "layers": [1, 1, 1, 1],
            "widths": [8, 16, 32, 64],
            "num_classes": 5,
            "num_segments": 3,
            "inserts": [{"name": "tsm"}],
        }
    )
    path = save_checkpoint(
        make_checkpoint(
            model, classes=list("abcde"), data={"eval_transform": {"size": 32}}, origin={"kind": "training"}
        ),
        tmp_path / "tiny_tsm.pth",
    )
    argv = ["--checkpoint", str(path), *"--batch-sizes 1 --modes fp32 --repeats 1 --warmup 0 --min-sample-s 0".split(),
            *"--agree-clips 0 --no-memory --threads 1 --device cpu".split()]  # fmt: skip
    onnx = importlib.util.find_spec("onnxruntime") is not None  # the deploy extra: the model exported, parity checked
    results = bench.main([*argv, "--arch", "resnet18", *(["--modes", "fp32,onnxruntime", "--agree-clips", "2"] * onnx)])
    if onnx:
        assert [(r["model"], r["mode"]) for r in results["forward"]][-1] == ("tiny_tsm", "onnxruntime")
        (agree,) = [r for r in results["agreement"] if r["model"] == "tiny_tsm"]
        assert agree["mode"] == "onnxruntime" and agree["max_abs_diff"] <= 1e-4
    assert list(results["models"]) == ["torchvision_tsn", "tiny_tsm"]  # no default configs with --checkpoint
    s = results["settings"]
    assert (s["segments"], s["num_classes"], s["size"], s["arch"]) == (3, 5, 32, "resnet18")
    assert results["models"]["tiny_tsm"]["params_m"] * 1e6 == pytest.approx(sum(p.numel() for p in model.parameters()))
    with pytest.raises(ConfigError, match="--segments 8 contradicts .*tiny_tsm.pth"):
        bench.run(bench.parser().parse_args([*argv, "--segments", "8"]))


def test_index_section_loads_both_formats_and_follows_worker_memory(bench, capsys):
    results = bench.main(
        "--sections index --index-size 300 --index-kinetics 400 --index-workers 1 --index-batch-size 16 "
        "--index-backends pyav".split()
    )
    data = results["index"]
    assert {k: r["records"] for k, r in data["loads"].items()} == {"ssv2": 300, "kinetics": 400}
    assert all(r["seconds"] > 0 and 0 < r["index_mib"] < 1 for r in data["loads"].values())
    assert [(w["layout"], w["backend"]) for w in data["workers"]] == [("objects", "pyav"), ("table", "pyav")]
    assert all(len(w["workers"]) == 1 and w["workers"][0]["pss_end_mib"] > 0 for w in data["workers"])
    assert "### Annotation index" in capsys.readouterr().out


def test_streaming_section_times_every_mode_and_checks_it_against_fp32(bench):
    pytest.importorskip("onnxruntime", reason="the deploy extra (uv sync --extra deploy)")
    args = bench.default_args(
        sections=["streaming"], stream_models=["tsm_online"], stream_modes=["bf16+channels_last", "onnxruntime"],
        size=32, num_classes=5, segments=3, stream_frames=3, repeats=1, warmup=0, min_sample_s=0.0, threads=1,
        device="cpu",
    )  # fmt: skip
    tiny = {"layers": [1, 1, 1, 1], "widths": [16, 16, 32, 32]}
    results = bench_streaming(args, arch="resnet18", overrides=tiny)
    json.dumps(results)  # JSON-ready
    assert results["settings"]["modes"] == ["fp32", "bf16+channels_last", "onnxruntime"]  # fp32 always measured
    rows = {r["mode"]: r for r in results["rows"]}
    assert set(rows) == {"fp32", "bf16+channels_last", "onnxruntime"} and rows["fp32"]["speedup_vs_fp32"] == 1.0
    assert all(r["ms_per_frame"] > 0 and r["states"] == 4 and r["arch"] == "resnet18" for r in rows.values())
    agree = {r["mode"]: r for r in results["agreement"]}
    assert agree["onnxruntime"]["rel_err"] <= 1e-5 and agree["bf16+channels_last"]["rel_err"] <= 5e-2
    assert "| `tsm_online` | resnet18 | 4 (" in bench.to_markdown({"streaming": results})
    for models, modes, message in (
        (["tsm"], ["fp32"], "cannot run one frame at a time"),
        (["tsm_online"], ["compile"], "compile is not measured"),
    ):
        args.stream_models, args.stream_modes = models, modes
        with pytest.raises(ConfigError, match=message):
            bench_streaming(args, arch="resnet18", overrides=tiny)


def test_cpu_only_measurements_are_refused_or_left_out_on_a_gpu(bench, monkeypatch):
    """onnxruntime (CPU only) asked for on a GPU is refused, left out of the default streaming
    modes; CPU time cannot time a GPU. The GPU is only named: every check comes before it is used."""
    from videoattn.benchmark import timing

    monkeypatch.setattr(timing, "configure_backends", lambda *a, **k: None)  # no process-wide CUDA settings here
    gpu = torch.device("cuda", 0)
    assert stream_modes(None, gpu) == [m for m in DEFAULT_STREAM_MODES if m != "onnxruntime"]
    assert stream_modes(None, torch.device("cpu")) == list(DEFAULT_STREAM_MODES)
    with pytest.raises(ConfigError, match="--clock cpu: .* CUDA events"):
        bench_device(gpu, clock="cpu")
    with pytest.raises(ConfigError, match="--modes onnxruntime: .* CPU only"):
        bench_models(bench.default_args(device=gpu, modes=["fp32", "onnxruntime"], threads=1))
    with pytest.raises(ConfigError, match="--stream-modes onnxruntime: .* CPU only"):
        bench_streaming(bench.default_args(device=gpu, stream_modes=["onnxruntime"], threads=1))
