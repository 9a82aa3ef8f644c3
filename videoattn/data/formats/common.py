"""What every annotation format shares: the parsed split (:class:`Annotations`), its errors, the
:class:`Format` protocol each format implements, and the helpers that find and read the files
(directory listings cached, line-numbered errors, ``on_error`` handling). The conventions of
all the formats: :mod:`videoattn.data.formats`."""

from __future__ import annotations

import csv
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
from typing import Any, Literal, Protocol, runtime_checkable

from ...errors import ConfigError, DataError, MissingFileError
from ..records import RecordTable

log = logging.getLogger("videoattn.data.annotations")  # the name the warnings have always had

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
OnError = Literal["raise", "skip"]

# Canonical split name -> accepted spellings (also the spellings tried in file names).
_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "val": ("val", "validation", "validate"),
    "test": ("test",),
}
_ANNOTATION_SUBDIRS = ("labels", "annotations")  # where the official archives unpack their lists
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
# The format protocol
# --------------------------------------------------------------------------------------------


@runtime_checkable
class Format(Protocol):
    """An annotation format: its name (``data.source``), the other names it answers to, the files
    it reads (in words, for messages and docs), and its parser ``parse(root, split, **keywords)
    -> Annotations`` (``keywords``: the ``data.annotations`` keys it takes)."""

    name: str
    aliases: tuple[str, ...]
    reads: str

    def parse(self, root: PathLike, split: str, **kw: Any) -> Annotations: ...

    @property
    def keywords(self) -> list[str]: ...


@dataclass(frozen=True)
class ParserFormat:
    """A :class:`Format` whose parser is a function ``parser(root, split, *, keywords...)``."""

    name: str
    reads: str
    parser: Callable[..., Annotations]
    aliases: tuple[str, ...] = ()

    def parse(self, root: PathLike, split: str, **kw: Any) -> Annotations:
        return self.parser(root, split, **kw)

    @property
    def keywords(self) -> list[str]:
        """The parser's keywords (the ``data.annotations`` keys of this format)."""
        return [p.name for p in inspect.signature(self.parser).parameters.values() if p.kind is p.KEYWORD_ONLY]
