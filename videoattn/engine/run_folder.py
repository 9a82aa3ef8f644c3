"""A training run's folder: one writer at a time, and files that agree after a kill at any instant.

``RUN_DIR`` holds

==================  ===============================================================================
``.lock``           held (a POSIX record lock, ``lockf``) by the one training process that writes
                    the folder, for the whole run; it names that process (pid, host, start time,
                    command). The kernel releases it however the process ends, SIGKILL included;
                    unlike ``flock``, forked DataLoader workers do not inherit it (so they cannot
                    keep a killed run's folder locked), and it works on NFS.
``last.pth``        the newest epoch: **the run's commit point** (weights, optimiser, history,
                    best epoch, RNG states). Every other file is derived from it.
``last.1.pth`` ...  the ``keep_last - 1`` epochs before it; resume falls back to them, with a
                    warning, when a newer one cannot be read.
``best.pth``        the epoch with the best val top-1, written right after ``last.pth`` records it
``metrics.csv``     one row per epoch, rewritten from ``last.pth``'s history (never appended)
``results.json``    the run's summary, rewritten from it every epoch
``bad_files.jsonl`` the unreadable videos and skipped annotation lines, with their split
``train.log``       the run's log (rank 0), appended to by every run in the folder: its start
                    (kept in memory until the folder is the run's), every epoch line and the result
``config.yaml``, ``tb/``, ``trackers.json`` (the W&B / MLflow run ids: videoattn.engine.trackers)
``*.unreadable``,   set aside, never deleted by a resume: a checkpoint that could not be read, a
``best.epochN.pth`` ``best.pth`` from beyond the point a run resumed from
==================  ===============================================================================

Every file is replaced atomically (:mod:`videoattn.files`), in the order ``last.pth`` (after
rotating the older ones), ``best.pth``, ``metrics.csv``, ``results.json``. A kill anywhere
leaves ``last.pth`` at epoch ``e`` or ``e - 1`` and the others at most one step behind it;
:meth:`RunFolder.repair`, run when a training resumes, brings them back in line with it, and
:meth:`RunFolder.lock` deletes the temporary files of the writer that was killed.

A run starts in three steps: :meth:`RunFolder.lock`, :meth:`RunFolder.resume_point` (decides,
changes nothing), and, once the data, the model and the checkpoint are known to fit,
:meth:`RunFolder.start` (deletes a run being replaced with ``overwrite=true``, sets unreadable
checkpoints aside). A start that fails before that leaves the folder as it was.

The log follows the same rule: :meth:`RunFolder.buffer_logs` keeps the records of the start in
memory, and :meth:`RunFolder.open_log`, called once the run writes the folder, appends them and
every later record to ``train.log``. :class:`Results` derives ``results.json`` from a checkpoint.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import logging
import logging.handlers
import math
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import check_torch_file, load_checkpoint, save_checkpoint
from ..data.dataset import read_report_entries
from ..errors import CheckpointError, ConfigError, UserError
from ..files import remove_temp_files, temp_path, write_atomic

log = logging.getLogger(__name__)

__all__ = ["LOG_FORMAT", "Results", "RunFolder", "RunFolderBusy", "RunFolderError", "best_epoch"]

NO_RESUME = (None, "none", "never", False)
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # train.log's lines, as Hydra's on the console


class RunFolderError(UserError, ValueError):
    """The run folder cannot be used as asked (it holds another run, or its checkpoints are unreadable)."""


class RunFolderBusy(RunFolderError):
    """Another live process holds the run folder's lock."""


def best_epoch(ckpt: Mapping[str, Any]) -> int | None:
    """The 0-based epoch of the run's best val top-1 (``None`` before the first validation);
    read from the checkpoint, or from its history for checkpoints written before it was stored."""
    if "best_epoch" in ckpt:
        return ckpt["best_epoch"]
    best = ckpt.get("best_top1", -1.0)
    for row in ckpt.get("history", []):
        if row.get("val_top1") == best:
            return row["epoch"] - 1
    return None


class RunFolder:
    """The files of one training run in ``path`` (see the module docstring); ``keep_last``
    checkpoints are kept (``last.pth`` and the ``keep_last - 1`` before it); ``metrics_csv``:
    whether ``metrics.csv`` is written (the ``csv`` of ``loggers``)."""

    def __init__(self, path: str | os.PathLike, *, keep_last: int = 2, metrics_csv: bool = True) -> None:
        if not isinstance(keep_last, int) or isinstance(keep_last, bool) or keep_last < 1:
            raise ConfigError(f"keep_last={keep_last!r}: the number of last checkpoints to keep, an integer >= 1")
        self.path = Path(path)
        self.keep_last = keep_last
        self.metrics_csv = metrics_csv  # loggers' csv: metrics.csv written with each checkpoint
        self._lock_fd: int | None = None
        self._created = False
        self._replace, self._unreadable, self._source = False, [], None  # decided by resume_point
        self._log_buffer: logging.handlers.MemoryHandler | None = None  # buffer_logs ... open_log
        self._log_file: logging.FileHandler | None = None

    # ------------------------------------------------------------------ names
    @property
    def last(self) -> Path:
        return self.path / "last.pth"

    @property
    def best(self) -> Path:
        return self.path / "best.pth"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def results(self) -> Path:
        return self.path / "results.json"

    @property
    def report(self) -> Path:
        return self.path / "bad_files.jsonl"

    @property
    def log(self) -> Path:
        return self.path / "train.log"

    def older(self, i: int) -> Path:
        """``last.<i>.pth``: the checkpoint ``i`` epochs before ``last.pth``."""
        return self.path / f"last.{i}.pth"

    def checkpoints(self) -> list[Path]:
        """The last checkpoints on disk, newest first (``last.pth``, ``last.1.pth``, ...)."""
        return [p for _, p in self._numbered()]

    def _numbered(self) -> list[tuple[int, Path]]:
        found = [(0, self.last)] if self.last.exists() else []
        for p in self.path.glob("last.*.pth"):
            stem = p.name[len("last.") : -len(".pth")]
            if stem.isdigit() and int(stem) > 0:
                found.append((int(stem), p))
        return sorted(found)

    def run_files(self) -> list[str]:
        """The files that make the folder hold a run: checkpoints and results."""
        names = [p.name for p in self.checkpoints()]
        names += [p.name for p in (self.best, self.metrics, self.results) if p.exists()]
        if self.metrics.exists():
            rows = max(len(self.metrics.read_text(errors="replace").splitlines()) - 1, 0)
            names[names.index("metrics.csv")] = f"metrics.csv ({rows} epochs)"
        return names

    # ------------------------------------------------------------------ one writer
    @contextlib.contextmanager
    def lock(self) -> Iterator[RunFolder]:
        """Hold the folder's lock for the block (created with the folder if needed), or fail at
        once with :class:`RunFolderBusy` naming the process that holds it. Temporary files left
        by a killed writer are deleted once the lock is held. If the block fails before anything
        but the lock was written, a folder created here is removed again."""
        self._acquire()
        try:
            yield self
        finally:
            self._release()

    def _acquire(self) -> None:
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except FileExistsError as err:
            raise RunFolderError(f"run_dir={self.path} is a file, not a folder; choose another run_dir") from err
        except OSError as err:
            raise RunFolderError(
                f"run_dir={self.path}: cannot create or write the run folder ({err.strerror}: "
                f"{err.filename}); choose a folder you can write"
            ) from err
        path = self.path / ".lock"
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the process must not open .lock again: closing
                # any descriptor of the file releases a POSIX lock
            except OSError as err:
                owner = _read_owner(fd)
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise RunFolderBusy(
                    f"run_dir={self.path} is in use by another training ({_describe_owner(owner)}); "
                    "wait for it to end, stop it, or choose another run_dir"
                ) from None
            try:  # its last holder may have deleted the file between our open and our lock: lock the current one
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        previous = _read_owner(fd)
        if previous:
            log.warning(
                "run_dir %s: the previous training in it (%s) ended without releasing its lock (killed?); "
                "taking it over",
                self.path,
                _describe_owner(previous),
            )
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
        self._lock_fd = fd
        for tmp in remove_temp_files(self.path, only_dead=False):  # we are the only writer: any is a dead one's
            log.warning("removed %s, left by a training killed while writing it", tmp)

    def _release(self) -> None:
        if self._lock_fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            (self.path / ".lock").unlink()  # while still holding it (see _acquire)
        os.close(self._lock_fd)
        self._lock_fd = None
        if self._created:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only if the run wrote nothing (a failed start)

    # ------------------------------------------------------------------ the run's log
    @contextlib.contextmanager
    def buffer_logs(self) -> Iterator[RunFolder]:
        """Keep the records of the root logger in memory from here on, for ``train.log``: the
        folder is not the run's yet (it may be locked by another run, or hold one this run may
        not replace). :meth:`open_log` writes them there once it is; the block's end closes it."""
        if self._log_buffer is not None or self._log_file is not None:
            raise RuntimeError("buffer_logs() is already active")
        root = logging.getLogger()
        self._log_buffer = logging.handlers.MemoryHandler(capacity=1_000_000, flushLevel=logging.CRITICAL + 1)
        root.addHandler(self._log_buffer)
        try:
            yield self
        finally:
            if self._log_buffer is not None:
                root.removeHandler(self._log_buffer)
                self._log_buffer = None
            if self._log_file is not None:
                root.removeHandler(self._log_file)
                self._log_file.close()
                self._log_file = None

    def open_log(self) -> None:
        """Append the records kept since :meth:`buffer_logs` (in whose block it is called), and
        every later one until the block ends, to ``train.log`` (call it once the run writes the
        folder, after :meth:`start`)."""
        if self._log_buffer is None:
            raise RuntimeError("open_log() is called once, inside buffer_logs()")
        handler = logging.FileHandler(self.log)  # appended to: a resumed run continues the log
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root = logging.getLogger()
        self._log_buffer.setTarget(handler)
        self._log_buffer.flush()
        root.removeHandler(self._log_buffer)
        self._log_buffer = None
        root.addHandler(handler)
        self._log_file = handler

    def epochs_saved(self) -> int:
        """The epochs the last checkpoint holds (read from ``results.json``, rewritten with it); 0 if none."""
        try:
            return int(json.loads(self.results.read_text())["epochs_done"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    # ------------------------------------------------------------------ where to start
    def resume_point(self, resume: Any, *, overwrite: bool = False) -> Path | None:
        """The checkpoint the run continues from, or ``None`` to start from scratch. It only
        decides: nothing in the folder changes until :meth:`start`, which the run calls once it
        knows that the data and the checkpoint fit its model.

        ``resume=auto``: the newest readable of the last checkpoints (falling back to an older
        one, with a warning, when a newer one is unreadable); from scratch only in a folder that
        holds no run. ``resume=none``: from scratch, which in a folder holding a run needs
        ``overwrite=true`` (its files are then deleted, and listed in the log). ``resume=PATH``:
        that checkpoint; in a folder holding another run, also with ``overwrite=true``.
        """
        if not isinstance(overwrite, bool):
            raise ConfigError(f"overwrite={overwrite!r}: true or false")
        if not (resume in NO_RESUME or isinstance(resume, str | os.PathLike)):
            raise ConfigError(f"resume={resume!r}: auto, none, or the path of a checkpoint")
        self._replace, self._unreadable, self._source = False, [], None
        present = self.run_files()
        if resume == "auto":
            if overwrite:
                raise ConfigError(
                    "overwrite=true replaces the run in run_dir, which resume=auto never does: pass "
                    "resume=none overwrite=true to start it again from scratch (or resume=PATH)"
                )
            errors = []
            for path in self.checkpoints():
                try:
                    check_torch_file(path)
                    _peek(path)
                except CheckpointError as err:
                    errors.append(f"{path.name}: {err}")
                    self._unreadable.append(path)
                    log.warning("cannot resume from %s (%s); trying the checkpoint before it", path, err)
                    continue
                if errors:
                    log.warning("resuming from the older checkpoint %s: %s", path, "; ".join(errors))
                self._source = path
                return path
            if present:
                why = f" ({'; '.join(errors)})" if errors else ""
                raise RunFolderError(
                    f"run_dir={self.path} holds a run ({', '.join(present)}) but no checkpoint to resume it from{why}; "
                    "to start it again from scratch pass resume=none overwrite=true, or choose another run_dir"
                )
            return None
        if resume in NO_RESUME:
            if present and not overwrite:
                raise RunFolderError(
                    f"run_dir={self.path} already holds a run ({', '.join(present)}); resume=none would start it again "
                    "from scratch and replace it: add overwrite=true to do that, drop resume=none to continue it, "
                    "or choose another run_dir"
                )
            self._replace = bool(present)
            return None
        path = check_torch_file(resume, what="resume checkpoint")
        inside = path.resolve().parent == self.path.resolve()
        if present and not inside and not overwrite:
            raise RunFolderError(
                f"run_dir={self.path} already holds a run ({', '.join(present)}); resume={path} would continue "
                "another checkpoint there and replace it: add overwrite=true to do that, or choose another run_dir"
            )
        self._replace = bool(present) and not inside
        if overwrite and not present:
            log.info("overwrite=true: run_dir %s holds no run; nothing to replace", self.path)
        self._source = path if inside else None
        return path

    def start(self) -> Path | None:
        """Carry out what :meth:`resume_point` decided, once the run is known to fit: delete the
        run being replaced (``overwrite=true``), or, after a fall-back, set the unreadable newer
        checkpoints aside (``last.pth.unreadable``: kept, never rotated over the good one) and
        make the resumed checkpoint ``last.pth``. Returns where the resumed checkpoint now is
        when it is one of the folder's own."""
        if self._replace:
            self.clear()
        for path in self._unreadable:
            aside = path.with_name(path.name + ".unreadable")
            os.replace(path, aside)
            log.warning("kept the unreadable %s as %s", path.name, aside.name)
        if self._source is not None and self._unreadable and self._source != self.last:
            os.replace(self._source, self.last)  # the rotation then starts from a readable last.pth
            self._source = self.last
        return self._source

    def clear(self) -> None:
        """Delete the run's files (``overwrite=true``), listing them in the log; ``last.pth``
        goes last, so that a kill in the middle leaves a run that resumes."""
        removed = self.run_files()
        older = [p for _, p in reversed(self._numbered()) if p != self.last]
        extra = [*self.path.glob("best.epoch*.pth"), *self.path.glob("*.unreadable")]
        files = [
            self.best,
            self.metrics,
            self.results,
            self.report,
            self.path / "config.yaml",
            self.path / "trackers.json",
        ]
        for p in [*extra, *older, *files]:
            p.unlink(missing_ok=True)
        shutil.rmtree(self.path / "tb", ignore_errors=True)
        self.last.unlink(missing_ok=True)
        self.log.unlink(missing_ok=True)
        log.warning("overwrite=true: deleted the previous run in %s (%s)", self.path, ", ".join(removed))

    # ------------------------------------------------------------------ writing an epoch
    def save_epoch(self, ckpt: Mapping[str, Any], *, improved: bool, results: Mapping[str, Any]) -> None:
        """Write epoch ``ckpt["epoch"]``: rotate the last checkpoints, ``last.pth`` (the commit
        point), ``best.pth`` if ``improved``, ``metrics.csv`` and ``results.json``."""
        self._rotate()
        save_checkpoint(ckpt, self.last)
        if improved:
            save_checkpoint(ckpt, self.best)
        if self.metrics_csv:
            self.write_metrics(ckpt["history"])
        self.write_results(results)

    def _rotate(self) -> None:
        """``last.<i>.pth`` -> ``last.<i+1>.pth``, ``last.pth`` -> ``last.1.pth`` (a hard link, so
        that ``last.pth`` exists at every instant), keeping ``keep_last`` in all."""
        for i, p in self._numbered():
            if i >= self.keep_last:
                p.unlink(missing_ok=True)  # left by a run with a larger keep_last
        if self.keep_last == 1 or not self.last.exists():
            return
        for i in range(self.keep_last - 2, 0, -1):  # the oldest kept is replaced, not deleted first
            if self.older(i).exists():
                os.replace(self.older(i), self.older(i + 1))
        _copy_atomic(self.last, self.older(1))

    def write_metrics(self, history: Sequence[Mapping[str, Any]]) -> None:
        """``metrics.csv``: one row per epoch of ``history`` (the checkpoint's), atomically."""
        fields: list[str] = []
        for row in history:
            fields += [k for k in row if k not in fields]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        write_atomic(self.metrics, buf.getvalue())

    def write_results(self, results: Mapping[str, Any]) -> None:
        write_atomic(self.results, json.dumps(_finite(results), indent=2) + "\n")

    # ------------------------------------------------------------------ after a kill
    def repair(self, ckpt: Mapping[str, Any], source: Path) -> None:
        """Bring ``best.pth`` and ``metrics.csv`` in line with ``ckpt`` (read from ``source``, the
        checkpoint the run resumes from), after a kill between the writes of an epoch or a
        fall-back to an older checkpoint. A ``best.pth`` from beyond the resume point is kept
        under another name, never replaced silently."""
        epoch, want = ckpt["epoch"], best_epoch(ckpt)
        rows = _csv_epochs(self.metrics)
        expected = [row["epoch"] for row in ckpt["history"]]
        if rows != expected and self.metrics_csv:
            log.warning(
                "metrics.csv had the rows of epochs %s; rewritten from %s (epochs %s)", rows, source.name, expected
            )
        if self.metrics_csv:
            self.write_metrics(ckpt["history"])
        have = _peek_epoch(self.best)
        if have is not None and have == want:
            return
        if have is not None and have > epoch:  # written by epochs that are now run again
            aside = self.path / f"best.epoch{have + 1}.pth"
            os.replace(self.best, aside)
            log.warning(
                "best.pth held epoch %d, after the resume point (epoch %d): kept as %s; the epochs run again "
                "write a new best.pth",
                have + 1,
                epoch + 1,
                aside.name,
            )
        if want is None:
            return
        for candidate in [source, *self.checkpoints()]:
            if _peek_epoch(candidate) == want:
                _copy_atomic(candidate, self.best)
                log.warning(
                    "best.pth repaired: copied epoch %d (the run's best, val top-1 %.4f) from %s",
                    want + 1,
                    ckpt.get("best_top1", math.nan),
                    candidate.name,
                )
                return
        log.warning(
            "the run's best epoch %d is no longer on disk (best.pth holds %s); a better epoch writes it again",
            want + 1,
            "nothing readable" if have is None else f"epoch {have + 1}",
        )


class Results:
    """``results.json`` from a checkpoint: the run's summary, complete or not, derived from the
    checkpoint's history (so that a resumed run rewrites it to agree with ``last.pth``), with the
    ``fixed`` facts of the run (model, data, params, macs, epochs) and the bad files of ``report``."""

    def __init__(self, *, report: Path, **fixed: Any) -> None:
        self.report, self.fixed = report, fixed

    def __call__(self, ckpt: Mapping[str, Any]) -> dict[str, Any]:
        history = ckpt["history"]
        last = history[-1] if history else {}
        best = best_epoch(ckpt)
        bad = read_report_entries(self.report)
        per_split: dict[str, int] = {}
        for entry in bad:
            split = entry.get("split") or "unknown"
            per_split[split] = per_split.get(split, 0) + 1
        return {
            **self.fixed,
            "epochs_done": len(history),
            "complete": len(history) >= self.fixed["epochs"],
            "best_val_top1": ckpt["best_top1"],
            "best_epoch": None if best is None else best + 1,
            **{f"last_{k}": v for k, v in last.items() if k != "epoch"},
            "bad_files": sorted({e["path"] for e in bad}),
            "bad_files_per_split": per_split,
        }


def _copy_atomic(src: Path, dst: Path) -> None:
    """``dst`` := ``src`` atomically: a hard link where the filesystem has them (no bytes
    copied; ``src`` is only ever replaced, never written in place), else a copy."""
    tmp = temp_path(dst)
    try:
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _peek(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, its tensors memory-mapped where the file allows it (cheap)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 (legacy files, other pickles: the full reader says what is wrong)
        return load_checkpoint(path)
    if not isinstance(obj, dict) or "model" not in obj:
        return load_checkpoint(path)
    return obj


def _peek_epoch(path: Path) -> int | None:
    if not path.is_file():
        return None
    try:
        return _peek(path).get("epoch")
    except CheckpointError:
        return None


def _csv_epochs(path: Path) -> list[int]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        try:
            return [int(row["epoch"]) for row in csv.DictReader(f)]
        except (KeyError, TypeError, ValueError):
            return [-1]


def _finite(obj: Any) -> Any:
    """NaN -> null (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _read_owner(fd: int) -> dict[str, Any]:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}


def _describe_owner(owner: Mapping[str, Any]) -> str:
    if not owner:
        return "a process that did not record itself"
    return f"pid {owner.get('pid')} on {owner.get('host')}, started {owner.get('started')}" + (
        f": {_short(owner['command'])}" if owner.get("command") else ""
    )


def _short(text: str, n: int = 160) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."
