"""The one checkpoint format: writing, reading any file a user may give, converting official
checkpoints (T from the names, class names), checking classes, fine-tuning loads."""

from __future__ import annotations

import collections
import json
import logging
import pathlib

import numpy as np
import pytest
import torch
from official import save_official, save_tada, save_tdn

from videoattn.checkpoint import (
    FORMAT,
    UntrustedCheckpointError,
    add_classes_command,
    check_classes,
    load_checkpoint,
    make_checkpoint,
    pickled_globals,
    read_torch_file,
    save_atomic,
    save_checkpoint,
    save_model_folder,
    trust_checkpoints,
)
from videoattn.data.annotations import read_class_names
from videoattn.errors import CheckpointError, ConfigError, DataError, MissingFileError, UserError
from videoattn.models import build_model, load_model, load_model_state, load_pretrained
from videoattn.models.convert import convert_checkpoint, num_segments_from_path

TINY = {"arch": "resnet18", "layers": [1, 1, 1, 1], "widths": [8, 16, 32, 64], "num_classes": 3, "num_segments": 4}
CLASSES = ["a", "b", "c"]
DATA = {"name": "t", "sampling": {"mode": "segment"}, "eval_transform": {"size": 48, "resize": 56}}


def tiny_checkpoint(path, *, classes=CLASSES, seed=0, **cfg):
    torch.manual_seed(seed)
    model = build_model({**TINY, **cfg})
    return save_checkpoint(make_checkpoint(model, classes=classes, data=DATA, origin={"kind": "training"}), path), model


def test_a_checkpoint_round_trips_and_writes_no_temporary_file(tmp_path):
    path, model = tiny_checkpoint(tmp_path / "last.pth")
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]
    loaded, ckpt = load_model(path)
    assert ckpt["format"] == FORMAT and ckpt["classes"] == CLASSES and ckpt["data"]["eval_transform"]["size"] == 48
    x = torch.randn(1, 4, 3, 32, 32)
    assert torch.equal(loaded(x), model.eval()(x))
    other = build_model({**TINY, "inserts": [{"name": "tsm"}]})
    with pytest.raises(CheckpointError, match="another model config.*inserts"):
        load_model_state(other, ckpt, path=path)
    with pytest.raises(CheckpointError, match="2 class names for a model with 3"):
        make_checkpoint(model, classes=["a", "b"], data=DATA, origin={})


def test_every_file_that_is_not_a_checkpoint_gets_one_line_saying_what_it_is(tmp_path):
    good, _ = tiny_checkpoint(tmp_path / "good.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "random.pth").write_bytes(
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).numpy().tobytes()
    )
    (tmp_path / "torn.pth").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bare.pth")
    torch.save({"conv1.weight": torch.zeros(1000)}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    (tmp_path / "torn_old.pth").write_bytes((tmp_path / "old.pth").read_bytes()[:2000])
    save_official(tmp_path / "TSM_something_RGB_resnet50_segment8.pth", "tsm")
    cases = {
        "missing.pth": (MissingFileError, "missing.pth not found"),
        "empty.pth": (CheckpointError, "empty.pth is an empty file"),
        "random.pth": (CheckpointError, "random.pth (is not a PyTorch checkpoint|cannot be read)"),
        "torn.pth": (CheckpointError, "torn.pth cannot be read: truncated"),
        "torn_old.pth": (CheckpointError, "torn_old.pth (cannot be read: truncated|is not a PyTorch checkpoint)"),
        "bare.pth": (CheckpointError, "bare weights .* model.pretrained="),
        "TSM_something_RGB_resnet50_segment8.pth": (
            CheckpointError,
            "an official TSM checkpoint, not converted yet: run tools/convert_checkpoint.py --src .*segment8.pth",
        ),
        ".": (CheckpointError, "is a folder"),
    }
    for name, (kind, pattern) in cases.items():
        with pytest.raises(kind, match=pattern) as info:
            load_checkpoint(tmp_path / name)
        assert isinstance(info.value, UserError) and "\n" not in str(info.value)


def test_checkpoints_converted_by_the_earlier_format_still_load(tmp_path):
    model = build_model(TINY)
    torch.save(
        {
            "model_config": model.config,
            "state_dict": model.state_dict(),
            "class_names": None,
            "converted_from": {"source": "tsm", "file": "x.pth", "arch": None},
        },
        tmp_path / "old.pth",
    )
    loaded, ckpt = load_model(tmp_path / "old.pth")
    assert ckpt["classes"] is None and ckpt["origin"] == {
        "kind": "converted",
        "source": "tsm",
        "file": "x.pth",
        "arch": None,
    }
    assert ckpt["data"]["sampling"] == {"mode": "segment"} and ckpt["data"]["eval_transform"]["size"] == 224


@pytest.mark.parametrize(
    "relpath, t",
    [
        (
            "TSM_something_RGB_resnet50_shift8_blockres_avg_segment8_e50/ckpt.best.pth.tar",
            8,
        ),  # official TSM / TAM: the folder
        ("TSM_kinetics_RGB_resnet50_shift8_blockres_avg_segment16_e50.pth", 16),
        ("runs/clip_len_8frame_sample_rate_1_checkpoint.pth.tar", 8),  # ACTION-Net
        ("weights/model_best.pth", None),
    ],
)
def test_the_number_of_segments_comes_from_the_file_or_its_folder(relpath, t):
    found = num_segments_from_path(relpath)
    assert (found and found[0]) == t


def test_conversion_reads_t_refuses_contradictions_and_stores_sorted_class_names(tmp_path):
    folder = tmp_path / "TSM_somethingv2_RGB_resnet50_shift8_blockres_avg_segment8_e45"
    src = save_official(folder / "ckpt.best.pth.tar", "tsm", num_classes=3)
    labels = tmp_path / "labels.json"  # SSv2's labels.json: name -> (unsorted) index
    labels.write_text(json.dumps({"Pushing something": "0", "Dropping something": "1", "Moving something up": "2"}))
    ckpt = convert_checkpoint(src, tmp_path / "tsm.pth", classes=read_class_names(labels))  # source from the weights
    assert ckpt["model_config"]["num_segments"] == 8 and ckpt["origin"]["source"] == "tsm"
    assert ckpt["classes"] == ["Dropping something", "Moving something up", "Pushing something"]
    assert ckpt["data"] == {  # the views of TSM's Something-Something test command ("accurate")
        "name": "ssv2",
        "sampling": {"mode": "segment", "rules": "tsm"},
        "eval_transform": {"size": 224, "resize": 256},
        "test": {"num_clips": 2, "num_crops": 3, "twice_sample": True},
    }
    assert load_checkpoint(tmp_path / "tsm.pth")["classes"] == ckpt["classes"]
    with pytest.raises(ConfigError, match="--num-segments 16 contradicts .*'segment8'"):
        convert_checkpoint(src, tmp_path / "x.pth", num_segments=16)
    with pytest.raises(CheckpointError, match="looks like a TSM checkpoint"):
        convert_checkpoint(src, tmp_path / "x.pth", source="tam")
    with pytest.raises(DataError, match="label file has 4 classes.*predicts 3"):
        convert_checkpoint(src, tmp_path / "x.pth", classes=["a", "b", "c", "d"])
    anonymous = save_official(tmp_path / "model_best.pth", "action", num_classes=3)
    with pytest.raises(ConfigError, match="pass --num-segments T"):
        convert_checkpoint(anonymous, tmp_path / "x.pth")
    assert convert_checkpoint(anonymous, tmp_path / "x.pth", num_segments=16)["model_config"]["num_segments"] == 16
    tam = save_official(tmp_path / "tam_best.pth", "tam", num_classes=3, legacy=True)  # TAM: T from its weights
    converted = convert_checkpoint(tam, tmp_path / "tam.pth")
    assert converted["model_config"]["num_segments"] == 8 and converted["data"]["sampling"]["rules"] == "tam"
    with pytest.raises(CheckpointError, match="--num-segments 4 says T=4, but its TAM weights were trained with T=8"):
        convert_checkpoint(tam, tmp_path / "tam.pth", num_segments=4)
    dense = save_official(tmp_path / "TSM_kinetics_RGB_resnet50_segment8_e100_dense.pth", "tsm", num_classes=3)
    dense_data = convert_checkpoint(dense, tmp_path / "d.pth")["data"]  # stride null: 64 // T, the official stride
    assert dense_data["sampling"] == {"mode": "dense", "rules": "tsm", "stride": None}
    assert dense_data["test"] == {"num_clips": 10, "num_crops": 3, "twice_sample": False}
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_class_names_are_added_to_a_copy_of_a_converted_checkpoint_never_over_it(tmp_path):
    src = save_official(tmp_path / "TSM_something_segment8.pth", "tsm", num_classes=3)
    convert_checkpoint(src, tmp_path / "tsm.pth")
    assert load_checkpoint(tmp_path / "tsm.pth")["classes"] is None
    (tmp_path / "classes.txt").write_text("c\nb\na\n")
    names = read_class_names(tmp_path / "classes.txt")
    before = (tmp_path / "tsm.pth").read_bytes()
    (tmp_path / "link.pth").symlink_to(tmp_path / "tsm.pth")
    for dst in (tmp_path / "tsm.pth", tmp_path / "link.pth", tmp_path / "sub" / ".." / "tsm.pth"):
        with pytest.raises(ConfigError, match="is --src .*: writing it would replace the input"):
            convert_checkpoint(tmp_path / "tsm.pth", dst, classes=names)
    with pytest.raises(ConfigError, match="is --src"):  # the official file itself
        convert_checkpoint(src, src)
    assert (tmp_path / "tsm.pth").read_bytes() == before and add_classes_command(tmp_path / "tsm.pth").endswith(
        f"--src {tmp_path / 'tsm.pth'} --dst {tmp_path / 'tsm_named.pth'} --classes LABEL_FILE"
    )
    convert_checkpoint(tmp_path / "tsm.pth", tmp_path / "tsm_named.pth", classes=names)
    assert load_checkpoint(tmp_path / "tsm_named.pth")["classes"] == ["a", "b", "c"]
    assert load_checkpoint(tmp_path / "tsm.pth")["classes"] is None


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_what_official_checkpoints_hold_loads_with_weights_only_and_nothing_else_does(legacy, tmp_path, caplog):
    """The official TSM / TAM / ACTION-Net files (numpy 1.x scalars, argparse.Namespace,
    OrderedDict), TDN's (a scheduler state with a Counter) and TAdaConv's load with the allowlist
    alone; an extra object whose unpickling would touch a file is refused, naming it and the file,
    and only a trusted read rebuilds it, with a warning."""
    official = read_torch_file(save_official(tmp_path / "official.pth", "tam", num_classes=3, legacy=legacy))
    assert isinstance(official["best_prec1"], np.float64) and official["args"].num_segments == 8
    assert "numpy.core.multiarray.scalar" in pickled_globals(tmp_path / "official.pth")  # as numpy 1.x wrote it
    tdn = read_torch_file(save_tdn(tmp_path / "tdn.pth", legacy=legacy))
    assert tdn["scheduler"]["after_scheduler"]["milestones"] == collections.Counter([30, 45, 55])
    if not legacy:
        assert read_torch_file(save_tada(tmp_path / "tada.pth"))["model_state"]["head.out.bias"].shape == (174,)
    marker = tmp_path / "marker"
    payload = {**official, "extra": Touch(marker)}
    torch.save(payload, tmp_path / "payload.pth", _use_new_zipfile_serialization=not legacy)
    for read in (read_torch_file, load_checkpoint, lambda p: convert_checkpoint(p, tmp_path / "x.pth")):
        with pytest.raises(UntrustedCheckpointError, match=r"holds builtins.getattr, pathlib.Path.*not loaded") as e:
            read(tmp_path / "payload.pth")
        assert str(tmp_path / "payload.pth") in str(e.value) and "\n" not in str(e.value)
        assert isinstance(e.value, UserError) and not marker.exists()
    with caplog.at_level(logging.WARNING, logger="videoattn.checkpoint"), trust_checkpoints(True):
        assert read_torch_file(tmp_path / "payload.pth")["epoch"] == 45  # rebuilt in full: it ran
    assert marker.exists() and f"unpickling {tmp_path / 'payload.pth'} in full" in caplog.text
    # a pickle protocol whose opcodes PyTorch's safe reader lacks: refused the same way, never "not a checkpoint"
    torch.save(official, tmp_path / "p4.pth", pickle_protocol=4, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(UntrustedCheckpointError, match="uses pickle instructions the safe reader does not take"):
        read_torch_file(tmp_path / "p4.pth")
    assert read_torch_file(tmp_path / "p4.pth", trust=True)["args"].num_segments == 8


class Touch:
    """Unpickles as ``Path.touch(path)``: what a malicious checkpoint's object does, harmlessly."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_a_model_folder_holds_the_weights_and_the_contract_without_pickles(tmp_path):
    """checkpoint -> model folder (model.safetensors + config.json) -> the same tensors, config,
    classes, clip settings and history; read by load_checkpoint / load_model / fine-tuning as
    the folder or either file; a torn or mixed folder is refused; conversions both ways."""
    torch.manual_seed(0)
    model = build_model(TINY)
    history = [{"epoch": 1, "val_top1": float("nan"), "train_loss": 1.5}]
    ckpt = make_checkpoint(model, classes=CLASSES, data=DATA, origin={"kind": "training"}, epoch=0,
                           history=history, optimizer={"state": {}}, best_top1=0.5)  # fmt: skip
    save_checkpoint(ckpt, tmp_path / "run.pth")
    folder = save_model_folder(ckpt, tmp_path / "tiny")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    contract = json.loads((folder / "config.json").read_text())  # strict JSON: NaN written as null
    assert contract["format"] == "videoattn-model-1" and contract["classes"] == CLASSES
    assert "optimizer" not in contract and contract["history"][0]["val_top1"] is None
    for given in (folder, folder / "model.safetensors", folder / "config.json"):
        loaded = load_checkpoint(given)
        assert loaded["model"].keys() == ckpt["model"].keys()
        assert all(torch.equal(loaded["model"][k], v) for k, v in ckpt["model"].items())
        assert loaded["model_config"] == model.config and loaded["data"] == ckpt["data"]
    restored, _ = load_model(folder)
    x = torch.randn(1, 4, 3, 32, 32)
    assert torch.equal(restored(x), model.eval()(x))
    tuned = build_model({**TINY, "pretrained": str(folder)}, classes=CLASSES)  # fine-tuning from the folder
    assert torch.equal(tuned.state_dict()["fc.weight"], ckpt["model"]["fc.weight"])
    # the other way round, and the converter's checks
    back = convert_checkpoint(folder, tmp_path / "back.pth")
    assert all(torch.equal(back["model"][k], v) for k, v in ckpt["model"].items())
    convert_checkpoint(tmp_path / "run.pth", tmp_path / "shared", format="safetensors")
    assert load_checkpoint(tmp_path / "shared")["history"][0]["train_loss"] == 1.5
    official = save_official(tmp_path / "TSM_something_segment8.pth", "tsm", num_classes=3, legacy=True)
    convert_checkpoint(official, tmp_path / "tsm", format="safetensors", classes=CLASSES)  # official -> folder
    converted = load_checkpoint(tmp_path / "tsm")
    assert converted["origin"]["best_prec1"] == 61.2 and converted["data"]["sampling"]["rules"] == "tsm"
    with pytest.raises(ConfigError, match="give a folder name"):
        convert_checkpoint(tmp_path / "run.pth", tmp_path / "x.safetensors", format="safetensors")
    with pytest.raises(ConfigError, match="is --src"):
        convert_checkpoint(folder / "model.safetensors", folder, format="safetensors", classes=CLASSES)
    with pytest.raises(ConfigError, match="already a videoattn checkpoint; pass --classes"):
        convert_checkpoint(folder, tmp_path / "copy", format="safetensors")
    # damage: other weights under the contract, a foreign config.json, a bare safetensors file
    other = save_model_folder(make_checkpoint(build_model(TINY), classes=None, data=DATA, origin={}), tmp_path / "o")
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="not the file its config.json was written with"):
        load_checkpoint(folder)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.json").write_text('{"architectures": ["Bert"]}')
    with pytest.raises(ConfigError, match="not a videoattn model's"):
        save_model_folder(ckpt, tmp_path / "foreign")
    with pytest.raises(CheckpointError, match="not a videoattn model's config"):
        load_checkpoint(tmp_path / "foreign")
    (other / "config.json").unlink()
    with pytest.raises(CheckpointError, match="bare weights"):  # a lone safetensors file: a state_dict
        load_checkpoint(other / "model.safetensors")


def test_label_files_of_every_dataset_give_sorted_names(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps({"b": "0", "a": "1"}))
    (tmp_path / "labels.csv").write_text("Swiping Right\nSwiping Left\n")  # SSv1 / Jester: one per line
    (tmp_path / "k400.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nzumba,x,0,10,train\nabseiling,y,0,10,train\nzumba,z,5,15,train\n"
    )
    (tmp_path / "ids.csv").write_text("id,name\n0,b\n1,a\n")
    (tmp_path / "commas.txt").write_text("Putting something, something and something on the table\nPushing something\n")
    assert read_class_names(tmp_path / "labels.json") == ["a", "b"]
    assert read_class_names(tmp_path / "labels.csv") == ["Swiping Left", "Swiping Right"]
    assert read_class_names(tmp_path / "k400.csv") == ["abseiling", "zumba"]
    assert read_class_names(tmp_path / "ids.csv") == ["a", "b"]
    assert read_class_names(tmp_path / "commas.txt")[1] == "Putting something, something and something on the table"
    (tmp_path / "dup.txt").write_text("a\na\n")
    with pytest.raises(DataError, match="dup.txt, line 2: duplicated class name 'a'"):
        read_class_names(tmp_path / "dup.txt")
    with pytest.raises(MissingFileError, match="label file .*nope.json not found"):
        read_class_names(tmp_path / "nope.json")


def test_check_classes_names_the_first_difference():
    ckpt = {"classes": ["a", "b", "c"], "model_config": {"num_classes": 3}}
    assert check_classes(ckpt, ["a", "b", "c"], checkpoint="m.pth", dataset="d/val")
    with pytest.raises(
        DataError, match="3 vs 3 classes, the first difference at index 1: 'b' in the checkpoint, 'x' in the dataset"
    ):
        check_classes(ckpt, ["a", "x", "c"], checkpoint="m.pth", dataset="d/val")
    with pytest.raises(DataError, match="index 3: nothing in the checkpoint, 'd' in the dataset"):
        check_classes(ckpt, ["a", "b", "c", "d"], checkpoint="m.pth", dataset="d/val")
    unnamed = {"classes": None, "model_config": {"num_classes": 3}}
    assert not check_classes(unnamed, ["x", "y", "z"], checkpoint="m.pth", dataset="d")
    with pytest.raises(DataError, match="predicts 3 classes, d has 2"):
        check_classes(unnamed, ["x", "y"], checkpoint="m.pth", dataset="d")


def test_fine_tuning_from_a_checkpoint_keeps_what_fits_and_reports_the_rest(tmp_path):
    path, source = tiny_checkpoint(tmp_path / "tam.pth", inserts=[{"name": "tam"}])
    src = source.state_dict()
    # the same classes: everything loads, the classifier too
    same = build_model({**TINY, "inserts": [{"name": "tam"}]})
    report = load_pretrained(same, path, classes=CLASSES)
    assert report.not_initialised == [] and all(torch.equal(v, src[k]) for k, v in same.state_dict().items())
    # another dataset: a new classifier, said why
    other = build_model({**TINY, "num_classes": 5, "inserts": [{"name": "tam"}]})
    report = load_pretrained(other, path, classes=list("vwxyz"))
    assert report.not_initialised == ["fc.bias", "fc.weight"] and "predicts 3 classes, this model 5" in report.summary()
    assert torch.equal(
        other.state_dict()["backbone.layer1.0.att_after_conv1.tam.L.0.weight"],
        src["backbone.layer1.0.att_after_conv1.tam.L.0.weight"],
    )
    # TSN from the TAM checkpoint: TAM's tensors ignored; TSM + SE: SE not initialised
    tsn = build_model({**TINY, "inserts": []})
    report = load_pretrained(tsn, path, classes=CLASSES)
    assert report.not_initialised == [] and any(".tam." in k for k in report.ignored)
    se = build_model({**TINY, "inserts": [{"name": "se"}]})
    report = load_pretrained(se, path, classes=CLASSES)
    assert report.not_initialised and all(".se." in k for k in report.not_initialised)
    # TAM's global branch depends on T; another architecture does not fit at all
    with pytest.raises(CheckpointError, match="num_segments=4, this model has 8"):
        load_pretrained(build_model({**TINY, "num_segments": 8, "inserts": [{"name": "tam"}]}), path)
    with pytest.raises(
        CheckpointError,
        match=r"another backbone .*widths \[8,16,32,64\] vs .*widths \[8,16,32,32\].*model.widths=\[8,16,32,64\]",
    ):
        load_pretrained(build_model({**TINY, "widths": [8, 16, 32, 32]}), path)
    # through build_model, as train.py's model.pretrained
    model = build_model({**TINY, "inserts": [{"name": "tam"}], "pretrained": str(path)}, classes=CLASSES)
    assert torch.equal(model.state_dict()["fc.weight"], src["fc.weight"])


def test_an_official_checkpoint_as_pretrained_says_convert_it_first(tmp_path):
    src = save_official(tmp_path / "TAM_something_segment8.pth", "tam", num_classes=3)
    with pytest.raises(CheckpointError, match="official TAM checkpoint, not converted yet"):
        build_model({**TINY, "arch": "resnet50", "layers": None, "widths": None, "pretrained": str(src)})


def test_save_atomic_leaves_the_old_file_when_writing_fails(tmp_path):
    path = save_atomic({"x": 1}, tmp_path / "f.pth")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_atomic({"x": Unpicklable()}, path)
    assert torch.load(path) == {"x": 1} and [p.name for p in tmp_path.iterdir()] == ["f.pth"]
