"""Engine pieces: optimiser groups and schedule, metrics, config checks."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from videoattn.data.build import build_dataset, normalize_data_config
from videoattn.engine.metrics import (
    confusion_matrix,
    mean_class_accuracy,
    per_class_accuracy,
    subset_accuracy,
    topk_correct,
)
from videoattn.engine.optim import build_optimizer, lr_factor, normalize_optim_config, param_groups
from videoattn.models import build_model

TINY = {"arch": "resnet18", "layers": [1, 1, 1, 1], "widths": [8, 16, 32, 64], "num_classes": 5, "num_segments": 4}


def test_no_weight_decay_on_norms_biases_and_declared_parameters():
    model = build_model({**TINY, "inserts": [{"name": "gct"}, {"name": "se"}]})
    groups = param_groups(model, weight_decay=1e-4, policy="uniform", fc_lr_mult=5.0)
    assert all(g["weight_decay"] == 1e-4 * g["decay_mult"] and g["decay_mult"] in (0.0, 1.0) for g in groups)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    free = {names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert decayed | free == set(names.values()) and not decayed & free
    params = dict(model.named_parameters())
    assert all(params[n].ndim > 1 and not n.endswith((".bias", ".beta")) for n in decayed)
    assert {n for n in decayed if ".gct." in n} == {n for n in names.values() if n.endswith(("gct.alpha", "gct.gamma"))}
    assert any(n.endswith("att_before_last.gct.beta") for n in free)
    assert "backbone.bn1.weight" in free and "fc.bias" in free and "fc.weight" in decayed
    fc = [g for g in groups if g["name"].startswith("fc")]
    assert fc and all(g["lr_mult"] == 5.0 for g in fc)
    opt = build_optimizer(
        model,
        normalize_optim_config({"lr": 0.01, "base_batch_size": 64, "groups": "uniform", "fc_lr_mult": 5.0}),
        global_batch=128,
    )
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs["backbone"] == pytest.approx(0.02) and lrs["fc"] == pytest.approx(0.1)  # linear scaling, 5x fc


def test_schedules():
    step = normalize_optim_config({"schedule": "step", "milestones": [20, 40], "epochs": 50})
    assert [lr_factor(e, step) for e in (0, 19.99, 20, 39.9, 40, 49)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    cos = normalize_optim_config({"schedule": "cosine", "epochs": 10, "warmup_epochs": 2, "warmup_factor": 0.1})
    assert lr_factor(0, cos) == pytest.approx(0.1) and lr_factor(1, cos) == pytest.approx(0.55)
    assert lr_factor(2, cos) == pytest.approx(1.0) and lr_factor(6, cos) == pytest.approx(0.5)
    assert lr_factor(10, cos) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="optim.lr_step: no such key"):
        normalize_optim_config({"lr_step": [1]})


@pytest.mark.parametrize("cfg, key", [
    ({"name": "adamw", "momentum": 0.8}, "momentum"), ({"name": "sgd", "betas": [0.9, 0.99]}, "betas"),
    ({"schedule": "cosine", "milestones": [5]}, "milestones"),
    ({"schedule": "step", "min_lr_factor": 0.1}, "min_lr_factor"),
    ({"warmup_factor": 0.5}, "warmup_factor"),
])  # fmt: skip
def test_an_optim_setting_that_would_be_ignored_is_refused(cfg, key):
    with pytest.raises(ValueError, match=f"optim.{key}=.* has no effect with"):
        normalize_optim_config(cfg)


def test_metrics():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = torch.tensor([1, 0, 0, 2])
    assert topk_correct(logits, labels, (1, 2, 3)).tolist() == [2, 2, 4]
    cm = confusion_matrix(logits.argmax(1), labels, 3)
    assert cm.tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 0]]
    unlabelled = confusion_matrix(logits.argmax(1), torch.tensor([1, -1, 0, -1]), 3)  # test-split clips count nowhere
    assert unlabelled.tolist() == [[0, 0, 1], [0, 1, 0], [0, 0, 0]]
    assert per_class_accuracy(cm).tolist() == [0.5, 1.0, 0.0]
    assert mean_class_accuracy(cm) == pytest.approx(0.5)
    assert subset_accuracy(cm, [0, 1]) == pytest.approx(2 / 3)
    assert math.isnan(per_class_accuracy(torch.zeros(2, 2, dtype=torch.int64))[0])


def _ssv2(tmp_path, classes):
    import json

    (tmp_path / "labels.json").write_text(json.dumps({c: str(i) for i, c in enumerate(classes)}))
    (tmp_path / "train.json").write_text(
        json.dumps([{"id": str(i), "label": c, "template": c, "placeholders": []} for i, c in enumerate(classes)])
    )
    for i in range(len(classes)):
        (tmp_path / f"{i}.webm").write_bytes(b"")
    return {"name": "t", "source": "ssv2", "root": str(tmp_path)}


def test_data_config_flip_rules(tmp_path):
    cfg = _ssv2(
        tmp_path, ["Pushing something from left to right", "Pushing something from right to left", "Dropping something"]
    )
    ds = build_dataset(normalize_data_config(cfg), "train", mode="train", num_segments=4)
    assert ds.classes[0] == "Dropping something"  # sorted names
    assert ds.transform.flip == "swap" and ds.transform.flip_map == [0, 2, 1]
    with pytest.raises(ValueError, match="flip: on would mirror"):
        build_dataset(
            normalize_data_config({**cfg, "train_transform": {"flip": "on"}}), "train", mode="train", num_segments=4
        )
    with pytest.raises(ValueError, match="ten-crop"):
        build_dataset(normalize_data_config({**cfg, "test": {"num_crops": 10}}), "train", mode="test", num_segments=4)
    with pytest.raises(ValueError, match="test.twice_sample=true takes exactly 2 clips.*num_clips=1"):
        build_dataset(
            normalize_data_config({**cfg, "test": {"num_clips": 1, "twice_sample": True}}),
            "train",
            mode="test",
            num_segments=4,
        )
    with pytest.raises(
        ValueError, match=r"data.train_transform.sizee: no such key \(did you mean data.train_transform.size"
    ):
        build_dataset(
            normalize_data_config({**cfg, "train_transform": {"sizee": 3}}), "train", mode="train", num_segments=4
        )
    with pytest.raises(ValueError, match=r"data.sampling.strid: no such key \(did you mean data.sampling.stride"):
        build_dataset(normalize_data_config({**cfg, "sampling": {"strid": 3}}), "train", mode="val", num_segments=4)
    with pytest.raises(ValueError, match=r"data.test.num_clip: no such key \(did you mean data.test.num_clips"):
        build_dataset(normalize_data_config({**cfg, "test": {"num_clip": 3}}), "train", mode="test", num_segments=4)
    with pytest.raises(ValueError, match="'video_dri' is not a keyword of the load_ssv2 parser .*video_dir"):
        build_dataset(
            normalize_data_config({**cfg, "annotations": {"video_dri": "x"}}), "train", mode="val", num_segments=4
        )
    with pytest.raises(ValueError, match=r"data.sourc: no such key \(did you mean data.source"):
        normalize_data_config({"sourc": "ssv2"})
    with pytest.raises(ValueError, match="set `root`"):
        normalize_data_config({"source": "ssv2"})


_MAPPINGS_OF_A_LARGE_TENSOR = """
import torch
from videoattn.engine.memory import cache_freed_memory


def mapping():
    x = torch.ones(16 * 2**20)  # 64 MiB of activations, alive while the maps are read
    ptr = x.data_ptr()
    for line in open("/proc/self/maps"):
        fields = line.split()
        lo, hi = (int(v, 16) for v in fields[0].split("-"))
        if lo <= ptr < hi:
            return fields[5] if len(fields) > 5 else "anonymous"


print(mapping())  # the stock allocator
assert cache_freed_memory()
print(mapping())  # every allocation from here on
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt, /proc/self/maps")
def test_cache_freed_memory_serves_large_blocks_from_the_heap():
    """Stock glibc gives a 64 MiB tensor its own mmap (unmapped again on free, so the next
    forward faults it in anew); with the cache it comes from the heap, which is not trimmed."""
    out = subprocess.run(
        [sys.executable, "-c", _MAPPINGS_OF_A_LARGE_TENSOR], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["anonymous", "[heap]"]


def test_resuming_on_another_number_of_ranks_gives_each_rank_its_own_random_stream():
    from videoattn.engine.checkpoint import restore_rng, rng_state

    saved = []
    for r in range(2):  # a run of two ranks, each with its own stream
        torch.manual_seed(100 + r)
        saved.append(rng_state())
    draws = {}
    for world_size in (2, 4):
        for rank in range(world_size):
            same = restore_rng(saved, rank=rank, world_size=world_size, seed=0, epoch=3)
            assert same == (world_size == 2)
            draws[world_size, rank] = torch.rand(4)
    torch.manual_seed(101)
    assert torch.equal(draws[2, 1], torch.rand(4))  # the same world size continues each rank's stream
    four = [draws[4, r] for r in range(4)]
    assert all(not torch.equal(a, b) for i, a in enumerate(four) for b in four[i + 1 :])  # not rank 0's for all
    restore_rng(saved, rank=2, world_size=4, seed=0, epoch=3)
    assert torch.equal(torch.rand(4), draws[4, 2])  # reproducible
