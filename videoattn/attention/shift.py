"""TSM: Temporal Shift Module for Efficient Video Understanding (Lin, Gan, Han; arXiv 1811.08383).

This file is the paper's form; :mod:`videoattn.attention.shift_fast` the fast implementation
the module uses by default (``impl="fast"``), tested equal to it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..shapes import merge_time, split_time
from . import shift_fast

IMPLS = ("fast", "paper")


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


class TemporalShift(nn.Module):
    """TSM temporal shift (arXiv 1811.08383), parameter-free.

    Inserted on the residual branch input of every block ("blockres" in the official code),
    with ``shift_div=8``: 1/8 of the channels move one frame back, 1/8 one frame forward,
    zero padded at the clip boundaries. Maps ``(N*T, C, H, W) -> (N*T, C, H, W)``.
    ``impl``: ``"fast"`` (default; also shifts in place around the block's conv1 at inference,
    :meth:`conv_after`) or ``"paper"`` (:func:`temporal_shift` as written).
    """

    def __init__(self, channels: int, *, num_segments: int, shift_div: int = 8, impl: str = "fast") -> None:
        super().__init__()
        if shift_div < 2:
            raise ValueError(f"shift_div must be >= 2, got {shift_div}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.channels = channels
        self.num_segments = num_segments
        self.shift_div = shift_div
        self.impl = impl

    def forward(self, x: Tensor) -> Tensor:
        return temporal_shift(x, self.num_segments, self.shift_div, impl=self.impl)

    def conv_after(self, x: Tensor, conv: nn.Module) -> Tensor | None:
        """``conv(self(x))`` without a shifted copy of ``x`` where that is safe
        (:func:`~videoattn.attention.shift_fast.conv_after`); None to let the caller shift a
        copy (always with ``impl="paper"``)."""
        return None if self.impl == "paper" else shift_fast.conv_after(self, x, conv)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_segments={self.num_segments}, shift_div={self.shift_div}, impl={self.impl}"
        )
