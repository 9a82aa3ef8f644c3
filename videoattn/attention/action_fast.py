"""The fast implementation of ACTION-Net's module (:mod:`videoattn.attention.action` is the
paper's form), the same function up to float rounding, tested equal to it:

- the learnable shift as a weighted sum of three shifted views
  (:func:`~videoattn.attention._temporal.temporal_conv`), no permute to the official
  ``(N*H*W, C, T)`` layout and back;
- the motion path averages spatially before taking the temporal difference (the mean is
  linear: identical in exact arithmetic), so its depthwise 3x3 convolution is never computed
  at full resolution (:func:`mean_and_mean_of_conv3x3`: only its spatial mean is used);
- the 1x1 convolutions as matrix products (:func:`conv1x1`; on pooled ``(N*T, C)`` vectors
  ``F.linear``), the STE channel mean as one more row of the ME squeeze (one pass over
  ``x_shift`` for both);
- the sum of the paths as ``x_shift * (3 + g_ce + g_me) + x_shift * g_ste``: one output
  allocation, no full-size gate tensor. Under autocast the shift runs in the activations' dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..shapes import merge_time, split_time
from ._pool import spatial_mean
from ._temporal import temporal_conv


def action_forward_fast(mod: nn.Module, x: Tensor) -> Tensor:
    """``Action.forward`` with ``impl="fast"``, on ``mod``'s parameters:
    ``(N*T, C, H, W) -> (N*T, C, H, W)``."""
    paths = mod.paths
    x_shift = merge_time(shift(mod, split_time(x, mod.num_segments)))  # (N, T, C, H, W) -> (N*T, C, H, W)
    squeezed, channel_mean = channel_reductions(mod, x_shift) if {"me", "ste"} & set(paths) else (None, None)
    # sum over paths of (x_shift * g + x_shift) == x_shift * (num_paths + sum of gates)
    scale = None  # num_paths + channel gates, (N*T, C, 1, 1)
    if "ce" in paths:
        scale = ce_gate(mod, x_shift)
    if "me" in paths:
        g = me_gate(mod, squeezed)
        scale = g if scale is None else scale + g
    scale = len(paths) if scale is None else scale + len(paths)
    if "ste" not in paths:
        return x_shift * scale
    g_ste = ste_gate(mod, channel_mean)  # (N*T, 1, H, W)
    if isinstance(scale, int):  # STE alone: one pass with a (N*T, 1, H, W) factor
        return x_shift * (g_ste + scale)
    # two passes and one allocation rather than a broadcast (N*T, C, H, W) gate tensor
    return (x_shift * scale).addcmul_(x_shift, g_ste)


def shift(mod: nn.Module, xt: Tensor) -> Tensor:
    """``(N, T, C, H, W) -> (N, T, C, H, W)``: the depthwise Conv1d over T with padding 1."""
    w = mod.action_shift.weight[:, 0].t()  # (C, 1, 3) -> (3, C): tap k on frame t+k-1
    taps = w[:, None, None, :, None, None].unbind(0)  # 3 x (1, 1, C, 1, 1)
    return temporal_conv(xt, taps)


def channel_reductions(mod: nn.Module, x_shift: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """The ME squeeze ``(N*T, C/r, H, W)`` (before its BN) and the STE channel mean
    ``(N*T, 1, H, W)``, the paths' two reductions over channels, in one pass over
    ``x_shift``: one 1x1 convolution whose weight rows are ``[W_squeeze; 1/C, ..., 1/C]``."""
    rows = []
    if "me" in mod.paths:
        rows.append(mod.action_p3_squeeze.weight.flatten(1))  # (C/r, C, 1, 1) -> (C/r, C)
    if "ste" in mod.paths:
        rows.append(x_shift.new_full((1, mod.channels), 1.0 / mod.channels))  # (1, C)
    y = conv1x1(x_shift, torch.cat(rows)[..., None, None])  # (N*T, C/r + 1, H, W)
    squeezed = y[:, : y.shape[1] - 1] if "ste" in mod.paths else y
    return (squeezed if "me" in mod.paths else None), (y[:, -1:] if "ste" in mod.paths else None)


def ste_gate(mod: nn.Module, mean: Tensor) -> Tensor:
    """The STE gate ``(N*T, 1, H, W)`` from the channel mean ``(N*T, 1, H, W)``."""
    mt = split_time(mean, mod.num_segments).transpose(1, 2)  # (N*T, 1, H, W) -> (N, 1, T, H, W)
    g = torch.sigmoid(mod.action_p1_conv1(mt))  # (N, 1, T, H, W)
    return merge_time(g.transpose(1, 2))  # (N, 1, T, H, W) -> (N, T, 1, H, W) -> (N*T, 1, H, W)


def ce_gate(mod: nn.Module, x: Tensor) -> Tensor:
    """The CE gate ``(N*T, C, 1, 1)``."""
    z = F.linear(spatial_mean(x), mod.action_p2_squeeze.weight.flatten(1))  # (N*T, C) -> (N*T, C/r)
    zt = split_time(z, mod.num_segments).transpose(1, 2)  # (N*T, C/r) -> (N, T, C/r) -> (N, C/r, T)
    zt = F.relu(mod.action_p2_conv1(zt))  # (N, C/r, T)
    z = merge_time(zt.transpose(1, 2))  # (N, C/r, T) -> (N, T, C/r) -> (N*T, C/r)
    return torch.sigmoid(F.linear(z, mod.action_p2_expand.weight.flatten(1)))[..., None, None]  # (N*T, C, 1, 1)


def me_gate(mod: nn.Module, squeezed: Tensor) -> Tensor:
    """The ME gate ``(N*T, C, 1, 1)`` from the squeezed map ``(N*T, C/r, H, W)``."""
    f = mod.action_p3_bn1(squeezed)  # (N*T, C/r, H, W)
    mean_f, mean_next = mean_and_mean_of_conv3x3(f, mod.action_p3_conv1.weight)  # (N*T, C/r) each
    mean_f = split_time(mean_f, mod.num_segments)  # (N*T, C/r) -> (N, T, C/r)
    mean_next = split_time(mean_next, mod.num_segments)  # (N*T, C/r) -> (N, T, C/r)
    diff = mean_next[:, 1:] - mean_f[:, :-1]  # (N, T-1, C/r): conv(x)[t+1] - x[t]
    diff = F.pad(diff, (0, 0, 0, 1))  # (N, T, C/r), zero motion for the last frame
    z = merge_time(diff)  # (N, T, C/r) -> (N*T, C/r)
    return torch.sigmoid(F.linear(z, mod.action_p3_expand.weight.flatten(1)))[..., None, None]  # (N*T, C, 1, 1)


def conv1x1(x: Tensor, weight: Tensor) -> Tensor:
    """A bias-free 1x1 convolution ``(B, C, H, W) -> (B, C', H, W)`` with ``weight``
    ``(C', C, 1, 1)``, in the fastest form for the layout: NCHW as one batched matrix product
    ``W @ x[b]`` (``bmm``: ``matmul`` would fold the batch and transpose the map; the CPU
    convolution would first reorder the whole map into a blocked layout
    and the result back), channels_last as the convolution (oneDNN's native NHWC)."""
    if x.is_contiguous():
        w = weight.flatten(1).expand(x.shape[0], -1, -1)  # (C', C, 1, 1) -> (B, C', C), a view
        y = torch.bmm(w, x.flatten(2))  # (B, C', C) @ (B, C, H*W) -> (B, C', H*W)
        return y.unflatten(2, x.shape[2:])  # (B, C', H*W) -> (B, C', H, W)
    return F.conv2d(x, weight)


def mean_and_mean_of_conv3x3(f: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Spatial means of ``f`` ``(B, c, H, W)`` and of its depthwise 3x3 convolution
    (``weight`` ``(c, 1, 3, 3)``, padding 1, no bias), both ``(B, c)``, without computing the
    convolution.

    The mean is linear: ``sum_pixels conv(f) = sum_ab w[a, b] * S[a, b]``, where ``S[a, b]``
    is the sum of ``f`` over the pixels tap ``(a, b)`` reads inside the map. Tap row 0 reads
    the row above, so it sees every row but the last; row 1 every row; row 2 every row but the
    first; columns likewise. Exact in exact arithmetic; one pass over ``f`` (its row sums).
    """
    h, w = f.shape[-2:]
    rows = f.sum(3)  # (B, c, H, W) -> (B, c, H)
    # each row summed over the columns tap column b sees: all but the last, all, all but the first
    rows_b = torch.stack([rows - f[..., -1], rows, rows - f[..., 0]], -1)  # (B, c, H, 3)
    total_b = rows_b.sum(2)  # (B, c, 3)
    seen = torch.stack([total_b - rows_b[:, :, -1], total_b, total_b - rows_b[:, :, 0]], 2)  # (B, c, 3, 3)
    mean_conv = (seen * weight[:, 0]).sum((2, 3)) / (h * w)  # (B, c)
    return total_b[..., 1] / (h * w), mean_conv
