"""Jester: the 20BN frame-folder layout of Something-Something v1 (:mod:`.ssv1`) with its own file names."""

from __future__ import annotations

from .common import (
    Annotations,
    OnError,
    ParserFormat,
    PathLike,
)
from .ssv1 import _FrameCsvLayout, _load_frame_csv

_JESTER_FRAME_DIRS = ("20bn-jester-v1", "frames")

_JESTER = _FrameCsvLayout("Jester", "jester", "jester-v1", _JESTER_FRAME_DIRS)


def load_jester(
    root: PathLike,
    split: str,
    *,
    frame_dir: PathLike | None = None,
    on_error: OnError = "raise",
    check_files: bool = True,
    frame_template: str = "{:05d}.jpg",
) -> Annotations:
    """20BN-Jester v1 annotations (27 hand gestures; the dataset of ACTION-Net's paper).

    The layout of Something-Something v1, with Jester's names: ``jester-v1-labels.csv`` (or
    ``labels.csv``: one class per line), ``jester-v1-train.csv`` / ``-validation.csv`` /
    ``-test.csv`` (or ``train.csv`` ...: ``34870;Drumming Fingers``, test lines just the id),
    in ``root`` or ``root/labels``, and JPEG folders ``20bn-jester-v1/<id>/00001.jpg`` (or
    ``frames/``, or ``root``). Everything else as :func:`load_ssv1`.
    """
    return _load_frame_csv(
        _JESTER,
        root,
        split,
        frame_dir=frame_dir,
        on_error=on_error,
        check_files=check_files,
        frame_template=frame_template,
    )


FORMAT = ParserFormat(
    name="jester",
    aliases=("jester-v1", "20bn-jester"),
    reads="jester-v1-labels.csv, jester-v1-train.csv / -validation.csv / -test.csv (id;class), <id>/00001.jpg folders",
    parser=load_jester,
)
