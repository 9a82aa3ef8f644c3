"""``VideoDataset``: annotation records -> sampled, decoded, transformed clips.

One item is ``(clip, label, index, substituted)``:

- ``mode="train"``: ``(T, 3, S, S)`` float32, random segments / window and augmentation;
- ``mode="val"``: ``(T, 3, S, S)``, the deterministic centre clip and centre crop;
- ``mode="test"``: ``(V, T, 3, S, S)`` with ``V = num_clips * num_crops`` views, clip-major;

with ``F = sampling.frames_per_segment > 1`` (a stem module's need, TDN's 5) the ``F`` frames of
each segment are stacked on the channels, frame-major then RGB: ``(T, F*3, S, S)`` (the same crop,
flip and scale for every frame of the clip);

``index`` is the record actually returned and ``substituted`` whether it stands in for the one
asked for. A video that cannot be read (missing, corrupt, undecodable: a decode or I/O error of
its file) is logged with its path, appended to the bad-file report, and replaced by another
item, at most ``max_retries`` times: an epoch never stops on one bad video, and evaluation
leaves substituted items out of its metrics. Any other error (a transform that cannot apply,
a bug) is raised at once: it is not the file's fault.

All randomness of an item comes from ``numpy.random.default_rng([seed, epoch, index, attempt])``,
so a clip does not depend on the number of workers, and a resumed run sees the same clips.
The epoch lives in shared memory: ``set_epoch`` in the main process reaches DataLoader workers
that were started before it (``persistent_workers=True``), which hold their own copy of the
dataset and would otherwise draw the first epoch's augmentation again in every epoch.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError
from .annotations import Annotations
from .records import RecordTable, VideoRecord
from .sampling import Sampling
from .transforms import EvalTransform, TrainTransform
from .video import DecodeError, read_clip

log = logging.getLogger(__name__)

MODES = ("train", "val", "test")


def stack_segments(clip: Tensor, frames_per_segment: int) -> Tensor:
    """``(..., T*F, 3, S, S) -> (..., T, F*3, S, S)``: each segment's ``F`` frames on the channels,
    frame-major then RGB, as a stem module reads them (unchanged for ``F = 1``)."""
    if frames_per_segment == 1:
        return clip
    frames = clip.unflatten(-4, (-1, frames_per_segment))  # (..., T*F, 3, S, S) -> (..., T, F, 3, S, S)
    return frames.flatten(-4, -3)  # (..., T, F*3, S, S)


class VideoDataset(Dataset):
    """Clips of the videos in ``records`` (parsed ``Annotations``, a ``RecordTable`` or a list of
    ``VideoRecord``; kept as a ``RecordTable``, arrays that DataLoader workers share without
    copying).

    ``transform``: a :class:`TrainTransform` for ``mode="train"``, an :class:`EvalTransform`
    otherwise. ``backend``: the video reader (``"auto"``, ``"decord"``, ``"pyav"``,
    ``"frames"``); with ``fallback``, files decord rejects are read with PyAV. ``report``: a
    JSON-lines file that every process (DataLoader workers, DDP ranks) appends its bad files to,
    each line naming the ``split`` (default: the mode).
    """

    def __init__(
        self,
        records: Annotations | Sequence[VideoRecord],
        *,
        sampling: Sampling,
        transform: TrainTransform | EvalTransform,
        mode: str = "train",
        backend: str = "auto",
        fallback: bool = True,
        max_retries: int = 10,
        seed: int = 0,
        report: str | os.PathLike | None = None,
        split: str | None = None,
        num_threads: int = 1,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"dataset mode {mode!r} is not one of {MODES}")
        if (mode == "train") != isinstance(transform, TrainTransform):
            want = "TrainTransform" if mode == "train" else "EvalTransform"
            raise TypeError(f"mode={mode!r} needs a {want}, got {type(transform).__name__}")
        self.skipped: list = []  # annotation entries skipped with on_error="skip"
        if isinstance(records, Annotations):
            self.classes: list[str] | None = list(records.classes)
            self.skipped = list(records.skipped)
            records = records.records
        else:
            self.classes = None
        self.records = records if isinstance(records, RecordTable) else RecordTable.from_records(records)
        if not self.records:
            raise DataError("the dataset has no videos: check the annotation file and the video folder")
        self.sampling, self.transform, self.mode = sampling, transform, mode
        self.backend, self.fallback, self.num_threads = backend, fallback, num_threads
        self.max_retries, self.seed = max_retries, seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()  # read by every worker
        self.report = Path(report) if report is not None else None
        self.split = split or mode
        self.failures: list[dict[str, str]] = []  # bad files seen by this process
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Select the random draws of ``epoch`` (call before each epoch, like DistributedSampler);
        seen by the workers of a DataLoader from its next iterator on, persistent ones included."""
        self._epoch.fill_(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    @property
    def labels(self) -> list[int]:
        return self.records.labels.tolist()

    def rng(self, index: int, attempt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index, attempt])

    def load(self, index: int, rng: np.random.Generator) -> tuple[Tensor, int]:
        """Read and transform record ``index``; raises on a bad video."""
        record = self.records[index]
        if self.mode == "train":
            frames, _ = read_clip(record.path, lambda n: self.sampling.train(n, rng), **self._reader())
            clip, label = self.transform(frames, record.label, rng)  # (T*F, 3, H, W) -> (T*F, 3, S, S)
            return self.stack_segments(clip), label
        if self.mode == "val":
            frames, _ = read_clip(record.path, self.sampling.val, **self._reader())
            clip = self.transform(frames, squeeze=True)  # (T*F, 3, H, W) -> (T*F, 3, S, S)
            return self.stack_segments(clip), record.label
        frames, _ = read_clip(record.path, self.sampling.test, **self._reader())  # (clips, T*F, 3, H, W)
        views = self.transform(frames)  # (clips, T*F, 3, H, W) -> (clips, crops, T*F, 3, S, S)
        return self.stack_segments(views.flatten(0, 1)), record.label  # -> (V, T, F*3, S, S), clip-major

    def stack_segments(self, clip: Tensor) -> Tensor:
        """:func:`stack_segments` with the sampling's ``frames_per_segment``."""
        return stack_segments(clip, self.sampling.frames_per_segment)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int, bool]:
        tried = []
        current = index
        for attempt in range(self.max_retries + 1):
            rng = self.rng(index, attempt)
            if current not in self._bad:
                try:
                    clip, label = self.load(current, rng)
                    return clip, label, current, current != index
                except (DecodeError, OSError) as e:  # the file's own fault: missing, unreadable, undecodable
                    self._record_failure(current, e)
                tried.append(str(self.records[current].path))
            current = int(rng.integers(len(self)))
        raise DataError(
            f"{len(tried)} videos in a row could not be read while loading item {index} "
            f"(max_retries={self.max_retries}): {tried[:5]}; check the dataset with tools/prepare_data.py"
        )

    def probe(self) -> Tensor | None:
        """Load one item, without recording anything: a setting that cannot apply to these
        videos (a crop larger than the frames) fails now instead of after a training epoch.
        Unreadable videos are passed over here; the epoch records them. Returns the item's
        clip (what a batch holds per item: its size in shared memory), None when none was read."""
        for index in range(min(len(self), self.max_retries + 1)):
            try:
                return self.load(index, self.rng(index))[0]
            except (DecodeError, OSError):
                continue
        return None

    def _reader(self) -> dict:
        return {"backend": self.backend, "fallback": self.fallback, "num_threads": self.num_threads}

    def _record_failure(self, index: int, error: BaseException) -> None:
        self._bad.add(index)
        path = str(self.records[index].path)
        entry = {"split": self.split, "path": path, "error": f"{type(error).__name__}: {error}", "epoch": self.epoch}
        self.failures.append(entry)
        log.warning("skipping unreadable video %s (%s: %s); using another item", path, type(error).__name__, error)
        self._append([entry])

    def report_skipped(self) -> int:
        """Append the annotation entries skipped with ``on_error="skip"`` to the report (those not
        in it already); returns how many were skipped. Called by the one process that writes."""
        if not self.skipped or self.report is None:
            return len(self.skipped)
        known = {(e.get("split"), e["path"]) for e in read_report_entries(self.report)}
        entries = [
            {"split": self.split, "path": f"{s.file}:{s.line}", "error": f"skipped annotation: {s.reason}"}
            for s in self.skipped
        ]
        self._append([e for e in entries if (e["split"], e["path"]) not in known])
        return len(self.skipped)

    def _append(self, entries: list[dict]) -> None:
        if self.report is None or not entries:
            return
        self.report.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(json.dumps(e) + "\n" for e in entries).encode()
        fd = os.open(self.report, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:  # one write on an O_APPEND descriptor: lines of concurrent workers do not interleave
            os.write(fd, data)
        finally:
            os.close(fd)


def read_report_entries(path: str | os.PathLike) -> list[dict]:
    """The entries of a report written by :class:`VideoDataset`, one per ``(split, path)`` (the
    first seen): ``{"split", "path", "error", ...}``."""
    path = Path(path)
    if not path.exists():
        return []
    seen: dict[tuple, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                entry = json.loads(line)
            except ValueError:  # a line torn by a kill mid-write
                continue
            seen.setdefault((entry.get("split"), entry["path"]), entry)
    return list(seen.values())


def read_report(path: str | os.PathLike) -> dict[str, str]:
    """The bad files of a report written by :class:`VideoDataset`: ``{path: first error}``."""
    bad: dict[str, str] = {}
    for entry in read_report_entries(path):
        bad.setdefault(entry["path"], entry["error"])
    return bad
