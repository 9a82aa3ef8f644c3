"""TSN-style video classifier: a 2D backbone on every frame, averaged over the T frames."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attention._pool import spatial_mean
from ..shapes import split_time


class VideoClassifier(nn.Module):
    """``(N, T, 3, H, W) -> (N, K)`` logits, the TSN / TSM / TAM / ACTION-Net head; with labels,
    also the training loss (:meth:`forward`).

    The backbone maps the ``N*T`` frames to feature maps; optional head modules act on the
    last map (those with an auxiliary loss also give per-frame auxiliary outputs); then global
    average pooling, dropout, the classifier ``fc`` on every frame and the average consensus over
    T, in the order of the official TSN code (``fc`` initialised N(0, 0.001), bias 0, as there).
    ``partial_bn`` freezes every BatchNorm2d of the backbone but the first one in training (TSN's
    partial BN). Multi-view test input ``(N, V, T, 3, H, W)`` is averaged by the evaluation code,
    not here. ``frames_per_segment`` (``F``, what a stem module needs: TDN's 5): each segment
    brings F consecutive frames on the channels, ``(N, T, F*3, H, W)`` (frame-major, then RGB);
    the data side reads it here (1: one frame per segment).
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        num_classes: int,
        num_segments: int,
        num_features: int,
        dropout: float = 0.5,
        partial_bn: bool = False,
        head: Sequence[tuple[str, nn.Module]] = (),
        aux_heads: Sequence[str] = (),
        frames_per_segment: int = 1,
    ) -> None:
        super().__init__()
        self.num_segments = num_segments
        self.frames_per_segment = frames_per_segment
        self.num_classes = num_classes
        self.partial_bn = partial_bn
        self.backbone = backbone
        # partial BN's frozen layers, by name: every BatchNorm2d of the backbone but the first (TSN's
        # rule), named now so that a conversion (SyncBatchNorm, which is no BatchNorm2d) keeps them frozen
        bn2d = [name for name, m in backbone.named_modules() if isinstance(m, nn.BatchNorm2d)]
        self._frozen_bn = tuple(bn2d[1:]) if partial_bn else ()
        self.head = nn.ModuleDict(dict(head)) if head else None
        self.aux_heads = frozenset(aux_heads)  # head names with forward_with_aux / aux_loss
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_features, num_classes)
        nn.init.normal_(self.fc.weight, 0, 0.001)
        nn.init.zeros_(self.fc.bias)

    def check_input(self, x: Tensor) -> None:
        c = 3 * self.frames_per_segment
        if x.dim() != 5 or x.shape[1] != self.num_segments or x.shape[2] != c:
            shape = tuple(x.shape)
            hint = ""
            if x.dim() == 6:
                hint = (
                    " Multi-view input (N, V, T, 3, H, W): fold the views into the batch and average the view logits"
                    " in the evaluation code."
                )
            elif x.dim() == 5 and x.shape[2] == c:
                hint = (
                    f" The clip has T={x.shape[1]} frames; sample num_segments={self.num_segments} frames per clip"
                    " or rebuild the model with that T."
                )
            elif x.dim() == 5 and self.frames_per_segment > 1:
                hint = f" This model takes {self.frames_per_segment} frames per segment, stacked on the channels."
            raise ValueError(f"VideoClassifier expects (N, T={self.num_segments}, {c}, H, W), got {shape}.{hint}")

    def classify_frames(self, frames: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-frame logits ``(B, K)`` of backbone frames ``(B, 3, H, W)`` (``B = N*T`` in the
        backbone layout, or one frame of each of N clips when streaming), before the consensus,
        and the per-frame auxiliary outputs ``(B, ...)`` of the head modules that have an
        auxiliary loss, by head name."""
        fmap = self.backbone(frames)  # (B, 3, H, W) -> (B, F, h, w)
        aux: dict[str, Tensor] = {}
        for name, module in (self.head or {}).items():
            if name in self.aux_heads:
                fmap, out = module.forward_with_aux(fmap)
                if out is not None:
                    aux[name] = out  # (B, ...)
            else:
                fmap = module(fmap)
        feats = spatial_mean(fmap)  # (B, F, h, w) -> (B, F)
        return self.fc(self.dropout(feats)), aux  # (B, K)

    def frame_logits(self, x: Tensor) -> Tensor:
        """The logits of every frame, ``(N, T, 3, H, W) -> (N, T, K)``: what :meth:`forward`
        averages over T (the consensus). In eval mode (no dropout, BN statistics) frame t's
        logits depend on the other frames only through the temporal modules."""
        self.check_input(x)
        logits, _ = self.classify_frames(x.flatten(0, 1))  # (N, T, 3, H, W) -> (N*T, 3, H, W) -> (N*T, K)
        return split_time(logits, self.num_segments)  # (N*T, K) -> (N, T, K)

    def forward_with_aux(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits ``(N, K)`` and the auxiliary outputs of the head modules that have an
        auxiliary loss, by head name, averaged over the T frames like the logits."""
        self.check_input(x)
        logits, aux = self.classify_frames(x.flatten(0, 1))  # (N, T, 3, H, W) -> (N*T, 3, H, W) -> (N*T, K)
        t = self.num_segments
        aux = {name: split_time(out, t).mean(1) for name, out in aux.items()}  # (N*T, ...) -> (N, T, ...) -> (N, ...)
        return split_time(logits, t).mean(1), aux  # (N*T, K) -> (N, T, K) -> (N, K)

    def forward(
        self, x: Tensor, labels: Tensor | None = None, *, label_smoothing: float = 0.0
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Logits ``(N, K)`` of clips ``x`` ``(N, T, 3, H, W)``; given ``labels`` ``(N,)``, the training
        loss with them, ``(loss (), logits (N, K))``: the cross-entropy (``label_smoothing``) on the
        logits in float32 (bf16 / fp16 under autocast are promoted, float64 stays) plus the head
        modules' own losses (:meth:`aux_loss`, e.g. EncNet's SE-loss). The model is the whole
        training step's module, so DDP and ``torch.compile`` wrap it as it is."""
        logits, aux = self.forward_with_aux(x)  # (N, K)
        if labels is None:
            return logits
        logits32 = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 / fp16 -> fp32, fp64 stays
        loss = F.cross_entropy(logits32, labels, label_smoothing=label_smoothing)
        extra = self.aux_loss(aux, labels)
        return (loss if extra is None else loss + extra), logits

    def aux_loss(self, aux: dict[str, Tensor], labels: Tensor) -> Tensor | None:
        """The sum of the head modules' auxiliary losses on ``aux`` (:meth:`forward_with_aux`),
        None when there is none."""
        losses = [self.head[name].aux_loss(out, labels) for name, out in aux.items()]
        return torch.stack(losses).sum() if losses else None

    def train(self, mode: bool = True) -> VideoClassifier:
        super().train(mode)
        if mode:
            for name in self._frozen_bn:
                bn = self.backbone.get_submodule(name)
                bn.eval()
                bn.weight.requires_grad_(False)
                bn.bias.requires_grad_(False)
        return self
