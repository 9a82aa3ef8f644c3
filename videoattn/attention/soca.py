"""Second-order Channel Attention, from "Second-order Attention Network for Single Image
Super-Resolution" (Dai, Cai, Zhang, Xia, Zhang; CVPR 2019, no arXiv version)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._covariance import covariance_pool, sqrtm_newton_schulz


class SOCA(nn.Module):
    """SOCA: ``x * sigmoid(conv_up(relu(conv_down(z))))`` with ``z`` from covariance pooling.

    ``z_c`` is the mean over rows of the matrix square root of the channel covariance
    (Newton-Schulz, 5 iterations, as in SAN), in place of RCAN's average pooling; the
    excitation is RCAN's (1x1 convs with bias, ``C -> C/r -> C``). SAN's 1000x1000 centre
    crop of very large maps is not needed for video frames and is left out.
    """

    def __init__(self, channels: int, *, reduction: int = 16, iterations: int = 5) -> None:
        super().__init__()
        self.iterations = iterations
        hidden = max(1, channels // reduction)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def gate(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, 1, 1)``."""
        # The iteration is unstable in half precision: run it in float32 even under autocast.
        cov = covariance_pool(x)  # (B, C, C), float32 for half inputs
        with torch.autocast(x.device.type, enabled=False):
            root = sqrtm_newton_schulz(cov, self.iterations)  # (B, C, C)
        z = root.mean(1).to(x.dtype)[..., None, None]  # (B, C) -> (B, C, 1, 1)
        return self.conv_du(z)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)
