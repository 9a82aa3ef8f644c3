"""The papers' recipes, composed from the configs: ``--config-name DATA model=MODEL`` gives the
settings of the official script (../shared/reference/official_recipes.md), and a model without an
official recipe gets the dataset's default, TSM's."""

from __future__ import annotations

import pytest
from cli import REPO

from videoattn.compose import check_overrides
from videoattn.data.protocols import PROTOCOLS, get_protocol
from videoattn.data.sampling import Sampling
from videoattn.data.transforms import IMAGENET_MEAN, IMAGENET_STD

CONFIGS = REPO / "configs"

# (config, model): lr, batch of that lr, weight decay, lr steps, epochs, dropout, sampling mode / rules,
# flip, test views (clips, crops, twice_sample, crop size), the script named in the log
RECIPES = {
    ("ssv2", "tsm"): (0.01, 64, 5e-4, [20, 40], 50, 0.5, "segment", "tsm", "off", (2, 3, True, 256),
                      "TSM README"),
    ("ssv1", "tsm"): (0.01, 64, 5e-4, [20, 40], 50, 0.5, "segment", "tsm", "off", (2, 3, True, 256),
                      "TSM README"),
    ("kinetics", "tsm"): (0.02, 128, 1e-4, [20, 40], 50, 0.5, "segment", "tsm", "on", (1, 1, False, 224),
                          "train_tsm_kinetics_rgb_8f.sh"),
    ("ssv1", "tam"): (0.01, 64, 1e-3, [30, 40, 45], 50, 0.6, "segment", "tam", "off", (1, 1, False, 224),
                      "train_tam_something_rgb_8f.sh"),
    ("ssv2", "tam"): (0.02, 128, 5e-4, [30, 40, 45], 50, 0.5, "segment", "tam", "swap", (2, 3, False, 256),
                      "train_tam_somethingv2_rgb_8f.sh"),
    ("kinetics", "tam"): (0.01, 8, 1e-4, [50, 75, 90], 100, 0.5, "dense", "tam", "on", (10, 3, False, 256),
                          "train_tam_kinetics_rgb_8f.sh"),
    ("ssv2", "action"): (0.01, 64, 5e-4, [30, 40, 45], 50, 0.5, "segment", "action", "off", (10, 3, False, 256),
                         "train_sthv2_8f.sh"),
    ("jester", "action"): (0.01, 64, 5e-4, [5, 10, 15], 25, 0.5, "segment", "action", "off", (10, 3, False, 256),
                           "train_jester_8f.sh"),
    # TDN (MCG-NJU/TDN@a7c7e9b README) and TAda2D (TAdaConv@f08df6a configs); TAda2D's schedule is a
    # cosine (no lr steps), its optimiser settings in NEW_OPTIM
    ("ssv2", "tdn"): (0.01, 64, 5e-4, [30, 45, 55], 60, 0.5, "segment", "tdn", "swap", (1, 1, False, 224),
                      "TDN README"),
    ("ssv1", "tdn"): (0.01, 64, 5e-4, [30, 45, 55], 60, 0.5, "segment", "tdn", "swap", (1, 1, False, 224),
                      "TDN README"),
    ("kinetics", "tdn"): (0.02, 128, 1e-4, [50, 75, 90], 100, 0.5, "segment", "tdn", "on", (10, 3, False, 256),
                          "TDN README"),
    ("ssv2", "tada2d"): (0.48, 128, 1e-4, None, 64, 0.5, "segment", "tada", "swap", (2, 3, False, 256),
                         "tada2d_8f.yaml"),
    ("kinetics", "tada2d"): (0.24, 128, 1e-4, None, 100, 0.5, "dense", "tada", "on", (10, 3, False, 256),
                             "tada2d_8x8.yaml"),
}  # fmt: skip
# optim.{name, momentum, clip_grad_norm, groups, fc_lr5, nesterov, schedule, warm-up start lr} where not TSM's
TSM_OPTIM = ("sgd", 0.9, 20.0, "official", "auto", False, "step", None)
NEW_OPTIM = {
    "tdn": ("sgd", 0.9, 20.0, "official", False, False, "step", None),  # the new fc at lr x1
    "tada2d": ("sgd", 0.9, None, "uniform", "auto", True, "cosine", {"ssv2": (4, 1e-4), "kinetics": (8, 0.01)}),
}
MEAN_STD = {"tada2d": ([0.45] * 3, [0.225] * 3)}  # TAda2D's normalisation; the others ImageNet's
# the recipes' test views, named as protocols (tools/test.py protocol=NAME)
RECIPE_PROTOCOLS = {("ssv2", "tdn"): "tdn_1view", ("ssv1", "tdn"): "tdn_1view", ("kinetics", "tdn"): "tdn_k400",
                    ("ssv2", "tada2d"): "tada2d_ssv2", ("kinetics", "tada2d"): "tada2d_k400"}  # fmt: skip


def compose(config: str, model: str):
    return check_overrides(CONFIGS, "train", ["--config-name", config, f"model={model}", "data.root=/data"])


@pytest.mark.parametrize("config, model", sorted(RECIPES), ids=[f"{c}-{m}" for c, m in sorted(RECIPES)])
def test_each_official_recipe_is_composed_from_the_configs(config, model):
    lr, batch, wd, steps, epochs, dropout, mode, rules, flip, views, script = RECIPES[config, model]
    cfg = compose(config, model)
    o, d = cfg.optim, cfg.data
    assert (o.lr, o.base_batch_size, o.weight_decay, o.epochs) == (lr, batch, wd, epochs)
    name, momentum, clip, groups, fc_lr5, nesterov, schedule, warmup = NEW_OPTIM.get(model, TSM_OPTIM)
    assert (o.name, o.momentum, o.clip_grad_norm, o.groups, o.nesterov, o.schedule) == (
        name,
        momentum,
        clip,
        groups,
        nesterov,
        schedule,
    )
    assert (o.fc_lr5 if groups == "official" else o.fc_lr_mult) == (fc_lr5 if groups == "official" else 1.0)
    if steps is not None:
        assert list(o.milestones) == steps
    if warmup is not None:  # epochs of linear warm-up, from this lr
        epochs_w, start = warmup[config]
        assert o.warmup_epochs == epochs_w and o.lr * o.warmup_factor == pytest.approx(start)
    mean, std = MEAN_STD.get(model, (IMAGENET_MEAN, IMAGENET_STD))
    for section in (d.train_transform, d.eval_transform):
        assert list(section.get("mean", IMAGENET_MEAN)) == pytest.approx(mean)
        assert list(section.get("std", IMAGENET_STD)) == pytest.approx(std)
    assert (cfg.model.dropout, cfg.model.partial_bn, cfg.model.pretrained) == (dropout, False, "imagenet")
    assert (d.sampling.mode, d.sampling.rules, d.train_transform.flip) == (mode, rules, flip)
    assert (d.test.num_clips, d.test.num_crops, d.test.twice_sample) == views[:3]
    crop = d.eval_transform.resize if views[1] == 3 else d.eval_transform.size  # 3 crops: full resolution
    assert (d.test.size, crop) == (None, views[3])
    assert cfg.batch_size * 8 == batch  # the script's batch on 8 GPUs
    assert script in cfg.recipe and cfg.device == "cuda"
    if (config, model) in RECIPE_PROTOCOLS:  # the recipe's test views are its protocol's
        protocol = get_protocol(RECIPE_PROTOCOLS[config, model])
        for key, value in protocol.test.items():
            if key in ("num_clips", "num_crops", "twice_sample"):
                assert d.test[key] == value, key
        assert {k: d.sampling[k] for k in protocol.sampling} == dict(protocol.sampling)


@pytest.mark.parametrize("config", ["ssv2", "kinetics"])
def test_a_model_without_an_official_recipe_takes_tsms_the_documented_default(config):
    tsm, se = compose(config, "tsm"), compose(config, "se")
    for section in ("optim", "data"):
        assert tsm[section] == se[section], section
    assert "none of its own" in se.recipe and tsm.model.dropout == se.model.dropout


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_each_protocol_gives_a_sampler_of_its_views(name):
    """Each protocol's sampling keywords and clips make a sampler: its test clips, T*F indices each."""
    protocol = PROTOCOLS[name]
    sampling = Sampling(
        num_segments=8, num_clips=protocol.test["num_clips"], twice_sample=protocol.test["twice_sample"],
        **protocol.sampling,
    )  # fmt: skip
    clips = sampling.test(300)
    assert clips.shape == (protocol.test["num_clips"], 8 * sampling.frames_per_segment)
    assert clips.min() >= 0 and clips.max() < 300
    assert protocol.test["num_crops"] in (1, 3) and protocol.test["size"] in (224, 256)
