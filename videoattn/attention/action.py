"""ACTION-Net: Multipath Excitation for Action Recognition (Wang, She, Smolic; arXiv 2103.07372)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..shapes import merge_time, split_time

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
    shifted views instead of a permuted Conv1d, and the motion path averages spatially before
    taking the temporal difference (mean is linear, so the result is identical in exact
    arithmetic) instead of after.
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
        xt = split_time(x, self.num_segments)  # (N*T, C, H, W) -> (N, T, C, H, W)
        w = self.action_shift.weight[:, 0, :, None, None]  # (C, 1, 3) -> (C, 3, 1, 1)
        out = xt * w[:, 1]  # tap on frame t
        out[:, 1:] += xt[:, :-1] * w[:, 0]  # tap on frame t-1
        out[:, :-1] += xt[:, 1:] * w[:, 2]  # tap on frame t+1
        return merge_time(out)  # (N, T, C, H, W) -> (N*T, C, H, W)

    def _ste_gate(self, x: Tensor) -> Tensor:
        xt = split_time(x, self.num_segments)  # (N*T, C, H, W) -> (N, T, C, H, W)
        m = xt.mean(2).unsqueeze(1)  # (N, T, C, H, W) -> (N, 1, T, H, W)
        g = self.action_p1_conv1(m)  # (N, 1, T, H, W)
        return torch.sigmoid(g).flatten(0, 2).unsqueeze(1)  # (N, 1, T, H, W) -> (N*T, 1, H, W)

    def _ce_gate(self, x: Tensor) -> Tensor:
        z = self.action_p2_squeeze(x.mean((2, 3), keepdim=True))  # (N*T, C/r, 1, 1)
        zt = split_time(z.flatten(1), self.num_segments).transpose(1, 2)  # (N, C/r, T)
        zt = F.relu(self.action_p2_conv1(zt))  # (N, C/r, T)
        z = merge_time(zt.transpose(1, 2))[..., None, None]  # (N, C/r, T) -> (N*T, C/r, 1, 1)
        return torch.sigmoid(self.action_p2_expand(z))  # (N*T, C, 1, 1)

    def _me_gate(self, x: Tensor) -> Tensor:
        f = self.action_p3_bn1(self.action_p3_squeeze(x))  # (N*T, C/r, H, W)
        f_next = self.action_p3_conv1(f)  # (N*T, C/r, H, W)
        mean_f = split_time(f.mean((2, 3)), self.num_segments)  # (N, T, C/r)
        mean_next = split_time(f_next.mean((2, 3)), self.num_segments)  # (N, T, C/r)
        diff = mean_next[:, 1:] - mean_f[:, :-1]  # (N, T-1, C/r): conv(x)[t+1] - x[t]
        diff = F.pad(diff, (0, 0, 0, 1))  # (N, T, C/r), zero motion for the last frame
        z = merge_time(diff)[..., None, None]  # (N*T, C/r, 1, 1)
        return torch.sigmoid(self.action_p3_expand(z))  # (N*T, C, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        x_shift = self.shift(x)
        gate = None
        for path, fn in (("ste", self._ste_gate), ("ce", self._ce_gate), ("me", self._me_gate)):
            if path in self.paths:
                g = fn(x_shift)
                gate = g if gate is None else gate + g  # broadcasts to (N*T, C, H, W)
        # sum over paths of (x_shift * g + x_shift) == x_shift * (num_paths + sum g)
        return x_shift * (gate + len(self.paths))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_segments={self.num_segments}, paths={self.paths}"
