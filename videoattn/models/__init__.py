"""Backbones with insertion slots, the TSN classifier, building / loading them, and streaming them."""

from .build import (
    LoadReport,
    build_model,
    load_model,
    load_model_state,
    load_pretrained,
    model_from_checkpoint,
    normalize_config,
)
from .classifier import VideoClassifier
from .inserts import Insert, parse_inserts
from .memory_format import to_channels_last
from .streaming import StreamingModel

__all__ = [
    "Insert",
    "LoadReport",
    "StreamingModel",
    "VideoClassifier",
    "build_model",
    "load_model",
    "load_model_state",
    "load_pretrained",
    "model_from_checkpoint",
    "normalize_config",
    "parse_inserts",
    "to_channels_last",
]
