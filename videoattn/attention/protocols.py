"""What a module class must offer for the site its registry row names: one ``typing.Protocol`` per
site kind (scope), checked when the registry table is built (:func:`check_site_protocol`,
called by :class:`~videoattn.attention.registry.AttentionSpec`), so a row that cannot work
fails at import, naming the row and what is missing.

=========  ======================================================  =======================================
scope      built as                                                called as
=========  ======================================================  =======================================
``block``  ``cls(channels, *, num_segments=T?, **hp)``             ``module(x)``, same shape
``stage``  ``cls(channels, *, num_segments=T?, **hp)``             ``module.step(x, state) -> (y, state)``
``head``   ``cls(channels, *, num_segments=T?, **hp)``             ``module(x)``; with an auxiliary loss
                                                                   also ``forward_with_aux`` / ``aux_loss``
``conv``   ``cls(in_channels, out_channels, *, stride,             ``module(x)``: ``(N*T, Cin, H, W) ->
           num_segments=T, **hp)``                                 (N*T, Cout, H/s, W/s)``, normalised,
                                                                   before the block's ReLU
``stem``   ``cls(channels=C, num_segments=T, stage=<a plain        ``module(x, stem=<stem>, stage=<the
           copy of the first stage>, **hp)``                       first stage>)`` -> what stage 1 returns
=========  ======================================================  =======================================

``x`` is ``(N*T, C, H, W)`` everywhere, but at the stem: ``(N*T, F*3, H, W)`` with ``F`` the
row's ``frames_per_segment`` frames of each segment on the channels (frame-major, then RGB).
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn


@runtime_checkable
class StageModule(Protocol):
    """A module shared by the blocks of a stage (DIANet), carrying its state through them."""

    def step(self, x: Tensor, state: Any) -> tuple[Tensor, Any]: ...


@runtime_checkable
class AuxHeadModule(Protocol):
    """A head module with an auxiliary loss (EncNet's SE-loss): per-frame outputs ``aux``
    ``(N*T, ...)`` and the weighted loss on their average over T."""

    def forward_with_aux(self, x: Tensor) -> tuple[Tensor, Tensor | None]: ...

    def aux_loss(self, aux: Tensor, labels: Tensor) -> Tensor: ...


@runtime_checkable
class FusesConv(Protocol):
    """A block-slot module that may compute ``conv(self(x))`` itself (TSM's in-place shift around
    conv1 at inference), or decline with None; a backbone offers its input slot's conv to it."""

    def conv_after(self, x: Tensor, conv: nn.Module) -> Tensor | None: ...


class ConvModule(Protocol):
    """In place of a block's spatial conv and its BN (TAda2D's TAdaConv): ``(N*T, Cin, H, W) ->
    (N*T, Cout, H/stride, W/stride)``, the normalised output before the block's ReLU."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, num_segments: int) -> None: ...

    def __call__(self, x: Tensor) -> Tensor: ...


class StemModule(Protocol):
    """In place of ``stage(stem(x))`` (TDN's short-term module): built with a fresh plain copy
    of the first stage, called with the backbone's stem and first stage; returns what the
    first stage returns."""

    def __init__(self, *, channels: int, num_segments: int, stage: nn.Module) -> None: ...

    def __call__(self, x: Tensor, *, stem: Any, stage: nn.Module) -> Tensor: ...


# scope -> the constructor arguments the site gives (besides the hyper-parameters)
SITE_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "block": ("num_segments",),
    "stage": ("num_segments",),
    "head": ("num_segments",),
    "conv": ("in_channels", "out_channels", "stride", "num_segments"),
    "stem": ("channels", "stage", "num_segments"),
}


def _accepts(fn: Any, names: tuple[str, ...], *, keyword: bool) -> list[str]:
    """The ``names`` that ``fn``'s signature cannot take (by keyword when ``keyword``)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return []
    ok = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [n for n in names if n not in params or (keyword and params[n].kind not in ok)]


def check_site_protocol(name: str, cls: type[nn.Module], scope: str, *, aux: bool) -> None:
    """Fail with ``TypeError`` unless ``cls`` offers what its ``scope`` needs (see the table)."""
    if scope == "stage" and not issubclass(cls, StageModule):
        raise TypeError(f"{name}: a stage-scoped module needs step(x, state) -> (y, state)")
    if aux and scope != "head":
        raise TypeError(f"{name}: an auxiliary loss is for head modules with forward_with_aux(x)")
    if scope == "conv":
        params = list(inspect.signature(cls).parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        missing = _accepts(cls, ("stride", "num_segments"), keyword=True)
        if len(positional) < 2 or missing:
            raise TypeError(
                f"{name}: a conv-site module is built as cls(in_channels, out_channels, *, stride, num_segments)"
            )
    if scope == "stem":
        if _accepts(cls, ("channels", "stage", "num_segments"), keyword=True):
            raise TypeError(f"{name}: a stem module is built as cls(channels=C, num_segments=T, stage=first_stage)")
        if _accepts(cls.forward, ("stem", "stage"), keyword=True):
            raise TypeError(f"{name}: a stem module is called as module(x, stem=stem, stage=first_stage)")
