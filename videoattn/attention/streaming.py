"""The streaming protocol: running a model one frame at a time, the state of each temporal module
carried from frame to frame (TSM's online model, arXiv 1811.08383).

A temporal module that can stream has ``stream_step(x, state) -> (y, state)``, with ``x`` one
frame of each of N clips ``(N, C, H, W)`` and ``state`` a tensor it defines (``None`` at the
first frame, meaning what the offline module pads with), and ``stream_blocker() -> None``;
one that cannot says why in ``stream_blocker()`` (a one-line reason). Static modules act on
every frame alone and stream as they are. The registry lists a built model's streaming
modules and blockers (:func:`~videoattn.attention.registry.stream_modules`,
:func:`~videoattn.attention.registry.streaming_blockers`).

The model's ``forward`` is not changed: inside :func:`stream`, a streaming module's ``forward``
asks :func:`streamed` for its state and runs ``stream_step``; the new states are collected,
by module, in the order of the modules given. The states are plain inputs and outputs of the
frame's computation (no buffer is written), so the per-frame step traces (``torch.export``)
with the states as explicit inputs and outputs.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

from torch import Tensor, nn


class _Stream:
    """The states of one frame: given (``states``) and new (``new_states``), by module position."""

    def __init__(self, modules: Sequence[nn.Module], states: Sequence[Tensor | None]) -> None:
        if len(modules) != len(states):
            raise ValueError(f"{len(modules)} streaming modules but {len(states)} states")
        self.index = {id(m): i for i, m in enumerate(modules)}
        self.states = list(states)
        self.new_states: list[Tensor | None] = [None] * len(modules)
        self.ran = [False] * len(modules)

    def step(self, module: nn.Module, x: Tensor) -> Tensor:
        i = self.index.get(id(module))
        if i is None:
            raise RuntimeError(f"{type(module).__name__} ran in a stream that was not given its state")
        if self.ran[i]:
            raise RuntimeError(f"{type(module).__name__} ran twice in one frame of a stream")
        y, self.new_states[i] = module.stream_step(x, self.states[i])
        self.ran[i] = True
        return y


_current: contextvars.ContextVar[_Stream | None] = contextvars.ContextVar("videoattn_stream", default=None)


@contextlib.contextmanager
def stream(modules: Sequence[nn.Module], states: Sequence[Tensor | None]) -> Iterator[list[Tensor | None]]:
    """Run one frame with ``states[i]`` the state of ``modules[i]``; yields the list that holds
    their new states, in the same order, once the frame has run (each module must run once)."""
    s = _Stream(modules, states)
    token = _current.set(s)
    try:
        yield s.new_states
    finally:
        _current.reset(token)
    missing = [type(modules[i]).__name__ for i, ran in enumerate(s.ran) if not ran]
    if missing:
        raise RuntimeError(f"streaming modules that did not run in this frame: {missing}")


def streamed(module: nn.Module, x: Tensor) -> Tensor | None:
    """Inside :func:`stream`: ``module.stream_step(x, its state)``, the new state recorded;
    None outside one (the module computes its offline form)."""
    s = _current.get()
    return None if s is None else s.step(module, x)
