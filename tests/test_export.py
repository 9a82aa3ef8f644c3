"""ONNX export (videoattn.deploy.onnx, tools/export.py) and onnxruntime inference
(tools/infer.py --onnx): parity for every registry module, the metadata a deployment reads, and
the export's refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli import run
from torch import nn

from videoattn.attention import get_spec, list_attention
from videoattn.checkpoint import make_checkpoint, save_checkpoint
from videoattn.models import build_model

pytest.importorskip("onnxruntime", reason="the deploy extra (uv sync --extra deploy)")

from videoattn.deploy.onnx import ExportError, OnnxModel, export_onnx, read_metadata  # noqa: E402

T = 3
TINY = {"arch": "resnet18", "layers": [1, 1, 1, 1], "widths": [16, 32, 64, 128], "pretrained": None}


def _group(name: str) -> str:
    return get_spec(name).kind  # temporal | static (block-, stage- and head-scoped)


GROUPS = sorted({_group(n) for n in list_attention()})


def _clips(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, T, 3, size, size, generator=torch.Generator().manual_seed(seed))  # (N, T, 3, S, S)


@pytest.mark.parametrize("group", GROUPS)
def test_every_registry_module_exports_with_onnxruntime_parity(group, tmp_path):
    """One tiny ResNet per kind of module, holding every registry module of that kind (each in
    one stage, in turn; head and stage-scoped ones where the registry puts them): an export per
    module would cost the suite a minute and a half."""
    names = [n for n in list_attention() if _group(n) == group]
    inserts = [{"name": n, "stages": [1 + i % 4]} for i, n in enumerate(names)]
    model = build_model({"num_classes": 5, "num_segments": T, "inserts": inserts, **TINY}).eval()
    assert all(any(isinstance(m, get_spec(n).cls) for m in model.modules()) for n in names)  # each one built
    path = tmp_path / f"{group}.onnx"
    diff = export_onnx(model, path, example=[_clips(2)], check_inputs=[_clips(3, seed=1)], metadata={"group": group})
    assert diff <= 1e-4, names
    session = OnnxModel.load(path)
    x = _clips(1, seed=2)  # a third batch size
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
    out = run(["tools/export.py", "--checkpoint", tiny_checkpoint, "--out", out_path])
    assert out.returncode == 0, out.stderr
    assert f"wrote {out_path}" in out.stdout and "onnxruntime vs PyTorch max abs diff" in out.stdout
    meta = read_metadata(out_path)
    assert meta["classes"] == list("abcd") and meta["num_segments"] == T
    assert meta["eval_transform"]["size"] == 32 and meta["eval_transform"]["resize"] == 40
    assert len(meta["eval_transform"]["mean"]) == 3 and meta["model_config"]["inserts"][0]["name"] == "tsm"

    video = sorted((tiny_demo / "ssv2" / "20bn-something-something-v2").glob("*.webm"))[0]
    results = {}
    for flag, model in (("--checkpoint", tiny_checkpoint), ("--onnx", out_path)):
        out = run(["tools/infer.py", video, flag, model, "--json"])
        assert out.returncode == 0, out.stderr
        results[flag] = json.loads(out.stdout)
    pt, ort = results["--checkpoint"], results["--onnx"]
    assert ort["runtime"] == "onnxruntime" and ort["frames"] == pt["frames"]
    assert [t["class"] for t in ort["top"]] == [t["class"] for t in pt["top"]]
    assert np.allclose([t["prob"] for t in ort["top"]], [t["prob"] for t in pt["top"]], atol=1e-5)

    for argv, message in (
        ([video, "--onnx", out_path, "--precision", "bf16"], "--onnx runs the exported fp32 graph"),
        ([video, "--onnx", video], "not an ONNX model onnxruntime can load"),
        ([video, "--onnx", tmp_path / "missing.onnx"], "ONNX model not found"),
    ):
        out = run(["tools/infer.py", *argv])
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
