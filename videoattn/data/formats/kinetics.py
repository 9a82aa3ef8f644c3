"""Kinetics-400: the official CSVs (``label,youtube_id,time_start,time_end,split``) and
``<youtube_id>_<start:06d>_<end:06d>.mp4`` videos, or class folders of videos."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from ...errors import MissingFileError
from .common import (
    _SPLITS,
    Annotations,
    OnError,
    ParserFormat,
    PathLike,
    _abs,
    _annotation_dirs,
    _canonical_split,
    _check_class_names,
    _control_character,
    _control_reason,
    _DirCache,
    _error,
    _first_file,
    _parse_int,
    _pick_dir,
    _Problems,
    _read_text,
    _Split,
    _tried,
)

_KINETICS_CSV_PATTERNS = (
    "{}.csv",
    "kinetics-400_{}.csv",
    "kinetics_400_{}.csv",
    "kinetics400_{}.csv",
    "kinetics_{}.csv",
)
_KINETICS_EXTS = (".mp4", ".mkv", ".webm")  # same stem, tried in this order
_FOLDER_EXTS = frozenset({".mp4", ".webm", ".mkv", ".avi"})


class _KineticsRow(NamedTuple):
    line: int
    label: str  # "" when unlabelled
    youtube_id: str
    stem: str  # <youtube_id>_<start:06d>_<end:06d>, the file name without extension


def _parse_seconds(text: str) -> int | None:
    """An integer number of seconds, also written as an integral float (``"14.0"``)."""
    text = text.strip()
    if text.isascii() and text.isdigit():  # the common case
        return int(text)
    value = _parse_int(text)
    if value is None:
        try:
            number = float(text)
        except ValueError:
            return None
        if not number.is_integer():  # also rejects inf / nan
            return None
        value = int(number)
    return value if value >= 0 else None


def _kinetics_csv_names(split: str) -> list[str]:
    return [pattern.format(s) for s in _SPLITS[split] for pattern in _KINETICS_CSV_PATTERNS]


def _read_kinetics_csv(path: Path, split: str, problems: _Problems | None) -> tuple[list[_KineticsRow], set[str]]:
    """Parsed rows and every non-empty label seen (the latter also from otherwise bad rows).

    With ``problems=None`` (reading the train CSV only for its class list) bad rows are ignored.
    """

    def report(line: int, reason: str) -> None:
        if problems is not None:
            problems.report(path, line, reason)

    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    header: list[str] | None = None
    header_line = 0
    for row in reader:
        if any(cell.strip() for cell in row):
            header = [cell.strip().lower() for cell in row]
            header_line = reader.line_num
            break
    if header is None:
        raise _error(path, 0, "empty file; expected 'label,youtube_id,time_start,time_end,split'")
    required = ["youtube_id", "time_start", "time_end"]
    if split != "test":
        required.insert(0, "label")
    missing = [name for name in required if name not in header]
    if missing:
        raise _error(
            path,
            header_line,
            f"header {','.join(header)!r} lacks {', '.join(missing)}; "
            "expected 'label,youtube_id,time_start,time_end,split'",
        )
    column = {name: header.index(name) for name in ("label", "youtube_id", "time_start", "time_end") if name in header}
    label_at, id_at, start_at, end_at = (column.get(k, -1) for k in ("label", "youtube_id", "time_start", "time_end"))
    rows: list[_KineticsRow] = []
    labels: dict[str, int] = {}  # label -> the line it first appears on
    for row in reader:
        line = reader.line_num
        if not "".join(row).strip():  # a blank line, or commas only
            continue
        while len(row) > len(header) and not row[-1].strip():  # tolerate trailing commas
            row = row[:-1]
        if len(row) != len(header):
            report(
                line,
                f"expected {len(header)} comma-separated fields like the header, got "
                f"{len(row)} (quote labels that contain commas)",
            )
            continue
        label = row[label_at].strip() if label_at >= 0 else ""
        if label:
            labels.setdefault(label, line)
        elif split != "test":
            report(line, f"empty label in the {split} split; every labelled row needs its class")
            continue
        youtube_id = row[id_at].strip()
        if not youtube_id or "/" in youtube_id:
            report(line, f"invalid youtube_id {youtube_id!r}")
            continue
        start, end = _parse_seconds(row[start_at]), _parse_seconds(row[end_at])
        if start is None or end is None:
            report(
                line,
                f"time_start/time_end must be non-negative whole seconds, got {row[start_at]!r}/{row[end_at]!r}",
            )
            continue
        if end <= start:
            report(line, f"time_end {end} is not after time_start {start}")
            continue
        rows.append(_KineticsRow(line, label, youtube_id, f"{youtube_id}_{start:06d}_{end:06d}"))
    _check_class_names(list(labels), path, list(labels.values()))
    return rows, set(labels)


class _KineticsLayout:
    """Where a Kinetics clip can be: flat ``<dir>/<stem>.<ext>`` or in a class folder
    ``<dir>/<label>/<stem>.<ext>`` (also with the label's spaces as ``_``), in each of ``dirs``.
    The folders to look in are worked out once per label, and looked up in cached listings."""

    def __init__(self, dirs: Sequence[Path], listing: _DirCache, *, check_files: bool) -> None:
        self.dirs, self.listing, self.check_files = dirs, listing, check_files
        self._where: dict[str, list[Path]] = {}

    def _folders(self, label: str) -> list[Path]:
        where = self._where.get(label)
        if where is None:
            names = [label, label.replace(" ", "_")] if " " in label else [label] if label else []
            if self.check_files:
                where = [w for d in self.dirs for w in (d, *(d / n for n in names))]
            else:  # no per-video checks: guess the layout from the class folders of the first dir
                where = [next((self.dirs[0] / n for n in names if self.listing.is_dir(self.dirs[0] / n)), self.dirs[0])]
            self._where[label] = where
        return where

    def locate(self, row: _KineticsRow) -> tuple[Path, str] | None:
        """``(folder, file name)`` of the row's clip, or None when it is in none of them."""
        folders = self._folders(row.label)
        if not self.check_files:
            return folders[0], f"{row.stem}.mp4"
        for where in folders:
            names = self.listing.names(where)
            for ext in _KINETICS_EXTS:
                if row.stem + ext in names:
                    return where, row.stem + ext
        return None


def _subdir_names(directory: Path) -> list[str]:
    return sorted(entry.name for entry in directory.iterdir() if entry.is_dir())


def _load_kinetics_folders(
    root: Path, split: str, split_dir: Path, problems: _Problems, *, explicit_dir: bool
) -> Annotations:
    """CSV-free layout ``<split_dir>/<class>/<anything>.mp4|.webm|.mkv|.avi``."""
    classes = _subdir_names(split_dir)
    class_dir = split_dir
    train_dir = root / "train"
    if split != "train" and not explicit_dir and train_dir.is_dir() and train_dir != split_dir:
        train_classes = _subdir_names(train_dir)
        if train_classes:  # indices must agree with the train split
            classes, class_dir = train_classes, train_dir
    for name in classes:
        ch = _control_character(name)
        if ch is not None:
            raise _error(class_dir / name, 0, _control_reason(name, ch).replace("fix the name", "rename the folder"))
    index = {name: i for i, name in enumerate(classes)}
    rows = _Split(problems, split_dir, noun="video id")

    def add(video: Path, label: int) -> None:
        if rows.first(0, video.stem, file=video):
            rows.add(video.parent, video.name, label, video.stem)

    for entry in sorted(split_dir.iterdir()):
        if entry.is_dir():
            label = index.get(entry.name)
            if label is None:
                problems.report(
                    entry,
                    0,
                    f"class folder {entry.name!r} is not a class of {train_dir}; "
                    "rename or remove it so class indices agree with the train split",
                )
                continue
            for video in sorted(entry.iterdir()):
                if video.suffix.lower() in _FOLDER_EXTS and video.is_file():
                    add(video, label)
        elif entry.suffix.lower() in _FOLDER_EXTS:
            if split == "test":
                add(entry, -1)
            else:
                problems.report(
                    entry,
                    0,
                    f"video outside a class folder in the {split} split; move it into {split_dir}/<class>/",
                )
    return rows.finish(classes)


def load_kinetics(
    root: PathLike,
    split: str,
    *,
    video_dir: PathLike | None = None,
    on_error: OnError = "raise",
    check_files: bool = True,
) -> Annotations:
    """Kinetics-400 annotations.

    **CSV layout.** The split's CSV (header ``label,youtube_id,time_start,time_end,split``) is
    ``<split>.csv``, ``kinetics-400_<split>.csv`` or ``kinetics_400_<split>.csv`` (also
    ``kinetics400_``/``kinetics_`` prefixes; the val split as ``val``, ``validation`` or
    ``validate``) in ``root`` or ``root/annotations``. Test CSVs may lack the label column or
    leave it empty -> label ``-1``. Times may be written as integral floats (``14.0``).

    Class indices are the sorted labels of the train CSV when it lies next to the split's CSV
    (so val/test indices agree with train), else the sorted labels of the split's own CSV.

    Videos ``<youtube_id>_<start:06d>_<end:06d>.mp4`` (or ``.mkv`` / ``.webm``) are looked up in
    ``video_dir`` if given, else in the existing ones of ``root/<split>`` (``train``, ``val``,
    ``validation``, ``validate``, ``test``), ``root/videos`` and ``root``; in each both flat
    (``<dir>/<file>``) and per-class (``<dir>/<label>/<file>``, also with spaces in the folder
    name replaced by ``_``). With ``check_files=False`` the extension is assumed ``.mp4`` and
    the layout is guessed from the class folders present in the first directory.

    **Folder layout.** Without a CSV, ``root/<split>/<class>/<anything>.mp4|.webm|.mkv|.avi``
    (or ``video_dir/<class>/...``) is read: classes are the sorted folder names (of
    ``root/train`` for the val/test splits when it exists), ``video_id`` is the file stem, and
    loose videos of the test split get label ``-1``.
    """
    split = _canonical_split(split)
    root = _abs(root)
    problems = _Problems(on_error, "kinetics")
    dirs = _annotation_dirs(root)
    csv_names = _kinetics_csv_names(split)
    csv_file = _first_file(dirs, csv_names)
    if csv_file is None:
        split_dirs = [_abs(video_dir)] if video_dir is not None else [root / s for s in _SPLITS[split]]
        for split_dir in split_dirs:
            if split_dir.is_dir():
                return _load_kinetics_folders(root, split, split_dir, problems, explicit_dir=video_dir is not None)
        raise MissingFileError(
            f"no Kinetics-400 {split} annotations found; tried the CSVs "
            f"{_tried(dirs, csv_names)} and the folder layout "
            f"{' or '.join(str(d) for d in split_dirs)}. The root should hold "
            f"{split}.csv (label,youtube_id,time_start,time_end,split) or "
            f"{split}/<class>/<video>.mp4 folders."
        )

    rows, labels = _read_kinetics_csv(csv_file, split, problems)
    class_source = csv_file
    if split != "train":
        train_csv = _first_file([csv_file.parent], _kinetics_csv_names("train"))
        if train_csv is not None:
            _, train_labels = _read_kinetics_csv(train_csv, "train", None)
            if train_labels:
                labels, class_source = train_labels, train_csv
    classes = sorted(labels)
    index = {name: i for i, name in enumerate(classes)}

    if video_dir is not None:
        video_dirs = [_pick_dir(video_dir, root, (), what="video_dir", check=check_files)]
    else:
        candidates = [root / s for s in _SPLITS[split]] + [root / "videos"]
        video_dirs = [d for d in candidates if d.is_dir()] + [root]
    layout = _KineticsLayout(video_dirs, _DirCache(), check_files=check_files)
    split_rows = _Split(problems, csv_file, noun="clip")
    for row in rows:
        label = -1
        if row.label:
            found = index.get(row.label)
            if found is None:
                split_rows.bad(
                    row.line,
                    f"class {row.label!r} is not a class of "
                    f"{class_source.name}; fix the label or use matching train/{split} CSVs",
                )
                continue
            label = found
        if not split_rows.first(row.line, row.stem):
            continue
        found = layout.locate(row)
        if found is None:
            split_rows.bad(
                row.line,
                f"video {row.stem}.mp4 (or .mkv/.webm) not found in "
                f"{', '.join(str(d) for d in video_dirs)} (flat or in a class folder); point "
                "++data.annotations.video_dir=FOLDER at the videos, or skip the checks with "
                "++data.annotations.check_files=false",
            )
            continue
        split_rows.add(*found, label, row.youtube_id)
    return split_rows.finish(classes)


FORMAT = ParserFormat(
    name="kinetics",
    aliases=("kinetics400", "kinetics-400", "k400"),
    reads="<split>.csv (label,youtube_id,time_start,time_end,split), <youtube_id>_<start>_<end>.mp4 or class folders",
    parser=load_kinetics,
)
