"""The run folder (videoattn.engine.run_folder) and atomic writes (videoattn.files) in process:
the lock, the choice of the checkpoint to resume, the fall-back, the repair after a kill, and
the messages of a full disk. The same behaviour through tools/train.py: tests/test_train.py."""

from __future__ import annotations

import errno
import logging
import os
import signal
import time

import pytest
import torch

from videoattn.checkpoint import save_atomic
from videoattn.cli import user_errors
from videoattn.engine.run_folder import RunFolder, RunFolderBusy, RunFolderError, best_epoch
from videoattn.errors import ConfigError
from videoattn.files import remove_temp_files, write_atomic


def fake_ckpt(epoch: int, val_top1: list[float]) -> dict:
    """A training checkpoint after ``epoch`` (0-based) with the val top-1 of each epoch so far."""
    history = [{"epoch": e + 1, "val_top1": v} for e, v in enumerate(val_top1[: epoch + 1])]
    best = max(range(len(history)), key=lambda e: (history[e]["val_top1"], -e))
    return {
        "format": "videoattn-checkpoint-1",
        "model": {"w": torch.full((2,), float(epoch))},
        "model_config": {"name": "x"},
        "classes": None,
        "data": {},
        "origin": {"kind": "training"},
        "epoch": epoch,
        "best_top1": history[best]["val_top1"],
        "best_epoch": best,
        "history": history,
    }


def train_epochs(folder: RunFolder, val_top1: list[float], upto: int) -> None:
    """What tools/train.py writes per epoch, for epochs 0 .. upto."""
    best = -1.0
    for e in range(upto + 1):
        ckpt = fake_ckpt(e, val_top1)
        folder.save_epoch(ckpt, improved=val_top1[e] > best, results={"epochs_done": e + 1})
        best = max(best, val_top1[e])


def epoch_of(path) -> int:
    return torch.load(path, weights_only=True)["epoch"]


def other_process_tries(run_dir) -> str:
    """The error another process gets when it tries to lock ``run_dir`` ("" if it got the lock)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with RunFolder(run_dir).lock():
                pass
            os.write(w, b"")
        except RunFolderBusy as err:
            os.write(w, str(err).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    return os.read(r, 65536).decode()


def test_a_second_writer_fails_naming_the_first_and_a_killed_ones_lock_is_taken_over(tmp_path, caplog):
    run_dir = tmp_path / "run"
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the first training: holds the folder until killed
        try:
            with RunFolder(run_dir).lock():
                os.write(ready_w, b"1")
                time.sleep(60)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"1"
        with pytest.raises(RunFolderBusy, match=rf"is in use by another training \(pid {pid} on "):
            with RunFolder(run_dir).lock():
                pass
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    (run_dir / f".last.pth.{pid}.tmp").write_bytes(b"half a checkpoint")
    with caplog.at_level(logging.WARNING), RunFolder(run_dir).lock():  # the kernel released the dead one's lock
        assert not (run_dir / f".last.pth.{pid}.tmp").exists()  # its temporary file is gone
        assert f"pid {os.getpid()} on " in other_process_tries(run_dir)  # and now names this process
    assert f"pid {pid}" in caplog.text and "taking it over" in caplog.text
    assert [p.name for p in run_dir.iterdir()] == []  # the lock goes with its holder
    with pytest.raises(RunFolderError), RunFolder(tmp_path / "new").lock():  # a start that fails before writing
        raise RunFolderError("the checkpoint does not fit")
    assert not (tmp_path / "new").exists()  # the folder it created is removed again


def test_keep_last_rotates_and_resume_falls_back_to_the_newest_readable(tmp_path, caplog):
    folder = RunFolder(tmp_path, keep_last=3)
    train_epochs(folder, [0.1, 0.3, 0.2, 0.25], upto=3)
    assert [epoch_of(p) for p in folder.checkpoints()] == [3, 2, 1]
    assert epoch_of(folder.best) == 1
    assert folder.metrics.read_text().splitlines()[1:] == ["1,0.1", "2,0.3", "3,0.2", "4,0.25"]
    folder.last.write_bytes(folder.last.read_bytes()[:1000])  # torn by something outside the run
    with caplog.at_level(logging.WARNING):
        assert folder.resume_point("auto") == folder.older(1)
    assert "cannot resume from" in caplog.text and "resuming from the older checkpoint" in caplog.text


@pytest.mark.parametrize("keep_last", [1, 2, 3])
def test_after_a_fall_back_the_unreadable_checkpoint_is_set_aside_and_never_rotated_over_the_good_one(
    tmp_path, keep_last
):
    folder = RunFolder(tmp_path, keep_last=max(keep_last, 2))
    train_epochs(folder, [0.1, 0.3, 0.2], upto=2)
    folder.keep_last = keep_last  # the run resumes with this keep_last
    folder.last.write_bytes(folder.last.read_bytes()[:1000])
    assert folder.resume_point("auto") == folder.older(1)
    assert folder.start() == folder.last and epoch_of(folder.last) == 1  # the resumed epoch is last.pth now
    assert (tmp_path / "last.pth.unreadable").exists()
    folder._rotate()  # a kill here, before the next last.pth, still leaves the resumed epoch
    assert folder.resume_point("auto") == folder.last and epoch_of(folder.last) == 1


def test_a_folder_holding_a_run_is_not_started_again_from_scratch_unless_told(tmp_path, caplog):
    folder = RunFolder(tmp_path / "run")
    assert folder.resume_point("auto") is None and folder.resume_point("none") is None  # nothing there yet
    train_epochs(folder, [0.1, 0.25], upto=1)
    for p in folder.checkpoints():
        p.write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(
        RunFolderError,
        match=r"holds a run \(last.pth, last.1.pth, best.pth, metrics.csv \(2 epochs\), "
        r"results.json\) but no checkpoint to resume it from .*resume=none overwrite=true",
    ):
        folder.resume_point("auto")
    with pytest.raises(RunFolderError, match="resume=none would start it again from scratch and replace it"):
        folder.resume_point("none")
    with pytest.raises(ConfigError, match="resume=auto never does"):
        folder.resume_point("auto", overwrite=True)
    assert epoch_of(folder.best) == 1  # nothing was touched
    assert folder.resume_point("none", overwrite=True) is None
    assert epoch_of(folder.best) == 1  # deciding changes nothing: the run may still fail its checks
    with caplog.at_level(logging.WARNING):
        assert folder.start() is None
    assert folder.run_files() == [] and "deleted the previous run" in caplog.text and "best.pth" in caplog.text


def test_resuming_another_checkpoint_into_a_folder_holding_a_run_needs_overwrite(tmp_path):
    other = save_atomic(fake_ckpt(0, [0.5]), tmp_path / "other.pth")
    folder = RunFolder(tmp_path / "run")
    train_epochs(folder, [0.1], upto=0)
    with pytest.raises(RunFolderError, match="would continue another checkpoint there"):
        folder.resume_point(str(other))
    assert folder.resume_point(str(folder.older(1) if folder.older(1).exists() else folder.last)) is not None
    assert folder.resume_point(str(other), overwrite=True) == other and folder.run_files() != []
    assert folder.start() is None and folder.run_files() == []  # not one of the folder's checkpoints


@pytest.mark.parametrize("killed_after", ["last", "best", "metrics"])
def test_repair_after_a_kill_between_the_writes_of_an_epoch(tmp_path, killed_after):
    """Epoch 2 improves: a kill after last.pth (before best.pth), after best.pth (before
    metrics.csv), or after metrics.csv (before results.json)."""
    folder = RunFolder(tmp_path)
    val = [0.1, 0.3]
    train_epochs(folder, val, upto=0)
    ckpt = fake_ckpt(1, val)
    folder._rotate()
    save_atomic(ckpt, folder.last)
    if killed_after in ("best", "metrics"):
        save_atomic(ckpt, folder.best)
    if killed_after == "metrics":
        folder.write_metrics(ckpt["history"])
    folder.repair(torch.load(folder.last, weights_only=True), folder.last)
    assert epoch_of(folder.best) == best_epoch(ckpt) == 1
    assert folder.metrics.read_text().splitlines() == ["epoch,val_top1", "1,0.1", "2,0.3"]


def test_a_best_from_beyond_the_resume_point_is_kept_aside_and_the_runs_best_restored(tmp_path, caplog):
    folder = RunFolder(tmp_path, keep_last=3)
    val = [0.3, 0.1, 0.5]
    train_epochs(folder, val, upto=2)  # best.pth = epoch 3 (0.5); last.2.pth = epoch 1, the best up to epoch 2
    resume = folder.older(1)  # e.g. last.pth was unreadable: continue from epoch 2
    with caplog.at_level(logging.WARNING):
        folder.repair(torch.load(resume, weights_only=True), resume)
    assert epoch_of(tmp_path / "best.epoch3.pth") == 2  # never replaced silently
    assert epoch_of(folder.best) == 0 and "kept as best.epoch3.pth" in caplog.text
    assert folder.metrics.read_text().splitlines()[1:] == ["1,0.3", "2,0.1"]


def test_best_epoch_of_checkpoints_written_before_it_was_stored():
    ckpt = fake_ckpt(2, [0.2, 0.4, 0.4])
    del ckpt["best_epoch"]
    assert best_epoch(ckpt) == 1
    assert best_epoch({"best_top1": -1.0, "history": [{"epoch": 1, "val_top1": float("nan")}]}) is None


def test_a_full_disk_names_the_file_and_the_cause(tmp_path, monkeypatch, capsys):
    write_atomic(tmp_path / "metrics.csv", "old\n")

    def full(fd, *args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("videoattn.files.os.fsync", full)
    for write in (
        lambda: save_atomic({"w": torch.zeros(3)}, tmp_path / "last.pth"),
        lambda: write_atomic(tmp_path / "metrics.csv", "new\n"),
    ):
        with pytest.raises(SystemExit) as exit_info, user_errors():
            write()
        assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"error: {tmp_path / name}: the disk is full (No space left on device); free some space and run again"
        for name in ("last.pth", "metrics.csv")
    ]
    assert (tmp_path / "metrics.csv").read_text() == "old\n" and not (tmp_path / "last.pth").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]  # no temporary file left


def test_temp_files_of_dead_writers_are_removed_and_a_live_ones_kept(tmp_path):
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    for pid in (dead, os.getpid()):
        (tmp_path / f".last.pth.{pid}.tmp").write_bytes(b"x")
    (tmp_path / ".notes.txt").write_text("mine")
    assert remove_temp_files(tmp_path) == [tmp_path / f".last.pth.{dead}.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".last.pth.{os.getpid()}.tmp", ".notes.txt"]
