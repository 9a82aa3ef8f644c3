"""The one place that owns the ``(N*T, ...) <-> (N, T, ...)`` rule.

The backbone sees ``(N*T, C, H, W)`` with the T frames of one clip contiguous, the layout of
the official TSM / TAM / ACTION-Net code. Temporal modules unflatten it to ``(N, T, C, H, W)``
to mix frames of the same clip, and flatten back.
"""

from __future__ import annotations

from torch import Tensor


def split_time(x: Tensor, num_segments: int) -> Tensor:
    """``(N*T, ...) -> (N, T, ...)``; a view whenever the strides allow it (also channels_last)."""
    nt = x.shape[0]
    if num_segments < 1 or nt % num_segments != 0:
        raise ValueError(
            f"batch dimension {nt} is not a multiple of num_segments={num_segments}: the "
            f"backbone expects (N*T, C, H, W) with T={num_segments} frames per clip"
        )
    return x.unflatten(0, (nt // num_segments, num_segments))  # (N*T, ...) -> (N, T, ...)


def merge_time(x: Tensor) -> Tensor:
    """``(N, T, ...) -> (N*T, ...)``."""
    return x.flatten(0, 1)  # (N, T, ...) -> (N*T, ...)
