"""Runs that are interrupted, doubled or mistyped, through the command lines (issue 13's cases):
a second training in a run folder, SIGKILL inside the write of last.pth / best.pth at several
offsets, a torn last.pth, a checkpoint of another model in the folder, a mistyped data root,
options that nothing reads, unreadable videos and skipped annotation lines in the counts, and
prepare_data.py agreeing with the loader."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from cli import run, start
from test_train import train_cmd


@pytest.fixture(scope="module")
def dataset(tiny_demo):
    return tiny_demo / "ssv2"


def ok(out):
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def one_error(out, *parts: str) -> str:
    """The run failed with exit code 2 and one line ``error: ...`` holding every part; no traceback."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], out.stderr[-3000:]
    for part in parts:
        assert part in errors[0], errors[0]
    return errors[0]


def load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_files_agree(run_dir: Path) -> dict:
    """last.pth, best.pth, metrics.csv and results.json describe the same run, and no
    temporary file is left; returns last.pth."""
    last, best = load(run_dir / "last.pth"), load(run_dir / "best.pth")
    history = last["history"]
    assert best["epoch"] == last["best_epoch"] and best["history"] == history[: best["epoch"] + 1]
    assert history[last["best_epoch"]]["val_top1"] == last["best_top1"] == max(r["val_top1"] for r in history)
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [r["epoch"] for r in history] == list(range(1, len(history) + 1))
    assert [float(r["val_top1"]) for r in rows] == [r["val_top1"] for r in history]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["epochs_done"] == len(history) and results["best_val_top1"] == last["best_top1"]
    assert results["best_epoch"] == last["best_epoch"] + 1 and results["complete"]
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    return last


def assert_same_weights(a: dict, b: dict) -> None:
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


# ----------------------------------------------------------------------------- kills inside a write
# A demo-sized network (15 MB checkpoints with AdamW's state), so that a write takes milliseconds.
KILL_ARGS = ("model=tsm", "optim.epochs=3", "max_steps_per_epoch=2", "model.widths=[32,64,128,256]")


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    ok(run(train_cmd(run_dir, dataset, *KILL_ARGS)))
    return assert_files_agree(run_dir)


def kill_inside_write(proc, run_dir: Path, name: str, *, occurrence: int, offset: float) -> int:
    """SIGKILL ``proc`` ``offset`` seconds after the temporary file of its ``occurrence``-th write
    of ``name`` appeared (checked to still be there, so the kill lands inside that write);
    returns the temporary file's size at the kill."""
    tmp = run_dir / f".{name}.{proc.pid}.tmp"
    seen, was_there = 0, False
    deadline = time.monotonic() + 240
    while seen < occurrence:  # a tight loop: a write lasts a few milliseconds
        there = tmp.exists()
        if there and not was_there:
            seen += 1
        was_there = there
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the run ended before its write #{occurrence} of {name}")
    os.kill(proc.pid, signal.SIGSTOP)
    if offset:
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(offset)
        os.kill(proc.pid, signal.SIGSTOP)
    assert tmp.exists(), f"the write of {name} had ended {offset * 1000:.0f} ms after it began"
    size = tmp.stat().st_size
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait().returncode == -signal.SIGKILL
    return size


# each file killed at the start of its write and part-way through it (the offsets cover the
# three phases of a write: temp file created, being filled, about to be moved into place)
@pytest.mark.parametrize(
    "name, occurrence, offset", [("last.pth", 2, 0.0), ("best.pth", 1, 0.002), ("last.pth", 2, 0.006)]
)
def test_sigkill_inside_a_checkpoint_write_then_resume_agrees_and_matches_an_uninterrupted_run(
    dataset, uninterrupted, tmp_path, name, occurrence, offset
):
    run_dir = tmp_path / "run"
    kill_inside_write(
        start(train_cmd(run_dir, dataset, *KILL_ARGS)), run_dir, name, occurrence=occurrence, offset=offset
    )
    assert list(run_dir.glob(f".{name}.*.tmp")), "the killed writer's temporary file"
    out = ok(run(train_cmd(run_dir, dataset, *KILL_ARGS)))
    log = out.stdout + out.stderr
    assert "resumed from" in log and "left by a training killed while writing it" in log
    assert "ended without releasing its lock" in log
    if name == "best.pth":  # killed after last.pth recorded epoch 1 as the best, before best.pth held it
        assert "best.pth repaired: copied epoch 1" in log
    last = assert_files_agree(run_dir)
    assert_same_weights(last, uninterrupted)
    untimed = [[{k: v for k, v in r.items() if "per_s" not in k} for r in c["history"]] for c in (last, uninterrupted)]
    assert untimed[0] == untimed[1]


# ----------------------------------------------------------------------------- one writer per folder
def test_a_second_training_in_a_run_folder_fails_at_once_naming_the_first(dataset, tmp_path):
    run_dir = tmp_path / "run"
    first = start(train_cmd(run_dir, dataset, "optim.epochs=40", "max_steps_per_epoch=2", "seed=0"))
    while not (run_dir / "metrics.csv").exists():
        assert first.poll() is None, "the first run ended early"
        time.sleep(0.02)
    second = run(train_cmd(run_dir, dataset, "optim.epochs=3", "seed=1", "model=tsn"))
    one_error(
        second,
        f"run_dir={run_dir} is in use by another training (pid {first.pid} on ",
        "started ",
        "choose another run_dir",
    )
    first.kill()
    assert first.wait().returncode == -signal.SIGKILL
    config = (run_dir / "config.yaml").read_text()
    assert "  name: tsm\n" in config and "\nseed: 0\n" in config  # the second run wrote nothing
    done = load(run_dir / "last.pth")["epoch"] + 1
    out = ok(run(train_cmd(run_dir, dataset, f"optim.epochs={done + 1}", "max_steps_per_epoch=2", "seed=0")))
    assert f"(pid {first.pid} on" in out.stdout + out.stderr and "taking it over" in out.stdout + out.stderr
    last = assert_files_agree(run_dir)
    assert last["epoch"] == done


# ----------------------------------------------------------------------------- a torn or foreign checkpoint
RUN3 = ("model=tsm", "optim.epochs=3", "max_steps_per_epoch=2")


@pytest.fixture(scope="module")
def finished(dataset, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("finished") / "tsm"
    ok(run(train_cmd(run_dir, dataset, *RUN3)))
    return run_dir


def test_a_torn_last_pth_falls_back_to_the_one_before_and_ends_as_an_uninterrupted_run(dataset, finished, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    data = (run_dir / "last.pth").read_bytes()
    (run_dir / "last.pth").write_bytes(data[: len(data) // 2])  # e.g. a copy cut short
    out = ok(run(train_cmd(run_dir, dataset, *RUN3)))
    log = out.stdout + out.stderr
    assert "cannot resume from" in log and "resuming from the older checkpoint" in log and "last.1.pth" in log
    last = assert_files_agree(run_dir)
    assert_same_weights(last, load(finished / "last.pth"))  # epoch 3 run again, bit-identical
    assert (run_dir / "best.pth").read_bytes() == (finished / "best.pth").read_bytes() or load(run_dir / "best.pth")[
        "epoch"
    ] == load(finished / "best.pth")["epoch"]


def test_a_run_whose_checkpoints_are_all_unreadable_is_not_restarted_silently(dataset, finished, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    for p in run_dir.glob("last*.pth"):
        p.write_bytes(p.read_bytes()[:100])
    before = snapshot(run_dir)
    one_error(
        run(train_cmd(run_dir, dataset, *RUN3)),
        "holds a run (",
        "best.pth",
        "metrics.csv (3 epochs)",
        "no checkpoint to resume it from",
        "resume=none overwrite=true",
    )
    one_error(run(train_cmd(run_dir, dataset, *RUN3, "resume=none")), "already holds a run", "add overwrite=true")
    assert snapshot(run_dir) == before  # best.pth (and everything else) untouched
    out = ok(run(train_cmd(run_dir, dataset, *RUN3, "resume=none", "overwrite=true")))
    assert "deleted the previous run" in out.stdout + out.stderr
    assert_same_weights(assert_files_agree(run_dir), load(finished / "last.pth"))


def test_overwrite_deletes_the_old_run_only_once_the_new_one_is_known_to_start(dataset, finished, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    before = snapshot(run_dir)
    for root, resume, mistake in (
        (tmp_path / "typo", "resume=none", "seed=0"),  # no such dataset
        (dataset, f"resume={finished / 'last.pth'}", "model=tam"),
    ):  # TSM weights for TAM
        one_error(run(train_cmd(run_dir, root, *RUN3, resume, "overwrite=true", mistake)))
        assert snapshot(run_dir) == before  # the run it was told to replace is still there


def test_resuming_with_other_training_settings_is_refused_naming_them(dataset, finished, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    before = snapshot(run_dir)
    one_error(
        run(train_cmd(run_dir, dataset, *RUN3, "optim.lr=0.1", "seed=3")),
        "was trained with other settings",
        "optim.lr: 0.004 -> 0.1",
        "seed: 0 -> 3",
        "drop these overrides to continue it",
    )
    one_error(
        run(train_cmd(run_dir, dataset, "model=tsm", "optim.epochs=2", "max_steps_per_epoch=2")),
        "optim.epochs=2: the run in",
        "has trained 3 epochs already",
    )
    assert snapshot(run_dir) == before
    ok(run(train_cmd(run_dir, dataset, *RUN3, "workers=1", "precision=bf16")))  # how it runs may change


def test_a_run_saved_without_a_grad_scaler_resumes_in_fp16_and_back(dataset, finished, tmp_path):
    """An fp32 run saved a disabled grad scaler's empty state, which an enabled scaler cannot load:
    resuming with precision=fp16 (which the resume rules allow) starts the scaler afresh; the
    fp16 run's scaler state is then set aside by a resume in fp32."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    assert load(run_dir / "last.pth")["scaler"] == {}
    ok(run(train_cmd(run_dir, dataset, "model=tsm", "optim.epochs=4", "max_steps_per_epoch=2", "precision=fp16")))
    assert load(run_dir / "last.pth")["scaler"]["scale"] > 0
    ok(run(train_cmd(run_dir, dataset, "model=tsm", "optim.epochs=5", "max_steps_per_epoch=2")))
    assert len(load(run_dir / "last.pth")["history"]) == 5


def test_a_killed_run_restarts_at_once_though_its_dataloader_workers_are_still_exiting(dataset, tmp_path):
    run_dir = tmp_path / "run"
    args = ("optim.epochs=40", "max_steps_per_epoch=2", "workers=2")
    first = start(train_cmd(run_dir, dataset, *args))
    while not (run_dir / "metrics.csv").exists():
        assert first.poll() is None, "the run ended early"
        time.sleep(0.02)
    first.kill()  # the workers it forked live on for a moment (a POSIX lock is not inherited by them)
    first.wait()
    again = start(train_cmd(run_dir, dataset, *args))
    while not (run_dir / "train.log").exists() or "resumed from" not in (run_dir / "train.log").read_text():
        assert again.poll() is None, again.wait().stderr[-3000:]
        time.sleep(0.02)
    again.kill()
    again.wait()


def test_another_model_in_the_run_folder_fails_before_anything_is_written(dataset, finished, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    before = snapshot(run_dir)
    one_error(
        run(train_cmd(run_dir, dataset, "model=tam", "optim.epochs=3")),
        "was made with another model config",
        f"run_dir={run_dir} holds a run of another model",
    )
    assert snapshot(run_dir) == before  # config.yaml and train.log included; the lock went with the run


# ----------------------------------------------------------------------------- settings that nothing reads
def test_a_mistyped_data_root_fails_naming_it_and_writes_nothing(dataset, tmp_path):
    typo = tmp_path / "typo" / "ssv2"
    out = run(["tools/train.py", f"data.root={typo}", f"run_dir={tmp_path / 'run'}", "workers=0"])  # the demo config
    one_error(out, f"data.root={typo}: no such folder")
    assert not (tmp_path / "typo").exists() and not (tmp_path / "run").exists()
    out = ok(
        run(
            [
                "tools/train.py",
                f"data.root={dataset}",
                f"run_dir={tmp_path / 'run'}",
                "workers=0",
                "optim.epochs=1",
                "max_steps_per_epoch=1",
                "model.widths=[8,16,32,64]",
                "num_segments=2",
                "progress=false",
                "tensorboard=false",
            ]
        )
    )  # the right root with the demo config: read, no data.demo=false needed
    assert "over 12 of 12 val videos" in out.stdout and not (dataset / "manifest.json").exists()


def test_test_py_refuses_what_cannot_apply_to_a_checkpoint(finished, dataset):
    ckpt = finished / "best.pth"
    for override, reason in (
        ("+num_segments=4", "takes T (num_segments) from the checkpoint"),
        ("num_segments=4", "takes T (num_segments) from the checkpoint"),
        ("model=tam", "builds the model from the checkpoint's model_config"),
        ("data.train_transform.size=32", "does not train"),
    ):
        one_error(run(["tools/test.py", f"checkpoint={ckpt}", f"data.root={dataset}", override]), override, reason)
    one_error(
        run(train_cmd(finished, dataset, "+epochs=1", "+lr=0.1")), "+epochs=1: adds a key 'epochs' that nothing reads"
    )


# ----------------------------------------------------------------------------- honest counts
def test_unreadable_videos_and_skipped_lines_are_counted_with_their_split(dataset, tmp_path):
    root = tmp_path / "ssv2"
    shutil.copytree(dataset, root)
    val = json.loads((root / "validation.json").read_text())
    (root / "20bn-something-something-v2" / f"{val[0]['id']}.webm").write_bytes(b"not a video" * 30)
    train = json.loads((root / "train.json").read_text())
    train.append({"id": "999999", "template": "Moving something up", "label": "moving x up", "placeholders": []})
    (root / "train.json").write_text(json.dumps(train))
    run_dir = tmp_path / "run"
    out = ok(
        run(train_cmd(run_dir, root, "optim.epochs=1", "max_steps_per_epoch=2", "data.on_error=skip"))
    )  # as the README writes it
    assert "over 11 of 12 val videos (1 unreadable)" in out.stdout
    assert "covers 11 of 12 videos: 1 could not be read" in out.stdout + out.stderr
    entries = [json.loads(line) for line in (run_dir / "bad_files.jsonl").read_text().splitlines()]
    assert {(e["split"], Path(e["path"].split(":")[0]).name) for e in entries} == {
        ("train", "train.json"),
        ("val", f"{val[0]['id']}.webm"),
    }
    row = next(csv.DictReader(open(run_dir / "metrics.csv")))
    assert (row["val_videos"], row["val_unreadable"]) == ("11", "1")
    results = json.loads((run_dir / "results.json").read_text())
    assert results["last_val_videos"] == 11 and results["last_val_unreadable"] == 1
    assert results["bad_files_per_split"] == {"train": 1, "val": 1}
    test = ok(
        run(
            [
                "tools/test.py",
                f"checkpoint={run_dir / 'last.pth'}",
                f"data.root={root}",
                "split=val",
                "data.on_error=skip",
                "workers=0",
                "data.eval_transform.size=48",
                "data.eval_transform.resize=56",
                f"out_dir={tmp_path / 'test'}",
            ]
        )
    )
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert (metrics["videos"], metrics["videos_evaluated"], metrics["unreadable"]) == (12, 11, 1)
    assert "11 of 12 videos, 1 unreadable" in test.stdout
    assert [json.loads(line)["split"] for line in (tmp_path / "test" / "bad_files.jsonl").read_text().splitlines()] == [
        "val"
    ]


# ----------------------------------------------------------------------------- prepare_data.py
def test_prepare_data_accepts_what_training_reads_and_refuses_an_empty_split(dataset, tmp_path):
    import av
    import numpy as np

    root = tmp_path / "ssv2"
    shutil.copytree(dataset, root)
    first = json.loads((root / "train.json").read_text())[0]["id"]
    one_frame = root / "20bn-something-something-v2" / f"{first}.webm"
    with av.open(str(one_frame), "w") as container:  # decord cannot read a 1-frame webm; PyAV can
        stream = container.add_stream("libvpx-vp9", rate=12)
        stream.width, stream.height, stream.pix_fmt = 80, 64, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.full((64, 80, 3), 128, np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    ok(run(["tools/prepare_data.py", "--source", "ssv2", "--root", str(root), "--workers", "1"]))
    assert f"{first}.webm 1 " in (root / "lists" / "train.txt").read_text()
    assert (root / "lists" / "bad_files.txt").read_text() == ""
    (root / "train.json").write_text("[]")
    one_error(
        run(["tools/prepare_data.py", "--source", "ssv2", "--root", str(root), "--workers", "1"]),
        "split 'train'",
        "has no videos",
    )


def test_non_finite_losses_never_update_the_weights_and_stop_the_run_in_one_line(dataset, tmp_path):
    """Epoch 1 trains normally; epoch 2 runs at a learning rate that makes every loss NaN (a
    resumed run with optim.lr changed is refused, so the rate is raised by the schedule: a
    constant factor of 1e30 from epoch 2 on, via milestones with gamma): its first step's update
    ruins the weights, every later loss is NaN and its step skipped on the device; the guard reads
    its counters every log_every=3 steps (a warning at step 3 for two skipped steps), and at the
    read after five or more in a row (step 6) the run stops, exit 2, one line; last.pth still
    holds epoch 1."""
    out = run(
        train_cmd(
            tmp_path / "r",
            dataset,
            "optim.epochs=2",
            "max_steps_per_epoch=8",
            "batch_size=2",
            "optim.schedule=step",
            "optim.warmup_epochs=0",
            "optim.milestones=[1]",
            "optim.gamma=1e30",
            "optim.clip_grad_norm=null",
            "log_every=3",
        )
    )
    one_error(out, "the loss was not finite", "5 steps in a row", "up to epoch 2 step 6", "Lower optim.lr")
    assert out.stdout.count("which were skipped") == 1
    last = load(tmp_path / "r" / "last.pth")
    assert last["epoch"] == 0 and all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


def _children(pid: int) -> set[int]:
    """The processes ``pid`` started (its DataLoader workers)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone, waiting for its parent


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads the processes' children from /proc")
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_training_at_a_safe_point_in_one_line_and_the_rerun_resumes(dataset, tmp_path, sig, code):
    """Ctrl-C / SIGTERM during an epoch: the run stops after the step in progress (never inside a
    checkpoint write), says where and how to resume in one line, exits 130 / 143, and leaves no
    DataLoader worker behind; the same command resumes from the last checkpoint."""
    run_dir = tmp_path / "run"
    args = ("optim.epochs=40", "workers=1", "batch_size=2")
    proc = start(train_cmd(run_dir, dataset, *args))
    while not (run_dir / "metrics.csv").exists():
        assert proc.poll() is None, proc.wait().stderr[-3000:]
        time.sleep(0.02)
    time.sleep(0.3)  # into the next epoch
    workers = _children(proc.pid)
    os.kill(proc.pid, sig)
    out = proc.wait(timeout=60)
    line = one_line(out, code)
    # inside an epoch ("in epoch E at step S") or, on a fast machine, at the boundary ("after epoch E")
    assert line.startswith(("interrupted: in ", "interrupted: after epoch ")), line
    assert "rerun the same command to resume from it" in line, line
    assert not [w for w in workers if _alive(w)]
    saved = load(run_dir / "last.pth")["epoch"]
    assert f"the last checkpoint is epoch {saved + 1}'s" in line
    again = start(train_cmd(run_dir, dataset, *args))
    while not (run_dir / "train.log").exists() or "resumed from" not in (run_dir / "train.log").read_text():
        assert again.poll() is None, again.wait().stderr[-3000:]
        time.sleep(0.02)
    again.kill()
    again.wait()


def one_line(out, code: int) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == code and "Traceback" not in out.stderr, out.stderr[-3000:]
    return lines[-1]


RANK_SCRIPT = """
import sys, time
import torch
from videoattn.cli import user_errors
from videoattn.engine.distributed import collective_failure, init_distributed
world = init_distributed("cpu", timeout_s=float(sys.argv[1]))
print("joined", flush=True)
if sys.argv[2] == "stuck":
    time.sleep(120)  # never reaches the collective
with user_errors():
    try:
        torch.distributed.all_reduce(torch.ones(1))
    except RuntimeError as err:
        raise collective_failure(err, world, timeout_s=float(sys.argv[1])) or err from None
"""


def test_a_stuck_rank_ends_the_others_after_the_collective_timeout_in_one_line(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29541", "WORLD_SIZE": "2"}
    stuck = start([script, "2", "stuck"], env={**env, "RANK": "1", "LOCAL_RANK": "1"})
    try:
        t0 = time.monotonic()
        out = run([script, "2", "waits"], env={**env, "RANK": "0", "LOCAL_RANK": "0"})
        assert time.monotonic() - t0 < 60
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
        line = out.stderr.strip().splitlines()[-1]
        assert line.startswith("error: rank 0: a collective with the other ranks failed") and "dist_timeout=2 s" in line
    finally:
        stuck.kill()
        stuck.wait()


def test_the_ranks_die_with_a_killed_torchrun(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    launcher = start(
        ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29543", script, "60", "stuck"]
    )
    deadline = time.monotonic() + 60
    out = Path(launcher._out)
    while (out.read_text() if out.exists() else "").count("joined") < 2:  # both ranks in the process group
        assert time.monotonic() < deadline and launcher.poll() is None, launcher.wait().stderr[-3000:]
        time.sleep(0.05)
    ranks = _children(launcher.pid)
    assert len(ranks) == 2
    launcher.kill()  # SIGKILL: torchrun cannot stop its ranks itself
    launcher.wait()
    deadline = time.monotonic() + 10
    while any(_alive(r) for r in ranks) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [r for r in ranks if _alive(r)]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads the processes' children from /proc")
def test_a_dataloader_worker_killed_from_outside_ends_the_run_in_one_line(dataset, tmp_path):
    """The out-of-memory killer (or a user's kill) takes a DataLoader worker: one line saying what
    happened and what to do, exit 1, no traceback; the run resumes from its last checkpoint."""
    run_dir = tmp_path / "run"
    proc = start(train_cmd(run_dir, dataset, "optim.epochs=40", "workers=1", "batch_size=2"))
    while not (run_dir / "metrics.csv").exists():
        assert proc.poll() is None, proc.wait().stderr[-3000:]
        time.sleep(0.02)
    for worker in _children(proc.pid):
        os.kill(worker, signal.SIGKILL)
    out = proc.wait(timeout=60)
    line = one_line(out, 1)
    # PyTorch's "DataLoader worker (pid N) is killed by signal", or the batch it was handing over lost
    assert line.startswith(("error: DataLoader worker (pid", "error: a DataLoader worker's batch was lost")), line
    assert "killed from outside" in line, line
