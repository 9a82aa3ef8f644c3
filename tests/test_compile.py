"""``torch.compile`` on models with the temporal modules, in training: one graph, no graph
break (the custom autograd Functions' backward is traced with the forward), and the compiled
step (``aot_eager``: the traced forward and backward graphs run by eager kernels) computes
eager's logits and gradients. Every temporal module of the registry, in its fast and its paper
form, sits in one tiny model per form (module ``i`` in stage ``i % 4 + 1``), so that the
tracing is paid twice, not once per module.

The training check traces once: ``fullgraph=True`` turns any graph break into an error that
names its reason, and the backend counts the graphs it gets (what ``torch._dynamo.explain``
reports, which would trace the model a second time); ``explain`` itself checks the fast
forms' bf16 / channels_last traces, where no step is run."""

from __future__ import annotations

import copy

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from videoattn.attention import accepted_hparams, build_attention, get_spec, list_attention
from videoattn.attention._temporal import _convolve_backward
from videoattn.models import build_model

T = 4  # frames per clip
N = 2  # clips
# the block-site temporal modules (the stem / conv-site rows, TDN's stem and TAda2D's conv, need a
# bottleneck ResNet and 5-frame clips: their compile is not covered here)
TEMPORAL = [n for n in list_attention("temporal") if get_spec(n).scope == "block"]
IMPLS = ("fast", "paper")


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """No compiled code or cache entries carried from one test to the next."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def impl_kwargs(name: str, impl: str) -> dict[str, str]:
    """``{"impl": impl}`` for a module with that hyper-parameter, else nothing."""
    return {"impl": impl} if "impl" in accepted_hparams(name) else {}


def temporal_model(impl: str) -> torch.nn.Module:
    """A tiny ResNet-18 with every temporal module of the registry (``impl`` where the module
    has that hyper-parameter), module ``i`` in stage ``i % 4 + 1`` at its default slot, and
    its parameters moved away from their init (ACTION's shift is not a 0/1 kernel then)."""
    inserts = [
        {"name": name, "stages": [i % 4 + 1], "kwargs": impl_kwargs(name, impl)} for i, name in enumerate(TEMPORAL)
    ]
    torch.manual_seed(0)
    cfg = {"arch": "resnet18", "num_classes": 5, "num_segments": T, "layers": [1, 1, 1, 1],
           "widths": [16, 32, 64, 128], "dropout": 0.0, "inserts": inserts}  # fmt: skip
    model = build_model(cfg).train()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def clips(seed: int = 2) -> torch.Tensor:
    return torch.randn(N, T, 3, 32, 32, generator=torch.Generator().manual_seed(seed))  # (N, T, C, H, W)


def temporal_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The registered temporal modules inside ``model``, by name."""
    classes = {get_spec(name).cls for name in TEMPORAL}
    return [(n, m) for n, m in model.named_modules() if type(m) in classes]


@pytest.mark.parametrize("impl", IMPLS)
def test_training_step_compiles_to_one_graph_with_eager_numerics(impl):
    eager = temporal_model(impl)  # parameters require grad, the input does not
    modules = temporal_modules(eager)
    assert len(modules) == len(TEMPORAL) and all(getattr(m, "impl", impl) == impl for _, m in modules)
    compiled = copy.deepcopy(eager)
    x = clips()

    want = eager(x)
    want.square().sum().backward()
    backend = CompileCounterWithBackend("aot_eager")
    got = torch.compile(compiled, backend=backend, fullgraph=True)(x)  # a graph break raises here
    got.square().sum().backward()
    assert backend.frame_count == 1  # one graph, forward and backward

    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for (name, a), b in zip(compiled.named_parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    for a, b in zip(compiled.buffers(), eager.buffers(), strict=True):  # BN statistics of the step
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for name, m in modules:  # each module took part in the step (TSM has no parameters)
        assert all(p.grad.abs().sum() > 0 for p in m.parameters()), name


def test_fast_forms_compile_to_one_graph_in_bf16_channels_last():
    """The fast forms' layout- and dtype-dependent code (channels_last kept, taps cast to the
    activations' dtype under autocast) traces without a graph break too, in training; one
    module of each class, alone (the registry's variants of a class run the same kernels)."""
    first_of_class: dict[type, str] = {}
    for name in TEMPORAL:
        first_of_class.setdefault(get_spec(name).cls, name)
    x = torch.randn(N * T, 32, 6, 6, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
    for name in first_of_class.values():
        torch._dynamo.reset()
        module = build_attention(name, 32, num_segments=T, **impl_kwargs(name, "fast")).train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            explained = torch._dynamo.explain(module)(x)
        reasons = [str(b.reason).splitlines()[0] for b in explained.break_reasons]
        assert explained.graph_break_count == 0 and explained.graph_count == 1, (name, reasons)


@pytest.mark.parametrize("per_frame", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_traced_backward_of_the_temporal_conv_is_the_eager_one(per_frame, channels_last):
    """The backward the compiler traces (no ``out=`` into the shared buffer) gives the eager
    backward's gradients, the input's in the input's memory format, also for a gradient in
    another layout (the expanded gradient of a sum)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N * T, 6, 3, 5, dtype=torch.float64, generator=g)  # (N*T, C, H, W)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    xt = x.unflatten(0, (N, T))  # (N*T, C, H, W) -> (N, T, C, H, W)
    taps = [torch.randn((N, T, 6, 1, 1) if per_frame else (1, 1, 6, 1, 1), dtype=torch.float64, generator=g)
            for _ in range(3)]  # fmt: skip
    needs = (True, True, False, True)
    for grad in (
        torch.randn(x.shape, dtype=torch.float64, generator=g).unflatten(0, (N, T)),
        torch.ones((), dtype=torch.float64).expand_as(xt),
    ):
        eager = _convolve_backward(xt, taps, grad, needs, traceable=False)
        traced = _convolve_backward(xt, taps, grad, needs, traceable=True)
        assert eager[2] is None and traced[2] is None
        for a, b in zip(traced, eager, strict=True):
            if b is not None:
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        assert traced[0].stride() == eager[0].stride() == xt.stride()
