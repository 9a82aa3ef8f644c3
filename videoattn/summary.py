"""Parameter and FLOP counts, as papers report them.

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode`, which counts the
matrix multiplications and convolutions (2 FLOPs per multiply-add) and no element-wise ops;
:func:`count_macs` returns multiply-adds (FLOPs / 2), the unit of the TSM / TAM / ACTION-Net
papers' "GFLOPs".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .attention import build_attention, get_spec, list_attention


def count_params(module: nn.Module, *, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-adds of one forward pass of ``module`` on ``inputs`` (eval mode)."""
    was_training = module.training
    module.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            module(*inputs)
    finally:
        module.train(was_training)
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class AttentionRow:
    name: str
    kind: str
    slot: str
    paper: str
    arxiv: str | None
    venue: str
    params: int | None  # None: a stem module (no feature-map row; the models table counts it)
    macs_per_frame: int | None


def attention_table(*, channels: int = 256, size: int = 56, num_segments: int = 8) -> list[AttentionRow]:
    """One row per registered module: parameters at ``channels`` and the multiply-adds it adds
    per frame on a ``channels x size x size`` feature map (one clip of ``num_segments`` frames);
    a conv-site module as the ``channels -> channels`` 3x3 it replaces (its own multiply-adds,
    the conv's included). Stem modules, which replace the stem and the first stage on the clip's
    frames, have no feature-map figures (``None``): the model summary counts them."""
    rows = []
    x = torch.randn(num_segments, channels, size, size)  # one clip, (T, C, H, W)
    for name in list_attention():
        spec = get_spec(name)
        if spec.scope == "stem":
            rows.append(AttentionRow(name, spec.kind, spec.slot, spec.paper, spec.arxiv, spec.venue, None, None))
            continue
        torch.manual_seed(0)
        site = {"out_channels": channels, "stride": 1} if spec.scope == "conv" else None
        module = build_attention(name, channels, num_segments=num_segments, site=site)
        rows.append(
            AttentionRow(
                name=name,
                kind=spec.kind,
                slot=spec.slot,
                paper=spec.paper,
                arxiv=spec.arxiv,
                venue=spec.venue,
                params=count_params(module),
                macs_per_frame=count_macs(module, x) // num_segments,
            )
        )
    return rows


@dataclass(frozen=True)
class ModelSummary:
    name: str
    params: int
    macs_per_clip: int


def model_summary(model: nn.Module, *, size: int = 224, name: str = "") -> ModelSummary:
    """Parameters and multiply-adds per clip (``1 x T x F*3 x size x size``, ``F`` the model's
    frames per segment) of a VideoClassifier."""
    x = torch.zeros(1, model.num_segments, 3 * model.frames_per_segment, size, size)  # (N, T, F*3, H, W)
    return ModelSummary(name, count_params(model), count_macs(model, x))
