"""Evaluation over single- or multi-view clips, sharded over the ranks without padding."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Sampler

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, ToDevice
from ..models.memory_format import to_channels_last
from .distributed import World, all_reduce_sum
from .interrupt import StopRequests
from .metrics import (
    confusion_matrix,
    mean_class_accuracy,
    per_class_accuracy,
    subset_accuracy,
    topk_correct,
)


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...``: every item exactly once over all ranks (unlike
    ``DistributedSampler``, which pads with duplicates and would bias the metrics)."""

    def __init__(self, length: int, world: World) -> None:
        self.length, self.world = length, world

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.world.rank, self.length, self.world.size))

    def __len__(self) -> int:
        return len(range(self.world.rank, self.length, self.world.size))


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``bf16`` / ``fp16``; nothing for ``fp32``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device.type, dtype=dtype)


def set_inference_layout(model: nn.Module, *, precision: str, channels_last: bool | None) -> bool:
    """Put ``model`` in NHWC (:func:`~videoattn.models.to_channels_last`) when
    ``channels_last`` says so, or, when it is None, for reduced precision: oneDNN's bf16
    kernels run in NHWC (ResNet-50 T=8 on a 2-core CPU: bf16 2.2x fp32 in NHWC, 1.7x in
    NCHW). The stem's output, and from there every activation, follows. Returns the choice."""
    chosen = precision != "fp32" if channels_last is None else channels_last
    if chosen:
        to_channels_last(model)
    return chosen


@dataclass
class EvalResult:
    loss: float
    top1: float
    top5: float
    mean_class: float
    confusion: Tensor  # (K, K)
    num_clips: int
    substituted: int  # items whose video could not be read and was replaced by another
    probs: dict[int, Tensor] = field(default_factory=dict)  # record index -> (K,) averaged softmax

    def per_class(self) -> Tensor:
        return per_class_accuracy(self.confusion)

    def subset_top1(self, classes: list[int]) -> float:
        return subset_accuracy(self.confusion, classes)

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {
            f"{prefix}loss": self.loss,
            f"{prefix}top1": self.top1,
            f"{prefix}top5": self.top5,
            f"{prefix}mean_class": self.mean_class,
        }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    num_classes: int,
    world: World,
    precision: str = "fp32",
    keep_probs: bool = False,
    norm: tuple[Sequence[float], Sequence[float]] = (IMAGENET_MEAN, IMAGENET_STD),
    stop: StopRequests | None = None,
) -> EvalResult:
    """Top-1 / top-5 / mean class accuracy and the confusion matrix over all ranks.

    Items are ``(N, T, 3, H, W)`` (one view) or ``(N, V, T, 3, H, W)``; views are folded into
    the batch and their softmax probabilities averaged, per video. ``keep_probs`` keeps the
    averaged probabilities of every video (gathered on every rank) for prediction files.
    An item whose video could not be read comes back as another record, flagged ``substituted``
    by the dataset: it is left out of the metrics and counted in ``substituted``. uint8 batches
    (``normalize: false`` transforms, the default) are normalised on the device with ``norm``
    (mean, std). Every sum is kept on ``world.device`` (where NCCL's collectives need them) and
    read once, at the end: no host synchronisation per batch. ``stop``: Ctrl-C / SIGTERM end a
    one-process evaluation between batches (:class:`~videoattn.engine.interrupt.Interrupted`);
    sharded ones stop where the caller checks next (their ranks meet in the final collectives).
    """
    model.eval()
    dev = world.device
    to_device = ToDevice(dev, *norm)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    counts = torch.zeros(4, dtype=torch.int64, device=dev)  # top1, top5, labelled clips, substituted
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=dev)
    kept: list[tuple[Tensor, Tensor]] = []  # (record indices (n,), probabilities (n, K) on the device)
    for clips, labels, index, substituted in loader:  # labels, index, substituted: host tensors
        counts[3] += int(substituted.sum())
        if substituted.any():  # another video stood in for an unreadable one: not this item's result
            good = ~substituted
            clips, labels, index = clips[good], labels[good], index[good]
        n = clips.shape[0]
        if n == 0:
            continue
        clips = to_device(clips)
        views = clips.shape[1] if clips.dim() == 6 else 1
        x = clips.flatten(0, 1) if clips.dim() == 6 else clips  # (N, V, T, 3, H, W) -> (N*V, T, 3, H, W)
        with autocast(dev, precision):
            logits = model(x).float()  # (N*V, K)
        p = F.softmax(logits, dim=1).unflatten(0, (n, views)).mean(1)  # (N*V, K) -> (N, V, K) -> (N, K)
        labelled = labels >= 0  # decided on the host, from the host's labels
        if labelled.any():
            rows = labelled.nonzero()[:, 0]
            pl = p if bool(labelled.all()) else p[rows.to(dev, non_blocking=True)]  # (n labelled, K)
            yl = labels[rows].to(dev, non_blocking=True)
            loss_sum += F.nll_loss(pl.clamp_min(1e-12).log(), yl, reduction="sum")
            counts[:2] += topk_correct(pl, yl, (1, 5))
            counts[2] += len(rows)
            confusion_matrix(pl.argmax(1), yl, num_classes, out=cm)
        if keep_probs:
            kept.append((index, p))
        if stop is not None and not world.distributed:
            stop.check("during the evaluation")
    all_reduce_sum(counts, world)
    all_reduce_sum(cm, world)
    all_reduce_sum(loss_sum, world)
    probs: dict[int, Tensor] = {}
    if kept:
        idx, p = torch.cat([i for i, _ in kept]), torch.cat([q for _, q in kept]).cpu()  # (videos,), (videos, K)
        probs = dict(zip(idx.tolist(), p.unbind(0), strict=True))
    if keep_probs and world.distributed:  # host tensors: each rank unpickles them on the CPU
        gathered: list[dict[int, Tensor]] = [{} for _ in range(world.size)]
        dist.all_gather_object(gathered, probs)
        probs = {k: v for part in gathered for k, v in part.items()}
    top1, top5, labelled_clips, substituted_clips = counts.tolist()  # the one read of the device
    n = max(labelled_clips, 1)
    cm = cm.cpu()
    return EvalResult(
        loss=float(loss_sum) / n,
        top1=top1 / n,
        top5=top5 / n,
        mean_class=mean_class_accuracy(cm),
        confusion=cm,
        num_clips=labelled_clips,
        substituted=substituted_clips,
        probs=probs,
    )
