"""The annotation parsers' public names, where they have always been imported from: the formats
live one file each in :mod:`videoattn.data.formats` (the conventions they share are documented
there), the mirrored-class logic of the horizontal flip in :mod:`videoattn.data.flip_labels`."""

from __future__ import annotations

from .flip_labels import flip_label_map, has_mirrored, mirror_names, swap_left_right, unpaired_mirrored_classes
from .formats import FORMATS, Format, load_annotations
from .formats.common import AnnotationError, Annotations, Skipped, read_class_names
from .formats.jester import load_jester
from .formats.kinetics import load_kinetics
from .formats.ssv1 import load_ssv1
from .formats.ssv2 import load_ssv2
from .formats.tsm_list import load_list
from .records import VideoRecord

__all__ = [
    "FORMATS",
    "AnnotationError",
    "Annotations",
    "Format",
    "Skipped",
    "VideoRecord",
    "flip_label_map",
    "has_mirrored",
    "load_annotations",
    "load_jester",
    "load_kinetics",
    "load_list",
    "load_ssv1",
    "load_ssv2",
    "mirror_names",
    "read_class_names",
    "swap_left_right",
    "unpaired_mirrored_classes",
]
