"""ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks
(Wang, Wu, Zhu, Li, Zuo, Hu; arXiv 1910.03151)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._pool import spatial_mean


def eca_kernel_size(channels: int, *, gamma: int = 2, b: int = 1) -> int:
    """``k = |log2(C)/gamma + b/gamma|_odd``, the paper's Eq. 12 as its code computes it:
    truncate to int, then bump an even value to the next odd one."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    """ECA: ``x * sigmoid(conv1d_k(GAP(x)))``, a 1D conv across neighbouring channels.

    Conv1d(1, 1, k) without bias, zero padded ``(k-1)//2``; ``k`` adapted to C (gamma=2, b=1)
    unless ``kernel_size`` is given (the official ImageNet ResNets fix k=3).
    """

    def __init__(self, channels: int, *, kernel_size: int | None = None, gamma: int = 2, b: int = 1) -> None:
        super().__init__()
        k = eca_kernel_size(channels, gamma=gamma, b=b) if kernel_size is None else kernel_size
        if k < 1 or k % 2 == 0:
            raise ValueError(f"ECA kernel_size must be odd and positive, got {k}")
        self.kernel_size = k
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def gate(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, 1, 1)``."""
        z = spatial_mean(x).unsqueeze(1)  # (B, C) -> (B, 1, C)
        s = torch.sigmoid(self.conv(z))  # (B, 1, C)
        return s.squeeze(1)[..., None, None]  # (B, 1, C) -> (B, C, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"
