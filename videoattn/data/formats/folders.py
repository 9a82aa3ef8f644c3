"""A user's own videos: class folders ``ROOT/<class>/<video>`` or a CSV / TSV of
``path,label[,split]``, checked once (the check cached by path, size and mtime), with a
deterministic stratified train / val split kept in a file (the run folder's ``split.json``).

``data=folders`` (``configs/data/folders.yaml``, ``configs/custom.yaml``); README "Your own videos".
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ...errors import ConfigError, DataError, MissingFileError
from ...files import write_atomic
from ..video import FRAME_EXTENSIONS, DecodeError, read_clip
from .common import (
    Annotations,
    OnError,
    ParserFormat,
    PathLike,
    Skipped,
    _abs,
    _canonical_split,
    _check_class_names,
    _control_character,
    _control_reason,
    _error,
    _Problems,
    _read_text,
    _Split,
)

log = logging.getLogger(__name__)

# containers the readers open (FFmpeg through torchcodec / decord / PyAV); a sub-folder of a class
# folder holding images is a JPEG-frame video
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts", ".gif"}
)
CACHE_NAME = ".videoattn_checks.json"  # in the dataset root when it is writable
CACHE_VERSION = 1
SPLIT_VERSION = 1
MIN_VIDEOS = 2  # per class: one to train on, one to validate


@dataclass(frozen=True)
class _Video:
    key: str  # the path relative to the root (or the CSV's folder), "/"-separated: the split's and cache's key
    path: Path
    label: str
    split: str | None = None  # the CSV's split column


# --------------------------------------------------------------------------------------------
# Listing: class folders or a CSV
# --------------------------------------------------------------------------------------------


def _is_frame_folder(path: Path) -> bool:
    try:
        return any(e.name.lower().endswith(FRAME_EXTENSIONS) for e in os.scandir(path))
    except OSError:
        return False


def _list_folders(root: Path) -> tuple[list[_Video], list[str]]:
    """The videos of ``root/<class>/``, in sorted order, and the class names (sorted folder names)."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise MissingFileError(
            f"data.root={root}: no class folders in it; expected ROOT/<class>/<video> (e.g. ROOT/jump/001.mp4), "
            "or name a CSV of path,label with data.annotations.csv=FILE"
        )
    for name in classes:
        ch = _control_character(name)
        if ch is not None:
            raise _error(root / name, 0, _control_reason(name, ch).replace("fix the name", "rename the folder"))
    videos: list[_Video] = []
    ignored: list[str] = []
    for name in classes:
        for entry in sorted(os.scandir(root / name), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.is_dir() and _is_frame_folder(path):
                videos.append(_Video(f"{name}/{entry.name}", path, name))
            elif entry.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
                videos.append(_Video(f"{name}/{entry.name}", path, name))
            else:
                ignored.append(f"{name}/{entry.name}")
    loose = sorted(e.name for e in os.scandir(root) if e.is_file() and not e.name.startswith("."))
    ignored += [n for n in loose if Path(n).suffix.lower() not in (".csv", ".tsv", ".json", ".txt", ".md")]
    if ignored:
        shown = ", ".join(ignored[:3]) + (", ..." if len(ignored) > 3 else "")
        log.warning(
            "%s: ignored %d entries that are neither videos (%s) nor frame folders: %s",
            root,
            len(ignored),
            " ".join(sorted(VIDEO_EXTENSIONS)),
            shown,
        )
    return videos, classes


def _list_csv(file: Path, problems: _Problems, *, check_files: bool = True) -> list[_Video]:
    """The rows of a CSV (``,``) or TSV (``.tsv``, or tabs in the first line) of
    ``path,label[,split]`` (a header naming these columns is optional); relative paths are
    relative to the file's folder."""
    text = _read_text(file)
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = "\t" if file.suffix.lower() == ".tsv" or "\t" in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    videos: list[_Video] = []
    seen: dict[str, int] = {}
    header_done = False
    base = file.parent
    for row in reader:
        line = reader.line_num
        cells = [c.strip() for c in row]
        if not "".join(cells) or cells[0].startswith("#"):
            continue
        if not header_done:
            header_done = True
            if [c.lower() for c in cells[:2]] == ["path", "label"]:
                continue
        while len(cells) > 2 and not cells[-1]:
            cells = cells[:-1]
        if len(cells) not in (2, 3) or not cells[0] or not cells[1]:
            sep = "tab" if delimiter == "\t" else "comma"
            problems.report(file, line, f"expected path,label[,split] ({sep}-separated), got {row!r}")
            continue
        split = None
        if len(cells) == 3:
            try:
                split = _canonical_split(cells[2])
            except ConfigError:
                problems.report(file, line, f"split {cells[2]!r} is not train, val or test")
                continue
        _check_class_names([cells[1]], file, [line])
        path = Path(cells[0]).expanduser()
        if not path.is_absolute():
            path = base / path
        try:
            key = path.relative_to(base).as_posix()
        except ValueError:
            key = path.as_posix()
        if key in seen:
            problems.report(file, line, f"duplicated path {cells[0]!r} (first at line {seen[key]}); remove one of them")
            continue
        if check_files and not path.exists():
            problems.report(file, line, f"video {path} not found (paths are relative to {base})")
            continue
        seen[key] = line
        videos.append(_Video(key, path, cells[1], split))
    if not videos:
        raise _error(file, 0, "no videos listed; expected lines of path,label[,split]")
    splits = {v.split for v in videos}
    if len(splits) > 1 and None in splits:
        raise _error(file, 0, "some lines give a split and some do not: give it on every line, or on none")
    return sorted(videos, key=lambda v: v.key)


# --------------------------------------------------------------------------------------------
# Checking: each video opened once, the result cached by path, size and mtime
# --------------------------------------------------------------------------------------------


def _stamp(path: Path) -> list[int]:
    """``[size, mtime_ns]``: for a frame folder, its number of entries and its mtime."""
    st = path.stat()
    size = len(os.listdir(path)) if path.is_dir() else st.st_size
    return [size, st.st_mtime_ns]


def check_video(path: Path, *, backend: str = "auto") -> tuple[int | None, str]:
    """``(frame count, "")`` when ``path`` decodes (its first, middle and last frames), else
    ``(None, reason)``."""
    try:
        _, indices = read_clip(path, lambda n: np.array([0, n // 2, max(n - 1, 0)]), backend=backend)
    except (DecodeError, OSError) as e:
        return None, str(getattr(e, "cause", None) or e).splitlines()[0][:200]
    except Exception as e:  # noqa: BLE001 - a decoder's own error: the video is bad, the reason kept
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return int(indices.max()) + 1, ""


def _cache_file(root: Path, split_file: Path | None) -> Path:
    """The dataset root's ``.videoattn_checks.json`` when the root is writable, else beside the
    split file (the run folder), else the user's cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    if os.access(root, os.W_OK):
        return root / CACHE_NAME
    if split_file is not None:
        return split_file.parent / "video_checks.json"
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return home / "videoattn" / "checks" / f"{hashlib.sha1(str(root).encode()).hexdigest()[:16]}.json"


def _read_cache(file: Path) -> dict[str, dict]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("videos"), dict):
        return {}
    return data["videos"]


_SAID_CACHED: set[Path] = set()


def _check_all(
    videos: Sequence[_Video], *, cache: Path, backend: str, workers: int | None
) -> tuple[dict[str, int], dict[str, str], set[str]]:
    """Frame counts of the good videos, reasons of the bad ones (by key), and the keys checked
    now: only videos not in the cache (or changed since: size, mtime) are opened, in ``workers``
    threads."""
    known = _read_cache(cache)
    stamps = {v.key: _stamp(v.path) for v in videos}
    todo = [v for v in videos if (known.get(v.key) or {}).get("stamp") != stamps[v.key]]
    if todo:
        start = last = time.monotonic()
        tty = sys.stderr.isatty()  # a bar on a terminal; elsewhere a line every 10 s, then the summary
        threads = workers or min(8, os.cpu_count() or 1)
        with (
            ThreadPoolExecutor(max_workers=threads) as pool,
            tqdm(total=len(todo), desc="checking videos", disable=not tty, leave=False, dynamic_ncols=True) as bar,
        ):
            futures = [pool.submit(check_video, v.path, backend=backend) for v in todo]
            for i, (video, future) in enumerate(zip(todo, futures, strict=True), start=1):
                frames, reason = future.result()
                known[video.key] = {"stamp": stamps[video.key], "frames": frames, "error": reason}
                bar.update()
                if not tty and time.monotonic() - last >= 10 and i < len(todo):
                    last = time.monotonic()
                    log.info("checking videos: %d/%d (%.0f s)", i, len(todo), last - start)
        keep = {v.key for v in videos} | set(known)  # other entries (other CSVs over the same root) kept
        payload = {"version": CACHE_VERSION, "videos": {k: known[k] for k in sorted(keep) if k in known}}
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cache, json.dumps(payload, indent=0, sort_keys=True))
            where = f"cached in {cache}"
        except OSError as e:
            where = f"not cached ({cache}: {e.strerror or e})"
        log.info(
            "checked %d videos in %.1f s with %d threads (%d already known); %s",
            len(todo),
            time.monotonic() - start,
            threads,
            len(videos) - len(todo),
            where,
        )
    elif cache not in _SAID_CACHED:  # once per process (each split reads the same cache)
        _SAID_CACHED.add(cache)
        log.info("all %d videos' checks read from %s (none re-opened)", len(videos), cache)
    frames = {v.key: known[v.key]["frames"] for v in videos if not known[v.key]["error"]}
    bad = {v.key: known[v.key]["error"] for v in videos if known[v.key]["error"]}
    return frames, bad, {v.key for v in todo}


# --------------------------------------------------------------------------------------------
# The split: stratified, deterministic, kept in a file
# --------------------------------------------------------------------------------------------


def _rank(key: str, seed: int) -> str:
    """A video's place in its class' draw: a hash of the seed and its relative path, the same on
    every machine, for every copy of the folder and whatever order the files are listed in."""
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def _joins_val(key: str, seed: int, fraction: float) -> bool:
    """Where a video the split file does not know goes: val when its hash falls below ``fraction``."""
    return int(_rank(key, seed)[:15], 16) / 16**15 < fraction


def make_split(labels: dict[str, str], *, val_fraction: float, seed: int) -> dict[str, str]:
    """``key -> "train" | "val"``: in each class, ``round(n * val_fraction)`` videos (at least 1,
    at most ``n - 1``) with the smallest hash of ``(seed, key)`` go to val."""
    by_class: dict[str, list[str]] = {}
    for key, label in labels.items():
        by_class.setdefault(label, []).append(key)
    out: dict[str, str] = {}
    for keys in by_class.values():
        ranked = sorted(keys, key=lambda k: (_rank(k, seed), k))
        n_val = min(max(round(len(ranked) * val_fraction), 1), len(ranked) - 1)
        for i, key in enumerate(ranked):
            out[key] = "val" if i < n_val else "train"
    return out


def _split_of(labels: dict[str, str], *, file: Path | None, val_fraction: float, seed: int) -> dict[str, str]:
    """The split of ``labels``' videos: read from ``file`` when it exists (videos it does not know
    go to val by their own hash, ``val_fraction`` of them, and the file is left as it is), else
    made (:func:`make_split`) and written there."""
    if file is not None and file.is_file():
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            stored = {k: s for s in ("train", "val") for k in data[s]}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise _error(file, 0, f"not a split file ({e}); delete it to make the split again") from e
        new = sorted(set(labels) - set(stored))
        out = {k: stored[k] for k in labels if k in stored}
        for key in new:
            out[key] = "val" if _joins_val(key, seed, val_fraction) else "train"
        if new:
            n_val = sum(out[k] == "val" for k in new)
            log.warning(
                "%d videos are not in %s (added since the split was made): %d to train, %d to val by their hash; "
                "the others keep their split",
                len(new),
                file,
                len(new) - n_val,
                n_val,
            )
        gone = len(set(stored) - set(labels))
        if gone:
            log.warning("%d videos of %s are gone or unreadable now; the split of the others is unchanged", gone, file)
        return out
    out = make_split(labels, val_fraction=val_fraction, seed=seed)
    if file is not None:
        payload = {
            "version": SPLIT_VERSION,
            "val_fraction": val_fraction,
            "split_seed": seed,
            "train": sorted(k for k, s in out.items() if s == "train"),
            "val": sorted(k for k, s in out.items() if s == "val"),
        }
        file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(file, json.dumps(payload, indent=1))
        log.info(
            "split %d train / %d val videos (seed %d), kept in %s",
            len(payload["train"]),
            len(payload["val"]),
            seed,
            file,
        )
    return out


# --------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------


def _refuse_tiny(classes: Sequence[str], counts: Counter, source: Path, *, what: str) -> None:
    tiny = [c for c in classes if counts[c] < MIN_VIDEOS]
    if tiny:
        shown = ", ".join(f"{c!r} ({counts[c]})" for c in tiny[:5]) + (", ..." if len(tiny) > 5 else "")
        raise DataError(
            f"{source}: {len(tiny)} classes have fewer than {MIN_VIDEOS} {what}: {shown}; each needs one to train on "
            "and one to validate: add videos or remove the class"
        )


def load_folders(
    root: PathLike,
    split: str,
    *,
    on_error: OnError = "raise",
    check_files: bool = True,
    csv: PathLike | None = None,
    split_file: PathLike | None = None,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    check_workers: int | None = None,
) -> Annotations:
    """A user's videos: ``root/<class>/<video>`` (any container the readers open, or a folder of
    JPEG frames), or the CSV / TSV ``csv`` of ``path,label[,split]`` (relative to ``root`` when
    not absolute; its paths relative to its own folder; a header line ``path,label[,split]`` is
    optional).

    Every video is opened once (``check_workers`` threads; the bad ones are listed with the reason
    and skipped, in one summary line) and the result cached by path, size and mtime
    (``ROOT/.videoattn_checks.json``, or beside ``split_file`` when the root is read-only), so a
    rerun opens none. Classes are the sorted folder names (labels of the CSV); a class with fewer
    than 2 good videos is refused by name.

    ``check_files=False`` opens no video (an unreadable one then fails when read, and is replaced
    by another as ``data.max_retries`` allows).

    Without a split column the split is stratified: ``val_fraction`` of each class (at least one
    video) to val, chosen by a hash of ``split_seed`` and each video's relative path: the same on
    every machine and for every copy of the folder. With ``split_file`` (the training run sets
    its ``RUN_DIR/split.json``), the split is written there once and read back afterwards;
    videos added later go to val by their own hash, and no video already in the file moves.
    """
    split = _canonical_split(split)
    root = _abs(root)
    problems = _Problems(on_error, "folders")
    if not 0.0 < float(val_fraction) < 1.0:
        raise ConfigError(f"data.annotations.val_fraction={val_fraction}: a fraction between 0 and 1 (e.g. 0.2)")
    if not root.is_dir():
        raise MissingFileError(f"data.root={root}: no such folder; give the folder of class sub-folders")
    if csv is not None:
        csv_file = Path(csv).expanduser()
        csv_file = csv_file if csv_file.is_absolute() else root / csv_file
        if not csv_file.is_file():
            raise MissingFileError(f"data.annotations.csv={csv}: no such file ({csv_file})")
        videos = _list_csv(csv_file, problems, check_files=check_files)
        source: Path = csv_file
    else:
        videos, _ = _list_folders(root)
        source = root
    classes = sorted({v.label for v in videos})
    _refuse_tiny(classes, Counter(v.label for v in videos), source, what="videos")  # before any is opened
    file = _abs(split_file) if split_file is not None else None
    cache = _cache_file(root, file)
    if check_files:
        frames, bad, fresh = _check_all(videos, cache=cache, backend="auto", workers=check_workers)
    else:  # ++data.annotations.check_files=false: every video listed is taken, unopened
        frames, bad, fresh = {v.key: 0 for v in videos}, {}, set()
    skipped = [Skipped(str(v.path), 0, f"unreadable video: {bad[v.key]}") for v in videos if v.key in bad]
    if bad:
        listed = [v for v in videos if v.key in fresh and v.key in bad]
        for video in listed[:20]:
            log.warning("unreadable video %s: %s", video.path, bad[video.key])
        log.warning(
            "skipped %d unreadable videos of %d (%s; each with its reason in %s)",
            len(bad),
            len(videos),
            "listed above" if listed else "checked before",
            cache,
        )
    good = [v for v in videos if v.key in frames]
    _refuse_tiny(classes, Counter(v.label for v in good), source, what="readable videos")
    if any(v.split is not None for v in good):
        where = {v.key: v.split for v in good}
    else:
        where = _split_of({v.key: v.label for v in good}, file=file, val_fraction=float(val_fraction), seed=split_seed)
    index = {name: i for i, name in enumerate(classes)}
    rows = _Split(problems, source, noun="video")
    for video in good:
        if where[video.key] == split:
            rows.add(video.path.parent, video.path.name, index[video.label], video.key)
    annotations = rows.finish(classes)
    if split == "train":  # listed above whatever on_error (the check skips them), and in the run's bad_files.jsonl once
        annotations.skipped.extend(skipped)
    if not len(annotations):
        raise DataError(f"{source}: no videos in the {split} split")
    return annotations


FORMAT = ParserFormat(
    name="folders",
    aliases=("folder", "custom", "csv"),
    reads="ROOT/<class>/<video> (or JPEG-frame folders), or a CSV / TSV of path,label[,split]",
    parser=load_folders,
)
