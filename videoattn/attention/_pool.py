"""Global average pooling over H, W that stays fast in bfloat16 on CPUs."""

from __future__ import annotations

import torch
from torch import Tensor


def spatial_mean(x: Tensor) -> Tensor:
    """``x.mean((-2, -1))``: ``(..., H, W) -> (...)``, in ``x``'s dtype.

    float32 / float64 and non-CPU tensors take ``mean``. Reduced precision on a CPU takes a
    matrix product with a vector of ones (oneDNN: float32 accumulation, one rounding of the
    sum), then the exact scaling by ``1 / (H*W)`` in float32: PyTorch's CPU reductions
    first convert a bfloat16 map to float32 (a full copy), which costs far more than the
    product (figures in ``docs/benchmark_cpu.md``). NCHW pools rows of
    ``H*W`` pixels; channels_last pools, per image, the ``H*W`` rows of ``C`` channels.
    """
    if x.device.type != "cpu" or x.dtype in (torch.float32, torch.float64) or x.dim() < 3:
        return x.mean((-2, -1))
    *lead, h, w = x.shape
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        b, c = lead
        rows = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # (B, C, H, W) NHWC -> (B, H*W, C), a view
        ones = x.new_ones(b, 1, h * w)  # (B, 1, H*W)
        total = torch.bmm(ones, rows).view(b, c)  # (B, 1, C) -> (B, C)
    else:
        flat = x.reshape(-1, h * w)  # (..., H, W) -> (prod(...), H*W), a view when contiguous
        total = torch.mv(flat, x.new_ones(h * w)).view(*lead)  # (prod(...),) -> (...)
    return (total.float() / (h * w)).to(x.dtype)
