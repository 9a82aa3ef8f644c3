"""Backbones with insertion slots, the TSN-style classifier, and ``build_model``."""

from .build import LoadReport, build_model, load_pretrained, normalize_config
from .classifier import VideoClassifier
from .inserts import Insert, parse_inserts

__all__ = ["Insert", "LoadReport", "VideoClassifier", "build_model", "load_pretrained", "normalize_config", "parse_inserts"]
