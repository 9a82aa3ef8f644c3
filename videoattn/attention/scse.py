"""Concurrent Spatial and Channel 'Squeeze & Excitation' in Fully Convolutional Networks
(Roy, Navab, Wachinger; arXiv 1803.02579)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._pool import spatial_mean


class ChannelSE(nn.Module):
    """cSE: ``x * sigmoid(fc2(relu(fc1(GAP(x)))))``; both FC layers with bias.

    ``reduction=2`` is the official implementation's default (ai-med/squeeze_and_excitation),
    where SENet uses 16. Hidden width ``max(1, C // reduction)``.
    """

    def __init__(self, channels: int, *, reduction: int = 2) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def gate(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, 1, 1)``."""
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(spatial_mean(x)))))  # (B, C)
        return s[..., None, None]

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)


class SpatialSE(nn.Module):
    """sSE: ``x * sigmoid(conv1x1(x))``, a per-pixel gate from a 1x1 conv ``C -> 1`` with bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1)

    def gate(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, 1, H, W)``."""
        return torch.sigmoid(self.conv(x))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)


class SCSE(nn.Module):
    """scSE: cSE and sSE in parallel, combined by element-wise ``sum`` (the paper) or ``max``
    (the later official code)."""

    def __init__(self, channels: int, *, reduction: int = 2, combine: str = "sum") -> None:
        super().__init__()
        if combine not in ("sum", "max"):
            raise ValueError(f"combine must be 'sum' or 'max', got {combine!r}")
        self.combine = combine
        self.cse = ChannelSE(channels, reduction=reduction)
        self.sse = SpatialSE(channels)

    def forward(self, x: Tensor) -> Tensor:
        c, s = self.cse(x), self.sse(x)
        return c + s if self.combine == "sum" else torch.maximum(c, s)

    def extra_repr(self) -> str:
        return f"combine={self.combine!r}"
