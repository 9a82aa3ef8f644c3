"""A model another person loads in one line (videoattn.share, tools/export.py --format folder,
hubconf.py): a tiny run trained and tested through the command lines, its shareable folder (the
files, config.json's contract and measured metrics, the model card), ``torch.hub.load(...,
source="local")`` giving infer.py's top-5, and the refusals (inputs never overwritten, ONNX flags,
a checkpoint that would run code)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch
import yaml
from cli import REPO, TINY_RUN, run

from videoattn.checkpoint import UntrustedCheckpointError, make_checkpoint, save_checkpoint
from videoattn.models import build_model


@pytest.fixture(scope="module")
def trained(tiny_demo, tmp_path_factory):
    """A tiny TSM run (2 epochs of 2 steps) on the demo's SSv2 layout, tested by tools/test.py
    (its metrics.json in the default folder beside best.pth): the run folder."""
    run_dir = tmp_path_factory.mktemp("share") / "run"
    ssv2 = tiny_demo / "ssv2"
    out = run(["tools/train.py", *TINY_RUN, f"run_dir={run_dir}", f"data.root={ssv2}", "data.demo=false",
               "optim.epochs=2", "max_steps_per_epoch=2", "device=cpu"])  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    out = run(["tools/test.py", f"checkpoint={run_dir / 'best.pth'}", f"data.root={ssv2}", "data.demo=false",
               "split=val", "workers=0", "batch_size=4", "device=cpu"])  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return run_dir


@pytest.fixture(scope="module")
def video(tiny_demo):
    return sorted((tiny_demo / "ssv2" / "20bn-something-something-v2").glob("*.webm"))[0]


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    head, _, _ = card[4:].partition("\n---\n")
    return yaml.safe_load(head)


def test_the_shareable_folder_holds_the_weights_the_contract_the_metrics_and_a_hub_model_card(trained, tmp_path):
    ckpt_path, folder = trained / "best.pth", tmp_path / "tsm_demo"
    out = run(["tools/export.py", "--format", "folder", "--checkpoint", ckpt_path, "--out", folder])
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    ckpt = torch.load(ckpt_path, weights_only=True)
    [test_json] = list(trained.glob("test_best_*/metrics.json"))  # found beside the checkpoint
    tested, results = json.loads(test_json.read_text()), json.loads((trained / "results.json").read_text())
    config = json.loads((folder / "config.json").read_text())

    from safetensors.torch import load_file

    weights = load_file(folder / "model.safetensors")
    assert weights.keys() == ckpt["model"].keys() and all(torch.equal(weights[k], v) for k, v in ckpt["model"].items())
    assert config["classes"] == ckpt["classes"] and config["model_config"] == ckpt["model_config"]
    assert config["data"]["sampling"] == ckpt["data"]["sampling"] and "test" in config["data"]  # the test views
    pre = config["preprocessing"]
    assert pre["num_segments"] == 4 and pre["frames_per_clip"] == 4
    assert (pre["eval_transform"]["size"], pre["eval_transform"]["resize"]) == (48, 56)
    assert len(pre["eval_transform"]["mean"]) == len(pre["eval_transform"]["std"]) == 3
    val, [test] = config["metrics"]["val"], config["metrics"]["test"]
    assert val["top1"] == pytest.approx(results["best_val_top1"]) and val["epoch"] == results["best_epoch"]
    best_row = ckpt["history"][ckpt["best_epoch"]]
    assert val["top5"] == pytest.approx(best_row["val_top5"])
    assert (test["top1"], test["top5"], test["split"]) == (tested["top1"], tested["top5"], "val")
    assert config["recipe"]["optimizer"] == "adamw" and config["recipe"]["epochs_trained"] == ckpt["epoch"] + 1

    card = (folder / "README.md").read_text()
    front = _front_matter(card)
    assert front["library_name"] == "videoattn" and front["pipeline_tag"] == "video-classification"
    assert "tsm" in front["tags"] and front["datasets"] == [config["data"]["name"]]
    assert front["metrics"] == ["accuracy"]
    [(entry)] = front["model-index"]
    values = [[m["value"] for m in r["metrics"]] for r in entry["results"]]
    assert values == [[round(100 * val["top1"], 2), round(100 * val["top5"], 2)],
                      [round(100 * test["top1"], 2), round(100 * test["top5"], 2)]]  # fmt: skip
    assert f'torch.hub.load("PATH/TO/videoattn", "model", checkpoint="{folder.name}", source="local")' in card
    assert f"| {100 * test['top1']:.2f} | {100 * test['top5']:.2f} |" in card
    assert all(f". {c}\n" in card for c in ckpt["classes"]) and f"## Classes ({len(ckpt['classes'])})" in card
    assert "- optimizer: adamw" in card and "centre crop 48 px" in card

    again = tmp_path / "again"  # from the folder itself: the contract and the card are kept
    out = run(["tools/export.py", "--format", "folder", "--checkpoint", folder, "--out", again])
    assert out.returncode == 0, out.stderr
    kept = json.loads((again / "config.json").read_text())
    assert {k: kept[k] for k in ("metrics", "recipe", "preprocessing")} == {
        k: config[k] for k in ("metrics", "recipe", "preprocessing")
    }


@pytest.mark.parametrize("given", ["folder", "pth"])
def test_torch_hub_load_gives_the_model_with_its_preprocessing_and_infer_py_s_top5(given, trained, video, tmp_path):
    folder = tmp_path / "shared"
    assert (
        run(["tools/export.py", "--format", "folder", "--checkpoint", trained / "best.pth", "--out", folder]).returncode
        == 0
    )
    checkpoint = folder if given == "folder" else trained / "best.pth"
    model = torch.hub.load(str(REPO), "model", checkpoint=str(checkpoint), source="local")
    assert not model.training and model.classes == json.loads((folder / "config.json").read_text())["classes"]
    clip = model.preprocess.read(video)
    assert clip.shape == (1, 4, 3, 48, 48) and clip.dtype == torch.float32
    with torch.no_grad():
        probs = model(clip).softmax(-1)[0]
    top = probs.topk(5)

    out = run(["tools/infer.py", video, "--checkpoint", checkpoint, "--json", "--device", "cpu"])
    assert out.returncode == 0, out.stderr
    infer = json.loads(out.stdout)
    assert model.preprocess.indices(_num_frames(video)).tolist() == infer["frames"]
    assert [t["index"] for t in infer["top"]] == top.indices.tolist()
    assert [t["class"] for t in infer["top"]] == [model.classes[i] for i in top.indices]
    assert [t["prob"] for t in infer["top"]] == pytest.approx(top.values.tolist(), abs=1e-6)


def _num_frames(video: pathlib.Path) -> int:
    from videoattn.data.video import read_clip

    seen = []  # the frame count the reader gives the sampler
    read_clip(video, lambda n: seen.append(n) or np.zeros(1, dtype=np.int64))
    return seen[0]


class _Touch:
    """Unpickles as ``Path.touch(path)``: what a malicious object's ``__reduce__`` would do (there, any command)."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_hub_load_and_export_refuse_what_would_run_code_or_replace_an_input(trained, tmp_path):
    model = build_model({"arch": "resnet18", "layers": [1, 1, 1, 1], "widths": [8, 16, 32, 64], "pretrained": None,
                         "num_classes": 3, "num_segments": 2})  # fmt: skip
    ckpt = make_checkpoint(model, classes=list("abc"), data={}, origin={"kind": "training"})
    payload, marker = tmp_path / "payload.pth", tmp_path / "marker"
    torch.save({**ckpt, "extra": _Touch(marker)}, payload)
    with pytest.raises(UntrustedCheckpointError, match=r"payload.pth holds .*pathlib.Path.*not loaded"):
        torch.hub.load(str(REPO), "model", checkpoint=str(payload), source="local")
    assert not marker.exists()
    good = save_checkpoint(ckpt, tmp_path / "good.pth")
    metrics = next(trained.glob("test_best_*/metrics.json"))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine\n")
    for argv, message in (
        (["--checkpoint", good, "--out", good], "writing it would replace the input"),
        (["--checkpoint", good, "--out", metrics.parent, "--metrics", metrics], "a folder that holds other files"),
        (["--checkpoint", good, "--out", taken], "a folder that holds other files"),
        (["--checkpoint", good, "--out", tmp_path / "x", "--opset", "19"], "--opset is an ONNX export setting"),
        (["--checkpoint", good, "--out", tmp_path / "x", "--metrics", good], "not JSON"),
        (["--checkpoint", payload, "--out", tmp_path / "x"], "holds"),
    ):
        out = run(["tools/export.py", "--format", "folder", *argv])
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, (argv, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists() and not marker.exists() and (taken / "notes.txt").read_text() == "mine\n"
    out = run(["tools/export.py", "--checkpoint", good, "--out", tmp_path / "m.onnx", "--metrics", metrics])
    assert out.returncode == 2 and "--metrics is for --format folder" in out.stderr
