"""TSM: Temporal Shift Module for Efficient Video Understanding (Lin, Gan, Han; arXiv 1811.08383)."""

from __future__ import annotations

from torch import Tensor, nn

from ..shapes import merge_time, split_time


def temporal_shift(x: Tensor, num_segments: int, shift_div: int = 8) -> Tensor:
    """Shift ``C // shift_div`` channels one frame back in time and as many one frame forward.

    ``out[t, :f] = x[t+1, :f]`` (shift left), ``out[t, f:2f] = x[t-1, f:2f]`` (shift right),
    the other channels unchanged; frames shifted in from outside the clip are zeros. This is
    exactly the official ``TemporalShift.shift`` (non in-place variant).
    """
    xt = split_time(x, num_segments)  # (N*T, C, H, W) -> (N, T, C, H, W)
    fold = xt.shape[2] // shift_div
    out = xt.new_empty(xt.shape)
    out[:, :-1, :fold] = xt[:, 1:, :fold]  # frame t <- frame t+1
    out[:, -1:, :fold] = 0
    out[:, 1:, fold : 2 * fold] = xt[:, :-1, fold : 2 * fold]  # frame t <- frame t-1
    out[:, :1, fold : 2 * fold] = 0
    out[:, :, 2 * fold :] = xt[:, :, 2 * fold :]
    return merge_time(out)  # (N, T, C, H, W) -> (N*T, C, H, W)


class TemporalShift(nn.Module):
    """TSM temporal shift (arXiv 1811.08383), parameter-free.

    Inserted on the residual branch input of every block ("blockres" in the official code),
    with ``shift_div=8``: 1/8 of the channels move one frame back, 1/8 one frame forward,
    zero padded at the clip boundaries. Maps ``(N*T, C, H, W) -> (N*T, C, H, W)``.
    """

    def __init__(self, channels: int, *, num_segments: int, shift_div: int = 8) -> None:
        super().__init__()
        if shift_div < 2:
            raise ValueError(f"shift_div must be >= 2, got {shift_div}")
        self.channels = channels
        self.num_segments = num_segments
        self.shift_div = shift_div

    def forward(self, x: Tensor) -> Tensor:
        return temporal_shift(x, self.num_segments, self.shift_div)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_segments={self.num_segments}, shift_div={self.shift_div}"
