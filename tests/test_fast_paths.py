"""The hand-written kernels of the temporal modules (shift, temporal convolution) and the
layouts the fast paths rely on: gradients against finite differences and against autograd
of the plain formulas, channels_last kept end to end, models that convert like any module."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from videoattn.attention import build_attention, shift_fast, temporal_shift
from videoattn.attention._pool import spatial_mean
from videoattn.attention._temporal import temporal_conv
from videoattn.models import build_model, to_channels_last

T = 4


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def conv_reference(xt, taps):
    """``temporal_conv`` by its definition: weight the frames, zero-pad, sum the shifted copies."""
    k = len(taps)
    t = xt.shape[1]
    out = torch.zeros_like(xt)
    for i, w in enumerate(taps):
        o = i - k // 2
        wx = F.pad(w * xt, (0, 0, 0, 0, 0, 0, k, k))  # zero frames on both sides of T
        out = out + wx[:, k + o : k + o + t]  # out[t] += (w * x)[t + o]
    return out


@pytest.mark.parametrize("k, per_frame, t", [(3, False, 4), (3, True, 4), (5, True, 4), (5, True, 2), (1, False, 3)])
def test_temporal_conv_matches_its_definition_and_gradients(k, per_frame, t):
    n, c = 2, 3
    xt = rand(n, t, c, 3, 2, seed=1).requires_grad_()
    shape = (n, t, c, 1, 1) if per_frame else (1, 1, c, 1, 1)
    taps = [rand(*shape, seed=10 + i).requires_grad_() for i in range(k)]
    out = temporal_conv(xt, taps)
    torch.testing.assert_close(out, conv_reference(xt, taps), rtol=1e-12, atol=1e-12)
    g = rand(*out.shape, seed=3)
    got = torch.autograd.grad(out, [xt, *taps], g)
    want = torch.autograd.grad(conv_reference(xt, taps), [xt, *taps], g)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x, *w: temporal_conv(x, w), (xt, *taps))


def test_temporal_conv_is_a_depthwise_conv1d_over_time():
    n, c, h, w = 2, 5, 3, 4
    xt = rand(n, T, c, h, w)
    weight = rand(c, 1, 3, seed=2)  # Conv1d(C, C, 3, groups=C): tap k on frame t+k-1
    ref = F.conv1d(xt.permute(0, 3, 4, 2, 1).reshape(-1, c, T), weight, padding=1, groups=c)
    ref = ref.view(n, h, w, c, T).permute(0, 4, 3, 1, 2)  # (N*H*W, C, T) -> (N, T, C, H, W)
    taps = weight[:, 0].t()[:, None, None, :, None, None].unbind(0)  # 3 x (1, 1, C, 1, 1)
    torch.testing.assert_close(temporal_conv(xt, taps), ref, rtol=1e-12, atol=1e-12)


def test_temporal_shift_backward_is_the_reverse_shift():
    x = rand(2 * T, 16, 3, 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: temporal_shift(v, T, 8), (x,))
    assert torch.autograd.gradgradcheck(lambda v: temporal_shift(v, T, 4), (x,))
    g = rand(2 * T, 16, 3, 3, seed=5)
    (grad,) = torch.autograd.grad(temporal_shift(x, T, 8), x, g)
    xt, gt = x.detach().view(2, T, 16, 3, 3), g.view(2, T, 16, 3, 3)
    want = torch.zeros_like(xt)  # adjoint of out[t,:2] = x[t+1,:2], out[t,2:4] = x[t-1,2:4]
    want[:, 1:, :2] = gt[:, :-1, :2]
    want[:, :-1, 2:4] = gt[:, 1:, 2:4]
    want[:, :, 4:] = gt[:, :, 4:]
    torch.testing.assert_close(grad, want.view_as(x), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("t, div", [(T, 8), (1, 8), (3, 4)])
def test_in_place_shift_is_bitwise_the_shifted_copy_and_restores_the_input(dtype, channels_last, t, div):
    x = rand(2 * t, 16, 5, 4, dtype=dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    before = x.clone()
    conv = torch.nn.Conv2d(16, 8, 3, padding=1, bias=False).to(dtype)
    with torch.no_grad():
        got = shift_fast.shifted_call(x, conv, t, div)
        want = conv(temporal_shift(x, t, div))
    assert torch.equal(got, want)
    assert torch.equal(x, before) and x.stride() == before.stride()

    def fails(v):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        shift_fast.shifted_call(x, fails, t, div)
    assert torch.equal(x, before)  # put back on the way out of an error too


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "5d", "3d"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_spatial_mean_is_the_mean_in_the_inputs_dtype(layout, dtype):
    shape = {"nchw": (6, 5, 7, 3), "channels_last": (6, 5, 7, 3), "5d": (2, 3, 5, 7, 3), "3d": (5, 7, 3)}[layout]
    x = (rand(*shape, dtype=torch.float32) + 3).to(dtype)  # offset: cancellation would hide errors
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    got = spatial_mean(x)
    want = x.detach().double().mean((-2, -1))
    assert got.dtype == dtype and got.shape == want.shape
    if dtype == torch.float32:
        assert torch.equal(got, x.mean((-2, -1)))
    else:  # one rounding of the float32-accumulated sum, one of the mean: within 2 bf16 ulps
        torch.testing.assert_close(got.double(), want, rtol=2 * 2**-8, atol=0)
    (g,) = torch.autograd.grad(got.sum(), x)
    torch.testing.assert_close(g.double(), torch.full(shape, 1 / 21, dtype=torch.float64), rtol=2**-8, atol=0)


@pytest.mark.parametrize("t, div", [(T, 8), (1, 8), (3, 4)])
def test_compiler_shift_is_the_shift_and_its_gradient(t, div):
    x = rand(2 * t, 16, 3, 2).requires_grad_()
    fast = shift_fast._shift_functional(x, t, 16 // div)  # what torch.compile traces
    assert torch.equal(fast, temporal_shift(x, t, div))
    g = rand(*x.shape, seed=4)
    (a,) = torch.autograd.grad(fast, x, g)
    (b,) = torch.autograd.grad(temporal_shift(x, t, div), x, g)
    assert torch.equal(a, b)


def test_tsm_blocks_shift_in_place_only_where_it_is_safe(monkeypatch):
    """Inference of a TSM model takes the in-place path in every block, with logits bitwise
    those of the shifted copy; training, autograd and hooks take the copy."""
    calls = []
    real = shift_fast.shifted_call
    monkeypatch.setattr(shift_fast, "shifted_call", lambda *a: calls.append(1) or real(*a))
    cfg = {"arch": "resnet50", "num_classes": 5, "num_segments": T, "layers": [1, 2, 1, 1],
           "widths": [16, 32, 64, 128], "inserts": ["tsm"]}  # fmt: skip
    torch.manual_seed(0)
    m = build_model(cfg).eval()
    x = rand(2, T, 3, 32, 32, dtype=torch.float32)
    with torch.inference_mode():
        fast = m(x)
        assert len(calls) == 5  # one per block
        with shift_fast.shift_in_place(False):
            assert torch.equal(m(x), fast)
    assert len(calls) == 5
    with torch.no_grad():
        assert torch.equal(m(x), fast)
    assert len(calls) == 10
    calls.clear()
    torch.testing.assert_close(m(x), fast, rtol=0, atol=0)  # autograd on: shifted copy
    seen = []
    m.backbone.layer1[0].att_input.register_forward_hook(lambda *a: seen.append(1))
    with torch.no_grad():
        m(x)
    assert calls == [1] * 4 and seen == [1]  # the hooked slot shifted a copy, the others not


@pytest.mark.parametrize("name", ["tsm", "action", "tam", "tam_local", "tam_global", "action_ste"])
@pytest.mark.parametrize("train", [False, True])
def test_temporal_modules_keep_channels_last(name, train):
    torch.manual_seed(0)
    m = build_attention(name, 32, num_segments=T).train(train)
    x = rand(2 * T, 32, 6, 6, dtype=torch.float32).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(train)
    y = m(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, m(x.contiguous()), rtol=1e-5, atol=1e-6)
    if train:
        y.sum().backward()
        assert x.grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", ["tsm", "action", "tam"])
def test_temporal_modules_keep_the_activations_dtype_under_autocast(name):
    torch.manual_seed(0)
    m = build_attention(name, 32, num_segments=T).eval()
    x = rand(2 * T, 32, 6, 6, dtype=torch.float32).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert m(x).dtype == torch.bfloat16


@pytest.mark.parametrize("inserts", [["tsm", "tam", {"name": "se", "stages": [2]}], ["action"]])
def test_models_convert_like_any_module(inserts):
    """``.double()`` / ``to_channels_last`` reach every block (no method shadows
    ``nn.Module._apply``; ACTION's 5-D Conv3d weight stays as it is), and a channels_last
    model computes the same logits."""
    torch.manual_seed(0)
    cfg = {"arch": "resnet50", "num_classes": 5, "num_segments": T, "layers": [1, 1, 1, 1],
           "widths": [16, 32, 64, 128], "inserts": inserts}  # fmt: skip
    m = build_model(cfg).eval()
    x = rand(2, T, 3, 32, 32, dtype=torch.float32)
    with torch.no_grad():
        ref = m(x)
        assert to_channels_last(m) is m
        assert m.backbone.layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
        frames = x.flatten(0, 1).contiguous(memory_format=torch.channels_last)  # (N*T, 3, H, W)
        torch.testing.assert_close(m(frames.unflatten(0, (2, T))), ref, rtol=1e-4, atol=1e-5)
        assert m.double()(x.double()).dtype == torch.float64


# ----------------------------------------------------------------------------- paper form vs fast form
from videoattn.attention import accepted_hparams, get_spec, list_attention  # noqa: E402

# built alone as (N*T, C, H, W) -> same shape; TAda2D's conv-site module: tests/test_newmods.py
TWO_FORMS = [n for n in list_attention() if "impl" in accepted_hparams(n) and get_spec(n).scope == "block"]


def test_the_optimised_modules_have_a_paper_form():
    assert {"tsm", "action", "tam"} <= set(TWO_FORMS)


@pytest.mark.parametrize("name", TWO_FORMS)
@pytest.mark.parametrize("train", [False, True])
def test_the_fast_form_equals_the_paper_form_with_its_gradients(name, train):
    """The fast implementation (default) and the paper's form give the same outputs and the
    same gradients for the input and every parameter, in float64 to 1e-10."""
    torch.manual_seed(0)
    paper = build_attention(name, 32, num_segments=T, impl="paper").double()
    with torch.no_grad():
        for p in paper.parameters():
            p.add_(0.2 * torch.randn_like(p))
    fast = build_attention(name, 32, num_segments=T, impl="fast").double()
    fast.load_state_dict(paper.state_dict())
    paper.train(train), fast.train(train)
    x = rand(2 * T, 32, 5, 6).requires_grad_()
    g = rand(2 * T, 32, 5, 6, seed=1)
    outs = []
    for m in (paper, fast):
        y = m(x)
        grads = torch.autograd.grad(y, [x, *m.parameters()], g, allow_unused=True)
        outs.append((y, grads))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-10, atol=1e-10)
    for a, b in zip(outs[0][1], outs[1][1], strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", TWO_FORMS)
def test_the_paper_form_matches_the_reference_formulation(name):
    import reference

    torch.manual_seed(0)
    m = build_attention(name, 32, num_segments=T, impl="paper").double().eval()
    x = rand(2 * T, 32, 5, 6)
    torch.testing.assert_close(m(x), reference.REFERENCES[name].output(m, x), rtol=1e-10, atol=1e-10)
