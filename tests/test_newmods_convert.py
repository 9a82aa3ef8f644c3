"""Key maps of the official TDN and TAda2D state_dicts (``videoattn.models.convert.tdn_plan`` /
``tada2d_plan`` / ``apply_plan``): random state_dicts in the official layouts
(``tests/data/official_state_dicts/{tdn,tada2d}_*.tsv``) map every key exactly once onto the
modules of ``videoattn.attention.tdn`` / ``tada`` and a torchvision ResNet-50, shape for shape, and
the folded conv biases leave the BN outputs unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet50

from videoattn.attention.tada import TAdaConv2d
from videoattn.attention.tdn import TDNLongTerm, TDNShortTerm
from videoattn.errors import CheckpointError
from videoattn.models.convert import apply_plan, tada2d_plan, tdn_plan

LAYOUTS = Path(__file__).parent / "data" / "official_state_dicts"
TDN_TSV = "tdn_resnet50_8seg_174cls.tsv"
TADA_TSV = "tada2d_resnet50_8f_174cls.tsv"
WIDTHS = {1: 64, 2: 128, 3: 256, 4: 512}
DEPTHS = {1: 3, 2: 4, 3: 6, 4: 3}


def _random_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for row in (LAYOUTS / name).read_text().splitlines()[1:]:
        key, shape, dtype = row.split("\t")
        shape = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
        if dtype == "int64":
            sd[key] = torch.full(shape, 7, dtype=torch.int64)
        elif key.endswith("running_var"):
            sd[key] = 0.5 + torch.rand(shape, generator=g)
        else:
            sd[key] = 0.1 * torch.randn(shape, generator=g)
    return sd


def _shapes(module: nn.Module, prefix: str) -> dict[str, tuple[int, ...]]:
    return {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def tdn_sd() -> dict[str, torch.Tensor]:
    return _random_state_dict(TDN_TSV)


@pytest.fixture(scope="module")
def tada_sd() -> dict[str, torch.Tensor]:
    return _random_state_dict(TADA_TSV)


def _tdn_target() -> dict[str, tuple[int, ...]]:
    """Our TDN layout: a torchvision ResNet-50 (names of the backbone), the long-term TDM in
    every block of layer2-4, the short-term TDM at the stem, the classifier (shapes only: on the
    meta device)."""
    with torch.device("meta"):
        return _tdn_shapes()


def _tdn_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {k: v for k, v in _shapes(resnet50(), "backbone.").items() if not k.startswith("backbone.fc.")}
    for stage in (2, 3, 4):
        for block in range(DEPTHS[stage]):
            mod = TDNLongTerm(WIDTHS[stage], num_segments=8)
            shapes |= _shapes(mod, f"backbone.layer{stage}.{block}.att_after_conv1.tdn.")
    shapes |= _shapes(TDNShortTerm(64, num_segments=8, stage=resnet50().layer1), "backbone.att_stem.tdn.")
    return shapes | _shapes(nn.Linear(2048, 174), "fc.")


def _tada_target() -> dict[str, tuple[int, ...]]:
    """Our TAda2D layout: a torchvision ResNet-50 whose conv2 + bn2 are TAdaConv2d (at ``conv2``)."""
    with torch.device("meta"):
        return _tada_shapes()


def _tada_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for k, v in _shapes(resnet50(), "backbone.").items():
        parts = k.split(".")
        if k.startswith("backbone.fc.") or (len(parts) > 3 and parts[3] in ("conv2", "bn2")):
            continue
        shapes[k] = v
    for stage in (1, 2, 3, 4):
        for block in range(DEPTHS[stage]):
            mod = TAdaConv2d(WIDTHS[stage], WIDTHS[stage], stride=2 if block == 0 else 1, num_segments=8)
            shapes |= _shapes(mod, f"backbone.layer{stage}.{block}.conv2.")
    return shapes | _shapes(nn.Linear(2048, 174), "fc.")


def test_tdn_every_official_key_once_onto_our_modules(tdn_sd):
    sd = tdn_sd
    plan = tdn_plan(list(sd))
    assert set(plan) == set(sd)
    actions = [a for a, _ in plan.values()]
    assert actions.count("drop") == 2  # conv1_temp.{weight,bias}
    biases = [k for k in sd if k.endswith(".bias") and ("conv" in k.split(".")[-2] or k.endswith("downsample.0.bias"))]
    biases = [k for k in biases if "conv1_temp" not in k and ".mse." not in k]
    assert sorted(k for k, (a, _) in plan.items() if a == "fold") == sorted(biases)
    assert len(biases) == 1 + 2 * (3 * 3 + 1) + (4 * 3 + 1) + (6 * 3 + 1) + (3 * 3 + 1)  # every ResNet conv
    out = apply_plan(sd, plan)
    target = _tdn_target()
    assert set(out) == set(target)  # nothing missing, nothing left over
    assert {k: tuple(v.shape) for k, v in out.items()} == target
    assert len(out) == len(sd) - 2 - len(biases)


def test_tdn_folded_biases_leave_every_bn_output_unchanged(tdn_sd):
    sd = tdn_sd
    plan = tdn_plan(list(sd))
    out = apply_plan(sd, plan)
    for key, (action, target) in plan.items():
        if action != "fold":
            continue
        bn = key.removesuffix(".bias")  # conv -> its BN, in the official names
        bn = bn[: -len("downsample.0")] + "downsample.1" if bn.endswith("downsample.0") else bn.replace(".conv", ".bn")
        assert target.endswith("running_mean")
        b = sd[key]
        y = torch.randn(3, b.numel(), 2, 2)  # a conv output without its bias
        official = F.batch_norm(
            y + b[:, None, None],
            sd[bn + ".running_mean"],
            sd[bn + ".running_var"],
            sd[bn + ".weight"],
            sd[bn + ".bias"],
        )
        base = target.removesuffix("running_mean")
        ours = F.batch_norm(y, out[target], out[base + "running_var"], out[base + "weight"], out[base + "bias"])
        torch.testing.assert_close(ours, official, rtol=1e-5, atol=1e-5)


def test_tdn_stem_through_real_convolutions(tdn_sd):
    """The official stem ``bn1(conv1(x) + b)`` equals ours, ``bn1'(conv1(x))``, in eval mode."""
    sd = tdn_sd
    out = apply_plan(sd, tdn_plan(list(sd)))
    x = torch.randn(2, 3, 32, 32)
    p = "module.base_model."
    official = F.batch_norm(
        F.conv2d(x, sd[p + "conv1.weight"], sd[p + "conv1.bias"], stride=2, padding=3),
        sd[p + "bn1.running_mean"],
        sd[p + "bn1.running_var"],
        sd[p + "bn1.weight"],
        sd[p + "bn1.bias"],
    )
    conv, bn = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64).eval()
    conv.load_state_dict({"weight": out["backbone.conv1.weight"]})
    bn.load_state_dict({k.removeprefix("backbone.bn1."): v for k, v in out.items() if k.startswith("backbone.bn1.")})
    torch.testing.assert_close(bn(conv(x)), official, rtol=1e-4, atol=1e-4)


def test_tdn_modules_load_their_converted_weights_strictly(tdn_sd):
    sd = tdn_sd
    out = apply_plan(sd, tdn_plan(list(sd), long_term="tdm", stem="stem_tdm"))
    long_term = TDNLongTerm(256, num_segments=8)
    prefix = "backbone.layer3.5.tdm."
    long_term.load_state_dict({k.removeprefix(prefix): v for k, v in out.items() if k.startswith(prefix)})
    assert torch.equal(long_term.shift.conv.weight, sd["module.base_model.layer3_bak.5.shift.conv.weight"])
    stem = TDNShortTerm(64, num_segments=8, stage=resnet50().layer1)
    stem.load_state_dict(
        {k.removeprefix("backbone.stem_tdm."): v for k, v in out.items() if k.startswith("backbone.stem_tdm.")}
    )
    assert torch.equal(stem.conv1_5[0].weight, sd["module.base_model.conv1_5.0.weight"])


def test_tada2d_every_official_key_once_onto_our_modules(tada_sd):
    sd = tada_sd
    plan = tada2d_plan(list(sd))
    assert set(plan) == set(sd) and all(a == "copy" for a, _ in plan.values())
    out = apply_plan(sd, plan, squeeze_time=True)
    target = _tada_target()
    assert len(out) == len(sd) and set(out) == set(target)
    assert {k: tuple(v.shape) for k, v in out.items()} == target
    # the values travel unchanged, less the temporal dimensions
    p = "backbone.conv3.res_2.conv_branch."
    assert torch.equal(out["backbone.layer2.1.conv2.weight"], sd[p + "b.weight"][0, 0])
    assert torch.equal(out["backbone.layer2.1.conv2.rf.a.weight"], sd[p + "b_rf.a.weight"][..., 0, 0])
    assert torch.equal(out["backbone.layer2.1.conv2.bn_pool.running_var"], sd[p + "b_avgpool_bn.running_var"])
    assert torch.equal(out["backbone.conv1.weight"], sd["backbone.conv1.a.weight"][:, :, 0])
    assert torch.equal(out["fc.weight"], sd["head.out.weight"])


def test_tada2d_block_part_loads_and_runs(tada_sd):
    sd = tada_sd
    out = apply_plan(sd, tada2d_plan(list(sd), conv_site="tada"), squeeze_time=True)
    mod = TAdaConv2d(128, 128, stride=2, num_segments=8).eval()
    prefix = "backbone.layer2.0.tada."
    mod.load_state_dict({k.removeprefix(prefix): v for k, v in out.items() if k.startswith(prefix)})
    y = mod(torch.randn(8, 128, 8, 8))
    assert y.shape == (8, 128, 4, 4) and torch.isfinite(y).all()


def test_plans_refuse_what_they_do_not_know():
    with pytest.raises(CheckpointError, match="module.base_model.layer2_bak.0.tam.G.weight"):
        tdn_plan(["module.base_model.layer2_bak.0.tam.G.weight"])
    with pytest.raises(CheckpointError, match="backbone.conv2.res_1.conv_branch.b_extra.weight"):
        tada2d_plan(["backbone.conv2.res_1.conv_branch.b_extra.weight"])
    with pytest.raises(CheckpointError, match="no rule for the tensor extra"):
        apply_plan({"extra": torch.zeros(1)}, {})
    with pytest.raises(CheckpointError, match="two tensors map to fc.weight"):
        apply_plan({"a": torch.zeros(1), "b": torch.zeros(1)}, {"a": ("copy", "fc.weight"), "b": ("copy", "fc.weight")})
    key = "backbone.conv2.res_1.conv_branch.a.weight"
    with pytest.raises(CheckpointError, match="temporal kernel size 3"):
        apply_plan({key: torch.zeros(64, 64, 3, 1, 1)}, tada2d_plan([key]), squeeze_time=True)
