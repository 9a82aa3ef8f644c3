"""SRM: A Style-based Recalibration Module for Convolutional Neural Networks
(Lee, Kim, Nam; arXiv 1903.10829)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SRM(nn.Module):
    """Style-based recalibration: ``x * sigmoid(BN(CFC([mean, std])))``.

    Style pooling takes each channel's spatial mean and standard deviation
    ``sqrt(var + eps)``, the variance unbiased and ``eps = 1e-5`` as in the authors' code
    (hyunjaelee410/style-based-recalibration-module, ``_style_pooling``); ``eps=0`` gives the
    plain ``std`` of the third-party implementations in the seed notes. The channel-wise fully
    connected layer (CFC) is a learned ``(C, 2)`` weight, zero at init as in the authors' code,
    so every gate starts at ``sigmoid(BN(0))``; then BatchNorm2d and a sigmoid.
    Deviation: on a 1x1 feature map, where the unbiased variance is undefined (NaN in the
    authors' code), the std is 0.
    """

    def __init__(self, channels: int, *, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.cfc = nn.Parameter(torch.zeros(channels, 2))
        self.bn = nn.BatchNorm2d(channels)

    def gate(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, 1, 1)``."""
        flat = x.flatten(2)  # (B, C, H*W)
        mean = flat.mean(-1)  # (B, C)
        if flat.shape[-1] == 1:
            std = torch.zeros_like(mean)
        elif self.eps:
            std = (flat.var(-1) + self.eps).sqrt()  # (B, C)
        else:
            std = flat.std(-1)  # (B, C)
        z = mean * self.cfc[:, 0] + std * self.cfc[:, 1]  # (B, C)
        return torch.sigmoid(self.bn(z[..., None, None]))  # (B, C, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)
