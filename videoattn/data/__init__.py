"""Data: annotation parsers, video readers, samplers, transforms and datasets."""

from .annotations import (
    AnnotationError,
    Annotations,
    flip_label_map,
    has_mirrored,
    load_annotations,
)
from .dataset import VideoDataset, read_report, read_report_entries
from .records import RecordTable, VideoRecord
from .sampling import Sampling
from .transforms import EvalTransform, TrainTransform
from .video import DecodeError, open_video, read_clip

__all__ = [
    "AnnotationError",
    "Annotations",
    "DecodeError",
    "EvalTransform",
    "RecordTable",
    "Sampling",
    "TrainTransform",
    "VideoDataset",
    "VideoRecord",
    "flip_label_map",
    "has_mirrored",
    "load_annotations",
    "open_video",
    "read_clip",
    "read_report",
    "read_report_entries",
]
