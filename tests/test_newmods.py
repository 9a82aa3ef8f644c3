"""TDN's temporal difference modules and TAda2D's TAdaConv block part: numerics against the
formulas written out here (loops over frames, explicit differences), the fast forms against the
paper forms, init behaviour, gradients, and parameter layouts against the official state_dicts
(``tests/data/official_state_dicts/{tdn,tada2d}_*.tsv``)."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from reference import nearest as _nearest
from reference import tdn_long
from torch import nn

from videoattn.attention.shift import temporal_shift
from videoattn.attention.tada import TAdaConv2d, tadaconv_fast, tadaconv_paper, temporal_avg_pool
from videoattn.attention.tdn import TDNLongTerm, TDNShortTerm, tdn_fusion_weights, tsm_shift_kernel

LAYOUTS = Path(__file__).parent / "data" / "official_state_dicts"


def _layout(name: str) -> dict[str, tuple[int, ...]]:
    rows = (LAYOUTS / name).read_text().splitlines()[1:]
    out = {}
    for row in rows:
        key, shape, _ = row.split("\t")
        out[key] = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
    return out


def _randomise_bn(module: nn.Module, seed: int = 0) -> None:
    """Random BN affine parameters and running statistics (eval-mode BN is then not the identity)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))


# ----------------------------------------------------------------------------- TDN long-term


@pytest.mark.parametrize("impl", ["paper", "fast"])
@pytest.mark.parametrize("size", [7, 8])
def test_long_term_tdm_is_the_formula(impl, size):
    torch.manual_seed(0)
    t, c = 4, 32
    mod = TDNLongTerm(c, num_segments=t, impl=impl).double().eval()
    _randomise_bn(mod)
    with torch.no_grad():
        mod.shift.conv.weight.normal_()  # a learnt kernel, not the init
    x = torch.randn(2 * t, c, size, size, dtype=torch.float64)
    got = mod(x)
    assert got.shape == x.shape
    torch.testing.assert_close(got, tdn_long(mod, x), rtol=1e-10, atol=1e-10)


def test_long_term_fast_equals_paper_in_training():
    torch.manual_seed(1)
    t, c = 8, 64
    paper = TDNLongTerm(c, num_segments=t, impl="paper").double().train()
    fast = copy.deepcopy(paper)
    fast.shift.impl = "fast"
    with torch.no_grad():
        paper.shift.conv.weight.normal_()
        fast.shift.conv.weight.copy_(paper.shift.conv.weight)
    x = torch.randn(2 * t, c, 7, 7, dtype=torch.float64, requires_grad=True)
    y_paper, y_fast = paper(x), fast(x)
    torch.testing.assert_close(y_fast, y_paper, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y_paper)
    (gp,) = torch.autograd.grad(y_paper, x, g)
    (gf,) = torch.autograd.grad(y_fast, x, g)
    torch.testing.assert_close(gf, gp, rtol=1e-12, atol=1e-12)
    for name, buf in paper.named_buffers():  # the same BN running statistics (two updates per call)
        torch.testing.assert_close(dict(fast.named_buffers())[name], buf)


@pytest.mark.parametrize("impl", ["paper", "fast"])
def test_the_shift_starts_as_the_tsm_shift(impl):
    t, c = 8, 64
    mod = TDNLongTerm(c, num_segments=t, impl=impl)
    x = torch.randn(2 * t, c, 5, 5)
    assert torch.equal(mod.shift(x), temporal_shift(x, t, 8, impl="paper"))
    assert torch.equal(mod.shift.conv.weight, tsm_shift_kernel(c))
    assert mod.shift.conv.weight.requires_grad  # learnable, unlike TSM's


def test_long_term_init_and_gradients():
    torch.manual_seed(0)
    c = 256
    mod = TDNLongTerm(c, num_segments=4)
    for name, conv, fan in (("conv1", mod.mse.conv1, c // 16), ("conv3", mod.mse.conv3, c)):
        std = conv.weight.std().item()
        assert abs(std / math.sqrt(2 / fan) - 1) < 0.1, name  # N(0, sqrt(2 / C_out)) for 1x1
    for conv in (mod.mse.conv3_smallscale2, mod.mse.conv3_smallscale4):
        assert abs(conv.weight.std().item() / math.sqrt(2 / (9 * c // 16)) - 1) < 0.15  # N(0, sqrt(2 / (9 C_out)))
    for m in mod.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert (m.weight == 1).all() and (m.bias == 0).all()
    x = torch.randn(8, c, 6, 6, requires_grad=True)
    mod(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in mod.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="multiple of num_segments"):
        mod(torch.randn(6, c, 4, 4))


@pytest.mark.parametrize("stage, width", [(2, 128), (3, 256), (4, 512)])
def test_long_term_layout_is_the_official_one(stage, width):
    """Every block of layer2-4 (bottleneck width C) holds exactly the official mse / shift tensors."""
    layout = _layout("tdn_resnet50_8seg_174cls.tsv")
    mod = TDNLongTerm(width, num_segments=8)
    ours = {k: tuple(v.shape) for k, v in mod.state_dict().items()}
    blocks = {m.group(1) for k in layout if (m := re.match(rf"module\.base_model\.layer{stage}_bak\.(\d+)\.mse\.", k))}
    assert len(blocks) == {2: 4, 3: 6, 4: 3}[stage]
    for b in blocks:
        prefix = f"module.base_model.layer{stage}_bak.{b}."
        official = {
            k.removeprefix(prefix): v
            for k, v in layout.items()
            if k.startswith(prefix) and k.removeprefix(prefix).split(".")[0] in ("mse", "shift")
        }
        assert official == ours
    assert not any(re.match(r"module\.base_model\.layer1_bak\.\d+\.(mse|shift)\.", k) for k in layout)


# ----------------------------------------------------------------------------- TDN short-term


def _tiny_stage(inplanes: int = 8, planes: int = 4) -> nn.Module:
    from torchvision.models.resnet import Bottleneck

    down = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4))
    return nn.Sequential(Bottleneck(inplanes, planes, downsample=down), Bottleneck(planes * 4, planes))


def _tiny_stem(channels: int = 8) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, channels, 7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
    )


def _short_term_reference(mod: TDNShortTerm, x, stem, stage, t):
    """The short-term TDM written out: the four differences one by one, the fusions by formula."""
    a, b = tdn_fusion_weights(t)
    frames = [x[:, 3 * i : 3 * i + 3] for i in range(5)]  # F1..F5, (N*T, 3, H, W)
    d = torch.cat([frames[1] - frames[0], frames[2] - frames[1], frames[3] - frames[2], frames[4] - frames[3]], 1)
    d = (d[..., 0::2, 0::2] + d[..., 1::2, 0::2] + d[..., 0::2, 1::2] + d[..., 1::2, 1::2]) / 4  # avgpool 2x2
    conv, bn = mod.conv1_5[0], mod.conv1_5[1]
    m = F.max_pool2d(torch.relu(bn(F.conv2d(d, conv.weight, stride=2, padding=3))), 3, 2, 1)
    r = stem(frames[2])
    r = a * r + b * _nearest(m, r.shape[-2:])
    r = stage(r)
    m2 = mod.resnext_layer1(m)
    return a * r + b * _nearest(m2, r.shape[-2:])


@pytest.mark.parametrize("t", [8, 4])
def test_short_term_tdm_is_the_formula(t):
    torch.manual_seed(0)
    stem, stage = _tiny_stem().double().eval(), _tiny_stage().double().eval()
    mod = TDNShortTerm(8, num_segments=t, stage=_tiny_stage().double(), frames=5).double().eval()
    _randomise_bn(mod)
    _randomise_bn(stage, 1)
    x = torch.randn(2 * t, 15, 64, 48, dtype=torch.float64)
    got = mod(x, stem=stem, stage=stage)
    assert got.shape == (2 * t, 16, 16, 12)  # (N*T, C_1, H/4, W/4)
    torch.testing.assert_close(got, _short_term_reference(mod, x, stem, stage, t), rtol=1e-10, atol=1e-10)
    assert (mod.alpha, mod.beta) == ((0.5, 0.5) if t == 8 else (0.75, 0.25))


def test_short_term_explicit_weights_gradients_and_errors():
    torch.manual_seed(0)
    t = 4
    stem, stage = _tiny_stem(), _tiny_stage()
    mod = TDNShortTerm(8, num_segments=t, stage=copy.deepcopy(stage), alpha=0.6, beta=0.4)
    assert (mod.alpha, mod.beta) == (0.6, 0.4)
    x = torch.randn(t, 15, 32, 32, requires_grad=True)
    out = mod(x, stem=stem, stage=stage)
    assert out.shape == (t, 16, 8, 8)
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in [*mod.named_parameters(), *stem.named_parameters(), *stage.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    with pytest.raises(ValueError, match=r"\(N\*T, 15, H, W\)"):
        mod(torch.randn(t, 3, 32, 32), stem=stem, stage=stage)
    with pytest.raises(ValueError, match="own copy"):
        mod(x, stem=stem, stage=mod.resnext_layer1)
    with pytest.raises(ValueError, match="multiple of num_segments"):
        mod(torch.randn(6, 15, 32, 32), stem=stem, stage=stage)


def test_short_term_still_frames_give_the_rgb_path_plus_a_constant_branch():
    """With 5 identical frames the differences vanish: M is the image of zero input."""
    torch.manual_seed(0)
    t = 8
    stem, stage = _tiny_stem().eval(), _tiny_stage().eval()
    mod = TDNShortTerm(8, num_segments=t, stage=_tiny_stage()).eval()
    frame = torch.randn(t, 3, 32, 32)
    x = frame.repeat(1, 5, 1, 1)  # (N*T, 15, H, W)
    zero_m = F.max_pool2d(mod.conv1_5(torch.zeros(t, 12, 16, 16)), 3, 2, 1)
    r = 0.5 * stem(frame) + 0.5 * F.interpolate(zero_m, size=(8, 8), mode="nearest")
    expected = 0.5 * stage(r) + 0.5 * F.interpolate(mod.resnext_layer1(zero_m), size=(8, 8), mode="nearest")
    torch.testing.assert_close(mod(x, stem=stem, stage=stage), expected)


def test_conv1_5_init_from_the_rgb_stem():
    mod = TDNShortTerm(64, num_segments=8, stage=nn.Identity())
    rgb = torch.randn(64, 3, 7, 7)
    mod.init_from_rgb_stem(rgb)
    w = mod.conv1_5[0].weight
    assert w.shape == (64, 12, 7, 7)
    for ch in range(12):
        torch.testing.assert_close(w[:, ch], (rgb[:, 0] + rgb[:, 1] + rgb[:, 2]) / 3)
    with pytest.raises(ValueError, match="stem kernel"):
        mod.init_from_rgb_stem(torch.randn(32, 3, 7, 7))


def test_short_term_layout_is_the_official_one():
    """conv1_5 and the own stage (a torchvision ResNet-50 layer1) hold the official tensors,
    less the conv biases the official FBResNet adds (folded into the BNs on conversion)."""
    from torchvision.models import resnet50

    layout = _layout("tdn_resnet50_8seg_174cls.tsv")
    mod = TDNShortTerm(64, num_segments=8, stage=resnet50().layer1)
    ours = {k: tuple(v.shape) for k, v in mod.state_dict().items()}
    prefix = "module.base_model."
    official = {
        k.removeprefix(prefix): v
        for k, v in layout.items()
        if k.startswith(prefix + "conv1_5.") or k.startswith(prefix + "resnext_layer1.")
    }
    conv_biases = {k for k in official if re.search(r"\.(conv\d|downsample\.0)\.bias$", k)}
    assert len(conv_biases) == 3 * 3 + 1
    assert {k: v for k, v in official.items() if k not in conv_biases} == ours


# ----------------------------------------------------------------------------- TAda2D


def _tada_reference(mod: TAdaConv2d, u: torch.Tensor, t: int) -> torch.Tensor:
    """TAda2D's conv part written out: calibration by loops over frames, a kernel per sample
    and frame, the temporal average with explicit neighbours (eval mode)."""
    rf = mod.rf
    n = u.shape[0] // t
    us = u.view(n, t, *u.shape[1:])
    out = []
    for v in range(n):
        p = [us[v, s].mean((-2, -1)) for s in range(t)]  # p_s, (C,)
        g = torch.stack(p).mean(0)  # the mean over (T, H, W)
        q = [p[s] + rf.g.weight[:, :, 0] @ g + rf.g.bias for s in range(t)]

        def tconv(seq, conv):  # zero-padded temporal conv, kernel 3: tap j on frame s + j - 1
            res = []
            for s in range(len(seq)):
                acc = conv.bias.clone() if conv.bias is not None else 0
                for j in range(3):
                    if 0 <= s + j - 1 < len(seq):
                        acc = acc + conv.weight[:, :, j] @ seq[s + j - 1]
                res.append(acc)
            return res

        a = tconv(q, rf.a)
        bn = rf.bn
        r = [torch.relu((x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias) for x in a]
        alpha = [1 + x for x in tconv(r, rf.b)]
        frames = []
        for s in range(t):
            kernel = mod.weight * alpha[s][None, :, None, None]  # W_s[o, i] = alpha_s[i] W_b[o, i]
            frames.append(F.conv2d(us[v, s : s + 1], kernel, stride=mod.stride, padding=1)[0])
        pooled = [
            sum(frames[s + o] for o in (-1, 0, 1) if 0 <= s + o < t) / 3  # zero frames outside, / 3
            for s in range(t)
        ]
        out.extend(mod.bn(frames[s][None])[0] + mod.bn_pool(pooled[s][None])[0] for s in range(t))
    return torch.stack(out)


@pytest.mark.parametrize("impl", ["paper", "fast"])
@pytest.mark.parametrize("stride", [1, 2])
def test_tada_block_part_is_the_formula(impl, stride):
    torch.manual_seed(0)
    t, cin, cout = 4, 16, 24
    mod = TAdaConv2d(cin, cout, stride=stride, num_segments=t, impl=impl).double().eval()
    _randomise_bn(mod)
    with torch.no_grad():
        mod.rf.b.weight.normal_(0, 0.2)  # a learnt calibration, not the init
    u = torch.randn(2 * t, cin, 9, 9, dtype=torch.float64)
    got = mod(u)
    assert got.shape == (2 * t, cout, 9 if stride == 1 else 5, 9 if stride == 1 else 5)
    torch.testing.assert_close(got, _tada_reference(mod, u, t), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("stride", [1, 2])
def test_tadaconv_fast_equals_paper(stride):
    torch.manual_seed(0)
    u = torch.randn(12, 8, 11, 10, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 8, 3, 3, dtype=torch.float64, requires_grad=True)
    alpha = (1 + 0.3 * torch.randn(12, 8, 1, 1, dtype=torch.float64)).requires_grad_()
    paper = tadaconv_paper(u, w, alpha, stride=stride)
    fast = tadaconv_fast(u, w, alpha, stride=stride)
    torch.testing.assert_close(fast, paper, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(paper)
    for a, b in zip(
        torch.autograd.grad(paper, (u, w, alpha), g), torch.autograd.grad(fast, (u, w, alpha), g), strict=True
    ):
        torch.testing.assert_close(b, a, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
def test_tada_starts_as_the_bottlenecks_conv_and_bn(train, stride):
    """b = 0 (alpha == 1) and bn_pool gamma = beta = 0: the module is bn(conv3x3(U)) at init."""
    torch.manual_seed(0)
    t = 4
    mod = TAdaConv2d(16, 16, stride=stride, num_segments=t).train(train)
    conv = nn.Conv2d(16, 16, 3, stride=stride, padding=1, bias=False)
    bn = nn.BatchNorm2d(16).train(train)
    with torch.no_grad():
        conv.weight.copy_(mod.weight)  # an ImageNet conv2.weight loads as it is
    if not train:
        _randomise_bn(mod.bn)
        bn.load_state_dict(mod.bn.state_dict())
    u = torch.relu(torch.randn(2 * t, 16, 8, 8))
    assert (mod.rf(u) == 1).all()
    torch.testing.assert_close(mod(u), bn(conv(u)))
    assert (mod.rf.g.bias == 0).all() and (mod.rf.a.bias == 0).all()
    assert (mod.bn_pool.weight == 0).all() and (mod.bn_pool.bias == 0).all()


def test_tada_gradients_reach_every_parameter():
    torch.manual_seed(0)
    t = 4
    mod = TAdaConv2d(16, 32, stride=2, num_segments=t)
    with torch.no_grad():  # off the init, where b = 0 and bn_pool = 0 block some gradients
        mod.rf.b.weight.normal_(0, 0.1)
        mod.bn_pool.weight.fill_(0.5)
    u = torch.randn(2 * t, 16, 8, 8, requires_grad=True)
    out = mod(u)
    assert out.shape == (2 * t, 32, 4, 4)
    out.square().mean().backward()
    assert torch.isfinite(u.grad).all()
    for name, p in mod.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_temporal_avg_pool_counts_the_padding():
    v = torch.arange(1.0, 5.0).view(4, 1, 1, 1)  # one clip, frames 1, 2, 3, 4
    assert temporal_avg_pool(v, 4).flatten().tolist() == pytest.approx([3 / 3, 6 / 3, 9 / 3, 7 / 3])
    x = torch.randn(2 * 5, 3, 4, 4)
    ref = F.avg_pool3d(x.view(2, 5, 3, 4, 4).transpose(1, 2), (3, 1, 1), 1, (1, 0, 0), count_include_pad=True)
    torch.testing.assert_close(temporal_avg_pool(x, 5), ref.transpose(1, 2).reshape_as(x))


@pytest.mark.parametrize("stage, width, blocks", [(2, 64, 3), (3, 128, 4), (4, 256, 6), (5, 512, 3)])
def test_tada_layout_is_the_official_one(stage, width, blocks):
    """Each official ``conv_branch`` 3x3 part maps onto the module by rename and a squeeze of T."""
    layout = _layout("tada2d_resnet50_8f_174cls.tsv")
    rename = {"b.weight": "weight", "b_bn.": "bn.", "b_avgpool_bn.": "bn_pool.", "b_rf.": "rf."}
    mod = TAdaConv2d(width, width, stride=2 if stage > 2 else 1, num_segments=8)
    ours = {k: tuple(v.shape) for k, v in mod.state_dict().items()}
    for k in range(1, blocks + 1):
        prefix = f"backbone.conv{stage}.res_{k}.conv_branch."
        official = {}
        for key, shape in layout.items():
            rest = key.removeprefix(prefix)
            if rest == key or not rest.startswith(tuple(rename)):
                continue
            new = next(rest.replace(old, to, 1) for old, to in rename.items() if rest.startswith(old))
            if new == "weight":
                shape = shape[2:]  # 1 x 1 x Co x Ci x 3 x 3 -> Co x Ci x 3 x 3
            elif len(shape) == 5:
                shape = shape[:3]  # Co x Ci x kT x 1 x 1 -> Co x Ci x kT
            official[new] = shape
        assert official == ours, (stage, k)


def test_tada_rejects_bad_settings():
    with pytest.raises(ValueError, match="impl"):
        TAdaConv2d(8, 8, num_segments=4, impl="slow")
    with pytest.raises(ValueError, match="reduction"):
        TAdaConv2d(2, 8, num_segments=4)
    with pytest.raises(ValueError, match="multiple of num_segments"):
        TAdaConv2d(8, 8, num_segments=4)(torch.randn(6, 8, 5, 5))
