"""FcaNet: Frequency Channel Attention Networks (Qin, Zhang, Wu, Li; arXiv 2012.11879)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The 32 frequencies (u, v) of a 7x7 DCT in the order FcaNet ranks them (the paper's
# Fig. 4 and its code's ``get_freq_indices``): "top" by single-frequency ImageNet accuracy,
# "low" in zig-zag order from the lowest frequency, "bot" the worst-ranked ones.
_FREQ_TABLES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "top": (
        (0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2, 4, 6, 3, 5, 5, 2, 6, 5, 5, 3, 3, 4, 2, 2, 6, 1),
        (0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2, 6, 3, 3, 3, 5, 1, 1, 2, 4, 2, 1, 1, 3, 0, 5, 3),
    ),
    "low": (
        (0, 0, 1, 1, 0, 2, 2, 1, 2, 0, 3, 4, 0, 1, 3, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6, 1, 2, 3, 4),
        (0, 1, 0, 1, 2, 0, 1, 2, 2, 3, 0, 0, 4, 3, 1, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3),
    ),
    "bot": (
        (6, 1, 3, 3, 2, 4, 1, 2, 4, 4, 5, 1, 4, 6, 2, 5, 6, 1, 6, 2, 2, 4, 3, 3, 5, 5, 6, 2, 5, 5, 3, 6),
        (6, 4, 4, 6, 6, 3, 1, 4, 4, 5, 6, 5, 2, 2, 5, 1, 4, 3, 5, 0, 3, 1, 1, 2, 4, 2, 1, 1, 5, 3, 3, 3),
    ),
}
FREQ_SELECTIONS = tuple(f"{k}{n}" for k in _FREQ_TABLES for n in (1, 2, 4, 8, 16, 32))


def frequency_indices(freq_sel: str) -> tuple[list[int], list[int]]:
    """``"top16"`` -> the first 16 ``(u, v)`` frequencies of the 7x7 table, as two lists."""
    if freq_sel not in FREQ_SELECTIONS:
        raise ValueError(f"freq_sel must be one of {FREQ_SELECTIONS}, got {freq_sel!r}")
    xs, ys = _FREQ_TABLES[freq_sel[:3]]
    n = int(freq_sel[3:])
    return list(xs[:n]), list(ys[:n])


def dct_basis(freq: int, size: int) -> Tensor:
    """Orthonormal 1D DCT-II basis ``cos(pi * freq * (i + 0.5) / size)``, ``(size,)`` float64."""
    i = torch.arange(size, dtype=torch.float64)
    b = torch.cos(math.pi * freq * (i + 0.5) / size) / math.sqrt(size)
    return b * math.sqrt(2) if freq else b


def dct_filters(channels: int, height: int, width: int, freq_sel: str) -> Tensor:
    """``(C, H, W)`` float32 filters: channel group ``g`` gets the 2D DCT basis of frequency
    ``(u_g, v_g)`` scaled from the 7x7 space to ``(H, W)`` (``u * (H // 7)``)."""
    us, vs = frequency_indices(freq_sel)
    if channels % len(us):
        raise ValueError(
            f"FcaNet splits channels into {len(us)} frequency groups ({freq_sel!r}); "
            f"channels={channels} is not divisible by {len(us)}"
        )
    per = channels // len(us)
    groups = [
        torch.outer(dct_basis(u * (height // 7), height), dct_basis(v * (width // 7), width))
        for u, v in zip(us, vs, strict=True)
    ]
    return torch.stack(groups).repeat_interleave(per, dim=0).float()  # (C, H, W)


class FcaAttention(nn.Module):
    """Multi-spectral channel attention: ``x * sigmoid(W2 relu(W1 DCT(x)))``.

    The channels are split into ``n`` groups (``freq_sel`` = ``top16`` / ``low16`` / ``bot16``,
    ... ); group ``g`` is pooled with the 2D DCT basis of its frequency instead of the plain
    average (GAP is the ``(0, 0)`` frequency up to scale). The DCT filters are fixed,
    non-persistent buffers of size ``dct_size``; a feature map of another size is first
    adaptive-average-pooled to ``dct_size`` (as the official code does), so any input size
    works. The official ResNets use ``dct_size`` 56/28/14/7 for stages 1-4 at 224 px; the
    model builder passes those, the default here is 7. FC layers without bias, reduction 16.
    """

    def __init__(
        self,
        channels: int,
        *,
        reduction: int = 16,
        freq_sel: str = "top16",
        dct_size: int | tuple[int, int] = 7,
    ) -> None:
        super().__init__()
        h, w = (dct_size, dct_size) if isinstance(dct_size, int) else tuple(dct_size)
        if h < 7 or w < 7:
            raise ValueError(f"dct_size must be >= 7 (the 7x7 frequency space), got {(h, w)}")
        self.dct_size = (h, w)
        self.freq_sel = freq_sel
        self.register_buffer("dct_filter", dct_filters(channels, h, w, freq_sel), persistent=False)
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False),
        )

    def gate(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, C, 1, 1)``."""
        if tuple(x.shape[-2:]) != self.dct_size:
            x = F.adaptive_avg_pool2d(x, self.dct_size)  # (B, C, h, w)
        z = (x * self.dct_filter).sum((2, 3))  # (B, C)
        return torch.sigmoid(self.fc(z))[..., None, None]  # (B, C, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)

    def extra_repr(self) -> str:
        return f"freq_sel={self.freq_sel!r}, dct_size={self.dct_size}"
