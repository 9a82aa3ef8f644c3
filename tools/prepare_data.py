"""Check a dataset root and write its list files.

For every split: parse the official annotations (malformed lines and missing videos are
counted, not fatal), open every video and decode its first and last frame (the frame count is
what actually decodes), check that every class has videos, and write

    <out>/<split>.txt        path num_frames label   (TSM list format, paths relative to <out>)
    <out>/classes.txt        one class name per line, index = line number
    <out>/bad_files.txt      path <tab> reason, for the files that did not open or decode
    <out>/summary.json       counts per split and class, frame-count statistics

    uv run python tools/prepare_data.py --source ssv2 --root data/ssv2
    uv run python tools/prepare_data.py --source kinetics --root data/k400 --splits train val --workers 8

``--prepare reencode`` first re-encodes every video to ``<out>/videos/<path>.mp4`` (H.264, short
side ``--short-side`` 256, a keyframe every ``--gop`` 16 frames: sparse segment reads seek instead
of decoding the whole file; ``<path>`` is the video's path under the root, extension included:
``clip.webm`` -> ``clip.webm.mp4``, ``clip.mp4`` keeps its name); ``--prepare frames`` extracts
``<out>/frames/<path>/00001.jpg, ...`` (``--jpeg-quality`` 90; the folder is named as the video
file, so ``clip.mp4`` and ``clip.webm`` get a folder each). Both run in ``--workers`` processes
(0: in this process) with a progress bar, write each video atomically, skip the videos a previous
(interrupted) run finished, and list the videos that failed to decode in ``bad_files.txt``; the
lists then point at the prepared files. A write that fails (disk full, permission denied,
read-only file system) stops the run, naming the path: no video is counted bad for it.

The settings that shape the prepared files are recorded in ``<out>/prepare.json``, per mode. A
rerun with other settings is refused, naming them: rerun with the recorded ones to continue, or
add ``--overwrite`` to delete the prepared folder (``<out>/videos`` or ``<out>/frames``) and
prepare every video again with the new ones.

Ctrl-C (SIGINT) or SIGTERM stops the run (exit code 130 / 143) with one line saying how far it
got; what was prepared is kept (no file is left half-written), and the same command continues.
The worker processes die with the run, also when it is killed.

Train and test on the lists (only the videos that decode, with their frame counts) with
``data.source=list data.root=<out>``, whichever form they point at; the class names come from
``classes.txt``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videoattn.cli import ArgumentParser, user_errors
from videoattn.data.annotations import Annotations, load_annotations
from videoattn.data.prepare import (
    FOLDERS,
    RECORD,
    RECORD_VERSION,
    WriteError,
    destination,
    differing_settings,
    extract_frames,
    output_settings,
    prepared,
    read_record,
    reencode,
    write_record,
)
from videoattn.data.video import DecodeError, read_clip
from videoattn.errors import ConfigError, DataError, MissingFileError
from videoattn.files import remove_temp_files, write_atomic
from videoattn.processes import die_with_parent
from videoattn.progress import Progress as ProgressBar

Job = tuple[str, str, str, str, dict]  # source, destination, mode, backend, the mode's keywords
Result = tuple[str, int, str]  # the path to list, its decodable frames (0: bad), the reason it is bad

FLAGS = {"short_side": "--short-side", "gop": "--gop", "jpeg_quality": "--jpeg-quality"}  # recorded setting -> flag


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived (raised in the main thread; a BaseException, so that no
    ``except Exception`` of a video's preparation takes it for a bad video)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@dataclass
class Progress:
    """How far the run got, for the line of an interrupted run."""

    mode: str = "none"
    split: str = ""
    total: int = 0  # videos of the split being prepared
    finished: int = 0  # of them, prepared (or checked, for --prepare none)
    folder: Path | None = None

    def interrupted(self) -> str:
        """The one line an interrupted run prints."""
        if not self.split:
            return "interrupted before any video was read; nothing was written; rerun the same command"
        if self.mode == "none":
            return (
                f"interrupted: {self.finished} of {self.total} {self.split} videos checked; no list was written; "
                "rerun the same command"
            )
        return (
            f"interrupted: {self.finished} of {self.total} {self.split} videos prepared (kept in {self.folder}); "
            "no list was written; rerun the same command to continue"
        )


# ----------------------------------------------------------------------------- one video
def probe(args: tuple[str, str]) -> tuple[int, str]:
    """``(decodable frames, "")`` or ``(0, reason)`` for one video file or frame folder, read
    as training reads it (:func:`~videoattn.data.video.read_clip`: decord, then PyAV for what
    decord rejects): its first and last frame, the count shrinking to what decodes."""
    path, backend = args
    try:
        _, indices = read_clip(path, lambda n: np.array([0, max(n - 1, 0)]), backend=backend, fallback=True)
        return int(indices.max()) + 1, ""
    except (DecodeError, OSError) as e:
        return 0, str(e)


def prepare_one(job: Job) -> Result:
    """Prepare one video (``mode`` reencode / frames; skipped when done before), then probe the
    result: ``(path to list, decodable frames, "")`` or ``(path, 0, reason)``. A failed write
    (:class:`~videoattn.data.prepare.WriteError`) is raised: the output's fault, not the video's."""
    src, dst, mode, backend, opts = job
    if mode == "none" or Path(src).is_dir():
        return (src, *probe((src, backend)))
    try:
        if not prepared(dst):
            (reencode if mode == "reencode" else extract_frames)(src, dst, **opts)
    except WriteError:
        raise
    except (DecodeError, OSError, ValueError) as e:
        return src, 0, f"--prepare {mode}: {e}"
    except Exception as e:  # PyAV's FFmpeg errors (av.error.*) name the file and the cause
        return src, 0, f"--prepare {mode}: {type(e).__name__}: {e}"
    return (dst, *probe((dst, "frames" if mode == "frames" else backend)))


# ----------------------------------------------------------------------------- processes
def _worker_init(parent: int) -> None:
    """A pool worker: leave SIGINT / SIGTERM to the parent (a terminal's Ctrl-C reaches every
    process of the group; the parent stops the pool), and die with the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with(parent)


def _die_with(parent: int) -> None:
    """End this process when ``parent`` ends, however it ends (SIGKILL included): the kernel's
    SIGKILL on the parent's death (:func:`~videoattn.processes.die_with_parent`; SIGKILL, since
    the workers ignore SIGTERM) where the platform has it (Linux), elsewhere a thread that
    watches the parent's pid."""
    if die_with_parent(signal.SIGKILL):
        if os.getppid() != parent:  # the parent died before the request (reparented to init or a subreaper)
            os._exit(1)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT / SIGTERM raise :class:`Interrupted` in the block (once: the clean-up that follows
    is not interrupted again); the previous handlers are restored after it."""

    def handler(signum: int, frame: Any) -> None:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_jobs(jobs: Sequence[Job], workers: int, done: list[Result], *, desc: str) -> list[Result]:
    """Run ``prepare_one`` on every job in ``workers`` processes (0: in this one), appending the
    results to ``done`` in the jobs' order (so that an interrupted caller knows how far it got).
    On any exception (an interruption, a failed write) the pool is stopped at once: the jobs not
    started are cancelled and the workers killed (what they were writing is a temporary file)."""
    with ProgressBar(len(jobs), desc=desc, unit="video") as bar:  # a bar on a terminal, else a line per 10%
        if workers == 0:
            for job in jobs:
                done.append(prepare_one(job))
                bar.update()
            return done
        before = set(mp.active_children())
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(os.getpid(),))
        try:
            for result in pool.map(prepare_one, jobs, chunksize=4):
                done.append(result)
                bar.update()
        except BaseException:
            _stop(pool, [p for p in mp.active_children() if p not in before])
            raise
        pool.shutdown()
    return done


def _stop(pool: ProcessPoolExecutor, workers: list[Any]) -> None:
    """Cancel the pool's jobs that have not started and kill its ``workers`` (waited for)."""
    pool.shutdown(wait=False, cancel_futures=True)
    for p in workers:
        p.kill()
    for p in workers:
        p.join()
    pool.shutdown(wait=True)


def _remove_stale(destinations: Sequence[str]) -> int:
    """Temporaries that killed runs (or killed workers) left beside the prepared videos (one
    listing per folder of destinations: the results are written beside them, never inside
    another); returns how many."""
    return sum(len(remove_temp_files(folder)) for folder in {os.path.dirname(d) for d in destinations})


# ----------------------------------------------------------------------------- checks
def _check_out(out: Path, given: bool) -> None:
    """The output folder, or the first of its parents that exists, must be a folder."""
    what = f"--out {out}" if given else f"the output folder {out} (ROOT/lists; another with --out)"
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "is a file" if folder == out else f"lies under the file {folder}"
                raise ConfigError(f"{what} {where}; give a folder to write the lists in")
            return


def _flags(settings: dict[str, Any], keys: Sequence[str]) -> str:
    return " ".join(f"{FLAGS.get(k, k)} {settings.get(k)}" for k in keys)


def check_settings(out: Path, mode: str, settings: dict[str, Any], *, overwrite: bool) -> None:
    """Make ``out``'s folder of ``mode`` ready for ``settings``: refuse (one line naming the
    differing settings) when it holds videos prepared with others or with unknown ones, unless
    ``overwrite``, which deletes it; then record ``settings`` (before any video is written)."""
    folder = out / FOLDERS[mode]
    try:
        record = read_record(out)
    except ValueError as err:
        raise DataError(f"{err}; remove it, or add --overwrite to prepare every video again") from err
    holds = folder.is_dir() and any(not p.name.startswith(".") for p in folder.iterdir())
    if overwrite:
        if folder.exists():
            print(f"--overwrite: deleting {folder}", file=sys.stderr)
            shutil.rmtree(folder)
        holds = False
    recorded = record.get(mode) if record.get("version") == RECORD_VERSION else None
    if holds and not isinstance(recorded, dict):
        raise ConfigError(
            f"{folder} holds videos prepared with unknown settings (no record of them in {out / RECORD}: an earlier "
            "version of this tool?); add --overwrite to delete them and prepare every video again"
        )
    diff = list(differing_settings(recorded or {}, settings))
    if holds and diff:
        raise ConfigError(
            f"{folder} was prepared with {_flags(recorded or {}, diff)}, this run asks for {_flags(settings, diff)} "
            f"(recorded in {out / RECORD}); rerun with {_flags(recorded or {}, diff)} to continue it, or add "
            "--overwrite to delete it and prepare every video again"
        )
    if diff or not holds:
        write_record(out, mode, settings)


def _unique_destinations(jobs: Sequence[Job], seen: dict[str, str]) -> None:
    """Two videos must not share a prepared file (``seen``: destination -> source, over splits)."""
    for src, dst, *_ in jobs:
        other = seen.setdefault(dst, src)
        if other != src:
            raise DataError(f"{other} and {src} would both be prepared as {dst}; rename one of them")


def _write_failed(err: WriteError, progress: Progress) -> str:
    """The one line of a failed write: the path, the error, what to do."""
    reason = err.strerror or os.strerror(err.errno or errno.EIO)
    kept = f"; the {progress.finished} videos prepared so far are kept" if progress.finished else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        todo = f"the disk is full ({reason}); free some space and rerun the same command to continue{kept}"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        todo = f"{reason}; make the folder writable (or give another --out) and rerun the same command{kept}"
    else:
        todo = f"{reason}; rerun the same command once it is fixed{kept}"
    return f"writing {err.filename} failed, no video is counted bad for it: {todo}"


# ----------------------------------------------------------------------------- the run
def parser() -> ArgumentParser:
    """The command line."""
    p = ArgumentParser(description=__doc__)
    p.add_argument("--source", required=True, help="ssv2 | ssv1 | jester | kinetics | list")
    p.add_argument("--root", required=True, type=Path, help="dataset root (annotation files + videos)")
    p.add_argument("--splits", nargs="+", default=["train", "val"])
    p.add_argument("--out", type=Path, default=None, help="where to write the lists (default: ROOT/lists)")
    p.add_argument("--backend", default="auto", help="auto | decord | pyav | torchcodec | frames")
    p.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="processes that decode / prepare the videos; 0: in this process (default %(default)s)",
    )
    p.add_argument("--no-decode", action="store_true", help="only parse and check that files exist")
    p.add_argument("--prepare", choices=("none", "reencode", "frames"), default="none",
                   help="re-encode the videos (H.264, short side, short GOP) or extract JPEG frames first")  # fmt: skip
    p.add_argument("--short-side", type=int, default=256, help="pixels of the prepared videos' shorter side")
    p.add_argument("--gop", type=int, default=16, help="--prepare reencode: frames between keyframes")
    p.add_argument("--jpeg-quality", type=int, default=90, help="--prepare frames: JPEG quality, 1-100")
    p.add_argument("--overwrite", action="store_true",
                   help="delete what an earlier run prepared in OUT/videos (reencode) or OUT/frames (frames) and "
                   "prepare every video again with these settings; without it, a rerun with settings other than "
                   "those recorded in OUT/prepare.json is refused")  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; returns the exit code (2 with one line for a mistake, 130 / 143 interrupted)."""
    args = parser().parse_args(argv)
    progress = Progress(mode=args.prepare)
    with _interruptible():
        try:
            with user_errors():
                try:
                    return prepare(args, progress)
                except WriteError as err:
                    raise DataError(_write_failed(err, progress)) from err
                except BrokenProcessPool as err:
                    raise DataError(
                        f"a worker process died ({err}; killed by the system: out of memory?); rerun the same "
                        "command, with fewer --workers"
                    ) from err
        except Interrupted as sig:
            sys.stdout.flush()
            print(progress.interrupted(), file=sys.stderr)
            return 128 + sig.signum


def prepare(args: Any, progress: Progress) -> int:
    """Parse, (prepare,) check and list every split of ``args``; returns the exit code."""
    if not args.root.is_dir():
        raise MissingFileError(f"--root {args.root}: no such folder (the dataset root: annotation files and videos)")
    if args.workers < 0:
        raise ConfigError(f"--workers {args.workers}: expected 0 (in this process) or more worker processes")
    out = args.out or args.root / "lists"
    _check_out(out, args.out is not None)
    if args.prepare == "none" and args.overwrite:
        raise ConfigError("--overwrite deletes prepared videos: it goes with --prepare reencode or --prepare frames")
    if args.prepare != "none":
        if args.no_decode:
            raise ConfigError("--prepare decodes every video; leave out --no-decode")
        for flag, value, low, high in (("--short-side", args.short_side, 16, 4096), ("--gop", args.gop, 1, 1000),
                                       ("--jpeg-quality", args.jpeg_quality, 1, 100)):  # fmt: skip
            if not low <= value <= high:
                raise ConfigError(f"{flag} {value}: expected an integer from {low} to {high}")
    opts = (
        {"short_side": args.short_side, "gop": args.gop}
        if args.prepare == "reencode"
        else {"short_side": args.short_side, "quality": args.jpeg_quality}
    )
    summary: dict = {"source": args.source, "root": str(args.root.resolve()), "splits": {}}
    bad_lines: list[str] = []
    classes: list[str] | None = None
    lists: dict[Path, str] = {}

    splits: dict[str, tuple[Annotations, float]] = {}  # every split parsed before anything is written
    for split in args.splits:
        t0 = time.perf_counter()
        ann = load_annotations(args.source, args.root, split, on_error="skip")
        if classes is None:
            classes = ann.classes
        elif ann.classes != classes:
            raise DataError(f"the class list of split {split!r} differs from that of split {args.splits[0]!r}")
        if not ann.records:
            raise DataError(
                f"split {split!r} of {args.root} has no videos ({ann.summary()}); check its annotation "
                "file, or leave the split out with --splits"
            )
        splits[split] = ann, time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    remove_temp_files(out)  # of a run killed while writing its lists
    jobs_of: dict[str, list[Job]] = {}
    if not args.no_decode:
        seen: dict[str, str] = {}
        for split, (ann, _) in splits.items():
            jobs_of[split] = [
                (str(r.path), str(destination(r.path, args.root, out, args.prepare)) if args.prepare != "none" else "",
                 args.prepare, args.backend, opts)
                for r in ann.records
            ]  # fmt: skip
            if args.prepare != "none":
                _unique_destinations(jobs_of[split], seen)
        if args.prepare != "none":
            settings = output_settings(
                args.prepare, short_side=args.short_side, gop=args.gop, quality=args.jpeg_quality
            )
            check_settings(out, args.prepare, settings, overwrite=args.overwrite)
            progress.folder = out / FOLDERS[args.prepare]

    for split, (ann, parse_seconds) in splits.items():
        t0 = time.perf_counter() - parse_seconds
        for s in ann.skipped:
            bad_lines.append(f"{s.file}:{s.line}\t{s.reason}")
        print(f"{split}: {ann.summary()}", file=sys.stderr)
        records = ann.records
        if args.no_decode:
            paths = [str(r.path) for r in records]
            frames = [(r.num_frames or 0, "") for r in records]
        else:
            jobs = jobs_of[split]
            what = "decoded" if args.prepare == "none" else f"prepared ({args.prepare})"
            destinations = [job[1] for job in jobs] if args.prepare != "none" else []
            stale = _remove_stale(destinations)
            if stale:
                print(f"  removed {stale} partial file(s) of an interrupted --prepare run", file=sys.stderr)
            progress.split, progress.total, progress.finished = split, len(jobs), 0
            done: list[Result] = []
            try:
                run_jobs(jobs, args.workers, done, desc=f"  {split}: {what}")
            except BaseException:
                _remove_stale(destinations)  # of the workers killed mid-video
                progress.finished = len(done) if args.prepare == "none" else sum(map(prepared, destinations))
                raise
            paths = [path for path, _, _ in done]
            frames = [(n, reason) for _, n, reason in done]
        good, counts = [], Counter()
        for r, path, (n, reason) in zip(records, paths, frames, strict=True):
            if reason:
                bad_lines.append(f"{r.path}\t{reason}")
                continue
            good.append(f"{os.path.relpath(path, out)} {n} {r.label}")
            counts[r.label] += 1
        if not good:
            write_atomic(out / "bad_files.txt", "".join(line + "\n" for line in bad_lines))
            raise DataError(
                f"split {split!r} of {args.root}: none of its {len(records)} videos can be read "
                f"(first: {bad_lines[-1]}); every reason is in {out / 'bad_files.txt'}"
            )
        list_file = out / f"{split}.txt"
        lists[list_file] = "".join(line + "\n" for line in good)  # written with the rest, once every split is done
        lengths = np.array([n for n, reason in frames if not reason] or [0])
        assert classes is not None
        empty = [classes[k] for k in range(len(classes)) if counts[k] == 0] if split != "test" else []
        summary["splits"][split] = {
            "videos": len(good),
            "skipped_lines": len(ann.skipped),
            "bad_files": sum(1 for _, reason in frames if reason),
            "frames": {"min": int(lengths.min()), "median": float(np.median(lengths)), "max": int(lengths.max())},
            "classes_without_videos": empty,
            "per_class": {classes[k]: counts[k] for k in sorted(counts) if k >= 0},
        }
        s = summary["splits"][split]
        print(
            f"  {s['videos']} usable videos -> {list_file}; {s['skipped_lines']} skipped lines, "
            f"{s['bad_files']} bad files; frames min/median/max {s['frames']['min']}/"
            f"{s['frames']['median']:.0f}/{s['frames']['max']}; {time.perf_counter() - t0:.1f}s",
            file=sys.stderr,
        )
        if empty:
            print(f"  warning: {len(empty)} classes have no videos in {split}: {empty[:5]}...", file=sys.stderr)
    if args.prepare != "none":
        summary["prepared"] = {
            "mode": args.prepare,
            "folder": str(out / FOLDERS[args.prepare]),
            "settings": read_record(out).get(args.prepare),
        }
    for list_file, text in lists.items():
        write_atomic(list_file, text)
    write_atomic(out / "classes.txt", "".join(name + "\n" for name in classes or []))
    write_atomic(out / "bad_files.txt", "".join(line + "\n" for line in bad_lines))
    write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(
        f"wrote {out}/{{{','.join(args.splits)}}}.txt, classes.txt, summary.json; "
        f"{len(bad_lines)} problems in {out / 'bad_files.txt'}"
    )
    print(f"train / test on these lists with: data.source=list data.root={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
