"""Bilinear attention with attention-in-attention, from "Bilinear Attention Networks for
Person Retrieval" (Fang, Zhou, Roy, Petersson, Harandi; ICCV 2019, no arXiv version)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._pool import spatial_mean


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def triangle_pairs(m: int) -> tuple[Tensor, Tensor]:
    """Index pairs ``(i + k, i)`` of the lower triangle of an ``m x m`` matrix, diagonal first,
    then diagonal by diagonal (the official ordering): ``m(m+1)/2`` pairs."""
    rows = [i + k for k in range(m) for i in range(m - k)]
    cols = [i for k in range(m) for i in range(m - k)]
    return torch.tensor(rows), torch.tensor(cols)


class BilinearAttention(nn.Module):
    """Bi-attention block: per-pixel bilinear pooling and attention-in-attention (AiA).

    - ``z = relu(BN(conv1x1(x)))`` reduces ``C -> m = C/16`` channels;
    - bilinear pooling at every pixel keeps spatial layout: ``b = Utri(z z^T)``, the
      ``m(m+1)/2`` distinct products ``z_i z_j``, ``(B, m(m+1)/2, H, W)``;
    - AiA: the inner attention ``w = relu(BN(conv1x1(GAP(b))))`` ``(B, C, 1, 1)`` re-weights the
      outer one ``o = relu(BN(conv1x1(b)))`` ``(B, C, H, W)``;
    - ``y = x * sigmoid(w * o)``, a channel- and position-wise gate, no residual.

    1x1 convs with bias, each followed by BN and ReLU, as in the official code. A static
    module for the ``output`` slot.
    """

    def __init__(self, channels: int, *, reduction: int = 16) -> None:
        super().__init__()
        m = max(1, channels // reduction)
        pairs = m * (m + 1) // 2
        self.reduce = _conv_bn_relu(channels, m)
        self.outer = _conv_bn_relu(pairs, channels)
        self.inner = _conv_bn_relu(pairs, channels)
        rows, cols = triangle_pairs(m)
        self.register_buffer("pair_rows", rows, persistent=False)
        self.register_buffer("pair_cols", cols, persistent=False)

    def gate(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``."""
        z = self.reduce(x)  # (B, m, H, W)
        b = z[:, self.pair_rows] * z[:, self.pair_cols]  # (B, m(m+1)/2, H, W)
        w = self.inner(spatial_mean(b)[..., None, None])  # (B, C, 1, 1)
        return torch.sigmoid(w * self.outer(b))  # (B, C, H, W)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)
