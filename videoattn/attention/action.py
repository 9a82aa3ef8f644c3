"""ACTION-Net: Multipath Excitation for Action Recognition (Wang, She, Smolic; arXiv 2103.07372).

This file is the paper's form; :mod:`videoattn.attention.action_fast` the fast implementation
the module uses by default (``impl="fast"``), tested equal to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..shapes import merge_time, split_time
from . import action_fast
from .action_fast import action_forward_fast

PATHS = ("ste", "ce", "me")
IMPLS = ("fast", "paper")


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
    ``action_p2_*``, ``action_p3_*``) so converted checkpoints load by name. ``impl``:
    ``"paper"`` runs :meth:`forward_paper`, the steps above in the official layouts;
    ``"fast"`` (default) :func:`~videoattn.attention.action_fast.action_forward_fast`, the same
    function up to float rounding (see that module for how), tested equal.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_segments: int,
        shift_div: int = 8,
        reduction: int = 16,
        paths: Sequence[str] = PATHS,
        impl: str = "fast",
    ) -> None:
        super().__init__()
        paths = tuple(paths)
        unknown = set(paths) - set(PATHS)
        if not paths or unknown:
            raise ValueError(f"paths must be a non-empty subset of {PATHS}, got {paths}")
        if channels < reduction:
            raise ValueError(f"Action needs channels >= reduction ({reduction}) for its squeeze, got {channels}")
        self.channels = channels
        self.num_segments = num_segments
        self.shift_div = shift_div
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.paths = paths
        self.impl = impl
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

    def forward(self, x: Tensor) -> Tensor:
        return action_forward_fast(self, x) if self.impl == "fast" else self.forward_paper(x)

    def forward_paper(self, x: Tensor) -> Tensor:
        """The module as the paper draws it, ``(N*T, C, H, W) -> (N*T, C, H, W)``."""
        t = self.num_segments
        nt, c, h, w = x.shape
        n = nt // t
        x_shift = self._shift_paper(x)  # 1. the learnable shift
        out = torch.zeros_like(x_shift)
        if "ste" in self.paths:  # 2. spatio-temporal excitation: a 3x3x3 conv of the channel mean
            m = x_shift.mean(1, keepdim=True)  # (N*T, 1, H, W)
            m = m.view(n, t, 1, h, w).transpose(1, 2)  # (N, 1, T, H, W)
            g = torch.sigmoid(self.action_p1_conv1(m)).transpose(1, 2).reshape(nt, 1, h, w)  # (N*T, 1, H, W)
            out = out + x_shift * g + x_shift
        if "ce" in self.paths:  # 3. channel excitation: squeeze, a Conv1d over T, expand
            z = self.action_p2_squeeze(F.adaptive_avg_pool2d(x_shift, 1))  # (N*T, C/r, 1, 1)
            z = z.view(n, t, -1).transpose(1, 2)  # (N, C/r, T)
            z = F.relu(self.action_p2_conv1(z))  # (N, C/r, T)
            z = z.transpose(1, 2).reshape(nt, -1, 1, 1)  # (N*T, C/r, 1, 1)
            g = torch.sigmoid(self.action_p2_expand(z))  # (N*T, C, 1, 1)
            out = out + x_shift * g + x_shift
        if "me" in self.paths:  # 4. motion excitation: conv(f)[t+1] - f[t], pooled, expanded
            f = self.action_p3_bn1(self.action_p3_squeeze(x_shift))  # (N*T, C/r, H, W)
            f_next = self.action_p3_conv1(f)  # (N*T, C/r, H, W)
            f, f_next = f.view(n, t, -1, h, w), f_next.view(n, t, -1, h, w)  # (N, T, C/r, H, W)
            motion = F.pad(f_next[:, 1:] - f[:, :-1], (0, 0, 0, 0, 0, 0, 0, 1))  # (N, T, C/r, H, W), 0 at T-1
            z = F.adaptive_avg_pool2d(motion.reshape(nt, -1, h, w), 1)  # (N*T, C/r, 1, 1)
            g = torch.sigmoid(self.action_p3_expand(z))  # (N*T, C, 1, 1)
            out = out + x_shift * g + x_shift
        return out

    def _shift_paper(self, x: Tensor) -> Tensor:
        """The learnable shift: a depthwise Conv1d over T, on every pixel of every channel."""
        t = self.num_segments
        nt, c, h, w = x.shape
        n = nt // t
        xs = x.view(n, t, c, h, w).permute(0, 3, 4, 2, 1).reshape(n * h * w, c, t)  # (N*H*W, C, T)
        xs = self.action_shift(xs)
        return xs.view(n, h, w, c, t).permute(0, 4, 3, 1, 2).reshape(nt, c, h, w)  # (N*T, C, H, W)

    def shift(self, x: Tensor) -> Tensor:
        """The learnable temporal shift alone, ``(N*T, C, H, W) -> (N*T, C, H, W)``."""
        if self.impl == "paper":
            return self._shift_paper(x)
        return merge_time(action_fast.shift(self, split_time(x, self.num_segments)))

    def stream_blocker(self) -> str | None:
        """Why the module cannot run one frame at a time (:mod:`videoattn.attention.streaming`)."""
        looks = {
            "ste": "STE a 3x3x3 convolution over (T, H, W)",
            "ce": "CE a temporal convolution",
            "me": "ME the next frame's features",
        }
        paths = "; ".join(looks[p] for p in self.paths)
        return (
            f"looks at future frames (its shift is a centred temporal convolution; {paths}); "
            "train with a causal module such as tsm_online to stream"
        )

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_segments={self.num_segments}, paths={self.paths}, impl={self.impl}"
