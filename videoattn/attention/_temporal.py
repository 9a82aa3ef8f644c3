"""A zero-padded temporal convolution with element-wise tap weights, the kernel shared by
ACTION-Net's learnable shift and TAM's video-adaptive convolution, with a hand-written
backward."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
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
    per update. Under ``torch.compile`` the backward (which the compiler traces with the
    forward) computes the same values without writing into that buffer
    (:func:`_convolve_backward`), so that it traces without a graph break. The same function
    as a depthwise convolution over T up to the order of float rounding, and exact when the
    taps are 0/1 (the TSM shift).
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


def _same_layout(a: Tensor, b: Tensor) -> bool:
    """Whether ``a`` and ``b`` (same shape) have the same strides, size-1 dimensions aside."""
    return all(n == 1 or sa == sb for n, sa, sb in zip(a.shape, a.stride(), b.stride(), strict=True))


def _convolve_backward(
    xt: Tensor, taps: Sequence[Tensor], grad: Tensor, needs_grad: Sequence[bool], *, traceable: bool
) -> tuple[Tensor | None, ...]:
    """The gradients of :func:`temporal_conv` for ``grad``, w.r.t. ``xt`` and each tap (None
    where ``needs_grad`` says it is not needed), ``xt``'s in ``xt``'s memory format.

    ``traceable=False`` (eager): one full-size allocation, ``buf``, holds each tap's products
    (``out=`` into a frame slice of it, a strided view) and then the input gradient; a fresh
    product per tap makes the convolution's forward + backward up to 1.6x slower on a CPU
    (the page faults of the new allocations; measured on 13-51 MB maps). ``traceable=True`` (under
    ``torch.compile``): the same operations on fresh tensors, since the compiler cannot trace
    ``out=`` into a non-contiguous view (and plans the memory itself). The two give the same
    values (up to the order of the sums over a buffer slice or a fresh tensor).
    """
    t = xt.shape[1]
    if traceable and not _same_layout(grad, xt):  # e.g. the expanded gradient of a sum
        grad = torch.empty_like(xt).copy_(grad)  # the input gradient in xt's memory format
    buf = None if traceable else torch.empty_like(xt)  # the tap gradients' products, then grad_x
    grad_taps = []
    for i, (o, w) in enumerate(zip(_offsets(len(taps)), taps, strict=True)):
        if not needs_grad[1 + i]:
            grad_taps.append(None)
            continue
        if abs(o) >= t:  # the tap never lands inside the clip
            grad_taps.append(torch.zeros_like(w))
            continue
        # dL/dw[s] = sum over the broadcast dims of xt[s] * grad[s - o], s and s - o in the clip
        s = slice(max(o, 0), t + min(o, 0))
        d = slice(max(-o, 0), t - max(o, 0))
        into = None if buf is None else buf[:, : t - abs(o)]  # (N, T, C, H, W) -> (N, T-|o|, C, H, W)
        prod = torch.mul(xt[:, s], grad[:, d], out=into)  # (N, T-|o|, C, H, W)
        dims = [j for j in range(5) if w.shape[j] == 1 and prod.shape[j] > 1]
        if dims:
            red = prod.sum(dims, keepdim=True)
        else:
            red = prod if buf is None else prod.clone()  # not a view of buf
        if w.shape[1] == 1:
            grad_taps.append(red)
        else:  # a weight per input frame: zero for the frames that leave the clip
            # (N, T-|o|, C, h, w) -> (N, T, C, h, w): max(o, 0) zero frames before s, max(-o, 0) after
            grad_taps.append(F.pad(red, (0, 0, 0, 0, 0, 0, max(o, 0), max(-o, 0))))
    grad_x = _convolve(grad, taps, adjoint=True, out=buf) if needs_grad[0] else None
    return grad_x, *grad_taps


class _TemporalConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xt: Tensor, *taps: Tensor) -> Tensor:
        ctx.save_for_backward(xt, *taps)
        return _convolve(xt, taps, adjoint=False)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        xt, *taps = ctx.saved_tensors
        traceable = torch.compiler.is_compiling()  # the compiler traces this with the forward
        return _convolve_backward(xt, taps, grad, ctx.needs_input_grad, traceable=traceable)
