"""TAda2D: TAdaConv: Temporally-Adaptive Convolutions for Video Understanding (Huang, Zhang, Pan,
Qing, Tang, Liu, Ang; ICLR 2022, arXiv 2110.06178).

:class:`TAdaConv2d` replaces a bottleneck's 3x3 conv and its BN (a conv-site module): the
temporally adaptive 3x3 convolution (TAdaConv) and the temporal aggregation of TAda2D's block.
Its calibration is :class:`TemporalCalibration` (the official ``b_rf``). The paper form of the
convolution is :func:`tadaconv_paper` (a kernel per sample and frame, one grouped conv); the fast
form :func:`tadaconv_fast` (a plain conv of the calibrated input), tested equal.

Official keys (alibaba-mmai-research/TAdaConv@75b7839, ``conv_branch.<k>`` of a block) -> ours
(5-D kernels of temporal size 1 squeezed): ``b.weight`` (1x1xCoxCix3x3) -> ``weight``,
``b_bn`` -> ``bn``, ``b_avgpool_bn`` -> ``bn_pool``, ``b_rf.{g,a,bn,b}`` -> ``rf.{g,a,bn,b}``
(``g``: CxCx1x1x1 -> CxCx1, ``a``: (C/4)xCx3x1x1 -> (C/4)xCx3, ``b``: Cx(C/4)x3x1x1 -> Cx(C/4)x3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..shapes import merge_time, split_time

IMPLS = ("fast", "paper")


class TemporalCalibration(nn.Module):
    """TAdaConv's calibration weights (the official ``b_rf``), ``(N*T, C, H, W) -> (N*T, C, 1, 1)``.

    With ``p_t`` the spatial mean of frame ``t`` of ``U`` and ``g`` the mean of ``U`` over
    ``(T, H, W)``: ``q_t = p_t + g_conv(g)`` (``g``: 1x1 conv ``C -> C`` with bias),
    ``r = relu(bn(a(q)))`` (``a``: temporal conv ``C -> C / reduction``, kernel 3, zero padded,
    with bias; BN statistics over ``N*T``), ``alpha = 1 + b(r)`` (``b``: temporal conv
    ``C / reduction -> C``, kernel 3, zero padded, no bias). The convolutions run over T on
    ``(N, C, T)`` descriptors (Conv1d).

    Init (official): ``b = 0``, so ``alpha == 1``; ``g`` and ``a`` kaiming-normal (fan_out), bias 0.
    """

    def __init__(self, channels: int, *, num_segments: int, reduction: int = 4) -> None:
        super().__init__()
        if channels < reduction:
            raise ValueError(f"TAdaConv's calibration needs channels >= reduction ({reduction}), got {channels}")
        self.num_segments = num_segments
        hidden = channels // reduction
        self.g = nn.Conv1d(channels, channels, 1)
        self.a = nn.Conv1d(channels, hidden, 3, padding=1)
        self.bn = nn.BatchNorm1d(hidden)
        self.b = nn.Conv1d(hidden, channels, 3, padding=1, bias=False)
        for conv in (self.g, self.a):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.b.weight)

    def forward(self, u: Tensor) -> Tensor:
        ut = split_time(u, self.num_segments)  # (N*T, C, H, W) -> (N, T, C, H, W)
        p = ut.mean((-2, -1)).transpose(1, 2)  # (N, C, T): p_t, the spatial mean of each frame
        g = p.mean(2, keepdim=True)  # (N, C, 1): the mean over (T, H, W)
        q = p + self.g(g)  # (N, C, T)
        r = F.relu(self.bn(self.a(q)))  # (N, C/r, T)
        alpha = 1.0 + self.b(r)  # (N, C, T)
        return merge_time(alpha.transpose(1, 2))[..., None, None]  # (N, T, C) -> (N*T, C, 1, 1)


def tadaconv_paper(u: Tensor, weight: Tensor, alpha: Tensor, *, stride: int = 1) -> Tensor:
    """TAdaConv as the paper writes it: a kernel per sample and frame,
    ``W_t[o, i] = alpha_t[i] W_b[o, i]``, applied to its own frame (3x3, stride ``stride``,
    padding 1); one grouped conv over the ``N*T`` frames.

    ``u``: ``(N*T, Cin, H, W)``, ``weight``: ``(Cout, Cin, k, k)``, ``alpha``: ``(N*T, Cin, 1, 1)``;
    returns ``(N*T, Cout, H/s, W/s)``.
    """
    nt, cin, h, w = u.shape
    cout, _, kh, kw = weight.shape
    kernels = weight[None] * alpha[:, None, :, :, :]  # (N*T, Cout, Cin, k, k): W_t = alpha_t[i] W_b[o, i]
    out = F.conv2d(
        u.reshape(1, nt * cin, h, w),  # (N*T, Cin, H, W) -> (1, N*T*Cin, H, W)
        kernels.reshape(nt * cout, cin, kh, kw),  # (N*T*Cout, Cin, k, k)
        stride=stride,
        padding=kh // 2,
        groups=nt,
    )  # (1, N*T*Cout, H/s, W/s)
    return out.view(nt, cout, *out.shape[-2:])  # (N*T, Cout, H/s, W/s)


def tadaconv_fast(u: Tensor, weight: Tensor, alpha: Tensor, *, stride: int = 1) -> Tensor:
    """TAdaConv as one plain conv: the calibration scales the kernel's *input* channels, so
    ``conv(u_t, alpha_t W_b) = conv(alpha_t u_t, W_b)`` exactly (up to float rounding). Same
    arguments and result as :func:`tadaconv_paper`."""
    return F.conv2d(u * alpha, weight, stride=stride, padding=weight.shape[-1] // 2)


def temporal_avg_pool(v: Tensor, num_segments: int) -> Tensor:
    """AvgPool over T, kernel 3, stride 1, zero padding 1, ``count_include_pad``:
    ``(v_{t-1} + v_t + v_{t+1}) / 3`` with zero frames outside the clip, ``(N*T, C, H, W)``."""
    vt = split_time(v, num_segments)  # (N*T, C, H, W) -> (N, T, C, H, W)
    padded = F.pad(vt, (0, 0, 0, 0, 0, 0, 1, 1))  # (N, T+2, C, H, W), a zero frame at each end
    return merge_time((padded[:, :-2] + padded[:, 1:-1] + padded[:, 2:]) / 3.0)  # (N*T, C, H, W)


class TAdaConv2d(nn.Module):
    """TAda2D's 3x3 part of a bottleneck (ICLR 2022, arXiv 2110.06178): replaces conv2 + bn2.

    ``(N*T, Cin, H, W) -> (N*T, Cout, H/s, W/s)``, the normalised pre-ReLU output
    ``Z = bn(V) + bn_pool(AvgPool_T(V))`` with ``V = TAdaConv(U)``:

    - calibration ``alpha = rf(U)`` (:class:`TemporalCalibration`, ``C = Cin``);
    - TAdaConv: ``W_t[o, i] = alpha_t[i] W_b[o, i]``, 3x3, stride ``stride``, padding 1, no
      bias; ``weight`` is ``W_b`` (``Cout x Cin x 3 x 3``: an ImageNet ``conv2.weight`` loads
      into it);
    - aggregation: ``AvgPool_T`` (:func:`temporal_avg_pool`, kernel 3, the end frames divided by 3)
      and its own BN ``bn_pool``.

    Init (official): ``rf.b = 0`` (``alpha == 1``) and ``bn_pool`` ``gamma = beta = 0``, so that
    the module equals ``bn(conv2d(U, weight))`` at init: a bottleneck's conv2 + bn2. ``weight``
    kaiming-normal (fan_out) as the backbone's convs, ``bn`` ``gamma = 1``, ``beta = 0``.

    ``impl``: ``"fast"`` (default, :func:`tadaconv_fast`) or ``"paper"`` (:func:`tadaconv_paper`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        num_segments: int,
        reduction: int = 4,
        impl: str = "fast",
    ) -> None:
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.num_segments = num_segments
        self.impl = impl
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.rf = TemporalCalibration(in_channels, num_segments=num_segments, reduction=reduction)
        self.bn = nn.BatchNorm2d(out_channels)
        self.bn_pool = nn.BatchNorm2d(out_channels)
        nn.init.zeros_(self.bn_pool.weight)
        nn.init.zeros_(self.bn_pool.bias)

    def forward(self, u: Tensor) -> Tensor:
        alpha = self.rf(u)  # (N*T, Cin, 1, 1)
        conv = tadaconv_fast if self.impl == "fast" else tadaconv_paper
        v = conv(u, self.weight, alpha, stride=self.stride)  # (N*T, Cout, H/s, W/s)
        return self.bn(v) + self.bn_pool(temporal_avg_pool(v, self.num_segments))

    def stream_blocker(self) -> str | None:
        """Why the module cannot run one frame at a time (:mod:`videoattn.attention.streaming`)."""
        return "looks at future frames: its calibration's temporal convolutions and its pool are centred (kernel 3)"

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, stride={self.stride}, "
            f"num_segments={self.num_segments}, impl={self.impl}"
        )
