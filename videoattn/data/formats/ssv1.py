"""Something-Something v1: ``labels.csv`` + ``train.csv`` / ``validation.csv`` (``id;class``) and JPEG frame
folders (``<id>/00001.jpg``); the reader of the 20BN frame-folder layout, which Jester shares."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError
from .common import (
    _SPLITS,
    Annotations,
    OnError,
    ParserFormat,
    PathLike,
    _abs,
    _annotation_dirs,
    _canonical_split,
    _find_file,
    _lines,
    _pick_dir,
    _Problems,
    _read_class_names,
    _Split,
)

_SSV1_FRAME_DIRS = ("20bn-something-something-v1", "frames")


def _count_frames(folder: Path, template: str) -> int:
    """Frames ``template.format(1)``, ``template.format(2)``, ... present without a gap.

    Counting stops at the first missing index: a reader addresses frames by index, so frames
    after a gap could not be read anyway.
    """
    try:
        names = set(os.listdir(folder))
    except OSError:
        return 0
    count = 0
    while template.format(count + 1) in names:
        count += 1
    return count


@dataclass(frozen=True)
class _FrameCsvLayout:
    """Where a 20BN dataset of JPEG folders and ``id;class`` CSVs keeps its files."""

    name: str  # for messages
    source: str
    prefix: str  # the official files are <prefix>-labels.csv, <prefix>-<split>.csv
    frame_dirs: tuple[str, ...]


_SSV1 = _FrameCsvLayout("Something-Something v1", "ssv1", "something-something-v1", _SSV1_FRAME_DIRS)


def load_ssv1(
    root: PathLike,
    split: str,
    *,
    frame_dir: PathLike | None = None,
    on_error: OnError = "raise",
    check_files: bool = True,
    frame_template: str = "{:05d}.jpg",
) -> Annotations:
    """Something-Something v1 annotations (JPEG frame folders).

    Reads ``labels.csv`` (or ``something-something-v1-labels.csv``: one class name per line)
    and the split's ``train.csv`` / ``validation.csv`` / ``test.csv`` (or
    ``something-something-v1-<split>.csv``: lines ``100218;Something falling like a feather or
    paper``, test lines just the id -> label ``-1``) from ``root`` or ``root/labels``.

    Class indices are the sorted class names. Frames are ``<frames>/<id>/00001.jpg, ...`` where
    ``<frames>`` is ``frame_dir`` if given, else the first existing of
    ``root/20bn-something-something-v1``, ``root/frames``, ``root``. With ``check_files``
    ``num_frames`` is the number of frames named by ``frame_template`` (1-based, counted up to
    the first gap) and a folder without frames is a missing video; without it ``num_frames``
    is ``None``.
    """
    return _load_frame_csv(
        _SSV1,
        root,
        split,
        frame_dir=frame_dir,
        on_error=on_error,
        check_files=check_files,
        frame_template=frame_template,
    )


def _load_frame_csv(
    layout: _FrameCsvLayout,
    root: PathLike,
    split: str,
    *,
    frame_dir: PathLike | None,
    on_error: OnError,
    check_files: bool,
    frame_template: str,
) -> Annotations:
    split = _canonical_split(split)
    root = _abs(root)
    try:
        frame_template.format(1)
    except (IndexError, KeyError, ValueError) as exc:
        raise ConfigError(f"frame_template {frame_template!r} must format one integer, like '{{:05d}}.jpg'") from exc
    problems = _Problems(on_error, layout.source)
    dirs = _annotation_dirs(root)
    labels_file = _find_file(
        dirs,
        ("labels.csv", f"{layout.prefix}-labels.csv"),
        what=f"{layout.name} label file",
        expect="The dataset root (or its labels/ folder) should hold labels.csv (one class "
        "per line) and train.csv / validation.csv / test.csv ('id;class' lines).",
    )
    classes = sorted(_read_class_names(labels_file, problems))
    split_file = _find_file(
        dirs,
        [f"{s}.csv" for s in _SPLITS[split]] + [f"{layout.prefix}-{s}.csv" for s in _SPLITS[split]],
        what=f"{layout.name} {split} list",
        expect=f"Put the official split file ('id;class' lines) next to {labels_file.name}.",
    )
    frames_root = _pick_dir(frame_dir, root, layout.frame_dirs, what="frame_dir", check=check_files)
    index = {name: i for i, name in enumerate(classes)}
    rows = _Split(problems, split_file)
    expected = "'id'" if split == "test" else "'id;class name'"
    for number, line in _lines(split_file):
        fields = [part.strip() for part in line.split(";")]
        if len(fields) > 2 or (len(fields) == 1 and split != "test"):
            rows.bad(
                number,
                f"expected {expected} (fields separated by ';'), got {len(fields)} field(s): {line[:80]!r}",
            )
            continue
        video_id = fields[0]
        if not video_id or "/" in video_id or "\\" in video_id:
            rows.bad(number, f"invalid video id {video_id!r}: {line[:80]!r}")
            continue
        label = -1
        if len(fields) == 2:
            found = index.get(fields[1])
            if found is None:
                rows.bad(
                    number, f"class {fields[1]!r} is not in {labels_file.name}; use the label file of the same release"
                )
                continue
            label = found
        if not rows.first(number, video_id):
            continue
        folder = frames_root / video_id
        num_frames: int | None = None
        if check_files:
            num_frames = _count_frames(folder, frame_template)
            if num_frames == 0:
                rows.bad(
                    number,
                    f"frame folder {folder} is missing or holds no "
                    f"{frame_template.format(1)!r}; point ++data.annotations.frame_dir=FOLDER at the "
                    "extracted frames (data.annotations.frame_template: their file names), or skip the checks "
                    "with ++data.annotations.check_files=false",
                )
                continue
        rows.add(frames_root, video_id, label, video_id, num_frames)
    return rows.finish(classes)


FORMAT = ParserFormat(
    name="ssv1",
    aliases=("something-something-v1", "somethingv1", "sthv1"),
    reads="labels.csv, train.csv / validation.csv / test.csv (id;class), <id>/00001.jpg frame folders",
    parser=load_ssv1,
)
