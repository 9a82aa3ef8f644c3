"""Image Super-Resolution Using Very Deep Residual Channel Attention Networks
(Zhang, Li, Li, Wang, Zhong, Fu; arXiv 1807.02758)."""

from __future__ import annotations

from torch import Tensor, nn

from ._pool import spatial_mean


class RCANChannelAttention(nn.Module):
    """RCAN channel attention (CA): ``x * sigmoid(conv_up(relu(conv_down(GAP(x)))))``.

    1x1 convs ``C -> C/16 -> C`` with bias (the official ``CALayer``), hidden width
    ``max(1, C // reduction)``, PyTorch default init.
    """

    def __init__(self, channels: int, *, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def gate(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, 1, 1)``."""
        return self.conv_du(spatial_mean(x)[..., None, None])  # (B, C) -> (B, C, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)
