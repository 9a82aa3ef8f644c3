"""The records of a split, stored compactly: numpy arrays and string tables.

A Something-Something v2 train split has 169k videos, Kinetics-400 240k. A Python object per
record (a dataclass, a ``Path``, three strings) costs hundreds of bytes each and, worse, every
DataLoader worker forked from the main process touches their reference counts on first read,
so each worker slowly copies the whole index (copy-on-read). :class:`RecordTable` keeps the
index in a handful of numpy arrays instead: a folder table (few entries), one string table of
file names and one of video ids (UTF-8 bytes and offsets), labels and frame counts. Reading
record ``i`` builds its :class:`VideoRecord` on the fly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np

__all__ = ["RecordTable", "StringTable", "VideoRecord"]


@dataclass(frozen=True)
class VideoRecord:
    """One video of a split.

    Attributes:
        path: absolute path to the video file or to the JPEG frame folder.
        label: class index into :attr:`Annotations.classes`; ``-1`` when unlabelled.
        num_frames: frame count when the annotations know it (list file, counted SSv1 frame
            folder), else ``None`` and the video reader decides.
        video_id: SSv2 id, Kinetics ``youtube_id``, SSv1 folder id, or the path as written in a
            list file.
    """

    path: Path
    label: int
    num_frames: int | None = None
    video_id: str = ""


class StringTable(Sequence[str]):
    """Strings stored as one UTF-8 buffer and ``len + 1`` offsets (``int64``)."""

    def __init__(self, strings: Iterable[str] = ()) -> None:
        encoded = [s.encode("utf-8") for s in strings]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self.offsets[1:])
        self.data = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    @classmethod
    def _of(cls, data: np.ndarray, offsets: np.ndarray) -> StringTable:
        table = cls.__new__(cls)
        table.data, table.offsets = data, offsets
        return table

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        return self.data[self.offsets[i] : self.offsets[i + 1]].tobytes().decode("utf-8")

    def take(self, indices: np.ndarray) -> StringTable:
        """The strings at ``indices``, as a new table."""
        starts, ends = self.offsets[indices], self.offsets[indices + 1]
        lengths = ends - starts
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        picks = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return StringTable._of(self.data[picks], offsets)

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + self.offsets.nbytes


class RecordTable(Sequence[VideoRecord]):
    """The records of a split; ``table[i]`` is a :class:`VideoRecord`, ``table[a:b]`` and
    ``table[indices]`` a smaller table. Build one with :class:`RecordTable.Builder`."""

    def __init__(
        self,
        folders: Sequence[str],
        folder: np.ndarray,  # (N,) int32: index into folders
        names: StringTable,
        labels: np.ndarray,  # (N,) int32
        num_frames: np.ndarray,  # (N,) int32, -1: unknown
        video_ids: StringTable,
    ) -> None:
        self.folders = list(folders)
        self.folder, self.names, self.labels, self.num_frames, self.video_ids = (
            folder, names, labels, num_frames, video_ids,
        )  # fmt: skip

    class Builder:
        """Collects records one by one (a loader's rows), then :meth:`build` packs them."""

        def __init__(self) -> None:
            self._folder_index: dict[Path, int] = {}
            self._folder: list[int] = []
            self._names: list[str] = []
            self._labels: list[int] = []
            self._frames: list[int] = []
            self._ids: list[str] = []

        def add(self, folder: Path, name: str, label: int, video_id: str, num_frames: int | None = None) -> None:
            index = self._folder_index.setdefault(folder, len(self._folder_index))
            self._folder.append(index)
            self._names.append(name)
            self._labels.append(label)
            self._frames.append(-1 if num_frames is None else num_frames)
            self._ids.append(video_id)

        def __len__(self) -> int:
            return len(self._names)

        def build(self) -> RecordTable:
            return RecordTable(
                [str(f) for f in self._folder_index],
                np.asarray(self._folder, dtype=np.int32),
                StringTable(self._names),
                np.asarray(self._labels, dtype=np.int32),
                np.asarray(self._frames, dtype=np.int32),
                StringTable(self._ids),
            )

    @classmethod
    def from_records(cls, records: Iterable[VideoRecord]) -> RecordTable:
        builder = cls.Builder()
        for r in records:
            path = Path(r.path)
            builder.add(path.parent, path.name, r.label, r.video_id, r.num_frames)
        return builder.build()

    def __len__(self) -> int:
        return len(self.labels)

    @overload
    def __getitem__(self, i: int) -> VideoRecord: ...
    @overload
    def __getitem__(self, i: slice | Sequence[int] | np.ndarray) -> RecordTable: ...
    def __getitem__(self, i):
        if isinstance(i, (int, np.integer)):
            n = len(self)
            if not -n <= i < n:
                raise IndexError(f"record {i} out of range for {n} records")
            i = int(i) % n
            frames = int(self.num_frames[i])
            return VideoRecord(
                path=Path(self.folders[self.folder[i]], self.names[i]),
                label=int(self.labels[i]),
                num_frames=None if frames < 0 else frames,
                video_id=self.video_ids[i],
            )
        indices = np.arange(len(self))[i] if isinstance(i, slice) else np.asarray(i, dtype=np.int64)
        return RecordTable(
            self.folders, self.folder[indices], self.names.take(indices), self.labels[indices],
            self.num_frames[indices], self.video_ids.take(indices),
        )  # fmt: skip

    def __iter__(self) -> Iterator[VideoRecord]:
        return (self[i] for i in range(len(self)))

    def path(self, i: int) -> str:
        """Record ``i``'s path as a string, without building the record."""
        return f"{self.folders[self.folder[i]]}/{self.names[i]}"

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (the folder table's few strings not counted)."""
        arrays = (self.folder, self.labels, self.num_frames)
        return sum(a.nbytes for a in arrays) + self.names.nbytes + self.video_ids.nbytes

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (RecordTable, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RecordTable({len(self)} records, {len(self.folders)} folders, {self.nbytes / 2**20:.1f} MiB)"
