"""Global Second-order Pooling Convolutional Networks (Gao, Xie, Wang, Li; arXiv 1811.12006)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._covariance import covariance_pool


class GSoP(nn.Module):
    """GSoP block (channel attention, GSoP-Net1 mode): a gate from the covariance matrix.

    ``relu(x)`` -> 1x1 conv ``C -> d`` (with bias, ``stride`` 2 in the first stage of the
    official ResNet) -> BN -> ReLU -> ``d x d`` covariance -> BN over its rows ->
    row-wise convolution (a grouped conv with kernel ``(d, 1)``, 4 outputs per row, with bias)
    -> 1x1 conv ``4d -> C`` (with bias) -> sigmoid; the output is ``x * gate``.
    ``att_dim = d = 128`` as in the paper. The official ResNet places it after bn3, before the
    residual add, in the last block of each stage only (``every=-1`` in an insert spec).
    """

    def __init__(self, channels: int, *, att_dim: int = 128, stride: int = 1) -> None:
        super().__init__()
        d = att_dim
        self.conv_for_DR = nn.Conv2d(channels, d, 1, stride=stride)
        self.bn_for_DR = nn.BatchNorm2d(d)
        self.row_bn = nn.BatchNorm2d(d)
        self.row_conv_group = nn.Conv2d(d, 4 * d, (d, 1), groups=d)
        self.fc_adapt_channels = nn.Conv2d(4 * d, channels, 1)

    def gate(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, 1, 1)``."""
        z = F.relu(self.bn_for_DR(self.conv_for_DR(F.relu(x))))  # (B, d, H', W')
        cov = covariance_pool(z).to(z.dtype).unsqueeze(-1)  # (B, d, d) -> (B, d, d, 1)
        z = self.row_conv_group(self.row_bn(cov))  # (B, 4d, 1, 1)
        return torch.sigmoid(self.fc_adapt_channels(z))  # (B, C, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)
