"""TAM: Temporal Adaptive Module for Video Recognition (Liu, Wang, Xu, Lu; arXiv 2005.06803)."""

from __future__ import annotations

from torch import Tensor, nn

from ..shapes import merge_time, split_time
from ._pool import spatial_mean
from ._temporal import temporal_conv

BRANCHES = ("local", "global")


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
    gate; ``tam_global``: only the adaptive kernel). The dynamic convolution is computed as a
    weighted sum of K shifted views (:func:`~videoattn.attention._temporal.temporal_conv`),
    the same function as the official grouped ``conv2d`` up to float rounding, with the local
    gate folded into the tap weights (``kernel[k] * gate[t]``, a ``(N, T, C)`` tensor): one
    full-size allocation and one pass per tap, no gated copy of the map, no permute.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_segments: int,
        kernel_size: int = 3,
        branches: tuple[str, ...] = BRANCHES,
    ) -> None:
        super().__init__()
        branches = tuple(branches)
        if not branches or set(branches) - set(BRANCHES):
            raise ValueError(f"branches must be a non-empty subset of {BRANCHES}, got {branches}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if channels < 4:
            raise ValueError(f"TAM needs channels >= 4 for its C/4 bottleneck, got {channels}")
        self.channels = channels
        self.num_segments = num_segments
        self.kernel_size = kernel_size
        self.branches = branches
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
        xt = split_time(x, self.num_segments)  # (N*T, C, H, W) -> (N, T, C, H, W)
        n, t, c = xt.shape[:3]
        pooled = split_time(spatial_mean(x), t).transpose(1, 2)  # (N*T, C) -> (N, T, C) -> (N, C, T)

        local = self.L(pooled) if "local" in self.branches else None  # gate (N, C, T)
        if "global" not in self.branches:
            out = xt * local.transpose(1, 2)[..., None, None]  # gate (N, C, T) -> (N, T, C, 1, 1)
            return merge_time(out)  # (N, T, C, H, W) -> (N*T, C, H, W)

        kernel = self.G(pooled.reshape(n * c, t)).view(n, c, self.kernel_size, 1)  # (N*C, K) -> (N, C, K, 1)
        # out[t] = sum_k kernel[k] * (gate * x)[t + k - K//2]: tap k weights input frame s by
        # kernel[k] * gate[s]
        taps = kernel if local is None else kernel * local[:, :, None]  # (N, C, K, 1 or T)
        taps = taps.permute(2, 0, 3, 1)[..., None, None]  # (N, C, K, T) -> (K, N, T, C, 1, 1)
        return merge_time(temporal_conv(xt, taps.unbind(0)))  # (N, T, C, H, W) -> (N*T, C, H, W)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_segments={self.num_segments}, "
            f"kernel_size={self.kernel_size}, branches={self.branches}"
        )
