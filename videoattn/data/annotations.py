"""Annotation parsers for Something-Something v1/v2, Jester, Kinetics-400 and TSM-style list files.

Every parser returns an :class:`Annotations`: one :class:`VideoRecord` per usable video (absolute
path, class index, frame count when known), the class names, and what was skipped.

Conventions shared by all parsers:

* **Class indices are the sorted class names** (the convention of the TSM / TAM / TDN
  checkpoints), not the indices written in the release's label files (SSv2's ``labels.json``
  numbers its classes differently). A model trained here and an official checkpoint therefore
  agree on the meaning of every logit. The one exception is :func:`load_list`, whose labels are
  already integers: there ``classes`` is taken in the order given.
* ``split`` is ``"train"``, ``"val"`` (also ``"validation"`` / ``"validate"``) or ``"test"``.
  Unlabelled videos (the test splits) get label ``-1``.
* ``on_error="raise"`` (default) stops at the first malformed line or missing video with an
  :class:`AnnotationError` naming the file and the line; ``on_error="skip"`` records a
  :class:`Skipped` and goes on, and one warning with the count is logged at the end.
* ``check_files=False`` skips every existence check (and the frame counting of SSv1), which
  makes loading fast on huge datasets or before the videos are downloaded. The messages give
  the parsers' keywords as the command line sets them (``++data.annotations.check_files=false``,
  ``++data.annotations.video_dir=FOLDER``: ``++`` adds the key or replaces it).
* A class name with a control character (newline, tab, any other C0 / C1 character, a Unicode
  line or paragraph separator) is refused by every parser, naming the class and the file, whatever
  ``on_error``: ``classes.txt`` holds one name per line, so such a name would split or shift the
  classes of every model trained on it.
* Existence checks list each directory once and look names up in memory, so checking the
  ~220k SSv2 videos costs one directory listing rather than 220k ``stat`` calls.
* A missing annotation file raises :class:`~videoattn.errors.MissingFileError` (a
  ``FileNotFoundError``) naming the paths tried.

The class lists do not depend on which videos are present, so indices are stable across
partial downloads.
"""

from __future__ import annotations

import csv
import difflib
import inspect
import io
import json
import logging
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from ..errors import ConfigError, DataError, MissingFileError
from .records import RecordTable, VideoRecord

__all__ = [
    "AnnotationError",
    "Annotations",
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

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
OnError = Literal["raise", "skip"]

# Canonical split name -> accepted spellings (also the spellings tried in file names).
_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "val": ("val", "validation", "validate"),
    "test": ("test",),
}
_SSV2_VIDEO_DIRS = ("20bn-something-something-v2", "videos")
_SSV1_FRAME_DIRS = ("20bn-something-something-v1", "frames")
_JESTER_FRAME_DIRS = ("20bn-jester-v1", "frames")
_ANNOTATION_SUBDIRS = ("labels", "annotations")  # where the official archives unpack their lists
_KINETICS_CSV_PATTERNS = (
    "{}.csv",
    "kinetics-400_{}.csv",
    "kinetics_400_{}.csv",
    "kinetics400_{}.csv",
    "kinetics_{}.csv",
)
_KINETICS_EXTS = (".mp4", ".mkv", ".webm")  # same stem, tried in this order
_FOLDER_EXTS = frozenset({".mp4", ".webm", ".mkv", ".avi"})
_INT_RE = re.compile(r"[+-]?\d+")
_NEWLINE = re.compile(r"\r\n|\r|\n")  # the line breaks of a text file; other separators stay in the line
_CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})  # C0, DEL, C1; line and paragraph separators


# --------------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """A malformed line or missing video skipped with ``on_error="skip"``.

    ``line`` is 1-based: the text line, or the 1-based position of an entry in a JSON list;
    ``0`` when no line applies (a file found by walking a folder layout).
    """

    file: str
    line: int
    reason: str


@dataclass
class Annotations:
    """The parsed split: records (a compact :class:`~videoattn.data.records.RecordTable`; item
    ``i`` is a :class:`VideoRecord`), class names (index -> name), and what was skipped."""

    records: RecordTable
    classes: list[str]
    skipped: list[Skipped]
    source: str

    def __len__(self) -> int:
        return len(self.records)

    def summary(self) -> str:
        """One line: ``"<source>: N records, K classes, S skipped"``."""
        return f"{self.source}: {len(self.records)} records, {len(self.classes)} classes, {len(self.skipped)} skipped"


class AnnotationError(DataError):
    """A malformed annotation line or a missing video.

    The message names the file and the line (or JSON entry) and says what to fix; the same
    facts are available as the attributes ``file``, ``line`` (1-based, 0 when not applicable)
    and ``reason``.
    """

    def __init__(self, message: str, *, file: str = "", line: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.reason = reason or message


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------


def _error(file: PathLike, line: int, reason: str, *, unit: str = "line") -> AnnotationError:
    where = f"{file}, {unit} {line}" if line > 0 else f"{file}"
    return AnnotationError(f"{where}: {reason}", file=str(file), line=line, reason=reason)


def _control_character(name: str) -> str | None:
    """The first control character of ``name`` (see :data:`_CONTROL_CATEGORIES`), or None."""
    return next((ch for ch in name if unicodedata.category(ch) in _CONTROL_CATEGORIES), None)


def _control_reason(name: str, ch: str) -> str:
    return (
        f"class name {name!r} contains the control character {ch!r} (U+{ord(ch):04X}); fix the name: class "
        "names are one per line in classes.txt and checkpoints, where it would split or shift the classes"
    )


def _check_class_names(names: Sequence[str], file: PathLike, lines: Sequence[int] | None = None) -> None:
    """Raise an :class:`AnnotationError` naming the first class of ``names`` with a control
    character and ``file`` (at ``lines[i]`` when given), whatever the ``on_error`` policy."""
    for i, name in enumerate(names):
        ch = _control_character(name)
        if ch is not None:
            raise _error(file, lines[i] if lines is not None else 0, _control_reason(name, ch))


class _Problems:
    """Applies the ``on_error`` policy and collects what was skipped."""

    def __init__(self, on_error: str, source: str) -> None:
        if on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.on_error = on_error
        self.source = source
        self.skipped: list[Skipped] = []

    def report(self, file: PathLike, line: int, reason: str, *, unit: str = "line") -> None:
        """Raise with ``on_error="raise"``, else remember the problem and return."""
        if self.on_error == "raise":
            raise _error(file, line, reason, unit=unit)
        self.skipped.append(Skipped(str(file), line, reason))

    def finish(self, records: RecordTable, classes: list[str]) -> Annotations:
        annotations = Annotations(records, classes, self.skipped, self.source)
        if self.skipped:
            first = self.skipped[0]
            log.warning(
                "%s: skipped %d malformed entries or missing videos (on_error='skip'); first: %s, line %d: %s",
                self.source,
                len(self.skipped),
                first.file,
                first.line,
                first.reason,
            )
        log.debug("%s", annotations.summary())
        return annotations


class _DirCache:
    """Existence checks by name lookup in cached directory listings (one listdir per folder)."""

    def __init__(self) -> None:
        self._names: dict[Path, frozenset[str]] = {}
        self._is_dir: dict[Path, bool] = {}

    def names(self, directory: Path) -> frozenset[str]:
        names = self._names.get(directory)
        if names is None:
            try:
                names = frozenset(os.listdir(directory))
            except OSError:  # missing, not a directory, unreadable: nothing in it
                names = frozenset()
            self._names[directory] = names
        return names

    def exists(self, path: Path) -> bool:
        return path.name in self.names(path.parent)

    def has(self, folder: Path, name: str) -> bool:
        return name in self.names(folder)

    def is_dir(self, path: Path) -> bool:
        known = self._is_dir.get(path)
        if known is None:
            known = self._is_dir[path] = path.is_dir()
        return known


class _Split:
    """The steps every loader shares once it has parsed a row and found its class: the row's key
    seen once in the split (a repeat is reported against the first), its video present (each
    loader looks in its own layout), then a record. Positions are worded ``unit`` ("line" of a
    text file, "entry" of a JSON list); ``noun`` names the key in messages."""

    def __init__(self, problems: _Problems, file: Path, *, unit: str = "line", noun: str = "id") -> None:
        self.problems, self.file, self.unit, self.noun = problems, file, unit, noun
        self.records = RecordTable.Builder()
        self._first: dict[str, int | Path] = {}  # key -> its position, or its file (folder layouts)

    def bad(self, position: int, reason: str) -> None:
        """A malformed row or missing video at ``position`` of the split's file (on_error policy)."""
        self.problems.report(self.file, position, reason, unit=self.unit)

    def first(self, position: int, key: str, *, file: Path | None = None) -> bool:
        """Whether ``key`` is new in the split; a repeat is reported, naming the first. ``file``:
        the key's own file, for layouts without an annotation file (reported at line 0)."""
        seen = self._first.get(key)
        if seen is None:
            self._first[key] = position if file is None else file
            return True
        where = f"also {seen}" if isinstance(seen, Path) else f"first at {self.unit} {seen}"
        reason = f"duplicated {self.noun} {key!r} ({where}); remove one of them"
        if file is None:
            self.bad(position, reason)
        else:
            self.problems.report(file, 0, reason)
        return False

    def add(self, folder: Path, name: str, label: int, video_id: str, num_frames: int | None = None) -> None:
        """The video ``folder / name`` (a file, or a frame folder)."""
        self.records.add(folder, name, label, video_id, num_frames)

    def finish(self, classes: list[str]) -> Annotations:
        return self.problems.finish(self.records.build(), classes)


def _abs(path: PathLike) -> Path:
    """Absolute path without resolving symlinks (datasets are often symlinked into place)."""
    return Path(path).expanduser().absolute()


def _canonical_split(split: str) -> str:
    key = str(split).strip().lower()
    for canonical, spellings in _SPLITS.items():
        if key in spellings:
            return canonical
    raise ConfigError(f"unknown split {split!r}; expected 'train', 'val' (or 'validation' / 'validate') or 'test'")


def _annotation_dirs(root: Path) -> list[Path]:
    return [root, *(root / sub for sub in _ANNOTATION_SUBDIRS)]


def _first_file(dirs: Sequence[Path], names: Sequence[str]) -> Path | None:
    """The first existing ``dir/name``, folders outer and names inner."""
    for directory in dirs:
        for name in names:
            candidate = directory / name
            if candidate.is_file():
                return candidate
    return None


def _tried(dirs: Sequence[Path], names: Sequence[str]) -> str:
    """The paths :func:`_first_file` tried, compactly: ``"a.csv, b.csv in /x, /x/labels"``."""
    return f"{', '.join(names)} in {', '.join(str(d) for d in dirs)}"


def _find_file(dirs: Sequence[Path], names: Sequence[str], *, what: str, expect: str) -> Path:
    found = _first_file(dirs, names)
    if found is None:
        raise MissingFileError(f"no {what} found; tried {_tried(dirs, names)}. {expect}")
    return found


def _pick_dir(explicit: PathLike | None, root: Path, subdirs: Sequence[str], *, what: str, check: bool) -> Path:
    """``explicit`` if given (checked to exist with ``check``), else the first existing
    ``root/<subdir>``, else ``root``."""
    if explicit is not None:
        directory = _abs(explicit)
        if check and not directory.is_dir():
            raise MissingFileError(f"{what} {directory} does not exist or is not a directory")
        return directory
    for sub in subdirs:
        if (root / sub).is_dir():
            return root / sub
    return root


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # tolerate a BOM from spreadsheet exports
    except UnicodeDecodeError as exc:
        raise _error(path, 0, f"not UTF-8 text ({exc}); re-save the file as UTF-8") from exc


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise _error(
            path,
            exc.lineno,
            f"invalid JSON ({exc.msg}, column {exc.colno}); the file is "
            "truncated or not the official release file, download it again",
        ) from exc


def _lines(path: Path, *, comments: bool = False) -> Iterator[tuple[int, str]]:
    r"""``(1-based line number, stripped line)`` for non-blank lines (and non-``#`` lines). Lines
    end at ``\n``, ``\r\n`` or ``\r`` only: the other characters ``str.splitlines`` breaks at
    (``\x0b``, ``\x1c``, ``\x85``, ``\u2028``, ...) stay in their line, where a class name with
    one is refused rather than read as two names."""
    for number, raw in enumerate(_NEWLINE.split(_read_text(path)), start=1):
        line = raw.strip()
        if not line or (comments and line.startswith("#")):
            continue
        yield number, line


def _parse_int(text: str) -> int | None:
    text = text.strip()
    return int(text) if _INT_RE.fullmatch(text) else None


def _read_class_names(path: Path, problems: _Problems) -> list[str]:
    """One class name per line, in file order; duplicated names are malformed lines, a name
    with a control character is an error."""
    names: list[str] = []
    first_line: dict[str, int] = {}
    for number, name in _lines(path):
        _check_class_names([name], path, [number])
        if name in first_line:
            problems.report(
                path,
                number,
                f"duplicated class name {name!r} (first at line {first_line[name]}); each class must be listed once",
            )
            continue
        first_line[name] = number
        names.append(name)
    return names


def read_class_names(path: PathLike) -> list[str]:
    """The class names of a dataset's label file, in the project's order (sorted names).

    Reads SSv2's ``labels.json`` (``{"name": "index", ...}``) or a JSON list of names, a
    Kinetics CSV (``label,youtube_id,time_start,time_end,split``: the labels of its rows) or an
    ``id,name`` CSV, and otherwise one class name per line (SSv1 / Jester ``labels.csv``,
    ``classes.txt``). This is how :func:`videoattn.models.convert.convert_checkpoint` learns
    the class names an official checkpoint does not carry.
    """
    path = _abs(path)
    if not path.is_file():
        raise MissingFileError(f"label file {path} not found")
    problems = _Problems("raise", "classes")
    if path.suffix.lower() == ".json":
        data = _read_json(path)
        if isinstance(data, dict):
            names = [str(k).strip() for k in data]
        elif isinstance(data, list) and all(isinstance(n, str) for n in data):
            names = [n.strip() for n in data]
        else:
            raise _error(path, 0, 'expected {"class name": index, ...} (SSv2 labels.json) or a list of class names')
    else:
        text = _read_text(path)
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        header = [h.strip().lower() for h in first.split(",")]
        if {"label", "youtube_id"} <= set(header) or header == ["id", "name"]:
            column = "label" if "label" in header else "name"
            rows = list(csv.DictReader(io.StringIO(text)))
            names = sorted({(r.get(column) or "").strip() for r in rows} - {""})
        else:
            names = _read_class_names(path, problems)
    if not names or any(not n for n in names):
        raise _error(path, 0, "no class names (or an empty one) in the file; give the dataset's label file")
    _check_class_names(names, path)
    duplicated = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicated:
        raise _error(path, 0, f"duplicated class names {duplicated[:3]}")
    return sorted(names)


# --------------------------------------------------------------------------------------------
# Something-Something v2
# --------------------------------------------------------------------------------------------


def ssv2_class_name(template: str) -> str:
    """SSv2 class of an entry: its template with the brackets removed.

    ``"Holding [something] next to [something]"`` -> ``"Holding something next to something"``.
    """
    return template.replace("[", "").replace("]", "")


def _read_ssv2_labels(path: Path) -> list[str]:
    data = _read_json(path)
    if not isinstance(data, dict) or not data:
        raise _error(
            path,
            0,
            'expected a JSON object {"class name": "index", ...}; this is not the official labels.json',
        )
    names = [str(name).strip() for name in data]
    if any(not name for name in names):
        raise _error(path, 0, "contains an empty class name; fix or re-download the file")
    _check_class_names(names, path)
    return sorted(set(names))


def load_ssv2(
    root: PathLike,
    split: str,
    *,
    video_dir: PathLike | None = None,
    on_error: OnError = "raise",
    check_files: bool = True,
) -> Annotations:
    """Something-Something v2 annotations.

    Reads ``labels.json`` (or ``something-something-v2-labels.json``) and the split's
    ``train.json`` / ``validation.json`` / ``test.json`` (or the official long names
    ``something-something-v2-<split>.json``) from ``root`` or ``root/labels``. An entry's class is
    its ``template`` with the brackets removed; test entries, which have only an ``id``, get
    label ``-1`` (a test entry that does carry a template is labelled from it).

    Class indices are the **sorted** class names of ``labels.json``, not the indices written in
    it: the order of the TSM / TAM checkpoints.

    Videos are ``<id>.webm`` in ``video_dir`` if given, else the first existing of
    ``root/20bn-something-something-v2``, ``root/videos``, ``root``.

    Malformed entries (not an object, no/duplicated ``id``, no ``template`` outside the test
    split, a template whose class is not in ``labels.json``) and missing videos are reported
    with their 1-based position in the JSON list.
    """
    split = _canonical_split(split)
    root = _abs(root)
    problems = _Problems(on_error, "ssv2")
    dirs = _annotation_dirs(root)
    labels_file = _find_file(
        dirs,
        ("labels.json", "something-something-v2-labels.json"),
        what="Something-Something v2 label file",
        expect="The dataset root (or its labels/ folder) should hold labels.json and "
        "train.json / validation.json / test.json from the official release.",
    )
    classes = _read_ssv2_labels(labels_file)
    split_file = _find_file(
        dirs,
        [f"{s}.json" for s in _SPLITS[split]] + [f"something-something-v2-{s}.json" for s in _SPLITS[split]],
        what=f"Something-Something v2 {split} list",
        expect=f"Put the official {split} list (train.json, validation.json or test.json) next to {labels_file.name}.",
    )
    entries = _read_json(split_file)
    if not isinstance(entries, list):
        raise _error(
            split_file,
            0,
            'expected a JSON list of {"id", "label", "template", '
            f'"placeholders"}} objects, got a {type(entries).__name__}',
        )
    videos = _pick_dir(video_dir, root, _SSV2_VIDEO_DIRS, what="video_dir", check=check_files)
    index = {name: i for i, name in enumerate(classes)}
    listing = _DirCache()
    rows = _Split(problems, split_file, unit="entry")
    report = rows.bad
    for position, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            report(position, f"expected a JSON object with an 'id', got {json.dumps(entry)[:60]}")
            continue
        raw_id = entry.get("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or not str(raw_id).strip():
            report(position, "missing or invalid 'id' (expected a string like \"78687\")")
            continue
        video_id = str(raw_id).strip()
        template = entry.get("template")
        if template is None:
            if split != "test":
                report(
                    position,
                    f"missing field 'template' for id {video_id!r}; every {split} entry needs "
                    "the template its class is read from",
                )
                continue
            label = -1
        elif not isinstance(template, str):
            report(position, f"'template' of id {video_id!r} is not a string: {template!r}")
            continue
        else:
            name = ssv2_class_name(template).strip()
            found = index.get(name)
            if found is None:
                report(
                    position,
                    f"template {template!r} gives the class {name!r}, which is not in "
                    f"{labels_file.name}; use the label file of the same release",
                )
                continue
            label = found
        if not rows.first(position, video_id):
            continue
        name = f"{video_id}.webm"
        if check_files and not listing.has(videos, name):
            report(
                position,
                f"video {videos / name} not found; point ++data.annotations.video_dir=FOLDER at the .webm "
                "files, or skip the checks with ++data.annotations.check_files=false",
            )
            continue
        rows.add(videos, name, label, video_id)
    return rows.finish(classes)


# --------------------------------------------------------------------------------------------
# Something-Something v1 and Jester (JPEG folders, id;class CSVs)
# --------------------------------------------------------------------------------------------


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
_JESTER = _FrameCsvLayout("Jester", "jester", "jester-v1", _JESTER_FRAME_DIRS)


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


# --------------------------------------------------------------------------------------------
# Kinetics-400
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Generic TSM-style list
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------

_LOADERS: dict[str, Callable[..., Annotations]] = {
    "ssv2": load_ssv2,
    "ssv1": load_ssv1,
    "jester": load_jester,
    "kinetics": load_kinetics,
    "list": _load_list_split,
}
_SOURCE_ALIASES = {
    "something-something-v2": "ssv2",
    "somethingv2": "ssv2",
    "sthv2": "ssv2",
    "something-something-v1": "ssv1",
    "somethingv1": "ssv1",
    "sthv1": "ssv1",
    "jester-v1": "jester",
    "20bn-jester": "jester",
    "kinetics400": "kinetics",
    "kinetics-400": "kinetics",
    "k400": "kinetics",
}


def load_annotations(source: str, root: PathLike, split: str, **kw: Any) -> Annotations:
    """Dispatch by name: ``"ssv2"``, ``"ssv1"``, ``"jester"``, ``"kinetics"`` or ``"list"`` (plus aliases such
    as ``"sthv2"`` / ``"k400"``); ``kw`` goes to the loader.

    For ``"list"``, ``root`` is the list file, or the folder holding ``<split>.txt`` /
    ``<split>_videofolder.txt`` that the paths are relative to (``list_file=`` to name it).
    """
    key = str(source).strip().lower()
    key = _SOURCE_ALIASES.get(key, key)
    loader = _LOADERS.get(key)
    if loader is None:
        close = difflib.get_close_matches(key, [*_LOADERS, *_SOURCE_ALIASES], n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown annotation source {source!r}; allowed: "
            f"{', '.join(repr(name) for name in _LOADERS)} (aliases: "
            f"{', '.join(_SOURCE_ALIASES)}){hint}"
        )
    accepted = [p.name for p in inspect.signature(loader).parameters.values() if p.kind is p.KEYWORD_ONLY]
    for key in kw:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=2)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(
                f"data.annotations: {key!r} is not a keyword of the {loader.__name__} parser{hint}; "
                f"allowed: {', '.join(accepted)}"
            )
    return loader(root, split, **kw)


# --------------------------------------------------------------------------------------------
# Mirrored classes (horizontal flip)
# --------------------------------------------------------------------------------------------

# Words whose meaning a horizontal flip mirrors, as whole words: letters only count as word
# characters, so "left_to_right" and "left-handed" match but "leftover" does not. Each maps to
# the spellings of its mirror image, tried in turn against the class list.
_MIRROR_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("right",),
    "right": ("left",),
    "leftward": ("rightward",),
    "rightward": ("leftward",),
    "leftwards": ("rightwards",),
    "rightwards": ("leftwards",),
    "clockwise": ("counterclockwise", "anticlockwise", "counter-clockwise", "anti-clockwise", "counter clockwise"),
    "counterclockwise": ("clockwise",),
    "anticlockwise": ("clockwise",),
    "counter-clockwise": ("clockwise",),
    "anti-clockwise": ("clockwise",),
    "counter clockwise": ("clockwise",),
}
_MIRRORED = re.compile(
    r"(?<![A-Za-z])(counter[- ]?clockwise|anti-?clockwise|clockwise|leftwards?|rightwards?|left|right)(?![A-Za-z])",
    re.IGNORECASE,
)


def _same_case(word: str, like: str) -> str:
    if like.isupper():
        return word.upper()
    if like[0].isupper():
        return word[0].upper() + word[1:]
    return word


def mirror_names(name: str) -> list[str]:
    """The names a horizontal flip turns ``name`` into (case kept): "left" <-> "right",
    "leftward(s)" <-> "rightward(s)", "clockwise" <-> "counterclockwise" / "anticlockwise" /
    ..., every mirrored word swapped; ``[]`` when ``name`` has none."""
    matches = list(_MIRRORED.finditer(name))
    if not matches:
        return []
    out = [""]
    pos = 0
    for m in matches:
        options = [_same_case(w, m.group(0)) for w in _MIRROR_WORDS[m.group(0).lower()]]
        out = [prefix + name[pos : m.start()] + w for prefix in out for w in options]
        pos = m.end()
    return [prefix + name[pos:] for prefix in out]


def swap_left_right(name: str) -> str:
    """``name`` with every mirrored word swapped for its first mirror spelling ("left" <->
    "right", "clockwise" -> "counterclockwise", ...); ``name`` itself when it has none."""
    names = mirror_names(name)
    return names[0] if names else name


def flip_label_map(classes: Sequence[str]) -> list[int]:
    """Label permutation for a horizontal flip: ``i`` -> the class whose name is ``classes[i]``
    mirrored (:func:`mirror_names`), or ``i`` itself when there is none.

    E.g. SSv2 "Pushing something from left to right" <-> "Pushing something from right to
    left", Jester "Turning Hand Clockwise" <-> "Turning Hand Counterclockwise". The result is an
    involution (``m[m[i]] == i``). Classes with a mirrored word but no partner map to
    themselves: see :func:`unpaired_mirrored_classes`.
    """
    names = list(classes)
    index = {name: i for i, name in enumerate(names)}
    if len(index) != len(names):
        raise ConfigError("classes contains duplicated names; a flip label map needs unique names")
    mapping: list[int] = []
    for i, name in enumerate(names):
        j = next((index[m] for m in mirror_names(name) if m in index), i)
        if names[i] not in mirror_names(names[j]) and j != i:  # odd casing: keep the map an involution
            j = i
        mapping.append(j)
    return mapping


def has_mirrored(classes: Sequence[str]) -> bool:
    """Whether any class names a mirrored direction (a horizontal flip changes its meaning)."""
    return any(_MIRRORED.search(name) for name in classes)


def unpaired_mirrored_classes(classes: Sequence[str]) -> list[str]:
    """Classes that name a mirrored direction but whose mirror image is not a class: a flipped
    clip of one of them would keep a label that is now wrong."""
    mapping = flip_label_map(classes)
    return [name for i, name in enumerate(classes) if mapping[i] == i and _MIRRORED.search(name)]
