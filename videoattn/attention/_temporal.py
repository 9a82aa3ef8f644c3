"""A zero-padded temporal convolution with element-wise tap weights, the kernel shared by
ACTION-Net's learnable shift and TAM's video-adaptive convolution, with a hand-written
backward."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


def temporal_conv(xt: Tensor, taps: Sequence[Tensor]) -> Tensor:
    """``out[:, t] = sum_k (taps[k] * xt)[:, t + k - K // 2]`` over an odd number K of taps,
    frames outside the clip being zeros, on ``xt`` of shape ``(N, T, C, H, W)``.

    Tap ``k`` weights the input frames and moves them by ``k - K // 2`` frames (tap 0 of a
    3-tap kernel brings frame ``t-1`` to ``t``), as a ``Conv1d`` over T with padding ``K // 2``
    does. Each tap is a 5-D tensor broadcastable to ``xt``: ``(1, 1, C, 1, 1)`` for a kernel
    per channel (ACTION's depthwise shift), ``(N, T, C, 1, 1)`` for a weight per video, input
    frame and channel (TAM's kernel times its local gate). Taps are cast to ``xt``'s dtype,
    so that under autocast the result stays in the activations' precision.

    Cost: one output allocation in ``xt``'s memory format (channels_last stays channels_last),
    one pass for the centre tap and one fused multiply-add (``addcmul_``) per other tap on
    shifted views; no padded copy, no permute, no loop over T or N. The backward is the
    adjoint convolution (the same passes with the shifts reversed) plus one product-and-sum
    per tap for the tap weights, all in one allocation (the products' buffer becomes the
    input gradient); autograd through the slice updates would clone the full gradient once
    per update. The same function as a depthwise
    convolution over T up to the order of float rounding, and exact when the taps are 0/1
    (the TSM shift).
    """
    if len(taps) % 2 == 0:
        raise ValueError(f"temporal_conv needs an odd number of taps, got {len(taps)}")
    if any(w.dim() != 5 or w.shape[1] not in (1, xt.shape[1]) for w in taps):
        raise ValueError("temporal_conv taps are 5-D, broadcastable to (N, T, C, H, W), with T or 1 frames")
    # contiguous taps: views of a (N, C, K, T) kernel would make every pass over a channels_last
    # input gather its weights with a stride (scalar code; 5-10x slower in bf16)
    return _TemporalConv.apply(xt, *(w.to(xt.dtype).contiguous() for w in taps))


def _offsets(k: int) -> list[int]:
    return [i - k // 2 for i in range(k)]


def _frames(w: Tensor, frames: slice) -> Tensor:
    """The tap weights of the frames ``frames`` (all of them when ``w`` is constant in T)."""
    return w if w.shape[1] == 1 else w[:, frames]


def _convolve(src: Tensor, taps: Sequence[Tensor], *, adjoint: bool, out: Tensor | None = None) -> Tensor:
    """``out[t] = sum_k w_k[t+o] src[t+o]`` (forward) or its adjoint ``out[s] = sum_k w_k[s]
    src[s-o]`` (backward), ``o = k - K // 2``, zero padded; shapes ``(N, T, C, H, W)``;
    written into ``out`` when given."""
    t = src.shape[1]
    out = torch.mul(src, taps[len(taps) // 2], out=out)  # centre tap, in src's memory format
    for o, w in zip(_offsets(len(taps)), taps, strict=True):  # the K taps, not the T frames
        if o == 0 or abs(o) >= t:
            continue
        early, late = slice(None, t - abs(o)), slice(abs(o), None)  # frames 0..T-|o|, |o|..T
        # the input frames s of a tap and their destinations s - o, as slices of the T axis
        s, d = (late, early) if o > 0 else (early, late)
        if adjoint:  # out[s] += w[s] * src[s - o]
            out[:, s].addcmul_(src[:, d], _frames(w, s))
        else:  # out[s - o] += w[s] * src[s]
            out[:, d].addcmul_(src[:, s], _frames(w, s))
    return out


class _TemporalConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xt: Tensor, *taps: Tensor) -> Tensor:
        ctx.save_for_backward(xt, *taps)
        return _convolve(xt, taps, adjoint=False)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        xt, *taps = ctx.saved_tensors
        t = xt.shape[1]
        buf, grad_taps = None, []  # buf: the products of the tap gradients, then grad_x
        for i, (o, w) in enumerate(zip(_offsets(len(taps)), taps, strict=True)):
            if not ctx.needs_input_grad[1 + i]:
                grad_taps.append(None)
                continue
            if abs(o) >= t:  # the tap never lands inside the clip
                grad_taps.append(torch.zeros_like(w))
                continue
            # dL/dw[s] = sum over the broadcast dims of xt[s] * grad[s - o], s and s - o in the clip
            s = slice(max(o, 0), t + min(o, 0))
            d = slice(max(-o, 0), t - max(o, 0))
            if buf is None:
                buf = torch.empty_like(xt)
            prod = torch.mul(xt[:, s], grad[:, d], out=buf[:, : t - abs(o)])  # (N, T-|o|, C, H, W)
            dims = [j for j in range(5) if w.shape[j] == 1 and prod.shape[j] > 1]
            red = prod.sum(dims, keepdim=True) if dims else prod.clone()  # not a view of buf
            if w.shape[1] == 1:
                grad_taps.append(red)
            else:  # a weight per input frame: zero for the frames that leave the clip
                g = torch.zeros_like(w)
                g[:, s] = red
                grad_taps.append(g)
        grad_x = _convolve(grad, taps, adjoint=True, out=buf) if ctx.needs_input_grad[0] else None
        return grad_x, *grad_taps
