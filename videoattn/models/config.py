"""The ``model`` section's schema, next to the builder that reads it (:func:`videoattn.models.build_model`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..schema import require as _require


@dataclass
class ModelConfig:
    """``model``: a VideoClassifier (see :func:`videoattn.models.build_model`)."""

    name: str | None = None  # a label for tables and checkpoints ("tsm", "action", ...)
    arch: str | None = None  # a row of models.backbones.BACKBONES (resnet50, mobilenet_v2, ...); required
    num_classes: int | None = None  # required; the tools take it from the dataset
    num_segments: int | None = None  # required; the tools take it from the top-level num_segments
    dropout: float = 0.5
    partial_bn: bool = False
    pretrained: str | None = None  # imagenet | imagenet_v2 | a state_dict file | a checkpoint to fine-tune
    inserts: list[Any] = field(default_factory=list)  # {name, slot?, stages?, every?, blocks?, kwargs?} or a name
    layers: list[int] | None = None  # blocks per stage (small networks; backbones whose builder takes it)
    widths: list[int] | None = None  # channels per stage (idem)

    def __post_init__(self) -> None:
        for key in ("num_classes", "num_segments"):
            value = getattr(self, key)
            _require(value is None or value >= 1, f"model.{key}", value, "a positive integer")
        _require(0.0 <= self.dropout < 1.0, "model.dropout", self.dropout, "a probability in [0, 1)")
        for key in ("layers", "widths"):
            value = getattr(self, key)
            _require(
                value is None or (len(value) == 4 and all(v >= 1 for v in value)),
                f"model.{key}",
                value,
                "4 positive integers (one per stage) or null",
            )
