"""Writing files so that a kill at any instant leaves the old file or the new one, never a torn one.

:func:`atomic_file` is the one pattern: write a temporary file ``.<name>.<pid>.tmp`` in the same
folder, ``fsync`` it, then ``os.replace`` it over the target. A writer killed before the rename
leaves only its temporary file, which :func:`remove_temp_files` deletes (the name carries the
writer's pid, so a live writer's file is told from a dead one's). An operating-system error is
re-raised naming the target path (``ENOSPC`` -> "the disk is full" in the tools' one-line error).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file", "remove_temp_files", "temp_path", "write_atomic"]

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary file :func:`atomic_file` writes ``path`` through."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file object whose content replaces ``path`` when the block ends without an
    error (flushed and fsynced first); on an error the temporary file is removed and ``path``
    keeps its old content."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as err:
        if err.filename is None:  # e.g. a write into a full disk: say which file
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Replace ``path`` by ``data`` (text is written as UTF-8) through :func:`atomic_file`."""
    with atomic_file(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def remove_temp_files(folder: str | os.PathLike, *, only_dead: bool = True) -> list[Path]:
    """Delete the temporary files of writers that died before renaming them (``only_dead``:
    those whose pid no longer runs on this machine; otherwise all, for a caller that knows it
    is the folder's only writer). Returns the files removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        m = _TEMP.match(entry.name)
        if m is None or (only_dead and _alive(int(m["pid"]))):
            continue
        with contextlib.suppress(FileNotFoundError):
            if entry.is_dir() and not entry.is_symlink():  # a frame folder being written
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    try:  # a killed process that nobody has reaped yet (a zombie) still answers kill(0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
