"""Backbones with insertion slots, the TSN-style classifier, and ``build_model``."""

from .build import LoadReport, build_model, load_pretrained, normalize_config
from .classifier import VideoClassifier
from .inserts import Insert, parse_inserts
from .memory_format import to_channels_last

__all__ = ["Insert", "LoadReport", "VideoClassifier", "build_model", "load_pretrained", "normalize_config", "parse_inserts", "to_channels_last"]
