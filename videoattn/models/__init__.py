"""Backbones (one table, :data:`BACKBONES`) with insertion sites, the TSN classifier, building / loading
them, and streaming them."""

from .backbones import BACKBONES, Backbone, BackboneSpec, get_backbone, list_backbones
from .build import (
    LoadReport,
    build_model,
    frames_per_segment,
    load_model,
    load_model_state,
    load_pretrained,
    model_from_checkpoint,
    normalize_config,
)
from .classifier import VideoClassifier
from .inserts import Insert, parse_inserts
from .memory_format import to_channels_last
from .placement import Site, place
from .streaming import StreamingModel

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneSpec",
    "Insert",
    "LoadReport",
    "Site",
    "StreamingModel",
    "VideoClassifier",
    "build_model",
    "frames_per_segment",
    "get_backbone",
    "list_backbones",
    "load_model",
    "load_model_state",
    "load_pretrained",
    "model_from_checkpoint",
    "normalize_config",
    "parse_inserts",
    "place",
    "to_channels_last",
]
