"""TSM's online (causal) shift and the streaming engine: numerics against the formula, gradients,
per-frame equality of streaming with the offline model, the functional step and its export,
and which registry modules can stream (parametrized over the registry)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from videoattn.attention import (
    accepted_hparams,
    build_attention,
    causal_temporal_shift,
    get_spec,
    list_attention,
    shift_fast,
    stream_modules,
    streaming_blockers,
)
from videoattn.attention._pool import spatial_mean
from videoattn.errors import ConfigError
from videoattn.models import StreamingModel, build_model

T = 4
TINY = {"layers": [1, 1, 1, 1], "widths": [16, 32, 64, 128]}


def rand(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def causal_formula(x, t, shift_div):
    """``out[:, 0, :f] = 0; out[:, i, :f] = x[:, i-1, :f]`` (i >= 1), other channels kept; loops."""
    nt, c = x.shape[:2]
    fold = c // shift_div
    out = x.clone()
    for n in range(nt // t):
        for i in range(t):
            for ch in range(fold):
                out[n * t + i, ch] = x[n * t + i - 1, ch] if i > 0 else 0
    return out


def model(inserts, *, arch="resnet18", t=T, tiny=True, seed=0):
    """A tiny eval-mode model whose classifier is N(0, 1/F) (the N(0, 0.001) init would make
    every logit ~1e-3, too small to compare)."""
    torch.manual_seed(seed)
    m = build_model(
        {"arch": arch, "num_classes": 5, "num_segments": t, "inserts": list(inserts), **(TINY if tiny else {})}
    )
    with torch.no_grad():
        m.fc.weight.normal_(0, m.fc.in_features**-0.5)
        m.fc.bias.normal_(0, 0.1)
    return m.eval()


def clip(n=1, t=T, size=32, seed=0):
    return rand(n, t, 3, size, size, seed=seed)  # (N, T, 3, H, W)


def streamed_logits(stream, x):
    """Stream the frames of ``x`` ``(N, T, 3, H, W)`` one at a time: ``(N, T, K)``."""
    return torch.stack([stream.step(x[:, i]) for i in range(x.shape[1])], 1)


def assert_streams_like_offline(m, x):
    with torch.no_grad():
        offline = m.frame_logits(x)  # (N, T, K)
    online = streamed_logits(StreamingModel(m), x)
    assert online.shape == offline.shape
    assert (online - offline).abs().max() <= 1e-6 * max(1.0, offline.abs().max().item())
    assert offline.abs().max() > 0.1  # the comparison is not between near-zeros


# ----------------------------------------------------------------------------- the causal shift
@pytest.mark.parametrize("impl", ["fast", "paper"])
@pytest.mark.parametrize("channels, shift_div", [(8, 8), (30, 4), (16, 3)])
def test_causal_shift_is_the_formula(impl, channels, shift_div):
    x = rand(2 * T, channels, 3, 2)
    expected = causal_formula(x, T, shift_div)
    assert torch.equal(causal_temporal_shift(x, T, shift_div, impl=impl), expected)
    m = build_attention("tsm_online", channels, num_segments=T, shift_div=shift_div, impl=impl)
    assert torch.equal(m(x), expected)
    assert torch.equal(
        build_attention("tsm", channels, num_segments=T, shift_div=shift_div, direction="past")(x), expected
    )


def test_the_compilers_causal_shift_is_the_formula_with_its_gradient():
    x = rand(2 * T, 16, 3, 2, dtype=torch.float64).requires_grad_()
    traced = shift_fast._causal_shift_functional(x, T, 16 // 8)  # what torch.compile traces
    assert torch.equal(traced, causal_formula(x.detach(), T, 8))
    g = rand(*x.shape, seed=4, dtype=torch.float64)
    (a,) = torch.autograd.grad(traced, x, g)
    (b,) = torch.autograd.grad(causal_temporal_shift(x, T, 8), x, g)
    assert torch.equal(a, b)


def test_causal_shift_is_exact_in_channels_last_and_bf16():
    m = build_attention("tsm_online", 32, num_segments=T)
    x = rand(2 * T, 32, 4, 4)
    y = m(x.contiguous(memory_format=torch.channels_last))
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(y, causal_formula(x, T, 8))
    assert torch.equal(m(x.bfloat16()), causal_formula(x.bfloat16(), T, 8))


@pytest.mark.parametrize("impl", ["fast", "paper"])
def test_causal_shift_gradients(impl):
    x = rand(2 * T, 8, 2, 2, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: causal_temporal_shift(v, T, 4, impl=impl), (x,))
    assert torch.autograd.gradgradcheck(lambda v: causal_temporal_shift(v, T, 4, impl=impl), (x,))
    g = rand(*x.shape, seed=1, dtype=torch.float64)
    (grad,) = torch.autograd.grad(causal_temporal_shift(x, T, 4, impl=impl), x, g)
    expected = g.clone().view(2, T, 8, 2, 2)  # the adjoint: channel < f of frame i gets frame i+1's gradient
    expected[:, :-1, :2] = g.view(2, T, 8, 2, 2)[:, 1:, :2]
    expected[:, -1, :2] = 0
    assert torch.equal(grad, expected.view_as(g))


def test_the_online_row_fixes_the_direction_and_validates_it():
    assert get_spec("tsm_online").temporal and get_spec("tsm_online").slot == "input"
    assert get_spec("tsm_online").paper == get_spec("tsm").paper
    assert "direction" not in accepted_hparams("tsm_online") and "direction" in accepted_hparams("tsm")
    m = build_attention("tsm_online", 16, num_segments=T)
    assert m.causal and "direction=past" in repr(m)
    assert "direction=both" in repr(build_attention("tsm", 16, num_segments=T))
    with pytest.raises(ConfigError, match=r"tsm: direction must be one of \('both', 'past'\), got 'future'"):
        build_attention("tsm", 16, num_segments=T, direction="future")
    with pytest.raises(ConfigError, match="direction"):
        build_attention("tsm_online", 16, num_segments=T, direction="both")


def test_the_causal_shift_takes_no_in_place_path():
    m = build_attention("tsm_online", 16, num_segments=T)
    with torch.inference_mode():
        assert m.conv_after(rand(2 * T, 16, 4, 4), nn.Conv2d(16, 4, 1)) is None
        assert (
            build_attention("tsm", 16, num_segments=T).conv_after(rand(2 * T, 16, 4, 4), nn.Conv2d(16, 4, 1))
            is not None
        )


def test_stream_step_of_the_shift_is_the_offline_shift_frame_by_frame():
    m = build_attention("tsm_online", 16, num_segments=T)
    x = rand(2 * T, 16, 3, 3)
    offline = m(x).view(2, T, 16, 3, 3)
    frames, state = x.view(2, T, 16, 3, 3), None
    for i in range(T):
        y, state = m.stream_step(frames[:, i], state)
        assert torch.equal(y, offline[:, i]) and state.shape == (2, 2, 3, 3)
    with pytest.raises(ValueError, match="looks at future frames"):
        build_attention("tsm", 16, num_segments=T).stream_step(frames[:, 0], None)


# ----------------------------------------------------------------------------- offline per-frame logits
def test_frame_logits_are_the_per_frame_head_and_average_to_the_logits():
    m = model(["tsm_online", "se"])
    x = clip(n=2)
    with torch.no_grad():
        per_frame = m.frame_logits(x)
        fmap = m.backbone(x.flatten(0, 1))  # (N*T, F, h, w)
        expected = m.fc(spatial_mean(fmap)).view(2, T, 5)
        assert per_frame.shape == (2, T, 5) and torch.equal(per_frame, expected)
        torch.testing.assert_close(per_frame.mean(1), m(x), rtol=0, atol=0)


@pytest.mark.parametrize("name, causal", [("tsm_online", True), ("tsm", False)])
def test_offline_frame_logits_of_the_causal_model_never_see_later_frames(name, causal):
    m = model([name])
    x = clip()
    x2 = x.clone()
    x2[:, -1] = rand(1, 3, 32, 32, seed=9)
    with torch.no_grad():
        a, b = m.frame_logits(x), m.frame_logits(x2)
    assert torch.equal(a[:, :-1], b[:, :-1]) == causal
    assert not torch.allclose(a[:, -1], b[:, -1])


# ----------------------------------------------------------------------------- streaming == offline
@pytest.mark.parametrize(
    "inserts, n",
    [
        (["tsm_online"], 1),
        (["tsm_online"], 2),
        (["tsm_online", "se"], 2),
        ([{"name": "tsm", "kwargs": {"direction": "past"}}], 1),
    ],
)
def test_streaming_equals_the_offline_model_per_frame_resnet(inserts, n):
    assert_streams_like_offline(model(inserts), clip(n=n))


def test_streaming_equals_the_offline_model_per_frame_mobilenet_v2():
    m = model(["tsm_online"], arch="mobilenet_v2", t=3, tiny=False)
    s = StreamingModel(m)
    assert len(s.state_names) == 10  # the blocks with an identity shortcut
    assert_streams_like_offline(m, clip(n=2, t=3))


def test_streaming_runs_past_the_training_clip_length():
    """Frame t of a stream longer than T is frame t of the offline model built for the whole stream
    (the causal shift has no T-dependent weights): the state carries every earlier frame."""
    m = model(["tsm_online"])
    longer = model(["tsm_online"], t=3 * T)
    longer.load_state_dict(m.state_dict())
    x = clip(t=3 * T, seed=3)
    with torch.no_grad():
        offline = longer.frame_logits(x)  # (1, 3T, K)
    online = streamed_logits(StreamingModel(m), x)
    assert (online - offline).abs().max() <= 1e-6 * max(1.0, offline.abs().max().item())


def test_the_functional_step_equals_the_stateful_step_and_reset_restarts():
    m = model(["tsm_online", "se"])
    s = StreamingModel(m)
    x, y = clip(n=2, seed=1), clip(n=2, seed=2)
    states = s.initial_states((2, 3, 32, 32))
    shift = [mod for _, mod in stream_modules(m)]
    assert [tuple(st.shape[:2]) for st in states] == [(2, mod.channels // mod.shift_div) for mod in shift]
    assert all(not st.any() for st in states)
    for i in range(T):
        stateful = s.step(x[:, i])
        with torch.no_grad():
            functional, states = s.step_fn(x[:, i], states)
        assert torch.equal(functional, stateful)
        assert all(torch.equal(a, b) for a, b in zip(states, s.states, strict=True))
    assert s.frames_seen == T
    with pytest.raises(ValueError, match="reset"):
        s.step(y[:1, 0])  # another number of clips in the same stream
    s.reset()
    assert s.states == [None] * len(shift) and s.frames_seen == 0
    restarted = streamed_logits(s, y)
    assert torch.equal(restarted, streamed_logits(StreamingModel(m), y))


def test_the_functional_step_exports_with_the_states_as_inputs_and_outputs():
    s = StreamingModel(model(["tsm_online"]))
    frame = clip(n=2)[:, 0]
    states = s.initial_states(frame.shape)
    program = torch.export.export(s, (frame, states))
    sig = program.graph_signature
    assert len(sig.user_inputs) == 1 + len(states) and len(sig.user_outputs) == 1 + len(states)
    exported = program.module()
    with torch.no_grad():
        for f in clip(n=2, seed=5).unbind(1):  # (N, 3, H, W) frames
            logits, states = exported(f, states)
            assert torch.equal(logits, s.step(f))


# ----------------------------------------------------------------------------- who can stream
def insert_for(name):
    """``name`` in its default place (head modules in the head, DIANet per stage)."""
    return {"name": name}


@pytest.mark.parametrize("name", list_attention("temporal"))
def test_temporal_modules_stream_only_when_causal(name):
    m = model([insert_for(name)], arch="resnet50")
    blockers = streaming_blockers(m)
    if not blockers:  # a streaming module must give the offline model's per-frame logits
        assert stream_modules(m)
        assert_streams_like_offline(m, clip(n=2))
        return
    assert not stream_modules(m)
    first = next(n for n, mod in m.named_modules() if isinstance(mod, get_spec(name).cls))
    assert blockers[0].startswith(f"{first}: looks at future frames")
    with pytest.raises(ConfigError, match=rf"cannot run one frame at a time.*{first}.*looks at future frames"):
        StreamingModel(m)


def test_the_bidirectional_shift_tam_and_action_are_refused_and_the_online_shift_streams():
    temporal = list_attention("temporal")
    refused = {n for n in temporal if streaming_blockers(model([n], arch="resnet50"))}
    assert {"tsm", "tam", "action"} <= refused and "tsm_online" not in refused
    lines = streaming_blockers(model(["tsm_online", "tam"]))
    assert len(lines) == 4 and all(".att_after_conv1.tam: " in line for line in lines)  # one per block


@pytest.mark.parametrize("name", list_attention("static"))
def test_static_modules_stream_as_they_are(name):
    """Block, stage (DIANet) and head (EncNet) modules alike, with the online shift."""
    m = model(["tsm_online", insert_for(name)], arch="resnet50")
    assert streaming_blockers(m) == []
    assert_streams_like_offline(m, clip(n=2))


def test_streaming_needs_eval_mode_and_single_frames():
    m = model(["tsm_online"])
    with pytest.raises(ConfigError, match="eval mode"):
        StreamingModel(m.train())
    s = StreamingModel(m.eval())
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        s.step(clip())
    m.train()
    with pytest.raises(ConfigError, match="eval mode"):
        s.step(clip()[:, 0])


# ----------------------------------------------------------------------------- training
def test_a_tsm_online_model_trains():
    torch.manual_seed(0)
    m = build_model(
        {"arch": "resnet18", "num_classes": 5, "num_segments": T, "inserts": ["tsm_online"], **TINY}
    ).train()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x, labels = clip(n=2), torch.tensor([1, 3])
    before = {k: v.clone() for k, v in m.state_dict().items()}
    stem = m.backbone.conv1.weight  # the conv before the first shift
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), labels).backward()
        assert stem.grad is not None and torch.isfinite(stem.grad).all() and stem.grad.abs().sum() > 0
        opt.step()
    after = m.state_dict()
    assert not torch.equal(after["backbone.conv1.weight"], before["backbone.conv1.weight"])
    assert not torch.equal(after["fc.weight"], before["fc.weight"])
