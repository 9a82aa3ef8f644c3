"""The fast implementation of TAM (:mod:`videoattn.attention.tam` is the paper's form), the
same function up to float rounding, tested equal to it: the dynamic convolution as a weighted
sum of K shifted views (:func:`~videoattn.attention._temporal.temporal_conv`) instead of the
official grouped ``conv2d`` over the permuted map, with the local gate folded into the tap
weights (``kernel[k] * gate[t]``, a ``(N, T, C)`` tensor): one full-size allocation and one
pass per tap, no gated copy of the map, no permute."""

from __future__ import annotations

from torch import Tensor, nn

from ..shapes import merge_time, split_time
from ._pool import spatial_mean
from ._temporal import temporal_conv


def tam_forward_fast(mod: nn.Module, x: Tensor) -> Tensor:
    """``TAM.forward`` with ``impl="fast"``, on ``mod``'s parameters."""
    xt = split_time(x, mod.num_segments)  # (N*T, C, H, W) -> (N, T, C, H, W)
    n, t, c = xt.shape[:3]
    pooled = split_time(spatial_mean(x), t).transpose(1, 2)  # (N*T, C) -> (N, T, C) -> (N, C, T)

    local = mod.L(pooled) if "local" in mod.branches else None  # gate (N, C, T)
    if "global" not in mod.branches:
        out = xt * local.transpose(1, 2)[..., None, None]  # gate (N, C, T) -> (N, T, C, 1, 1)
        return merge_time(out)  # (N, T, C, H, W) -> (N*T, C, H, W)

    kernel = mod.G(pooled.reshape(n * c, t)).view(n, c, mod.kernel_size, 1)  # (N*C, K) -> (N, C, K, 1)
    # out[t] = sum_k kernel[k] * (gate * x)[t + k - K//2]: tap k weights input frame s by
    # kernel[k] * gate[s]
    taps = kernel if local is None else kernel * local[:, :, None]  # (N, C, K, 1 or T)
    taps = taps.permute(2, 0, 3, 1)[..., None, None]  # (N, C, K, T) -> (K, N, T, C, 1, 1)
    return merge_time(temporal_conv(xt, taps.unbind(0)))  # (N, T, C, H, W) -> (N*T, C, H, W)
