"""Properties of every registered excitation module, parametrized over the registry."""

from __future__ import annotations

import pytest
import reference
import torch
from torch.func import functional_call

from videoattn.attention import (
    FIXED_SLOTS,
    build_attention,
    get_spec,
    list_attention,
    no_weight_decay_names,
    temporal_shift,
)
from videoattn.attention._covariance import covariance_pool, sqrtm_newton_schulz
from videoattn.attention.dia import DIA
from videoattn.attention.eca import eca_kernel_size
from videoattn.attention.encnet import EncModule, se_loss

# the modules that map (N*T, C, H, W) to the same shape (block, stage and head sites); the conv-
# and stem-site rows (TAda2D's, TDN's stem) are tested in test_newmods.py / test_backbones.py
ALL = [n for n in list_attention() if get_spec(n).scope not in FIXED_SLOTS]
TEMPORAL = [n for n in list_attention("temporal") if n in ALL]
STATIC = [n for n in list_attention("static") if n in ALL]
T = 4  # frames per clip
C = 32  # channels: divisible by 16 (FcaNet's top16, ACTION's C/16)
HW = 8


def make(name: str, channels: int = C, seed: int = 0, **hparams) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_attention(name, channels, num_segments=T, **hparams)


def randomize_(module: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Move every parameter and BN statistic away from its init, so that identity-at-init
    modules (GCT) and constant-at-init gates (SRM) are exercised for real."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return module


def perturbed(m: torch.nn.Module, x: torch.Tensor, index, new: torch.Tensor):
    """Outputs of ``m`` before and after replacing ``x[index]`` by ``new``."""
    x2 = x.clone()
    x2[index] = new
    return m(x), m(x2)


def clips(n: int = 2, channels: int = C, hw: int = HW, seed: int = 2, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n * T, channels, hw, hw, generator=g, dtype=dtype)  # (N*T, C, H, W)


# ----------------------------------------------------------------------------- registry
def test_registry_has_every_module_of_the_mission():
    """The product's list (the mission names these 22); adding a module does not touch it."""
    expected = {
        "tsm", "action", "action_ste", "action_ce", "action_me", "tam", "tam_local", "tam_global",
        "se", "cse", "sse", "scse", "eca", "rcan_ca", "srm", "gct", "fca", "encnet", "gsop",
        "soca", "bilinear", "dia",
    }  # fmt: skip
    assert expected <= set(ALL)
    assert {n for n in expected if n.startswith(("tsm", "action", "tam"))} <= set(TEMPORAL)


def test_unknown_name_is_a_value_error_with_close_matches():
    with pytest.raises(ValueError, match=r"unknown attention module 'tsn'.*'tsm'"):
        build_attention("tsn", 64)


def test_temporal_module_without_num_segments_explains_what_to_pass():
    for name in TEMPORAL:
        with pytest.raises(ValueError, match="num_segments"):
            build_attention(name, 64)


def test_unknown_hyperparameter_names_the_key_and_the_accepted_ones():
    with pytest.raises(ValueError, match=r"\['reducton'\].*reduction"):
        build_attention("se", 64, reducton=8)
    with pytest.raises(ValueError, match="paths"):  # fixed by the ablation variant
        build_attention("action_ste", 64, num_segments=8, paths=("ce",))


def test_a_bad_hyperparameter_value_is_a_config_error_naming_the_module():
    from videoattn.errors import ConfigError

    with pytest.raises(ConfigError, match=r"action: impl must be one of \('fast', 'paper'\), got 'slow'"):
        build_attention("action", 64, num_segments=8, impl="slow")
    with pytest.raises(ConfigError, match="tsm: shift_div must be >= 2"):
        build_attention("tsm", 64, num_segments=8, shift_div=1)


def test_temporal_module_rejects_batch_not_divisible_by_t():
    m = make("tsm")
    with pytest.raises(ValueError, match="not a multiple of num_segments=4"):
        m(torch.randn(6, C, 4, 4))


@pytest.mark.parametrize("name", ALL)
def test_spec_metadata_is_complete(name):
    spec = get_spec(name)
    assert spec.slot in ("input", "after_conv1", "before_last", "output", "head")
    assert spec.paper and spec.venue
    assert spec.arxiv is None or len(spec.arxiv.split(".")) == 2
    assert (spec.slot == "head") == (spec.scope == "head")


# ----------------------------------------------------------------------------- properties
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("train", [True, False])
def test_shape_and_dtype_kept(name, train):
    m = make(name).train(train)
    x = clips()
    y = m(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ALL)
def test_odd_spatial_sizes_and_single_pixel_maps(name):
    m = make(name).eval()
    for hw in (7, 3, 1):
        x = clips(hw=hw)
        y = m(x)
        assert y.shape == x.shape and torch.isfinite(y).all(), hw


@pytest.mark.parametrize("name", ALL)
def test_finite_gradient_for_every_parameter(name):
    m = randomize_(make(name)).train()
    x = clips().requires_grad_()
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    (m(x) * w).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in m.named_parameters():
        assert p.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"


@pytest.mark.parametrize("name", ALL)
def test_batch_isolation_in_eval(name):
    """Changing one video never changes another video's output."""
    m = randomize_(make(name)).eval()
    y, y2 = perturbed(m, clips(n=3), slice(T, 2 * T), torch.randn(T, C, HW, HW))  # video 1
    others = torch.cat([torch.arange(0, T), torch.arange(2 * T, 3 * T)])
    torch.testing.assert_close(y2[others], y[others], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(y2[T : 2 * T], y[T : 2 * T])


@pytest.mark.parametrize("name", STATIC)
def test_static_modules_never_mix_frames(name):
    m = randomize_(make(name)).eval()
    y, y2 = perturbed(m, clips(), 1, torch.randn(C, HW, HW))  # frame 1 of video 0
    rest = [i for i in range(2 * T) if i != 1]
    torch.testing.assert_close(y2[rest], y[rest], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(y2[1], y[1])


@pytest.mark.parametrize("name", TEMPORAL)
def test_temporal_modules_mix_only_inside_a_clip(name):
    m = randomize_(make(name)).eval()
    y, y2 = perturbed(m, clips(n=2), 1, 3 * torch.randn(C, HW, HW))  # frame 1 of video 0
    torch.testing.assert_close(y2[T:], y[T:], rtol=1e-5, atol=1e-6)  # video 1 untouched
    neighbours = [0, 2]  # frames 0 and 2 of video 0 see frame 1
    assert not torch.allclose(y2[neighbours], y[neighbours]), "no temporal mixing at all"


# ----------------------------------------------------------------------------- numerics
def test_every_module_has_a_reference_formulation():
    assert set(reference.REFERENCES) == set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_matches_reference_formulation(name):
    """The library's (optimised) computation equals the paper's formulation, in float64."""
    m = randomize_(make(name)).double().eval()
    x = clips(dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), reference.REFERENCES[name].output(m, x), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("shift_div", [4, 8, 12])
@pytest.mark.parametrize("channels", [8, 30, 64])
def test_tsm_equals_reference_slicing_exactly(shift_div, channels):
    m = build_attention("tsm", channels, num_segments=T, shift_div=shift_div)
    x = clips(channels=channels)
    assert torch.equal(m(x), reference.tsm(m, x))


def test_tsm_is_exact_in_channels_last_and_bf16():
    m = make("tsm")
    x = clips().to(memory_format=torch.channels_last)
    assert torch.equal(m(x), reference.tsm(m, x.contiguous()))
    xb = clips().bfloat16()
    assert torch.equal(m(xb), reference.tsm(m, xb))


@pytest.mark.parametrize("name", ["action", "action_ste", "action_ce", "action_me"])
@pytest.mark.parametrize("channels", [32, 48])
def test_action_shift_at_init_equals_tsm_exactly(name, channels):
    m = make(name, channels=channels)
    x = clips(channels=channels)
    with torch.no_grad():
        assert torch.equal(m.shift(x), temporal_shift(x, T, 8))


def test_gct_is_the_identity_at_init():
    x = clips()
    for mode in ("l2", "l1"):
        assert torch.equal(make("gct", mode=mode)(x), x)


def test_gct_l1_after_relu_matches_l1_on_nonnegative_input():
    x = clips().relu()
    a = randomize_(make("gct", mode="l1", after_relu=True))
    b = randomize_(make("gct", mode="l1"))
    torch.testing.assert_close(a(x), b(x))


def test_gct_beta_is_excluded_from_weight_decay():
    model = torch.nn.Sequential(make("se"), make("gct"))
    assert no_weight_decay_names(model) == {"1.beta"}


@pytest.mark.parametrize(
    "channels, k", [(64, 3), (96, 3), (160, 5), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)]
)
def test_eca_kernel_size_adapts_to_channels(channels, k):
    # k = |log2(C)/2 + 1/2|_odd
    assert eca_kernel_size(channels) == k
    assert make("eca", channels=channels).conv.kernel_size == (k,)
    assert make("eca", channels=channels, kernel_size=3).conv.kernel_size == (3,)


def test_scse_max_option():
    m = randomize_(make("scse", combine="max")).eval()
    x = clips()
    torch.testing.assert_close(m(x), torch.maximum(m.cse(x), m.sse(x)))
    with pytest.raises(ValueError, match="combine"):
        make("scse", combine="mean")


@pytest.mark.parametrize("hw", [7, 14, 28, 5])
def test_fca_filters_are_an_orthonormal_dct_and_any_size_works(hw):
    m = make("fca", channels=32, dct_size=hw if hw >= 7 else 7)
    f = m.dct_filter.view(16, 2, -1)[:, 0].double()  # one filter per frequency group
    gram = f @ f.t()
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=1e-6, rtol=0)
    assert "dct_filter" not in m.state_dict()
    y = m(torch.randn(2, 32, hw + 3, hw + 1))
    assert y.shape == (2, 32, hw + 3, hw + 1)


def test_fca_dc_frequency_is_scaled_average_pooling():
    m = make("fca", channels=16, freq_sel="top1")
    x = torch.randn(2, 16, 7, 7)
    torch.testing.assert_close((x * m.dct_filter).sum((2, 3)), x.mean((2, 3)) * 7, rtol=1e-5, atol=1e-5)


def test_fca_rejects_channels_not_divisible_by_frequencies():
    with pytest.raises(ValueError, match="divisible by 16"):
        make("fca", channels=40)


def test_newton_schulz_converges_to_the_matrix_square_root():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 50, generator=g, dtype=torch.float64)
    a = x @ x.transpose(1, 2) / 50 + 0.1 * torch.eye(6, dtype=torch.float64)
    evals, evecs = torch.linalg.eigh(a)
    root = evecs @ torch.diag_embed(evals.sqrt()) @ evecs.transpose(1, 2)
    torch.testing.assert_close(sqrtm_newton_schulz(a, 30), root, rtol=1e-8, atol=1e-8)
    five = sqrtm_newton_schulz(a, 5)
    assert (five - root).abs().max() < (sqrtm_newton_schulz(a, 2) - root).abs().max()


def test_covariance_pool_is_the_biased_covariance_and_float32_for_bf16():
    x = clips()
    ref = torch.stack([torch.cov(s.flatten(1), correction=0) for s in x])
    torch.testing.assert_close(covariance_pool(x), ref, rtol=1e-5, atol=1e-6)
    assert covariance_pool(x.bfloat16()).dtype == torch.float32


def test_dia_carries_its_state_block_to_block():
    m = randomize_(DIA(C)).eval()
    x1, x2 = clips(seed=5), clips(seed=6)
    y1, state = m.step(x1, None)
    torch.testing.assert_close(y1, m(x1))
    y2, state2 = m.step(x2, state)
    assert not torch.allclose(y2, m(x2)), "the second block must see the first block's state"

    # second step by explicit LSTM algebra from the carried state
    def cell(seq, v):
        return seq[2](torch.relu(seq[0](v)))

    gates = cell(m.w_ih, x2.mean((2, 3))) + cell(m.w_hh, state[0])
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.sigmoid(c)
    torch.testing.assert_close(state2[1], c)
    torch.testing.assert_close(y2, x2 * h[..., None, None])


def test_encnet_se_branch_and_loss():
    m = randomize_(EncModule(C, num_classes=5)).train()
    y, logits = m.forward_with_aux(clips())
    assert y.shape == clips().shape and logits.shape == (2 * T, 5)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    loss = se_loss(logits, labels)
    target = torch.nn.functional.one_hot(labels, 5).float()
    manual = -(target * logits.sigmoid().log() + (1 - target) * (1 - logits.sigmoid()).log()).mean()
    torch.testing.assert_close(loss, manual)
    torch.testing.assert_close(m.aux_loss(logits, labels), 0.2 * manual)  # EncNet's weight
    assert EncModule(C, num_classes=5, se_loss_weight=0.5).aux_loss(logits, labels) == 0.5 * loss
    loss.backward()
    assert m.se_head.weight.grad is not None


# ----------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("name", ALL)
def test_parameter_count_matches_closed_form(name):
    for channels, t in ((256, 8), (64, 16)):
        m = build_attention(name, channels, num_segments=t)
        assert sum(p.numel() for p in m.parameters()) == reference.REFERENCES[name].params(channels, t)


def test_parameter_counts_at_256_channels():
    """Spot values at C=256, T=8 (the README table)."""
    got = {n: sum(p.numel() for p in build_attention(n, 256, num_segments=8).parameters()) for n in ALL}
    assert got["action"] == 18123 and got["tam"] == 65872 and got["se"] == 8192 and got["eca"] == 5


# ----------------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("name", [n for n in ALL if reference.REFERENCES[n].params(16, T)])
def test_float64_gradcheck(name):
    """Analytic gradients of input and parameters against finite differences."""
    hp = {"att_dim": 8} if name == "gsop" else {}
    m = randomize_(make(name, channels=16, **hp)).double().train()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2 * T, 16, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in m.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in m.parameters())

    def f(inp, *ps):
        return functional_call(m, dict(zip(names, ps, strict=True)), (inp,))

    assert torch.autograd.gradcheck(f, (x, *params), fast_mode=True, atol=1e-6, rtol=1e-4)
