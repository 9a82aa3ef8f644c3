"""ONNX export (videoattn.deploy.onnx, tools/export.py) and onnxruntime inference
(tools/infer.py --onnx): parity for every registry module, the metadata a deployment reads, and
the export's refusals; the per-frame step of online models (tools/export.py --streaming) and
tools/stream.py on an encoded video, in PyTorch and onnxruntime."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from cli import run
from torch import nn

from videoattn.attention import FIXED_SLOTS, get_spec, list_attention
from videoattn.checkpoint import make_checkpoint, save_checkpoint
from videoattn.data.transforms import EvalTransform
from videoattn.data.video import stream_frames
from videoattn.errors import ConfigError
from videoattn.models import StreamingModel, build_model, load_model

pytest.importorskip("onnxruntime", reason="the deploy extra (uv sync --extra deploy)")

from videoattn.deploy.onnx import (  # noqa: E402
    ExportError,
    OnnxModel,
    OnnxStream,
    export_onnx,
    export_streaming_step,
    providers,
    read_metadata,
    select_onnx_device,
)

T = 3
TINY = {"arch": "resnet18", "layers": [1, 1, 1, 1], "widths": [16, 32, 64, 128], "pretrained": None}


def _group(name: str) -> str:
    """temporal | static (block-, stage- and head-scoped), or the site of a stem / conv module
    (each in a model of its own: a bottleneck ResNet, the stem's frames per segment)."""
    spec = get_spec(name)
    return spec.scope if spec.scope in FIXED_SLOTS else spec.kind


GROUPS = sorted({_group(n) for n in list_attention()})


def _clips(n: int, size: int = 32, seed: int = 0, frames: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, T, 3 * frames, size, size, generator=g)  # (N, T, F*3, S, S)


@pytest.mark.parametrize("group", GROUPS)
def test_every_registry_module_exports_with_onnxruntime_parity(group, tmp_path):
    """One tiny ResNet per kind of module, holding every registry module of that kind (each in
    one stage, in turn; head and stage-scoped ones where the registry puts them): an export per
    module would cost the suite a minute and a half."""
    names = [n for n in list_attention() if _group(n) == group]
    inserts = [{"name": n, "stages": [1 + i % 4]} for i, n in enumerate(names)]
    arch = {"arch": "resnet50"} if group in FIXED_SLOTS else {}  # a conv site: a bottleneck's 3x3 + BN
    model = build_model({"num_classes": 5, "num_segments": T, "inserts": inserts, **TINY, **arch}).eval()
    assert all(any(isinstance(m, get_spec(n).cls) for m in model.modules()) for n in names)  # each one built
    path = tmp_path / f"{group}.onnx"
    f = model.frames_per_segment
    diff = export_onnx(
        model,
        path,
        example=[_clips(2, frames=f)],
        check_inputs=[_clips(3, seed=1, frames=f)],
        metadata={"group": group},
    )
    assert diff <= 1e-4, names
    session = OnnxModel.load(path)
    x = _clips(1, seed=2, frames=f)  # a third batch size
    with torch.no_grad():
        ref = model(x).numpy()
    out = session(x)[0]
    assert out.shape == ref.shape == (1, 5) and np.abs(out - ref).max() <= 1e-4, names
    assert session.metadata == {"group": group}


class _DataDependent(nn.Module):
    """A forward torch.export cannot trace: Python control flow on a tensor's value."""

    def forward(self, x):
        return x.mean() if x.sum().item() > 0 else x.amax()


def test_export_refuses_what_it_cannot_trace_or_reproduce_and_writes_nothing(tmp_path):
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="cannot export"):
        export_onnx(_DataDependent(), path, example=[_clips(2)], metadata={})
    with pytest.raises(ExportError, match=r"the ONNX graph of Flatten differs from PyTorch by 0 .* > -1: not written"):
        export_onnx(nn.Flatten(), path, example=[_clips(2)], metadata={}, tolerance=-1.0)  # no diff passes -1
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    model = build_model({"num_classes": 4, "num_segments": T, "inserts": [{"name": "tsm"}, {"name": "se"}], **TINY})
    data = {"eval_transform": {"size": 32, "resize": 40}, "sampling": {}}
    path = tmp_path_factory.mktemp("export") / "tiny.pth"
    return save_checkpoint(make_checkpoint(model, classes=list("abcd"), data=data, origin={"kind": "training"}), path)


def test_export_tool_then_infer_with_onnx_gives_the_checkpoints_prediction(tiny_checkpoint, tiny_demo, tmp_path):
    out_path = tmp_path / "tiny.onnx"
    out = run(["tools/export.py", "--checkpoint", tiny_checkpoint, "--out", out_path, "--device", "cpu"])
    assert out.returncode == 0, out.stderr
    assert f"wrote {out_path}" in out.stdout and "onnxruntime vs PyTorch max abs diff" in out.stdout
    assert "(PyTorch on cpu, batch 3" in out.stdout
    meta = read_metadata(out_path)
    assert meta["classes"] == list("abcd") and meta["num_segments"] == T
    assert meta["eval_transform"]["size"] == 32 and meta["eval_transform"]["resize"] == 40
    assert len(meta["eval_transform"]["mean"]) == 3 and meta["model_config"]["inserts"][0]["name"] == "tsm"

    video = sorted((tiny_demo / "ssv2" / "20bn-something-something-v2").glob("*.webm"))[0]
    results = {}
    for flag, model in (("--checkpoint", tiny_checkpoint), ("--onnx", out_path)):
        out = run(["tools/infer.py", video, flag, model, "--json", "--device", "cpu"])
        assert out.returncode == 0, out.stderr
        results[flag] = json.loads(out.stdout)
    pt, ort = results["--checkpoint"], results["--onnx"]
    assert ort["runtime"] == "onnxruntime" and ort["frames"] == pt["frames"]
    assert pt["device"] == ort["device"] == "cpu"
    assert [t["class"] for t in ort["top"]] == [t["class"] for t in pt["top"]]
    assert np.allclose([t["prob"] for t in ort["top"]], [t["prob"] for t in pt["top"]], atol=1e-5)

    for argv, message in (
        ([video, "--onnx", out_path, "--precision", "bf16"], "--onnx runs the exported fp32 graph"),
        ([video, "--onnx", video], "not an ONNX model onnxruntime can load"),
        ([video, "--onnx", tmp_path / "missing.onnx"], "ONNX model not found"),
    ):
        out = run(["tools/infer.py", *argv])
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr


# ----------------------------------------------------------------------------- the per-frame step (online TSM)
def _online(arch: str = "resnet18", *, inserts=("tsm_online", "se"), t: int = T, size: int = 32):
    """A tiny eval-mode causal model with activations of a trained one's scale: BatchNorm
    statistics of a batch of 8 clips (a random MobileNetV2's would shrink them to ~1e-10),
    classifier N(0, 1/F)."""
    torch.manual_seed(0)
    backbone = TINY if arch == "resnet18" else {"arch": arch, "pretrained": None}
    m = build_model({"num_classes": 4, "num_segments": t, "inserts": [{"name": n} for n in inserts], **backbone})
    for bn in (mod for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)):
        bn.momentum = None  # the running statistics become the batch's
    with torch.no_grad():
        m.train()(torch.randn(8, t, 3, size, size, generator=torch.Generator().manual_seed(9)))
        m.fc.weight.normal_(0, m.fc.in_features**-0.5)
    return m.eval()


def test_the_streaming_step_of_tsm_mobilenet_v2_exports_and_streams_in_onnxruntime_like_pytorch(tmp_path):
    """TSM's online model (ResNet: the stream tool's journey below)."""
    arch, inserts = "mobilenet_v2", ("tsm_online",)
    model = _online(arch, inserts=inserts, size=64)  # at 32 px its last stages see 1x1 maps
    stream = StreamingModel(model)
    path = tmp_path / "step.onnx"
    frames = torch.randn(T + 2, 3, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # (F, N, 3, S, S)
    diff = export_streaming_step(stream, path, check_frames=frames, metadata={"classes": list("abcd")})
    assert diff <= 1e-4
    meta = read_metadata(path)
    states = stream.initial_states((1, 3, 64, 64))
    assert [tuple(s["shape"]) for s in meta["streaming"]["states"]] == [tuple(s.shape[1:]) for s in states]
    assert [s["module"] for s in meta["streaming"]["states"]] == stream.state_names and meta["classes"] == list("abcd")

    onnx_stream = OnnxStream.load(path)
    x = torch.randn(1, 2 * T, 3, 64, 64, generator=torch.Generator().manual_seed(2))  # another N, past T frames
    longer = _online(arch, inserts=inserts, t=2 * T, size=64)
    longer.load_state_dict(model.state_dict())
    with torch.no_grad():
        offline = longer.frame_logits(x)[0].numpy()  # (2T, K): the offline causal model
    online = np.concatenate([onnx_stream.step(x[:, i]) for i in range(2 * T)])  # (2T, K)
    assert np.abs(online - offline).max() <= 1e-4 and np.abs(offline).max() > 0.1
    assert onnx_stream.frames_seen == 2 * T
    with pytest.raises(ValueError, match=r"\(N, 3, 64, 64\)"):
        onnx_stream.step(x[:, 0, :, :16])


def test_a_clip_model_is_not_a_step_and_a_two_way_shift_does_not_stream(tiny_checkpoint, tmp_path):
    path = tmp_path / "clip.onnx"
    export_onnx(nn.Flatten(), path, example=[_clips(2)], metadata={}, tolerance=None)
    with pytest.raises(ConfigError, match="takes whole clips, not one frame: export the per-frame step"):
        OnnxStream.load(path)
    out = run(["tools/export.py", "--checkpoint", tiny_checkpoint, "--out", tmp_path / "s.onnx", "--streaming"])
    assert out.returncode == 2 and "cannot run one frame at a time" in out.stderr and "tsm: looks at" in out.stderr
    assert not (tmp_path / "s.onnx").exists()


@pytest.fixture(scope="module")
def online_checkpoint(tmp_path_factory):
    data = {"eval_transform": {"size": 32, "resize": 40}, "sampling": {}}
    path = tmp_path_factory.mktemp("online") / "online.pth"
    return save_checkpoint(
        make_checkpoint(_online(), classes=list("abcd"), data=data, origin={"kind": "training"}), path
    )


def _stream_json(argv):
    out = run(["tools/stream.py", *argv, "--json"])
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    return lines[:-1], lines[-1]["summary"]


def test_stream_tool_on_a_real_video_is_the_offline_causal_model_and_its_onnx_step_agrees(
    online_checkpoint, tiny_demo, tmp_path
):
    """The journey: a causal checkpoint -> stream.py on an encoded video (each step's running
    prediction = the offline causal model's frame logits of the decoded frames, averaged over the
    last k) -> export.py --streaming -> stream.py --onnx, checked against PyTorch frame by frame."""
    video = sorted((tiny_demo / "ssv2" / "20bn-something-something-v2").glob("*.webm"))[0]
    k = 5
    steps, summary = _stream_json([video, "--checkpoint", online_checkpoint, "--average", str(k), "--device", "cpu"])
    assert summary["device"] == "cpu"

    frames = torch.stack([f for _, f in stream_frames(video)])  # (F, 3, H, W) uint8
    f = len(frames)
    x = EvalTransform(size=32, resize=40)(frames, squeeze=True).unsqueeze(0)  # (1, F, 3, 32, 32)
    offline = _online(t=f)
    offline.load_state_dict(load_model(online_checkpoint)[0].state_dict())
    with torch.no_grad():
        per_frame = offline.frame_logits(x)[0]  # (F, K)
    running = torch.stack([per_frame[max(0, i - k + 1) : i + 1].mean(0) for i in range(f)]).softmax(1)  # (F, K)
    assert len(steps) == summary["steps"] == f > k
    assert [s["index"] for s in steps] == running.argmax(1).tolist()
    assert np.allclose([s["prob"] for s in steps], running.max(1).values.numpy(), atol=1e-5)
    assert [s["class"] for s in steps] == [list("abcd")[i] for i in running.argmax(1).tolist()]
    assert all(s["step_ms"] > 0 for s in steps) and summary["runtime"] == "PyTorch fp32" and summary["average"] == k

    step = tmp_path / "step.onnx"
    out = run(["tools/export.py", "--checkpoint", online_checkpoint, "--out", step, "--streaming"])
    assert out.returncode == 0 and "the per-frame step of" in out.stdout, out.stderr[-3000:]
    both, summary = _stream_json(
        [video, "--onnx", step, "--checkpoint", online_checkpoint, "--average", str(k), "--device", "cpu"]
    )
    assert summary["runtime"] == "onnxruntime" and summary["max_abs_diff"] <= 1e-4
    assert summary["device"] == summary["reference_device"] == "cpu"
    assert np.allclose([s["prob"] for s in both], [s["prob"] for s in steps], atol=1e-4)

    out = run(["tools/stream.py", video, "--onnx", step, "--stride", "2", "--every", "4"])
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout.splitlines()
    assert f"{(f + 1) // 2} steps of 80x64 frames: step" in out.stdout and "ms/frame median" in out.stdout
    assert len([line for line in text if " ms  read " in line]) == len(range(0, (f + 1) // 2, 4))

    for tool, argv, message in (
        ("infer.py", [video, "--onnx", step, "--device", "cpu"], "is a per-frame step (tools/export.py --streaming)"),
        (
            "stream.py",
            ["/dev/video9", "--format", "v4l2", "--checkpoint", online_checkpoint, "--device", "cpu"],
            "/dev/video9",
        ),
        ("stream.py", [video, "--onnx", step, "--precision", "bf16"], "--onnx runs the exported fp32 step"),
        ("stream.py", [video], "give the model"),
    ):
        out = run([f"tools/{tool}", *argv])
        assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_onnxruntime_on_a_gpu_needs_its_cuda_provider_and_never_falls_back_silently(caplog):
    """``--device cuda`` with ``--onnx`` where onnxruntime has no CUDAExecutionProvider (the CPU
    package) is one error; ``auto`` runs on the CPU and says why. The GPU is only named here:
    nothing runs on it."""
    import onnxruntime as ort

    assert providers("cpu") == ["CPUExecutionProvider"]
    assert providers(torch.device("cuda", 1), tf32=False) == [
        ("CUDAExecutionProvider", {"device_id": "1", "use_tf32": "0"}),
        "CPUExecutionProvider",
    ]
    assert select_onnx_device("cpu") == torch.device("cpu")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider (onnxruntime-gpu)")
    gpu = torch.device("cuda", 0)  # as select_device would answer on a machine with a GPU
    with pytest.raises(ConfigError, match="^device=cuda: onnxruntime cannot use the GPU: .* no CUDAExecutionProvider"):
        select_onnx_device("cuda", selected=gpu)
    with caplog.at_level("WARNING", logger="videoattn.deploy.onnx"):
        assert select_onnx_device("auto", selected=gpu) == torch.device("cpu")
    assert "device=auto: onnxruntime runs on the CPU because" in caplog.text and "onnxruntime-gpu" in caplog.text


def test_stream_tool_stops_on_ctrl_c_with_its_summary(online_checkpoint):
    """A live source (here FFmpeg's endless test pattern) ends with Ctrl-C: the frame in progress
    finishes, the summary follows, exit 0."""
    import signal
    import time

    from cli import start

    proc = start(["tools/stream.py", "testsrc=size=64x48:rate=30", "--format", "lavfi", "--checkpoint",
                  online_checkpoint, "--json", "--device", "cpu"])  # fmt: skip
    out_file = Path(proc._out)
    deadline = time.monotonic() + 60
    while (out_file.read_text() if out_file.exists() else "").count('"step"') < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.wait().stderr[-3000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    out = proc.wait(timeout=60)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])["summary"]
    assert summary["stopped_by"] == "SIGINT" and summary["steps"] >= 3
