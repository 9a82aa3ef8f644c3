"""Squeeze-and-Excitation Networks (Hu, Shen, Albanie, Sun, Wu; arXiv 1709.01507)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._pool import spatial_mean


class SqueezeExcitation(nn.Module):
    """SE block: ``y = x * sigmoid(W2 relu(W1 GAP(x)))``.

    ``W1: C -> C/r``, ``W2: C/r -> C`` with ``r = reduction = 16`` and no bias, as in the paper's
    formulation (Eq. 3); ``bias=True`` gives the Caffe release's variant. The hidden width is
    ``max(1, C // r)`` so that narrow test networks still build. PyTorch default init.
    Per frame: never mixes frames or videos.
    """

    def __init__(self, channels: int, *, reduction: int = 16, bias: bool = False) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, channels, bias=bias)

    def gate(self, x: Tensor) -> Tensor:
        """Channel gate ``(B, C, H, W) -> (B, C, 1, 1)`` in (0, 1)."""
        z = spatial_mean(x)  # (B, C)
        s = torch.sigmoid(self.fc2(torch.relu(self.fc1(z))))  # (B, C)
        return s[..., None, None]  # (B, C, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)
