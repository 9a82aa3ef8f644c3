"""ACTION-Net: Multipath Excitation for Action Recognition (Wang, She, Smolic; arXiv 2103.07372)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..shapes import merge_time, split_time
from ._pool import spatial_mean
from ._temporal import temporal_conv

PATHS = ("ste", "ce", "me")


class Action(nn.Module):
    """ACTION module: learnable temporal shift followed by three excitation paths, summed.

    On ``x`` of shape ``(N*T, C, H, W)`` (the residual-branch input of a block):

    1. ``x_shift``: depthwise temporal convolution (kernel 3, zero padded) initialised to the
       TSM shift: channels ``[0, C/8)`` take frame ``t+1``, ``[C/8, C/4)`` frame ``t-1``, the
       rest are unchanged. At init it equals :func:`~videoattn.attention.shift.temporal_shift`
       exactly.
    2. ``ste`` (spatio-temporal excitation): channel mean -> Conv3d(1, 1, 3x3x3) over
       ``(T, H, W)`` -> sigmoid, a gate of shape ``(N*T, 1, H, W)``.
    3. ``ce`` (channel excitation): spatial mean -> 1x1 squeeze ``C -> C/16`` -> Conv1d(3) over T
       -> ReLU -> 1x1 expand -> sigmoid, a gate ``(N*T, C, 1, 1)``.
    4. ``me`` (motion excitation): 1x1 squeeze -> BN -> depthwise 3x3 conv; the feature
       difference ``conv(x)[t+1] - x[t]`` (zero for the last frame) -> spatial mean ->
       1x1 expand -> sigmoid, a gate ``(N*T, C, 1, 1)``.

    Each path gives ``x_shift * gate + x_shift`` and the output is their sum, as in the
    official code (so the full module returns ``x_shift * (3 + g_ste + g_ce + g_me)``).
    ``paths`` selects a subset for ablation (``action_ste`` = shift + STE, ...).

    Parameter names follow the official implementation (``action_shift``, ``action_p1_conv1``,
    ``action_p2_*``, ``action_p3_*``) so converted checkpoints load by name. Deviations, all
    the same function up to float rounding: the shift is computed as a weighted sum of three
    shifted views (:func:`~videoattn.attention._temporal.temporal_conv`, no permute to the
    official ``(N*H*W, C, T)`` layout and back), the motion path averages spatially before
    taking the temporal difference (mean is linear, so the result is identical in exact
    arithmetic) instead of after and so never computes its depthwise 3x3 convolution at full
    resolution (:func:`mean_and_mean_of_conv3x3`: only its spatial mean is used), the 1x1
    convolutions run as matrix products (:func:`conv1x1`; on pooled ``(N*T, C)`` vectors
    ``F.linear``), the STE channel mean is one more row of the ME squeeze (one pass over
    ``x_shift`` for both), and the sum of the paths is computed as
    ``x_shift * (3 + g_ce + g_me) + x_shift * g_ste``: one output allocation, no
    full-size gate tensor. Under autocast the shift runs in the activations' dtype.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_segments: int,
        shift_div: int = 8,
        reduction: int = 16,
        paths: Sequence[str] = PATHS,
    ) -> None:
        super().__init__()
        paths = tuple(paths)
        unknown = set(paths) - set(PATHS)
        if not paths or unknown:
            raise ValueError(f"paths must be a non-empty subset of {PATHS}, got {paths}")
        if channels < reduction:
            raise ValueError(
                f"Action needs channels >= reduction ({reduction}) for its squeeze, got {channels}"
            )
        self.channels = channels
        self.num_segments = num_segments
        self.shift_div = shift_div
        self.paths = paths
        reduced = channels // reduction

        # Depthwise temporal conv, (C, 1, 3); kernel taps act on frames (t-1, t, t+1).
        self.action_shift = nn.Conv1d(channels, channels, 3, padding=1, groups=channels, bias=False)
        fold = channels // shift_div
        with torch.no_grad():
            self.action_shift.weight.zero_()
            self.action_shift.weight[:fold, 0, 2] = 1  # shift left: frame t <- t+1
            self.action_shift.weight[fold : 2 * fold, 0, 0] = 1  # shift right: frame t <- t-1
            self.action_shift.weight[2 * fold :, 0, 1] = 1  # unchanged

        if "ste" in paths:
            self.action_p1_conv1 = nn.Conv3d(1, 1, 3, padding=1, bias=False)
        if "ce" in paths:
            self.action_p2_squeeze = nn.Conv2d(channels, reduced, 1, bias=False)
            self.action_p2_conv1 = nn.Conv1d(reduced, reduced, 3, padding=1, bias=False)
            self.action_p2_expand = nn.Conv2d(reduced, channels, 1, bias=False)
        if "me" in paths:
            self.action_p3_squeeze = nn.Conv2d(channels, reduced, 1, bias=False)
            self.action_p3_bn1 = nn.BatchNorm2d(reduced)
            self.action_p3_conv1 = nn.Conv2d(reduced, reduced, 3, padding=1, groups=reduced, bias=False)
            self.action_p3_expand = nn.Conv2d(reduced, channels, 1, bias=False)

    def shift(self, x: Tensor) -> Tensor:
        """The learnable temporal shift alone, ``(N*T, C, H, W) -> (N*T, C, H, W)``."""
        return merge_time(self._shift(split_time(x, self.num_segments)))  # (N, T, C, H, W) -> (N*T, C, H, W)

    def _shift(self, xt: Tensor) -> Tensor:
        """``(N, T, C, H, W) -> (N, T, C, H, W)``: depthwise Conv1d over T with padding 1."""
        w = self.action_shift.weight[:, 0].t()  # (C, 1, 3) -> (3, C): tap k on frame t+k-1
        taps = w[:, None, None, :, None, None].unbind(0)  # 3 x (1, 1, C, 1, 1)
        return temporal_conv(xt, taps)

    def _channel_reductions(self, x_shift: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """The ME squeeze ``(N*T, C/r, H, W)`` (before its BN) and the STE channel mean
        ``(N*T, 1, H, W)``, the paths' two reductions over channels, in one pass over
        ``x_shift``: one 1x1 convolution whose weight rows are ``[W_squeeze; 1/C, ..., 1/C]``."""
        rows = []
        if "me" in self.paths:
            rows.append(self.action_p3_squeeze.weight.flatten(1))  # (C/r, C, 1, 1) -> (C/r, C)
        if "ste" in self.paths:
            rows.append(x_shift.new_full((1, self.channels), 1.0 / self.channels))  # (1, C)
        y = conv1x1(x_shift, torch.cat(rows)[..., None, None])  # (N*T, C/r + 1, H, W)
        squeezed = y[:, : y.shape[1] - 1] if "ste" in self.paths else y
        return (squeezed if "me" in self.paths else None), (y[:, -1:] if "ste" in self.paths else None)

    def _ste_gate(self, mean: Tensor) -> Tensor:
        m = split_time(mean, self.num_segments).transpose(1, 2)  # (N*T, 1, H, W) -> (N, 1, T, H, W)
        g = torch.sigmoid(self.action_p1_conv1(m))  # (N, 1, T, H, W)
        return merge_time(g.transpose(1, 2))  # (N, 1, T, H, W) -> (N, T, 1, H, W) -> (N*T, 1, H, W)

    def _ce_gate(self, x: Tensor) -> Tensor:
        z = F.linear(spatial_mean(x), self.action_p2_squeeze.weight.flatten(1))  # (N*T, C) -> (N*T, C/r)
        zt = split_time(z, self.num_segments).transpose(1, 2)  # (N*T, C/r) -> (N, T, C/r) -> (N, C/r, T)
        zt = F.relu(self.action_p2_conv1(zt))  # (N, C/r, T)
        z = merge_time(zt.transpose(1, 2))  # (N, C/r, T) -> (N, T, C/r) -> (N*T, C/r)
        return torch.sigmoid(F.linear(z, self.action_p2_expand.weight.flatten(1)))[..., None, None]  # (N*T, C, 1, 1)

    def _me_gate(self, squeezed: Tensor) -> Tensor:
        f = self.action_p3_bn1(squeezed)  # (N*T, C/r, H, W)
        mean_f, mean_next = mean_and_mean_of_conv3x3(f, self.action_p3_conv1.weight)  # (N*T, C/r) each
        mean_f = split_time(mean_f, self.num_segments)  # (N*T, C/r) -> (N, T, C/r)
        mean_next = split_time(mean_next, self.num_segments)  # (N*T, C/r) -> (N, T, C/r)
        diff = mean_next[:, 1:] - mean_f[:, :-1]  # (N, T-1, C/r): conv(x)[t+1] - x[t]
        diff = F.pad(diff, (0, 0, 0, 1))  # (N, T, C/r), zero motion for the last frame
        z = merge_time(diff)  # (N, T, C/r) -> (N*T, C/r)
        return torch.sigmoid(F.linear(z, self.action_p3_expand.weight.flatten(1)))[..., None, None]  # (N*T, C, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        x_shift = self.shift(x)  # (N*T, C, H, W)
        squeezed, channel_mean = self._channel_reductions(x_shift) if {"me", "ste"} & set(self.paths) else (None, None)
        # sum over paths of (x_shift * g + x_shift) == x_shift * (num_paths + sum of gates)
        scale = None  # num_paths + channel gates, (N*T, C, 1, 1)
        if "ce" in self.paths:
            scale = self._ce_gate(x_shift)
        if "me" in self.paths:
            g = self._me_gate(squeezed)
            scale = g if scale is None else scale + g
        scale = len(self.paths) if scale is None else scale + len(self.paths)
        if "ste" not in self.paths:
            return x_shift * scale
        g_ste = self._ste_gate(channel_mean)  # (N*T, 1, H, W)
        if isinstance(scale, int):  # STE alone: one pass with a (N*T, 1, H, W) factor
            return x_shift * (g_ste + scale)
        # two passes and one allocation rather than a broadcast (N*T, C, H, W) gate tensor
        return (x_shift * scale).addcmul_(x_shift, g_ste)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_segments={self.num_segments}, paths={self.paths}"


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
