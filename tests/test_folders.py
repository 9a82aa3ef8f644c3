"""A user's own videos (``data=folders``, videoattn/data/formats/folders.py): class folders or a
CSV, each video checked once (the check cached by path, size and mtime: a rerun opens none), a
stratified split drawn by a hash of each video's relative path (the same for every copy of the
folder and every order of its files), kept in a file that later runs read back; tiny classes and
bad CSV lines refused by name. Then the journey through the command lines: class folders with a
corrupt video -> train.py --config-name custom from a converted official-layout Kinetics
checkpoint -> test.py on the run's split -> infer.py -> export.py --format folder ->
torch.hub.load giving infer.py's top-5."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli import REPO, run
from PIL import Image

from videoattn.checkpoint import make_checkpoint, save_checkpoint
from videoattn.data.formats import folders as fmt
from videoattn.data.formats import load_annotations
from videoattn.data.formats.common import AnnotationError
from videoattn.errors import DataError
from videoattn.models import build_model

CLASSES = ["jump", "swipe left", "swipe right", "wave"]


def _frames(folder: Path, seed: int, n: int = 3) -> None:
    """A JPEG-frame video: ``n`` tiny frames."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i + 1:05d}.jpg")


def _dataset(root: Path, per_class: dict[str, int], *, reverse: bool = False) -> Path:
    """Class folders of JPEG-frame videos, written in sorted or reversed order (the file system's
    listing order then differs between two copies)."""
    items = [(c, i) for c, n in per_class.items() for i in range(n)]
    for seed, (cls, i) in sorted(enumerate(items), reverse=reverse):
        _frames(root / cls / f"clip{i:02d}", seed)
    return root


def _split(root: Path, split_file: Path | None = None, **kw) -> dict[str, list[str]]:
    out = {}
    for split in ("train", "val"):
        ann = load_annotations("folders", root, split, split_file=split_file, **kw)
        out[split] = sorted(r.video_id for r in ann.records)
        assert ann.classes == sorted(p.name for p in root.iterdir() if p.is_dir())
    return out


def test_the_split_is_stratified_and_the_same_for_every_copy_order_and_rerun(tmp_path):
    per_class = {c: 5 + i for i, c in enumerate(CLASSES)}
    a = _split(_dataset(tmp_path / "a", per_class))
    b = _split(_dataset(tmp_path / "elsewhere" / "b", per_class, reverse=True))  # another path, another order
    assert a == b == _split(tmp_path / "a")  # rerun
    for cls, n in per_class.items():  # stratified: round(0.2 n) of each class, at least one
        assert sum(k.startswith(cls + "/") for k in a["val"]) == max(round(0.2 * n), 1)
    assert not set(a["train"]) & set(a["val"]) and len(a["train"]) + len(a["val"]) == sum(per_class.values())
    other = _split(tmp_path / "a", split_seed=1)
    assert other != a and [len(v) for v in other.values()] == [len(v) for v in a.values()]


def test_a_kept_split_never_moves_a_video_and_places_new_ones_by_their_hash(tmp_path):
    root = _dataset(tmp_path / "videos", {c: 6 for c in CLASSES})
    file = tmp_path / "run" / "split.json"
    first = _split(root, file)
    stored = file.read_text()
    assert json.loads(stored)["val"] == first["val"]
    for i in range(6, 16):  # ten new videos of "jump": the draw over all 16 would move old ones
        _frames(root / "jump" / f"clip{i:02d}", 100 + i)
    again = _split(root, file)
    assert file.read_text() == stored  # the file is left as it was
    old = {k for v in first.values() for k in v}
    for split in ("train", "val"):
        assert [k for k in again[split] if k in old] == first[split]
    new = {k: s for s, keys in again.items() for k in keys if k not in old}
    assert len(new) == 10
    assert all((s == "val") == fmt._joins_val(k, 0, 0.2) for k, s in new.items())
    redrawn = fmt.make_split({k: k.split("/")[0] for k in old | set(new)}, val_fraction=0.2, seed=0)
    assert any(redrawn[k] != s for s, keys in first.items() for k in keys)  # what the kept file prevents


def test_videos_are_checked_once_and_a_rerun_reads_the_cache(tmp_path, monkeypatch):
    root = _dataset(tmp_path / "videos", {c: 3 for c in CLASSES})
    (root / "wave" / "broken.mp4").write_bytes(b"not a video" * 20)
    opened = []
    check = fmt.check_video
    monkeypatch.setattr(fmt, "check_video", lambda path, **kw: opened.append(path) or check(path, **kw))
    ann = load_annotations("folders", root, "train")
    assert len(opened) == 13 and (root / fmt.CACHE_NAME).is_file()
    assert [Path(s.file).name for s in ann.skipped] == ["broken.mp4"] and "unreadable video" in ann.skipped[0].reason
    assert all(r.path.name != "broken.mp4" for r in ann.records)
    opened.clear()
    assert _split(root) == _split(root) and opened == []  # reruns open none
    os.utime(root / "jump" / "clip00", ns=(1, 1))  # changed since: that one is checked again
    load_annotations("folders", root, "val")
    assert opened == [root / "jump" / "clip00"]
    opened.clear()
    load_annotations("folders", root, "val", check_files=False)
    assert opened == []


def test_the_cache_goes_beside_the_split_file_when_the_root_is_read_only(tmp_path, monkeypatch):
    root = _dataset(tmp_path / "videos", {c: 2 for c in CLASSES})
    real = os.access
    monkeypatch.setattr(fmt.os, "access", lambda p, mode: False if Path(p) == root else real(p, mode))
    load_annotations("folders", root, "train", split_file=tmp_path / "run" / "split.json")
    assert not (root / fmt.CACHE_NAME).exists() and (tmp_path / "run" / "video_checks.json").is_file()


def test_a_class_with_fewer_than_two_readable_videos_is_refused_by_name(tmp_path):
    root = _dataset(tmp_path / "videos", {"jump": 3, "wave": 1, "swipe left": 2})
    with pytest.raises(DataError, match=r"1 classes have fewer than 2 videos: 'wave' \(1\); each needs one to train"):
        load_annotations("folders", root, "train")  # before any video is opened
    _frames(root / "wave" / "clip01", 7)
    (root / "swipe left" / "clip01" / "00001.jpg").write_bytes(b"broken")  # one of its two is unreadable
    with pytest.raises(DataError, match=r"1 classes have fewer than 2 readable videos: 'swipe left' \(1\)"):
        load_annotations("folders", root, "train")


def test_a_csv_or_tsv_of_paths_labels_and_splits(tmp_path):
    root = _dataset(tmp_path / "videos", {c: 3 for c in CLASSES})
    lines = [f"{c}/clip{i:02d},{c}" for c in CLASSES for i in range(3)]
    (root / "list.csv").write_text("path,label\n" + "\n".join(lines) + "\n")
    assert _split(root, csv="list.csv") == _split(root)  # the same keys, the same draw
    rows = [f"videos/{c}/clip{i:02d}\t{c}\t{'val' if i == 0 else 'train'}" for c in CLASSES for i in range(3)]
    (tmp_path / "list.tsv").write_text("\n".join(rows) + "\n")
    ann = load_annotations("folders", root, "val", csv=tmp_path / "list.tsv")  # paths relative to the file
    assert sorted(r.video_id for r in ann.records) == [f"videos/{c}/clip00" for c in CLASSES]

    (root / "bad.csv").write_text("path,label\njump/clip00,jump\njump/clip01\n")
    with pytest.raises(AnnotationError, match=r"bad.csv, line 3: expected path,label\[,split\]") as err:
        load_annotations("folders", root, "train", csv="bad.csv")
    assert err.value.line == 3
    (root / "gone.csv").write_text("jump/clip00,jump\njump/nope.mp4,jump\n")
    with pytest.raises(AnnotationError, match=r"gone.csv, line 2: video .*nope.mp4 not found"):
        load_annotations("folders", root, "train", csv="gone.csv")


# ----------------------------------------------------------------------------- the journey
SMALL = ["workers=0", "device=cpu", "progress=false", "loggers=[csv]", "data.train_transform.size=48",
         "data.eval_transform.size=48", "data.eval_transform.resize=56"]  # fmt: skip
THREADS = {"OMP_NUM_THREADS": "2"}
SMALL_TSM = {"arch": "resnet18", "layers": [1, 1, 1, 1], "widths": [8, 16, 32, 64], "inserts": [{"name": "tsm"}]}


def ok(out):
    assert out.returncode == 0, f"exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def tuned(tiny_demo, tmp_path_factory):
    """The demo's Kinetics clips as a user's class folders (3 per class, one corrupt video more), a
    Kinetics checkpoint (a small TSM ResNet of 400 classes; the converted official ResNet-50: the
    README's "Your own videos" block, run by test_readme_run.py), and ``train.py --config-name
    custom`` fine-tuning from it for 2 steps: the paths and outputs."""
    base = tmp_path_factory.mktemp("folders")
    videos = base / "my videos"
    for split in ("train", "val"):
        for folder in (tiny_demo / "kinetics" / split).iterdir():
            (videos / folder.name).mkdir(parents=True, exist_ok=True)
            for f in folder.iterdir():
                shutil.copy(f, videos / folder.name / f.name)
    (videos / "Something growing" / "corrupt.mp4").write_bytes(os.urandom(4096))
    k400 = save_checkpoint(
        make_checkpoint(
            build_model({**SMALL_TSM, "num_classes": 400, "num_segments": 8}),
            classes=None,
            data={"name": "kinetics"},
            origin={"kind": "training"},
        ),
        base / "tsm_k400.pth",
    )
    run_dir = base / "run"
    model = [
        f"model.{key}={json.dumps(value).replace(' ', '')}" for key, value in SMALL_TSM.items() if key != "inserts"
    ]
    train = ["tools/train.py", "--config-name", "custom", f"data.root={videos}", f"model.pretrained={k400}",
             "optim.epochs=1", "max_steps_per_epoch=2", "batch_size=2", *model, *SMALL]  # fmt: skip
    first = ok(run([*train, f"run_dir={run_dir}"], env=THREADS))
    return {"videos": videos, "run_dir": run_dir, "train": train, "first": first, "base": base}


def test_class_folders_to_a_fine_tuned_model_tested_inferred_and_loaded_from_the_hub(tuned, tmp_path):
    videos, run_dir, out = tuned["videos"], tuned["run_dir"], tuned["first"]
    text = out.stdout + out.stderr
    assert "checked 37 videos" in text and "unreadable video" in text and "corrupt.mp4" in text
    assert "skipped 1 unreadable videos of 37" in text
    assert "not initialised (2): fc.bias, fc.weight" in text and "new classifier" in text  # Kinetics' replaced
    classes = sorted(p.name for p in videos.iterdir() if p.is_dir())
    ckpt = torch.load(run_dir / "best.pth", weights_only=False)
    assert ckpt["classes"] == classes and ckpt["model_config"]["partial_bn"] and ckpt["model_config"]["dropout"] == 0.8
    split = json.loads((run_dir / "split.json").read_text())
    assert len(split["val"]) == 12 and len(split["train"]) == 24  # one of each class' three to val
    assert "corrupt.mp4" in (run_dir / "bad_files.jsonl").read_text()

    test_dir = tmp_path / "test"
    out = ok(run(["tools/test.py", f"checkpoint={run_dir / 'best.pth'}", "data=folders", f"data.root={videos}",
                  f"out_dir={test_dir}", "workers=0", "device=cpu"], env=THREADS))  # fmt: skip
    assert f"the split of the run that trained the checkpoint: {run_dir / 'split.json'}" in out.stdout + out.stderr
    metrics = json.loads((test_dir / "metrics.json").read_text())
    assert metrics["videos"] == 12 and sorted(metrics["per_class_accuracy"]) == classes
    predicted = (test_dir / "predictions.csv").read_text()
    assert all(key in predicted for key in split["val"])

    video = videos / split["val"][0]
    out = ok(
        run(["tools/infer.py", video, "--checkpoint", run_dir / "best.pth", "--json", "--device", "cpu"], env=THREADS)
    )
    infer = json.loads(out.stdout)
    assert len(infer["top"]) == 5 and all(t["class"] == classes[t["index"]] for t in infer["top"])

    folder = tmp_path / "shared"
    ok(run(["tools/export.py", "--format", "folder", "--checkpoint", run_dir / "best.pth", "--out", folder]))
    model = torch.hub.load(str(REPO), "model", checkpoint=str(folder), source="local")
    assert model.classes == classes
    with torch.no_grad():
        top = model(model.preprocess.read(video)).softmax(-1)[0].topk(5)
    assert [t["index"] for t in infer["top"]] == top.indices.tolist()
    assert [t["prob"] for t in infer["top"]] == pytest.approx(top.values.tolist(), abs=1e-5)


def test_a_rerun_reads_the_checks_and_keeps_the_split(tuned):
    run_dir = tuned["base"] / "again"  # a second run on the same folder (a tiny model: only the data matters)
    tiny = ["model.pretrained=null", "max_steps_per_epoch=1"]
    out = ok(run([*tuned["train"], f"run_dir={run_dir}", *tiny], env=THREADS))
    text = out.stdout + out.stderr
    assert "all 37 videos' checks read from" in text and not re.search(r"checked \d+ videos", text)
    assert "skipped 1 unreadable videos of 37" in text  # still said, never silently
    assert json.loads((run_dir / "split.json").read_text()) == json.loads((tuned["run_dir"] / "split.json").read_text())


@pytest.mark.parametrize("typed", ["data.root=~/my videos", "data.root=~/it's", "model.pretrained=~/k400.pth"])
def test_a_path_under_home_works_as_typed(typed, tmp_path, monkeypatch):
    """``data.root=~/my_videos``: the shell leaves the ``~`` (not an assignment) and Hydra's grammar
    refuses it; the tools expand it (and quote the path for Hydra)."""
    from videoattn.compose import check_overrides

    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = check_overrides(REPO / "configs", "custom", ["data.root=/videos", typed])
    key, _, value = typed.partition("=")
    section, name = key.split(".")
    assert cfg[section][name] == str(tmp_path / value[2:])
