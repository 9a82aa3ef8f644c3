"""Second-order pooling helpers shared by GSoP and SoCA (MPN-COV, Li et al.)."""

from __future__ import annotations

import torch
from torch import Tensor


def covariance_pool(x: Tensor) -> Tensor:
    """Biased channel covariance over spatial positions: ``(B, C, H, W) -> (B, C, C)``.

    ``(1/M) X (I - 11^T/M) X^T`` with ``M = H*W``, the MPN-COV ``CovpoolLayer``, computed by
    centring instead of multiplying by the ``M x M`` centring matrix. Half-precision inputs are
    pooled in float32 (also under autocast): the result is float32 then.
    """
    with torch.autocast(x.device.type, enabled=False):
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        flat = x.flatten(2)  # (B, C, M)
        centred = flat - flat.mean(-1, keepdim=True)  # (B, C, M)
        return centred @ centred.transpose(1, 2) / flat.shape[-1]  # (B, C, C)


def sqrtm_newton_schulz(a: Tensor, iterations: int, eps: float = 1e-12) -> Tensor:
    """Matrix square root of SPD ``a`` ``(B, C, C)`` by the coupled Newton-Schulz iteration.

    Pre-normalised by the trace (so the iteration converges), ``iterations`` steps of
    ``Y <- Y (3I - ZY)/2``, ``Z <- (3I - ZY)/2 Z`` from ``Y = A/tr``, ``Z = I``, the last one
    as ``Y (3I - ZY)/2`` only, then post-compensated by ``sqrt(tr)`` (MPN-COV ``Sqrtm``).
    ``eps`` only guards an all-zero input. Backward by autograd through the iteration.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    c = a.shape[-1]
    eye3 = 3.0 * torch.eye(c, dtype=a.dtype, device=a.device)
    trace = a.diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(eps)[:, None, None]  # (B, 1, 1)
    y = a / trace
    z = torch.eye(c, dtype=a.dtype, device=a.device).expand_as(a)
    for _ in range(iterations - 1):
        t = 0.5 * (eye3 - z @ y)
        y, z = y @ t, t @ z
    y = 0.5 * y @ (eye3 - z @ y)
    return y * trace.sqrt()
