"""Memory-format conversion of whole models."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def to_channels_last(module: nn.Module) -> nn.Module:
    """``module.to(memory_format=torch.channels_last)`` for networks that also hold 5-D
    weights (ACTION's ``Conv3d``), on which ``nn.Module.to`` raises ("required rank 4 tensor
    to use channels_last format"): 4-D parameters and buffers become NHWC, the others stay as
    they are. In place, like ``.to``; returns ``module``. Feed it channels_last frames:
    ``clips.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (N, T))``.
    """

    def convert(t: Tensor) -> Tensor:
        return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t

    return module._apply(convert)  # what nn.Module.to applies to every parameter and buffer
