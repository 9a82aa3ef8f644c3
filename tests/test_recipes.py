"""The papers' recipes, composed from the configs: ``--config-name DATA model=MODEL`` gives the
settings of the official script (../shared/reference/official_recipes.md), and a model without an
official recipe gets the dataset's default, TSM's."""

from __future__ import annotations

import pytest
from cli import REPO

from videoattn.compose import check_overrides

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
}  # fmt: skip


def compose(config: str, model: str):
    return check_overrides(CONFIGS, "train", ["--config-name", config, f"model={model}", "data.root=/data"])


@pytest.mark.parametrize("config, model", sorted(RECIPES), ids=[f"{c}-{m}" for c, m in sorted(RECIPES)])
def test_each_official_recipe_is_composed_from_the_configs(config, model):
    lr, batch, wd, steps, epochs, dropout, mode, rules, flip, views, script = RECIPES[config, model]
    cfg = compose(config, model)
    o, d = cfg.optim, cfg.data
    assert (o.lr, o.base_batch_size, o.weight_decay, list(o.milestones), o.epochs) == (lr, batch, wd, steps, epochs)
    assert (o.name, o.momentum, o.clip_grad_norm, o.groups, o.fc_lr5) == ("sgd", 0.9, 20.0, "official", "auto")
    assert (cfg.model.dropout, cfg.model.partial_bn, cfg.model.pretrained) == (dropout, False, "imagenet")
    assert (d.sampling.mode, d.sampling.rules, d.train_transform.flip) == (mode, rules, flip)
    assert (d.test.num_clips, d.test.num_crops, d.test.twice_sample) == views[:3]
    crop = d.eval_transform.resize if views[1] == 3 else d.eval_transform.size  # 3 crops: full resolution
    assert (d.test.size, crop) == (None, views[3])
    assert cfg.batch_size * 8 == batch  # the script's batch on 8 GPUs
    assert script in cfg.recipe and cfg.device == "cuda"


@pytest.mark.parametrize("config", ["ssv2", "kinetics"])
def test_a_model_without_an_official_recipe_takes_tsms_the_documented_default(config):
    tsm, se = compose(config, "tsm"), compose(config, "se")
    for section in ("optim", "data"):
        assert tsm[section] == se[section], section
    assert "none of its own" in se.recipe and tsm.model.dropout == se.model.dropout
