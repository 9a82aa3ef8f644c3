"""TAM: Temporal Adaptive Module for Video Recognition (Liu, Wang, Xu, Lu; arXiv 2005.06803).

This file is the paper's form; :mod:`videoattn.attention.tam_fast` the fast implementation the
module uses by default (``impl="fast"``), tested equal to it.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .tam_fast import tam_forward_fast

BRANCHES = ("local", "global")
IMPLS = ("fast", "paper")


class TAM(nn.Module):
    """Temporal adaptive module: a location-sensitive local gate and a video-adaptive kernel.

    From the spatially pooled signal ``s`` of shape ``(N, C, T)``:

    - local branch ``L`` (location sensitive): Conv1d(C, C/4, K) -> BN -> ReLU -> Conv1d(C/4, C, 1)
      -> sigmoid, a gate ``(N, C, T)`` multiplied into ``x``;
    - global branch ``G`` (location invariant): per channel, Linear(T, 2T) -> BN -> ReLU ->
      Linear(2T, K) -> softmax, a temporal kernel ``(N, C, K)`` that convolves each channel
      of the gated ``x`` over T (zero padded, ``K // 2`` on each side).

    Inserted after conv1-bn1-relu of each bottleneck, on ``(N*T, C, H, W)``. No bias anywhere,
    PyTorch default init; parameter names (``G.0``, ``G.1``, ``G.3``, ``L.0``, ``L.1``, ``L.3``)
    are the official ones. ``branches`` keeps one branch for ablation (``tam_local``: only the
    gate; ``tam_global``: only the adaptive kernel). ``impl``: ``"paper"`` runs
    :meth:`forward_paper` (the official layout and grouped ``conv2d``), ``"fast"`` (default)
    :func:`~videoattn.attention.tam_fast.tam_forward_fast`.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_segments: int,
        kernel_size: int = 3,
        branches: tuple[str, ...] = BRANCHES,
        impl: str = "fast",
    ) -> None:
        super().__init__()
        branches = tuple(branches)
        if not branches or set(branches) - set(BRANCHES):
            raise ValueError(f"branches must be a non-empty subset of {BRANCHES}, got {branches}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if channels < 4:
            raise ValueError(f"TAM needs channels >= 4 for its C/4 bottleneck, got {channels}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.channels = channels
        self.num_segments = num_segments
        self.kernel_size = kernel_size
        self.branches = branches
        self.impl = impl
        t = num_segments
        if "global" in branches:
            self.G = nn.Sequential(
                nn.Linear(t, t * 2, bias=False),
                nn.BatchNorm1d(t * 2),
                nn.ReLU(inplace=True),
                nn.Linear(t * 2, kernel_size, bias=False),
                nn.Softmax(-1),
            )
        if "local" in branches:
            self.L = nn.Sequential(
                nn.Conv1d(channels, channels // 4, kernel_size, padding=kernel_size // 2, bias=False),
                nn.BatchNorm1d(channels // 4),
                nn.ReLU(inplace=True),
                nn.Conv1d(channels // 4, channels, 1, bias=False),
                nn.Sigmoid(),
            )

    def forward(self, x: Tensor) -> Tensor:
        return tam_forward_fast(self, x) if self.impl == "fast" else self.forward_paper(x)

    def forward_paper(self, x: Tensor) -> Tensor:
        """The module as the paper draws it, ``(N*T, C, H, W) -> (N*T, C, H, W)``."""
        t = self.num_segments
        nt, c, h, w = x.shape
        n = nt // t
        xv = x.view(n, t, c, h, w).permute(0, 2, 1, 3, 4)  # (N, C, T, H, W)
        s = xv.mean((3, 4))  # the pooled signal (N, C, T)
        if "local" in self.branches:  # location-sensitive gate on every frame
            xv = xv * self.L(s)[..., None, None]  # (N, C, T, 1, 1)
        if "global" in self.branches:  # a temporal kernel per video and channel, convolved over T
            kernel = self.G(s.reshape(n * c, t)).view(n * c, 1, self.kernel_size, 1)  # (N*C, 1, K, 1)
            xv = F.conv2d(xv.reshape(1, n * c, t, h * w), kernel, padding=(self.kernel_size // 2, 0), groups=n * c)
        return xv.reshape(n, c, t, h, w).permute(0, 2, 1, 3, 4).reshape(nt, c, h, w)  # (N*T, C, H, W)

    def stream_blocker(self) -> str | None:
        """Why the module cannot run one frame at a time (:mod:`videoattn.attention.streaming`)."""
        looks = {
            "local": "its local gate is a centred temporal convolution",
            "global": "its global kernel is computed from all T frames and convolved over T",
        }
        return (
            f"looks at future frames ({'; '.join(looks[b] for b in self.branches)}); "
            "train with a causal module such as tsm_online to stream"
        )

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_segments={self.num_segments}, "
            f"kernel_size={self.kernel_size}, branches={self.branches}, impl={self.impl}"
        )
