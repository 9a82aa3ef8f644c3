"""TSM: Temporal Shift Module for Efficient Video Understanding (Lin, Gan, Han; arXiv 1811.08383).

This file is the paper's form; :mod:`videoattn.attention.shift_fast` the fast implementation
the module uses by default (``impl="fast"``), tested equal to it. Two directions: the offline
bidirectional shift (``"both"``) and the online model's uni-directional shift from the past
only (``"past"``), which can run one frame at a time (:meth:`TemporalShift.stream_step`; the
streaming protocol is :mod:`videoattn.attention.streaming`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..shapes import merge_time, split_time
from . import shift_fast
from .streaming import streamed

IMPLS = ("fast", "paper")
DIRECTIONS = ("both", "past")


def temporal_shift(x: Tensor, num_segments: int, shift_div: int = 8, *, impl: str = "fast") -> Tensor:
    """Shift ``C // shift_div`` channels one frame back in time and as many one frame forward.

    ``out[t, :f] = x[t+1, :f]`` (shift left), ``out[t, f:2f] = x[t-1, f:2f]`` (shift right),
    the other channels unchanged; frames shifted in from outside the clip are zeros: the
    official ``TemporalShift.shift`` (its out-of-place variant: the block input is also the
    shortcut). ``impl="paper"`` computes it as written below, ``"fast"`` by
    :func:`~videoattn.attention.shift_fast.temporal_shift_fast` (bitwise the same).
    """
    if impl == "fast":
        return shift_fast.temporal_shift_fast(x, num_segments, shift_div)
    xt = split_time(x, num_segments)  # (N*T, C, H, W) -> (N, T, C, H, W)
    fold = xt.shape[2] // shift_div
    out = torch.zeros_like(xt)
    out[:, :-1, :fold] = xt[:, 1:, :fold]  # shift left: frame t takes frame t+1
    out[:, 1:, fold : 2 * fold] = xt[:, :-1, fold : 2 * fold]  # shift right: frame t takes frame t-1
    out[:, :, 2 * fold :] = xt[:, :, 2 * fold :]  # the other channels stay
    return merge_time(out)  # (N, T, C, H, W) -> (N*T, C, H, W)


def causal_temporal_shift(x: Tensor, num_segments: int, shift_div: int = 8, *, impl: str = "fast") -> Tensor:
    """TSM's online (uni-directional) shift: ``C // shift_div`` channels from the previous frame only.

    ``out[t, :f] = x[t-1, :f]`` for ``t >= 1``, ``out[0, :f] = 0``, the other channels
    unchanged (``f = C // shift_div``); no frame sees a later one, so the network can run one
    frame at a time, caching ``x[t, :f]`` for the next frame (the online demo's
    ``out = cat(buffer, x[:, f:]); buffer = x[:, :f]``). ``impl="paper"`` computes it as
    written below, ``"fast"`` by :func:`~videoattn.attention.shift_fast.causal_shift_fast`
    (bitwise the same).
    """
    if impl == "fast":
        return shift_fast.causal_shift_fast(x, num_segments, shift_div)
    xt = split_time(x, num_segments)  # (N*T, C, H, W) -> (N, T, C, H, W)
    fold = xt.shape[2] // shift_div
    out = torch.zeros_like(xt)
    out[:, 1:, :fold] = xt[:, :-1, :fold]  # frame t takes frame t-1; frame 0 takes zeros
    out[:, :, fold:] = xt[:, :, fold:]  # the other channels stay
    return merge_time(out)  # (N, T, C, H, W) -> (N*T, C, H, W)


class TemporalShift(nn.Module):
    """TSM temporal shift (arXiv 1811.08383), parameter-free.

    Inserted on the residual branch input of every block ("blockres" in the official code),
    with ``shift_div=8``. ``direction="both"`` (offline TSM, :func:`temporal_shift`): 1/8 of
    the channels move one frame back, 1/8 one frame forward, zero padded at the clip
    boundaries. ``direction="past"`` (the online TSM, :func:`causal_temporal_shift`): 1/8 of
    the channels come from the previous frame, zeros at the first one; such a module streams
    (:meth:`stream_step`). Maps ``(N*T, C, H, W) -> (N*T, C, H, W)``.
    ``impl``: ``"fast"`` (default; the bidirectional shift also shifts in place around the
    block's conv1 at inference, :meth:`conv_after`) or ``"paper"`` (the formula as written).
    """

    def __init__(
        self, channels: int, *, num_segments: int, shift_div: int = 8, direction: str = "both", impl: str = "fast"
    ) -> None:
        super().__init__()
        if shift_div < 2:
            raise ValueError(f"shift_div must be >= 2, got {shift_div}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        self.channels = channels
        self.num_segments = num_segments
        self.shift_div = shift_div
        self.direction = direction
        self.impl = impl

    @property
    def causal(self) -> bool:
        """Whether the shift takes channels from past frames only (``direction="past"``)."""
        return self.direction == "past"

    def forward(self, x: Tensor) -> Tensor:
        if not self.causal:
            return temporal_shift(x, self.num_segments, self.shift_div, impl=self.impl)
        y = streamed(self, x)  # one frame of a stream: (N, C, H, W) with the cached state
        if y is not None:
            return y
        return causal_temporal_shift(x, self.num_segments, self.shift_div, impl=self.impl)

    def stream_step(self, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        """One frame of the causal shift: ``(N, C, H, W)`` (a frame of each of N clips) and the
        previous frame's first ``C // shift_div`` channels ``(N, C // shift_div, H, W)``
        (``None`` at the first frame: zeros, the offline shift's padding) -> the shifted frame
        and this frame's first channels, the next state."""
        if not self.causal:
            raise ValueError(f"this shift {self.stream_blocker()}")
        fold = x.shape[1] // self.shift_div
        past = x.new_zeros((x.shape[0], fold, *x.shape[2:])) if state is None else state
        y = torch.cat([past, x[:, fold:]], dim=1)  # (N, f, H, W) + (N, C-f, H, W) -> (N, C, H, W)
        return y, x[:, :fold].clone()  # (N, f, H, W), a copy: x may be written to later

    def stream_blocker(self) -> str | None:
        """Why this module cannot run one frame at a time, or None when it can."""
        if self.causal:
            return None
        return (
            "looks at future frames (the bidirectional shift moves channels of frame t+1 into frame t); "
            "train with the causal shift (tsm_online, direction='past') to stream"
        )

    def conv_after(self, x: Tensor, conv: nn.Module) -> Tensor | None:
        """``conv(self(x))`` without a shifted copy of ``x`` where that is safe
        (:func:`~videoattn.attention.shift_fast.conv_after`); None to let the caller shift a
        copy (always with ``impl="paper"`` and for the causal shift)."""
        if self.impl == "paper" or self.causal:
            return None
        return shift_fast.conv_after(self, x, conv)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_segments={self.num_segments}, shift_div={self.shift_div}, "
            f"direction={self.direction}, impl={self.impl}"
        )
