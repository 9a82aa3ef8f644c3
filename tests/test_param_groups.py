"""``optim.groups: official``: every parameter of our TSM / TAM / ACTION-Net ResNet-50 (T=8, 174
classes) in the group, with the lr_mult and decay_mult, that the official ``get_optim_policies()``
gives it (the reference table ``official_param_groups.tsv``: ``tests/data/official_param_groups/``
gzipped, or ``../shared/reference/``), official keys mapped to ours by the
checkpoint converter; ``uniform`` and the config rules around both."""

from __future__ import annotations

import csv
import gzip
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from torch import nn

from videoattn.config import model_preset
from videoattn.engine.optim import build_optimizer, normalize_optim_config, param_groups
from videoattn.errors import ConfigError
from videoattn.models import build_model
from videoattn.models.convert import convert_state_dict

VENDORED = Path(__file__).parent / "data" / "official_param_groups" / "official_param_groups.tsv.gz"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference" / "official_param_groups.tsv"
TSV = VENDORED if VENDORED.is_file() else SHARED
NOT_IN_OPTIMIZER = "(not in optimizer)"
GROUP_NAMES = {"BN scale/shift": "bn"}  # the TSV's names that ours spell otherwise
LR, WD, BASE, GLOBAL = 0.01, 5e-4, 64, 128  # lr scaled linearly: 0.02 for the global batch

pytestmark = pytest.mark.skipif(not TSV.is_file(), reason=f"no reference table at {TSV}")


def _read_table() -> dict[tuple[str, bool, bool], list[dict[str, str]]]:
    table: dict[tuple[str, bool, bool], list[dict[str, str]]] = defaultdict(list)
    if TSV.is_file():
        with gzip.open(TSV, "rt") if TSV.suffix == ".gz" else TSV.open() as f:
            for row in csv.DictReader(f, delimiter="\t"):
                table[row["model"], row["partial_bn"] == "True", row["fc_lr5"] == "True"].append(row)
    return dict(table)


TABLE = _read_table()


def _our_names(source: str, rows: list[dict[str, str]]) -> dict[str, str]:
    """Official key -> our parameter name, by the converter (on shape-only meta tensors)."""
    shapes = {r["parameter"]: [int(d) for d in r["shape"].split("x")] for r in rows}
    sd = {f"module.{k}": torch.empty(s, device="meta") for k, s in shapes.items()}
    converted, _ = convert_state_dict(sd, source=source, num_segments=8)
    ours = {id(v): k for k, v in converted.items()}
    return {k.removeprefix("module."): ours[id(v)] for k, v in sd.items()}


@pytest.fixture(scope="module")
def models() -> dict[tuple[str, bool], nn.Module]:
    """Our ResNet-50 models, structure only (meta tensors: the groups need no values), one per
    (model, partial_bn) the table has, shared by every case."""
    out = {}
    with torch.device("meta"):
        for name, partial_bn in sorted({(m, p) for m, p, _ in TABLE}):
            cfg = {**model_preset(name), "pretrained": None, "num_classes": 174, "num_segments": 8}
            out[name, partial_bn] = build_model({**cfg, "partial_bn": partial_bn})
    return out


def _official(**kw) -> dict:
    return normalize_optim_config({"lr": LR, "weight_decay": WD, "base_batch_size": BASE, "groups": "official", **kw})


def _groups_by_name(opt: torch.optim.Optimizer, model: nn.Module) -> dict[str, dict]:
    """Our parameter name -> its optimiser group."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for g in opt.param_groups:
        for p in g["params"]:
            assert names[id(p)] not in out, f"{names[id(p)]} in two groups"
            out[names[id(p)]] = g
    return out


@pytest.mark.parametrize("train_first", [False, True], ids=["built", "after_train"])
@pytest.mark.parametrize("how", ["flag", "auto"])
@pytest.mark.parametrize("key", sorted(TABLE), ids=lambda k: f"{k[0]}-pbn{int(k[1])}-lr5{int(k[2])}")
def test_official_groups_equal_the_official_code(models, key, how, train_first):
    source, partial_bn, fc_lr5 = key
    rows = TABLE[key]
    model = models[source, partial_bn]
    for p in model.parameters():  # as built: partial BN freezes its layers in train(), which may come later
        p.requires_grad_(True)
    if train_first:
        model.train()
    cfg = _official(fc_lr5=fc_lr5) if how == "flag" else _official(fc_lr5="auto")
    # the flag wins over classifier_is_new; auto follows it
    opt = build_optimizer(model, cfg, global_batch=GLOBAL, classifier_is_new=fc_lr5 if how == "auto" else not fc_lr5)
    ours = _our_names(source, rows)
    assert set(ours.values()) == {n for n, _ in model.named_parameters()}  # the same model, parameter for parameter
    groups = _groups_by_name(opt, model)
    expected = {ours[r["parameter"]]: r for r in rows if r["group"] != NOT_IN_OPTIMIZER}
    assert set(groups) == set(expected)  # the frozen layers of partial BN in no group, all others in one
    for name, row in expected.items():
        g, lr_mult, decay_mult = groups[name], float(row["lr_mult"]), float(row["decay_mult"])
        got = (g["name"], g["lr_mult"], g["decay_mult"], g["lr"], g["weight_decay"])
        want = (GROUP_NAMES.get(row["group"], row["group"]), lr_mult, decay_mult, LR * 2 * lr_mult, WD * decay_mult)
        assert got == pytest.approx(want), f"{name} ({row['parameter']}): {got} != {want}"


def test_the_table_covers_the_three_models_with_and_without_fc_lr5():
    assert {(m, f) for m, _, f in TABLE} == {(m, f) for m in ("tsm", "tam", "action") for f in (False, True)}
    assert ("tsm", True, True) in TABLE and ("tsm", True, False) in TABLE  # partial BN


def test_official_refuses_parameters_it_has_no_rule_for_and_uniform_takes_them():
    model = build_model(
        {
            "arch": "resnet18",
            "layers": [1, 1, 1, 1],
            "widths": [8, 16, 32, 64],
            "num_classes": 5,
            "num_segments": 4,
            "inserts": [{"name": "gct"}],
        }
    )
    with pytest.raises(ConfigError, match=r"optim.groups=official: backbone\..*gct\.\w+ is a parameter of a GCT"):
        param_groups(model, weight_decay=1e-4, policy="official")
    assert sum(len(g["params"]) for g in param_groups(model, weight_decay=1e-4)) == len(list(model.parameters()))


@pytest.mark.parametrize(
    "cfg, match",
    [
        ({"groups": "official", "fc_lr_mult": 5.0}, r"optim.fc_lr_mult=5.0 has no effect with optim.groups=official"),
        ({"groups": "uniform", "fc_lr5": True}, r"optim.fc_lr5=True has no effect with optim.groups=uniform"),
        ({"fc_lr5": "yes"}, r"optim.fc_lr5='yes': expected true, false or auto"),
        ({"groups": "tsm"}, r"optim.groups='tsm': expected one of official, uniform"),
    ],
)
def test_group_settings_that_would_be_ignored_or_are_unknown_are_refused(cfg, match):
    with pytest.raises(ConfigError, match=match):
        normalize_optim_config(cfg)


def test_defaults_and_the_settings_each_policy_takes():
    cfg = normalize_optim_config({})
    assert (cfg["groups"], cfg["fc_lr5"], cfg["fc_lr_mult"]) == ("uniform", "auto", 1.0)
    assert normalize_optim_config({"groups": "official", "fc_lr5": False})["fc_lr5"] is False
    assert normalize_optim_config({"groups": "uniform", "fc_lr_mult": 5.0})["fc_lr_mult"] == 5.0


def test_uniform_leaves_the_layers_partial_bn_freezes_out_too(models):
    model = models["tsm", True]
    for p in model.parameters():
        p.requires_grad_(True)
    before = {id(p) for g in param_groups(model, weight_decay=WD) for p in g["params"]}
    model.train()
    after = {id(p) for g in param_groups(model, weight_decay=WD) for p in g["params"]}
    trained = {id(p) for n, p in model.named_parameters() if p.requires_grad}
    assert before == after == trained and len(trained) == len(list(model.parameters())) - 104


# ----------------------------------------------------------------------------- TDN and TAda2D
NEW_TSV = Path(__file__).parent / "data" / "official_param_groups" / "newmods_param_groups.tsv.gz"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# the policy each model's recipe sets (configs/recipe/*_{tdn,tada2d}.yaml): TDN's main.py groups are
# TSN's rule with the new fc at lr x1; TAda2D's all lr x1, no decay on BN, the b_rf biases, the head bias
NEW_POLICIES = {"tdn": {"groups": "official", "fc_lr5": False}, "tada2d": {"groups": "uniform", "fc_lr_mult": 1.0}}


def _new_rows(name: str) -> list[dict[str, str]]:
    with gzip.open(NEW_TSV, "rt") as f:
        return [r for r in csv.DictReader(f, delimiter="\t") if r["model"] == name]


def _official_mults(name: str, row: dict[str, str]) -> tuple[float, float]:
    """``(lr_mult, decay_mult)`` of a table row: TDN's ``decay_mult=X``; TAda2D's absolute
    ``weight_decay=X`` (1e-4 or 0) as a multiplier."""
    key, value = row["decay"].split("=")
    decay = float(value) if key == "decay_mult" else float(float(value) > 0)
    return float(row["lr_mult"]), decay


@pytest.mark.parametrize("name", sorted(NEW_POLICIES))
def test_tdn_and_tada2d_groups_equal_the_official_code(name):
    """Every parameter of ``model=tdn`` / ``model=tada2d`` (ResNet-50, T=8, 174 classes) in the
    lr / decay multipliers its official code gives it (``newmods_param_groups.tsv``), official names
    mapped to ours by the converter's key map; the official tensors our model has not (TDN's conv
    biases, folded into the BNs, and its unused ``conv1_temp``) aside."""
    from videoattn.config import model_configs
    from videoattn.models.convert import official_plan

    rows = _new_rows(name)
    cfg = {**model_configs(CONFIGS)[name], "pretrained": None, "num_classes": 174, "num_segments": 8}
    with torch.device("meta"):
        model = build_model(cfg)
    opt = build_optimizer(
        model, normalize_optim_config({"lr": LR, "weight_decay": WD, "base_batch_size": BASE, **NEW_POLICIES[name]}),
        global_batch=BASE, classifier_is_new=True,
    )  # fmt: skip
    groups = _groups_by_name(opt, model)
    plan = official_plan(name, [r["parameter"] for r in rows])
    expected = {plan[r["parameter"]][1]: r for r in rows if plan[r["parameter"]][0] == "copy"}
    dropped = [r["parameter"] for r in rows if plan[r["parameter"]][0] != "copy"]
    assert set(groups) == set(expected) == {n for n, _ in model.named_parameters()}
    assert all(k.endswith(".bias") or "conv1_temp" in k for k in dropped) and (name == "tdn") == bool(dropped)
    for ours, row in expected.items():
        g = groups[ours]
        lr_mult, decay_mult = _official_mults(name, row)
        got = (g["lr_mult"], g["decay_mult"], g["lr"], g["weight_decay"])
        assert got == pytest.approx((lr_mult, decay_mult, LR * lr_mult, WD * decay_mult)), (
            f"{ours} ({row['parameter']})"
        )
