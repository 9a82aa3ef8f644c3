"""Checkpoints from elsewhere (issue 26): no checkpoint runs code in any tool, opting in is one
flag and says so, the pickle-free model folder round-trips through the tools, and outputs never
replace inputs.

A payload checkpoint is a real videoattn checkpoint (a tiny streamable TSN for the demo's 12
classes) plus one extra object whose unpickling would create a marker file (``Path.touch``,
standing in for ``os.system``), in the zip and in the legacy (pre-1.6) format. Every tool that
reads a checkpoint gets it as a user would pass it and must exit 2 with one line naming the
global and the file, with no marker file appearing. Each command runs in a process of its own
(``cli.py``), on the tiny demo data, with settings that keep it to a few seconds.
"""

from __future__ import annotations

import json
import pathlib

import pytest
import torch
from cli import TINY_RUN, run
from omegaconf import OmegaConf

from videoattn.checkpoint import make_checkpoint, save_checkpoint
from videoattn.data.synthetic import DEMO_CLASSES
from videoattn.models import build_model

FORMATS = ("zip", "legacy")
CLASSES = sorted(DEMO_CLASSES)
TINY = {"arch": "resnet18", "layers": [1, 1, 1, 1], "widths": [8, 16, 32, 64], "pretrained": None}
DATA = {"eval_transform": {"size": 32, "resize": 40}, "sampling": {}}
SMALL = ["workers=0", "batch_size=4", "device=cpu"]  # test.py's and train.py's keys


class Touch:
    """Unpickles as ``Path.touch(path)``: what a malicious object's ``__reduce__`` does (there,
    ``os.system``), harmlessly and visibly."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """``good``: a tiny checkpoint (T=2, 32 px); ``zip`` / ``legacy``: it plus the payload, whose
    marker is ``marker``; ``video``: a demo video; ``ssv2``: the demo data in the SSv2 format."""
    root = tmp_path_factory.mktemp("untrusted")
    torch.manual_seed(0)
    model = build_model({"num_classes": len(CLASSES), "num_segments": 2, **TINY})
    ckpt = make_checkpoint(model, classes=CLASSES, data=DATA, origin={"kind": "training"})
    out = {"good": save_checkpoint(ckpt, root / "good.pth"), "marker": root / "marker"}
    for fmt in FORMATS:
        out[fmt] = root / f"payload_{fmt}.pth"
        torch.save({**ckpt, "extra": Touch(out["marker"])}, out[fmt], _use_new_zipfile_serialization=fmt == "zip")
    return out


@pytest.fixture(scope="module")
def video(tiny_demo):
    return sorted((tiny_demo / "ssv2" / "20bn-something-something-v2").glob("*.webm"))[0]


def _train(ssv2, run_dir, *extra):
    """A tiny one-step training of the payload's model (refused long before it starts)."""
    return ["tools/train.py", f"data.root={ssv2}", "data.demo=false", f"run_dir={run_dir}", "num_segments=2",
            "model.inserts=[]", "optim.epochs=1", "max_steps_per_epoch=1", *TINY_RUN[:2], *SMALL,
            "progress=false", "tensorboard=false", *extra]  # fmt: skip


# every tool that reads a checkpoint, as a user passes it: tool -> argv with {ckpt} {video} {ssv2} {tmp}
TOOLS = {
    "infer.py": ["tools/infer.py", "{video}", "--checkpoint", "{ckpt}", "--device", "cpu"],
    "test.py": ["tools/test.py", "checkpoint={ckpt}", "data.root={ssv2}", "data.demo=false", "split=val", *SMALL],
    "train.py model.pretrained": "pretrained",
    "train.py resume=PATH": "resume",
    "train.py resume=auto (last.pth)": "auto",
    "convert_checkpoint.py": ["tools/convert_checkpoint.py", "--src", "{ckpt}", "--dst", "{tmp}/out.pth"],
    "export.py": ["tools/export.py", "--checkpoint", "{ckpt}", "--out", "{tmp}/out.onnx"],
    "stream.py": ["tools/stream.py", "{video}", "--checkpoint", "{ckpt}", "--device", "cpu", "--max-frames", "2"],
    "benchmark.py": ["tools/benchmark.py", "--checkpoint", "{ckpt}", "--modes", "fp32", "--repeats", "1", "--device",
                     "cpu", "--agree-clips", "0", "--no-memory"],
}  # fmt: skip
CASES = [(tool, fmt) for tool in TOOLS for fmt in FORMATS]


def _argv(tool: str, ckpt: pathlib.Path, video, ssv2, tmp: pathlib.Path) -> list:
    spec = TOOLS[tool]
    if spec == "pretrained":
        return _train(ssv2, tmp / "run", f"model.pretrained={ckpt}")
    if spec == "resume":
        return _train(ssv2, tmp / "run", f"resume={ckpt}")
    if spec == "auto":  # the payload is the run folder's own last.pth
        (tmp / "run").mkdir()
        (tmp / "run" / "last.pth").write_bytes(ckpt.read_bytes())
        return _train(ssv2, tmp / "run")
    return [a.format(ckpt=ckpt, video=video, ssv2=ssv2, tmp=tmp) for a in spec]


@pytest.mark.parametrize("tool, fmt", CASES, ids=[f"{t}-{f}" for t, f in CASES])
def test_a_checkpoint_that_would_run_code_is_refused_by_every_tool(tool, fmt, files, video, tiny_demo, tmp_path):
    argv = _argv(tool, files[fmt], video, tiny_demo / "ssv2", tmp_path)
    named = tmp_path / "run" / "last.pth" if TOOLS[tool] == "auto" else files[fmt]
    out = run(argv)
    text = (out.stdout + out.stderr).strip()
    assert out.returncode == 2, f"{argv}: exit {out.returncode}\n{text[-3000:]}"
    assert len(text.splitlines()) == 1 and text.startswith("error: ") and "Traceback" not in text, text
    assert f"{named} holds builtins.getattr, pathlib.Path" in text, text  # the global and the file
    how = "trust_checkpoint=true" if tool.startswith(("train.py", "test.py")) else "--trust-checkpoint"
    assert f"opt in with {how}" in text, text
    assert not files["marker"].exists()  # nothing of it ran
    assert not (tmp_path / "out.pth").exists() and not (tmp_path / "out.onnx").exists()


def test_opting_in_loads_it_and_says_so(files, video, tiny_demo, tmp_path):
    """--trust-checkpoint (argparse) and trust_checkpoint=true (Hydra): the file is unpickled in
    full (the marker appears: its code ran) and a warning names it."""
    marker = files["marker"]
    out = run(
        ["tools/infer.py", video, "--checkpoint", files["zip"], "--json", "--device", "cpu", "--trust-checkpoint"]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"--trust-checkpoint: unpickling {files['zip']} in full although it holds builtins.getattr" in out.stderr
    assert len(json.loads(out.stdout)["top"]) == 5 and marker.exists()
    marker.unlink()
    ssv2 = tiny_demo / "ssv2"
    argv = ["tools/test.py", f"checkpoint={files['legacy']}", f"data.root={ssv2}", "data.demo=false", "split=val"]
    out = run([*argv, "trust_checkpoint=true", f"out_dir={tmp_path / 'test'}", *SMALL])
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert f"trust_checkpoint=true: unpickling {files['legacy']} in full" in out.stdout + out.stderr
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert metrics["checkpoint"] == str(files["legacy"]) and metrics["data_root"] == str(ssv2)
    assert metrics["split"] == "val" and marker.exists()
    marker.unlink()


def test_the_model_folder_round_trips_through_the_tools(files, video, tmp_path):
    """convert_checkpoint.py --format safetensors: the same tensors, and infer.py gives the same
    prediction from the folder as from the .pth; a payload converted once with
    --trust-checkpoint becomes a folder that loads without trust and runs nothing."""
    folder = tmp_path / "tiny"
    out = run(["tools/convert_checkpoint.py", "--src", files["good"], "--dst", folder, "--format", "safetensors"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"wrote {folder} (model folder: model.safetensors + config.json)" in out.stdout
    from safetensors.torch import load_file

    saved, original = load_file(folder / "model.safetensors"), torch.load(files["good"], weights_only=True)["model"]
    assert saved.keys() == original.keys() and all(torch.equal(saved[k], v) for k, v in original.items())
    tops = []
    for given in (files["good"], folder, folder / "model.safetensors"):
        out = run(["tools/infer.py", video, "--checkpoint", given, "--json", "--device", "cpu", "--topk", "12"])
        assert out.returncode == 0, out.stderr[-3000:]
        tops.append([(t["class"], t["prob"]) for t in json.loads(out.stdout)["top"]])
    assert tops[0] == tops[1] == tops[2] and len(tops[0]) == 12

    shared = tmp_path / "shared"
    out = run(["tools/convert_checkpoint.py", "--src", files["zip"], "--dst", shared, "--format", "safetensors",
               "--trust-checkpoint"])  # fmt: skip
    assert out.returncode == 0 and files["marker"].exists(), out.stderr[-3000:]
    files["marker"].unlink()
    out = run(["tools/infer.py", video, "--checkpoint", shared, "--json", "--device", "cpu", "--topk", "12"])
    assert out.returncode == 0 and "unpickling" not in out.stderr, out.stderr[-3000:]
    assert [(t["class"], t["prob"]) for t in json.loads(out.stdout)["top"]] == tops[0]
    assert not files["marker"].exists()


def test_two_dataset_roots_of_one_format_get_two_default_out_dirs(tmp_path):
    """test.py's default out_dir names the dataset root (its folder and a hash of its path), so a
    test of one checkpoint on another root of the same format never replaces the first."""
    import runpy

    default_out_dir = runpy.run_path(str(pathlib.Path(__file__).parents[1] / "tools" / "test.py"))["default_out_dir"]
    cfg = OmegaConf.create({"checkpoint": str(tmp_path / "best.pth"), "protocol": None, "split": "val",
                            "precision": "fp32", "compile": False})  # fmt: skip
    views = {"num_clips": 1, "num_crops": 1}
    a, b, again = (
        default_out_dir(cfg, {"name": "ssv2", "root": str(root), "test": views})
        for root in (tmp_path / "a" / "ssv2", tmp_path / "b" / "ssv2", tmp_path / "a" / "x" / ".." / "ssv2")
    )
    assert a != b and a == again and a.parent == tmp_path and a.name.startswith("test_best_ssv2_ssv2-")
    demo = default_out_dir(cfg, {"name": "demo", "root": None, "test": views})
    assert demo == tmp_path / "test_best_demo_val_1x1"
