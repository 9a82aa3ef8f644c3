"""The fast implementation of the TSM shift (:mod:`videoattn.attention.shift` is the paper's
form): a shift with a hand-written backward (the bidirectional one and the online, causal
one), the compiler's traceable form, and the in-place inference path (bidirectional shift
only) that shifts inside the block input around conv1 instead of copying it. Each is tested
equal to the paper's form (tests/test_fast_paths.py, tests/test_streaming.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..shapes import merge_time, split_time


def temporal_shift_fast(x: Tensor, num_segments: int, shift_div: int = 8) -> Tensor:
    """:func:`~videoattn.attention.shift.temporal_shift`, bitwise, with its own backward.

    One output allocation in ``x``'s memory format (channels_last stays channels_last) and one
    write per element. The backward is the opposite shift, again one allocation (autograd
    through the slice assignments of the paper form clones the gradient per slice). Under
    ``torch.compile`` the shift is traced as pads and a concatenation, which the compiler
    fuses into one pass.
    """
    split_time(x, num_segments)  # checks that N*T is a multiple of T
    if torch.compiler.is_compiling():  # one fused gather kernel, traced by autograd as usual
        return _shift_functional(x, num_segments, x.shape[1] // shift_div)
    return _Shift.apply(x, num_segments, x.shape[1] // shift_div, False, "both")


def _shift_functional(x: Tensor, num_segments: int, fold: int) -> Tensor:
    """The shift as pads and a concatenation, for the compiler (it fuses them into one pass;
    the slice assignments of :func:`_shift` would be functionalised into copies)."""
    xt = split_time(x, num_segments)  # (N*T, C, H, W) -> (N, T, C, H, W)
    left = F.pad(xt[:, 1:, :fold], (0, 0, 0, 0, 0, 0, 0, 1))  # frame t <- t+1, zeros at T-1
    right = F.pad(xt[:, :-1, fold : 2 * fold], (0, 0, 0, 0, 0, 0, 1, 0))  # t <- t-1, zeros at 0
    return merge_time(torch.cat([left, right, xt[:, :, 2 * fold :]], dim=2))  # (N, T, C, H, W) -> (N*T, ...)


def _shift(x: Tensor, num_segments: int, fold: int, reverse: bool) -> Tensor:
    """The shift of :func:`temporal_shift_fast`; ``reverse`` swaps the two directions (its adjoint)."""
    left, right = slice(0, fold), slice(fold, 2 * fold)
    if reverse:
        left, right = right, left
    xt = split_time(x, num_segments)  # (N*T, C, H, W) -> (N, T, C, H, W)
    out = split_time(torch.empty_like(x), num_segments)  # (N*T, C, H, W) -> (N, T, C, H, W)
    out[:, :-1, left] = xt[:, 1:, left]  # frame t <- frame t+1
    out[:, -1:, left].zero_()
    out[:, 1:, right] = xt[:, :-1, right]  # frame t <- frame t-1
    out[:, :1, right].zero_()
    out[:, :, 2 * fold :] = xt[:, :, 2 * fold :]
    return merge_time(out)  # (N, T, C, H, W) -> (N*T, C, H, W)


def causal_shift_fast(x: Tensor, num_segments: int, shift_div: int = 8) -> Tensor:
    """:func:`~videoattn.attention.shift.causal_temporal_shift` (TSM's online shift), bitwise,
    with its own backward: one output allocation in ``x``'s memory format, one write per
    element; the backward is the adjoint shift (frame t <- frame t+1). Under
    ``torch.compile``, a pad and a concatenation. Out of place only: no in-place path."""
    split_time(x, num_segments)  # checks that N*T is a multiple of T
    fold = x.shape[1] // shift_div
    if torch.compiler.is_compiling():  # one fused kernel, traced by autograd as usual
        return _causal_shift_functional(x, num_segments, fold)
    return _Shift.apply(x, num_segments, fold, False, "past")


def _causal_shift_functional(x: Tensor, num_segments: int, fold: int) -> Tensor:
    """The causal shift as a pad and a concatenation, for the compiler."""
    xt = split_time(x, num_segments)  # (N*T, C, H, W) -> (N, T, C, H, W)
    past = F.pad(xt[:, :-1, :fold], (0, 0, 0, 0, 0, 0, 1, 0))  # frame t <- t-1, zeros at 0
    return merge_time(torch.cat([past, xt[:, :, fold:]], dim=2))  # (N, T, C, H, W) -> (N*T, C, H, W)


def _causal_shift(x: Tensor, num_segments: int, fold: int, reverse: bool) -> Tensor:
    """The first ``fold`` channels one frame later (frame t <- t-1, zeros at 0); ``reverse``:
    one frame earlier (frame t <- t+1, zeros at T-1), its adjoint."""
    xt = split_time(x, num_segments)  # (N*T, C, H, W) -> (N, T, C, H, W)
    out = split_time(torch.empty_like(x), num_segments)  # (N*T, C, H, W) -> (N, T, C, H, W)
    if reverse:
        out[:, :-1, :fold] = xt[:, 1:, :fold]  # frame t <- frame t+1
        out[:, -1:, :fold].zero_()
    else:
        out[:, 1:, :fold] = xt[:, :-1, :fold]  # frame t <- frame t-1
        out[:, :1, :fold].zero_()
    out[:, :, fold:] = xt[:, :, fold:]
    return merge_time(out)  # (N, T, C, H, W) -> (N*T, C, H, W)


_SHIFTS = {"both": _shift, "past": _causal_shift}  # direction -> the shift of the forward


class _Shift(torch.autograd.Function):
    """A shift (``direction``: ``"both"``, :func:`_shift`; ``"past"``, :func:`_causal_shift`)
    with its adjoint (the reverse shift) as backward; differentiable twice."""

    @staticmethod
    def forward(ctx, x: Tensor, num_segments: int, fold: int, reverse: bool, direction: str) -> Tensor:
        ctx.shift = (num_segments, fold, reverse, direction)
        return _SHIFTS[direction](x, num_segments, fold, reverse)

    @staticmethod
    def backward(ctx, grad: Tensor):
        num_segments, fold, reverse, direction = ctx.shift
        return _Shift.apply(grad, num_segments, fold, not reverse, direction), None, None, None, None


_in_place_enabled = True


def shifted_call(x: Tensor, fn: Callable[[Tensor], Tensor], num_segments: int, shift_div: int = 8) -> Tensor:
    """``fn(temporal_shift_fast(x, num_segments, shift_div))`` without a shifted copy of ``x``.

    The shift moves only ``2 * C // shift_div`` channels; they are saved (a quarter of ``x``
    at ``shift_div=8``), shifted in place inside ``x``, ``fn`` runs on ``x``, and the saved
    channels are put back, so that ``x`` is bitwise what it was when this returns (it is
    also the block's shortcut). Bitwise equal to the out-of-place path, in any memory format
    and dtype, with 1.5x the input's size in memory traffic instead of 2x, and ``fn`` reads
    the input buffer the previous block just wrote. Inference only: ``x`` is written to, so
    it must not be needed by autograd, nor read by anyone else while ``fn`` runs.
    """
    fold = x.shape[1] // shift_div
    xt = split_time(x, num_segments)  # (N*T, C, H, W) -> (N, T, C, H, W), a view
    moved = xt[:, :, : 2 * fold].clone()  # (N, T, 2f, H, W)
    xt[:, :-1, :fold] = moved[:, 1:, :fold]  # frame t <- frame t+1
    xt[:, -1:, :fold].zero_()
    xt[:, 1:, fold : 2 * fold] = moved[:, :-1, fold:]  # frame t <- frame t-1
    xt[:, :1, fold : 2 * fold].zero_()
    try:
        return fn(x)
    finally:
        xt[:, :, : 2 * fold] = moved


@contextlib.contextmanager
def shift_in_place(enabled: bool) -> Iterator[None]:
    """Turn the in-place inference path of :func:`conv_after` on or off (off: every call
    shifts a copy; for A/B timing and tests)."""
    global _in_place_enabled
    before, _in_place_enabled = _in_place_enabled, enabled
    try:
        yield
    finally:
        _in_place_enabled = before


def _has_hooks(module: nn.Module) -> bool:
    """Whether a forward hook would expect to see ``module`` called (its own or global ones)."""
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or nn.modules.module._global_forward_hooks
        or nn.modules.module._global_forward_pre_hooks
    )


def conv_after(shift: nn.Module, x: Tensor, conv: nn.Module) -> Tensor | None:
    """``conv(shift(x))`` by :func:`shifted_call` (the shift done in place in ``x`` and undone
    after ``conv``) where that is safe: inference (no autograd graph), not compiling or
    tracing (the compiler fuses the shift itself), ``x`` writable here, no hooks on ``shift``
    (they would not see the call). Else None: the caller shifts a copy."""
    if (
        not _in_place_enabled
        or torch.is_grad_enabled()
        or torch.compiler.is_compiling()
        or torch.jit.is_tracing()
        or (x.is_inference() and not torch.is_inference_mode_enabled())
        or _has_hooks(shift)
    ):
        return None
    return shifted_call(x, conv, shift.num_segments, shift.shift_div)
