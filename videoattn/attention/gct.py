"""Gated Channel Transformation for Visual Recognition (Yang, Zhu, Wu, Yang; arXiv 1909.11519)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GCT(nn.Module):
    """GCT: ``x * (1 + tanh(gamma * CN(alpha * embed(x)) + beta))``.

    - ``embed``: per-channel l2 norm ``sqrt(sum x^2 + eps)`` (mode ``l2``) or l1 norm
      ``sum |x|`` (mode ``l1``; ``after_relu=True`` skips the abs for non-negative inputs);
    - channel normalisation ``CN``: divide by the root mean square (l2) or mean abs (l1) of
      the scaled embeddings over channels;
    - ``alpha`` = 1, ``gamma`` = 0 and ``beta`` = 0 at init, so GCT is exactly the identity
      at init. The official recipe applies no weight decay to ``beta``: its registry row lists
      it (``no_weight_decay``) for the optimiser's parameter groups.
    """

    def __init__(self, channels: int, *, mode: str = "l2", eps: float = 1e-5, after_relu: bool = False) -> None:
        super().__init__()
        if mode not in ("l2", "l1"):
            raise ValueError(f"GCT mode must be 'l2' or 'l1', got {mode!r}")
        self.mode = mode
        self.eps = eps
        self.after_relu = after_relu
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def gate(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, 1, 1)`` in (0, 2)."""
        if self.mode == "l2":
            embedding = (x.pow(2).sum((2, 3), keepdim=True) + self.eps).sqrt() * self.alpha
            norm = self.gamma / (embedding.pow(2).mean(1, keepdim=True) + self.eps).sqrt()
        else:
            ax = x if self.after_relu else x.abs()
            embedding = ax.sum((2, 3), keepdim=True) * self.alpha
            norm = self.gamma / (embedding.abs().mean(1, keepdim=True) + self.eps)
        return 1.0 + torch.tanh(embedding * norm + self.beta)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, eps={self.eps}, after_relu={self.after_relu}"
