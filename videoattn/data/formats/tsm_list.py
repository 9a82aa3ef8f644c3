"""A TSM-style list file: one ``path num_frames label`` line per video."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ...errors import ConfigError, MissingFileError
from .common import (
    _SPLITS,
    Annotations,
    OnError,
    ParserFormat,
    PathLike,
    _abs,
    _canonical_split,
    _control_character,
    _control_reason,
    _DirCache,
    _find_file,
    _lines,
    _parse_int,
    _Problems,
    _read_class_names,
    _Split,
)


def _resolve_classes(classes: Sequence[str] | PathLike | None, problems: _Problems) -> list[str] | None:
    if classes is None:
        return None
    if isinstance(classes, (str, os.PathLike)):
        path = _abs(classes)
        if not path.is_file():
            raise MissingFileError(f"class file {path} not found; it should hold one class name per line")
        return _read_class_names(path, problems)
    names = [str(name) for name in classes]
    for name in names:
        ch = _control_character(name)
        if ch is not None:
            raise ConfigError(f"classes: {_control_reason(name, ch)}")
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ConfigError(f"classes contains duplicated names: {duplicated}")
    return names


def load_list(
    list_file: PathLike,
    *,
    root: PathLike | None = None,
    classes: Sequence[str] | PathLike | None = None,
    on_error: OnError = "raise",
    check_files: bool = True,
) -> Annotations:
    """A TSM-style list: one ``path num_frames label`` line per video.

    Fields are whitespace-separated; a path containing spaces is everything before the last two
    fields. ``path`` is relative to ``root`` (default: the list file's folder) or absolute and
    may name a video file or a frame folder. ``num_frames`` is a non-negative integer, ``0``
    meaning unknown (-> ``None``). ``label`` is a class index, ``-1`` for unlabelled videos.
    Blank lines and lines starting with ``#`` are ignored.

    ``classes`` is a list of names or the path of a text file with one name per line, taken in
    the order given (the labels already are indices into it); a label out of its range is
    malformed. Without it the names are ``"0" .. "K-1"`` with ``K`` = max label + 1.
    ``video_id`` is the path as written in the list.
    """
    list_file = _abs(list_file)
    if not list_file.is_file():
        raise MissingFileError(
            f"list file {list_file} not found; it should hold one 'path num_frames label' line per video"
        )
    base = _abs(root) if root is not None else list_file.parent
    problems = _Problems(on_error, "list")
    names = _resolve_classes(classes, problems)
    listing = _DirCache()
    rows = _Split(problems, list_file, noun="path")
    max_label = -1
    for number, line in _lines(list_file, comments=True):
        fields = line.rsplit(None, 2)
        if len(fields) != 3:
            rows.bad(
                number,
                f"expected 'path num_frames label' (3 whitespace-separated fields), got {len(fields)}: {line[:80]!r}",
            )
            continue
        written, frames_text, label_text = fields
        num_frames = _parse_int(frames_text)
        if num_frames is None or num_frames < 0:
            rows.bad(number, f"num_frames {frames_text!r} is not a non-negative integer (use 0 when unknown)")
            continue
        label = _parse_int(label_text)
        if label is None or label < -1:
            rows.bad(number, f"label {label_text!r} is not a class index (an integer >= 0, or -1 for unlabelled)")
            continue
        if names is not None and label >= len(names):
            rows.bad(
                number,
                f"label {label} is out of range for the {len(names)} given "
                f"classes (0..{len(names) - 1}); fix the label or the class list",
            )
            continue
        if not rows.first(number, written):
            continue
        max_label = max(max_label, label)
        path = Path(written).expanduser()
        path = path if path.is_absolute() else base / path
        if check_files and not listing.exists(path):
            rows.bad(
                number,
                f"{path} not found; give the folder the paths are relative to as data.root=FOLDER (the list file "
                "then as ++data.annotations.list_file=FILE), or skip the checks with "
                "++data.annotations.check_files=false",
            )
            continue
        rows.add(path.parent, path.name, label, written, num_frames or None)
    return rows.finish(names if names is not None else [str(i) for i in range(max_label + 1)])


def _load_list_split(
    root: PathLike,
    split: str,
    *,
    list_file: PathLike | None = None,
    classes: Sequence[str] | PathLike | None = None,
    on_error: OnError = "raise",
    check_files: bool = True,
) -> Annotations:
    """``load_annotations("list", ...)``: ``root`` is the list file itself, or the folder the
    paths are relative to, holding ``<split>.txt`` / ``<split>_videofolder.txt`` /
    ``<split>list.txt`` / ``<split>_list.txt`` (or pass ``list_file=``). Without ``classes``,
    a ``classes.txt`` next to the list file (what ``tools/prepare_data.py`` writes) names them."""
    split = _canonical_split(split)
    base = _abs(root)
    if classes is None:
        near = (base.parent if base.is_file() else base) / "classes.txt"
        classes = near if near.is_file() else None
    if list_file is None:
        if base.is_file():
            return load_list(base, classes=classes, on_error=on_error, check_files=check_files)
        list_file = _find_file(
            [base],
            [
                pattern.format(s)
                for s in _SPLITS[split]
                for pattern in ("{}.txt", "{}_videofolder.txt", "{}list.txt", "{}_list.txt")
            ],
            what=f"{split} list file",
            expect="Give the list file as data.root=FILE or ++data.annotations.list_file=FILE; it holds "
            "'path num_frames label' lines.",
        )
    return load_list(list_file, root=base, classes=classes, on_error=on_error, check_files=check_files)


FORMAT = ParserFormat(
    name="list",
    reads="<split>.txt / <split>_videofolder.txt (path num_frames label), paths relative to its folder",
    parser=_load_list_split,
)
