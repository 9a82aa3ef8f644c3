"""Classification metrics from logits / a confusion matrix."""

from __future__ import annotations

import torch
from torch import Tensor


def topk_correct(logits: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> Tensor:
    """``(len(ks),)`` int64 on ``logits``' device: the clips whose label is among the top-k
    predictions, for each k (no host synchronisation)."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices  # (N, k)
    hit = top == labels[:, None]  # (N, k)
    return torch.stack([hit[:, :k].any(1).sum() for k in ks])


def confusion_matrix(pred: Tensor, labels: Tensor, num_classes: int, *, out: Tensor | None = None) -> Tensor:
    """``(K, K)`` int64 counts, rows = true class, columns = predicted class, of the clips with a
    label (``labels >= 0``), added to ``out`` when given. On the inputs' device, without a host
    synchronisation (``bincount`` reads the largest index first) and deterministic on CUDA."""
    k = num_classes
    cm = torch.zeros(k, k, dtype=torch.int64, device=pred.device) if out is None else out
    labelled = labels >= 0
    idx = labels.clamp_min(0) * k + pred  # (N,) flat cells; unlabelled clips add 0
    cm.view(-1).index_put_((idx,), labelled.to(torch.int64), accumulate=True)
    return cm


def per_class_accuracy(cm: Tensor) -> Tensor:
    """Recall of each class, ``(K,)`` float; NaN for classes without clips."""
    total = cm.sum(1).double()
    return cm.diag().double() / total.where(total > 0, torch.full_like(total, float("nan")))


def mean_class_accuracy(cm: Tensor) -> float:
    acc = per_class_accuracy(cm)
    return float(acc[~acc.isnan()].mean()) if (~acc.isnan()).any() else float("nan")


def subset_accuracy(cm: Tensor, classes: list[int]) -> float:
    """Top-1 over the clips whose true class is in ``classes``."""
    if not classes:
        return float("nan")
    rows = cm[classes]
    total = int(rows.sum())
    return float(rows[:, classes].diag().sum() / total) if total else float("nan")
