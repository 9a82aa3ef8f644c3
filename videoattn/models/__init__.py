"""Backbones with insertion slots, the TSN classifier, and building / loading them."""

from .build import (
    LoadReport,
    build_model,
    load_model,
    load_pretrained,
    model_from_checkpoint,
    normalize_config,
)
from .classifier import VideoClassifier
from .inserts import Insert, parse_inserts
from .memory_format import to_channels_last

__all__ = [
    "Insert",
    "LoadReport",
    "VideoClassifier",
    "build_model",
    "load_model",
    "load_pretrained",
    "model_from_checkpoint",
    "normalize_config",
    "parse_inserts",
    "to_channels_last",
]
