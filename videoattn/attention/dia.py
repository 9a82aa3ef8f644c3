"""DIANet: Dense-and-Implicit Attention Network (Huang, Liang, Liang, Yang; arXiv 1905.10671)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._pool import spatial_mean

DIAState = tuple[Tensor, Tensor]


def _small_cell(cin: int, cout: int, reduction: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(cin, max(1, cin // reduction)),
        nn.ReLU(inplace=True),
        nn.Linear(max(1, cin // reduction), cout),
    )


class DIA(nn.Module):
    """DIA unit: one LSTM cell shared by all blocks of a stage, its state carried along.

    At block ``l`` of a stage, with ``p = GAP(x_l)``: ``i, f, g, o = W_ih(p) + W_hh(h_{l-1})``
    (gate order i, f, g, o), ``c_l = sigmoid(f) c_{l-1} + sigmoid(i) tanh(g)``,
    ``h_l = sigmoid(o) * sigmoid(c_l)`` (DIANet's modification of the LSTM output, so that
    ``h`` is a gate in (0, 1)), and the block's residual branch becomes ``x_l * h_l``.
    ``W_ih`` and ``W_hh`` are bottleneck MLPs ``C -> C/4 -> 4C`` with bias (the official
    ``small_cell``, reduction 4). State starts at zero at the first block of each stage.

    One instance is shared by the blocks of a stage: :meth:`step` takes and returns the state
    so the stage carries it; ``forward(x)`` is one step from the zero state. Official dropout
    only acts between stacked LSTM layers; with the single layer used it has no effect and is
    omitted.
    """

    def __init__(self, channels: int, *, reduction: int = 4) -> None:
        super().__init__()
        self.channels = channels
        self.w_ih = _small_cell(channels, 4 * channels, reduction)
        self.w_hh = _small_cell(channels, 4 * channels, reduction)

    def step(self, x: Tensor, state: DIAState | None) -> tuple[Tensor, DIAState]:
        """``(B, C, H, W), (h, c) -> (B, C, H, W), (h', c')``; ``None`` is the zero state."""
        p = spatial_mean(x)  # (B, C)
        if state is None:
            zero = p.new_zeros(p.shape)
            state = (zero, zero)
        h, c = state
        i, f, g, o = (self.w_ih(p) + self.w_hh(h)).chunk(4, dim=1)  # 4 x (B, C)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.sigmoid(c)
        return x * h[..., None, None], (h, c)

    def forward(self, x: Tensor) -> Tensor:
        return self.step(x, None)[0]
