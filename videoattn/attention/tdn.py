"""TDN: Temporal Difference Networks for Efficient Action Recognition (Wang, Tong, Ji, Wu; CVPR 2021,
arXiv 2012.10071).

Two temporal difference modules (TDM):

- :class:`TDNLongTerm`, the long-term TDM of every bottleneck of res3-res5 (the official ``mse``,
  "multiple scale excitation", followed by a learnable temporal shift), a per-block module at the
  bottleneck's ``after_conv1`` slot;
- :class:`TDNShortTerm`, the short-term TDM at the stem: a difference branch over 5 consecutive
  frames per segment, fused into the RGB path after the stem and after the first stage. It needs
  the backbone's stem and first stage at call time (a stem-site module, see its docstring) and 5
  frames per segment from the sampler (:func:`videoattn.data.sampling.snippet_sample`).

Parameter names follow the official checkpoint (MCG-NJU/TDN@a7c7e9b), so that a key of it maps to
one of ours by a prefix rename: ``layerN_bak.B.mse.<k>`` -> ``<block>.<insert>.mse.<k>``,
``layerN_bak.B.shift.conv.weight`` -> ``<block>.<insert>.shift.conv.weight``, ``conv1_5.<k>`` and
``resnext_layer1.<k>`` -> ``<stem module>.conv1_5.<k>`` / ``.resnext_layer1.<k>``.

Each module has the paper's form and a fast form (``impl``), tested equal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..shapes import merge_time, split_time
from ._temporal import temporal_conv

IMPLS = ("fast", "paper")


def _normal_conv_init(conv: nn.Conv2d) -> None:
    """The official TDM init: ``N(0, sqrt(2 / (k * k * C_out)))`` (``k * k = 9`` for 3x3, 1 for 1x1)."""
    k = conv.kernel_size[0] * conv.kernel_size[1]
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / (k * conv.out_channels)))


def tsm_shift_kernel(channels: int, shift_div: int = 8) -> Tensor:
    """The ``(C, 1, 3)`` depthwise kernel of a temporal Conv1d that computes the TSM shift:
    channels ``[0, C/8)`` take frame ``t+1`` (taps ``(0, 0, 1)``), ``[C/8, C/4)`` frame ``t-1``
    (``(1, 0, 0)``), the rest stay (``(0, 1, 0)``)."""
    fold = channels // shift_div
    w = torch.zeros(channels, 1, 3)
    w[:fold, 0, 2] = 1  # shift left: frame t <- t+1
    w[fold : 2 * fold, 0, 0] = 1  # shift right: frame t <- t-1
    w[2 * fold :, 0, 1] = 1  # unchanged
    return w


class MultiScaleExcitation(nn.Module):
    """The long-term TDM's excitation (official ``mse``), ``(N*T, C, H, W) -> (N*T, C, H, W)``.

    With ``C' = C / reduction``: ``B = bn1(conv1(X))`` (1x1, ``C -> C'``), ``K = conv2(B)``
    (depthwise 3x3); the differences ``D+_t = K_{t+1} - B_t`` (``D+_{T-1} = 0``) and
    ``D-_t = K_{t-1} - B_t`` (``D-_0 = 0``); for each direction, with the same modules,
    ``S2 = nearest_up(bn3_smallscale2(conv3_smallscale2(avgpool2x2(D))))`` (floor mode: 7 -> 3 -> 7),
    ``S1 = bn3_smallscale4(conv3_smallscale4(D))`` and
    ``A = sigmoid(bn3(conv3((D + S2 + S1) / 3))) - 1/2``; output ``X * (1 + A+ / 2 + A- / 2)``.
    In training mode each direction runs its BNs on its own batch, as in the official code (the
    running statistics are updated twice per call).
    """

    def __init__(self, channels: int, *, num_segments: int, reduction: int = 16) -> None:
        super().__init__()
        if channels < reduction:
            raise ValueError(f"TDN's long-term TDM needs channels >= reduction ({reduction}), got {channels}")
        self.num_segments = num_segments
        c = channels // reduction
        self.conv1 = nn.Conv2d(channels, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.conv3 = nn.Conv2d(c, channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)
        self.conv3_smallscale2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn3_smallscale2 = nn.BatchNorm2d(c)
        self.conv3_smallscale4 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn3_smallscale4 = nn.BatchNorm2d(c)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                _normal_conv_init(m)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def differences(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(D+, D-)``, each ``(N*T, C', H, W)``: the feature differences with the next and
        the previous frame, zero at the clip's last / first frame."""
        b = self.bn1(self.conv1(x))  # (N*T, C', H, W)
        k = self.conv2(b)  # (N*T, C', H, W)
        bt, kt = split_time(b, self.num_segments), split_time(k, self.num_segments)  # (N, T, C', H, W)
        zero = torch.zeros_like(bt[:, :1])  # (N, 1, C', H, W)
        forward = torch.cat([kt[:, 1:] - bt[:, :-1], zero], 1)  # D+_t = K_{t+1} - B_t, 0 at T-1
        backward = torch.cat([zero, kt[:, :-1] - bt[:, 1:]], 1)  # D-_t = K_{t-1} - B_t, 0 at 0
        return merge_time(forward), merge_time(backward)  # (N, T, C', H, W) -> (N*T, C', H, W)

    def attention(self, d: Tensor) -> Tensor:
        """``A = sigmoid(bn3(conv3((D + S2 + S1) / 3))) - 1/2`` for one direction's ``D``,
        ``(N*T, C', H, W) -> (N*T, C, H, W)``."""
        # 2x2 / 2, floor mode (7 -> 3); a side of 1 pixel (tiny inputs, where the official pool has
        # no output) is pooled over its one pixel
        k = (min(2, d.shape[-2]), min(2, d.shape[-1]))
        pooled = F.avg_pool2d(d, kernel_size=k, stride=k)  # (N*T, C', H//2, W//2)
        s2 = self.bn3_smallscale2(self.conv3_smallscale2(pooled))  # (N*T, C', H//2, W//2)
        s2 = F.interpolate(s2, size=d.shape[-2:], mode="nearest")  # (N*T, C', H, W)
        s1 = self.bn3_smallscale4(self.conv3_smallscale4(d))  # (N*T, C', H, W)
        return torch.sigmoid(self.bn3(self.conv3((d + s2 + s1) / 3.0))) - 0.5  # (N*T, C, H, W)

    def forward(self, x: Tensor) -> Tensor:
        d_forward, d_backward = self.differences(x)
        return x * (1.0 + 0.5 * self.attention(d_forward) + 0.5 * self.attention(d_backward))


class LearnableShift(nn.Module):
    """A depthwise temporal Conv1d (kernel 3, zero padded, no bias), initialised to the TSM shift
    (:func:`tsm_shift_kernel`): ``out_t = w0 x_{t-1} + w1 x_t + w2 x_{t+1}`` per channel, on
    ``(N*T, C, H, W)``. The official ``shift`` (its weight ``conv.weight``, ``(C, 1, 3)``)."""

    def __init__(self, channels: int, *, num_segments: int, shift_div: int = 8, impl: str = "fast") -> None:
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.num_segments = num_segments
        self.impl = impl
        self.conv = nn.Conv1d(channels, channels, 3, padding=1, groups=channels, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(tsm_shift_kernel(channels, shift_div))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_fast(x) if self.impl == "fast" else self.forward_paper(x)

    def forward_paper(self, x: Tensor) -> Tensor:
        """The Conv1d over T at every pixel, in the official ``(N*H*W, C, T)`` layout."""
        nt, c, h, w = x.shape
        xt = split_time(x, self.num_segments)  # (N*T, C, H, W) -> (N, T, C, H, W)
        n, t = xt.shape[:2]
        xs = xt.permute(0, 3, 4, 2, 1).reshape(n * h * w, c, t)  # (N*H*W, C, T)
        xs = self.conv(xs)  # (N*H*W, C, T)
        return xs.view(n, h, w, c, t).permute(0, 4, 3, 1, 2).reshape(nt, c, h, w)  # (N*T, C, H, W)

    def forward_fast(self, x: Tensor) -> Tensor:
        """The same convolution as three weighted shifted views (no permute), ``temporal_conv``."""
        taps = self.conv.weight[:, 0].t()  # (C, 1, 3) -> (3, C): tap k on frame t+k-1
        taps = taps[:, None, None, :, None, None].unbind(0)  # 3 x (1, 1, C, 1, 1)
        return merge_time(temporal_conv(split_time(x, self.num_segments), taps))  # (N*T, C, H, W)


class TDNLongTerm(nn.Module):
    """TDN's long-term temporal difference module (arXiv 2012.10071, Sec. 3.3), then its learnable
    temporal shift, in that order: ``shift(mse(x))``, ``(N*T, C, H, W) -> (N*T, C, H, W)``.

    Sits after conv1-bn1-relu of every bottleneck of res3-res5 (``after_conv1``; ``C`` is the
    bottleneck width, 128 / 256 / 512 in ResNet-50), none in res2. ``mse``:
    :class:`MultiScaleExcitation` (``C' = C / reduction``); ``shift``: :class:`LearnableShift`
    (TSM shift at init, fold ``C / 8``).

    Init (official): the TDM convs ``N(0, sqrt(2 / (9 C_out)))`` (3x3) and
    ``N(0, sqrt(2 / C_out))`` (1x1), BN ``gamma = 1``, ``beta = 0``; the shift as TSM's. At init
    the module is not the identity (the excitation is ``1 + (A+ + A-) / 2`` with
    ``A = sigmoid(.) - 1/2``, which is 1 only where both attentions vanish).

    ``impl``: ``"fast"`` (default) runs the shift as shifted views
    (:meth:`LearnableShift.forward_fast`), ``"paper"`` as the official Conv1d over permuted
    features; the excitation is the same code in both (it runs on ``C / 16`` channels).
    """

    def __init__(
        self, channels: int, *, num_segments: int, reduction: int = 16, shift_div: int = 8, impl: str = "fast"
    ) -> None:
        super().__init__()
        self.channels = channels
        self.num_segments = num_segments
        self.mse = MultiScaleExcitation(channels, num_segments=num_segments, reduction=reduction)
        self.shift = LearnableShift(channels, num_segments=num_segments, shift_div=shift_div, impl=impl)

    @property
    def impl(self) -> str:
        return self.shift.impl

    def forward(self, x: Tensor) -> Tensor:
        return self.shift(self.mse(x))

    def stream_blocker(self) -> str | None:
        """Why the module cannot run one frame at a time (:mod:`videoattn.attention.streaming`)."""
        return "looks at future frames: its excitation takes differences with the next frame, its shift the next frame"

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_segments={self.num_segments}, impl={self.impl}"


def tdn_fusion_weights(num_segments: int) -> tuple[float, float]:
    """The official ``(alpha, beta)`` of the short-term TDM's fusion: ``(0.5, 0.5)`` for 8
    segments, ``(0.75, 0.25)`` otherwise (so a 16-frame checkpoint needs ``T = 16``)."""
    return (0.5, 0.5) if num_segments == 8 else (0.75, 0.25)


class TDNShortTerm(nn.Module):
    """TDN's short-term temporal difference module at the stem (arXiv 2012.10071, Sec. 3.2).

    A stem-site module: built with a fresh copy of the backbone's first stage,
    ``TDNShortTerm(channels=64, num_segments=T, stage=copy_of_layer1, frames=5)`` (the copy becomes
    the difference branch's own stage, ``resnext_layer1``), and called with the backbone's stem and
    first stage, ``module(x, stem=conv1_bn1_relu_maxpool, stage=layer1)``:

    - ``x``: ``(N*T, F*3, H, W)``, ``F = frames`` (5) consecutive normalised frames per segment
      stacked on channels, frame-major then RGB; returns ``(N*T, C_1, H/4, W/4)`` (``C_1`` = the
      first stage's output, 256 in ResNet-50).
    - ``D``: the ``F - 1`` frame differences ``F2-F1, ..., F5-F4`` (12 channels);
      ``M = maxpool(relu(bn(conv(avgpool2x2(D)))))`` with ``conv1_5`` = conv 7x7 stride 2 pad 3,
      ``12 -> channels``, no bias (``M``: ``H/8``);
    - RGB path on the centre frame: ``R = stem(F3)`` (``H/4``), ``R = alpha R + beta up(M)``,
      ``R = stage(R)``, ``R = alpha R + beta up(resnext_layer1(M))``; ``up`` is
      ``F.interpolate(mode="nearest")`` to ``R``'s size.

    ``alpha`` / ``beta``: the fusion weights; ``None`` takes the official values from ``T``
    (:func:`tdn_fusion_weights`: 0.5 / 0.5 for ``T = 8``, else 0.75 / 0.25).

    Init: ``conv1_5`` kaiming-normal (fan_out) as the backbone's convs, BN ``gamma = 1``,
    ``beta = 0``; :meth:`init_from_rgb_stem` gives the official pretrained-time init (the
    ImageNet conv1 kernel averaged over RGB, copied to the 12 difference channels). The own
    stage keeps the weights it was built with (a copy of the backbone's first stage: ImageNet
    weights when the backbone has them). One form only: a composition of convolutions, with
    nothing a fast form would save.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_segments: int,
        stage: nn.Module,
        frames: int = 5,
        alpha: float | None = None,
        beta: float | None = None,
    ) -> None:
        super().__init__()
        if frames < 2:
            raise ValueError(f"the short-term TDM needs at least 2 frames per segment, got {frames}")
        self.channels = channels
        self.num_segments = num_segments
        self.frames = frames
        default_alpha, default_beta = tdn_fusion_weights(num_segments)
        self.alpha = default_alpha if alpha is None else float(alpha)
        self.beta = default_beta if beta is None else float(beta)
        diff_channels = 3 * (frames - 1)
        self.conv1_5 = nn.Sequential(
            nn.Conv2d(diff_channels, channels, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        nn.init.kaiming_normal_(self.conv1_5[0].weight, mode="fan_out", nonlinearity="relu")
        self.resnext_layer1 = stage

    @torch.no_grad()
    def init_from_rgb_stem(self, conv1_weight: Tensor) -> None:
        """The official init of ``conv1_5`` from an (ImageNet) RGB stem kernel ``(C, 3, 7, 7)``:
        averaged over RGB, copied to each of the ``3 (F - 1)`` difference channels."""
        target = self.conv1_5[0].weight
        if (
            conv1_weight.dim() != 4
            or conv1_weight.shape[0] != target.shape[0]
            or conv1_weight.shape[2:] != target.shape[2:]
        ):
            raise ValueError(
                f"init_from_rgb_stem needs a ({target.shape[0]}, 3, 7, 7) stem kernel, got {tuple(conv1_weight.shape)}"
            )
        mean = conv1_weight.mean(1, keepdim=True)  # (C, 3, 7, 7) -> (C, 1, 7, 7)
        target.copy_(mean.expand_as(target))  # (C, 3(F-1), 7, 7)

    def difference_branch(self, x: Tensor) -> Tensor:
        """``M``: ``(N*T, F*3, H, W) -> (N*T, channels, H/8, W/8)``."""
        frames = x.unflatten(1, (self.frames, 3))  # (N*T, F*3, H, W) -> (N*T, F, 3, H, W)
        d = (frames[:, 1:] - frames[:, :-1]).flatten(1, 2)  # (N*T, (F-1)*3, H, W), F2-F1 first
        d = F.avg_pool2d(d, kernel_size=2, stride=2)  # (N*T, (F-1)*3, H/2, W/2)
        m = self.conv1_5(d)  # (N*T, channels, H/4, W/4)
        return F.max_pool2d(m, kernel_size=3, stride=2, padding=1)  # (N*T, channels, H/8, W/8)

    def forward(self, x: Tensor, *, stem: Callable[[Tensor], Tensor], stage: nn.Module) -> Tensor:
        if stage is self.resnext_layer1:
            raise ValueError("TDNShortTerm needs its own copy of the first stage, not the backbone's")
        if x.dim() != 4 or x.shape[1] != 3 * self.frames:
            raise ValueError(
                f"TDNShortTerm expects (N*T, {3 * self.frames}, H, W): {self.frames} frames per segment "
                f"stacked on channels, got {tuple(x.shape)}"
            )
        split_time(x, self.num_segments)  # checks N*T
        m = self.difference_branch(x)  # (N*T, C, H/8, W/8)
        centre = x[:, 3 * (self.frames // 2) : 3 * (self.frames // 2) + 3]  # (N*T, 3, H, W), F3 of 5
        r = stem(centre)  # (N*T, C, H/4, W/4)
        r = self.alpha * r + self.beta * F.interpolate(m, size=r.shape[-2:], mode="nearest")
        r = stage(r)  # (N*T, C_1, H/4, W/4)
        m = self.resnext_layer1(m)  # (N*T, C_1, H/8, W/8)
        return self.alpha * r + self.beta * F.interpolate(m, size=r.shape[-2:], mode="nearest")

    def stream_blocker(self) -> str | None:
        """Why the module cannot run one frame at a time (:mod:`videoattn.attention.streaming`)."""
        return f"looks at future frames: each segment's {self.frames} frames around its centre frame, on the channels"

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, num_segments={self.num_segments}, frames={self.frames}, "
            f"alpha={self.alpha}, beta={self.beta}"
        )


def tdn_init_from_backbone(module: TDNShortTerm, state_dict: Mapping[str, Tensor]) -> list[str]:
    """The ``pretrained_init`` of TDN's stem row: ``conv1_5`` from the plain backbone's (ImageNet)
    stem kernel ``conv1.weight`` averaged over RGB (:meth:`TDNShortTerm.init_from_rgb_stem`), and
    the difference branch's ``resnext_layer1`` from its ``layer1.*`` (the official model takes it
    from a second pretrained ResNet). Returns the local names set."""
    module.init_from_rgb_stem(state_dict["conv1.weight"])
    stage = {k.removeprefix("layer1."): v for k, v in state_dict.items() if k.startswith("layer1.")}
    missing, unexpected = module.resnext_layer1.load_state_dict(stage, strict=False)
    set_names = [f"resnext_layer1.{k}" for k in stage if k not in unexpected]
    return ["conv1_5.0.weight", *set_names]
