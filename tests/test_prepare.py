"""Prepare once, read fast: re-encoded videos and extracted frames, through prepare_data.py to
training, and a prepare run killed part-way that a rerun finishes without a partial file; a full
disk, other settings, two videos of one stem, Ctrl-C / SIGTERM and a killed run's workers."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import av
import pytest
import torch
from cli import REPO, TINY_RUN, run, start
from PIL import Image
from videos import decode_marked, marked, write_video

from videoattn.data.prepare import extract_frames, reencode, scaled_size
from videoattn.data.video import open_video


def _video(tiny_demo: Path, kind: str) -> Path:
    return sorted(tiny_demo.rglob(f"*.{kind}"))[0]


def test_scaled_sizes_keep_the_aspect_never_enlarge_and_are_even():
    assert scaled_size(426, 240, 256) == (426, 240)  # SSv2: already below 256
    assert scaled_size(640, 360, 256) == (456, 256)
    assert scaled_size(340, 256, 128) == (170, 128)
    assert scaled_size(81, 65, 48) == (60, 48)


@pytest.mark.parametrize("kind", ["webm", "mp4"])
def test_reencode_keeps_every_frame_at_the_short_side_with_a_keyframe_every_gop(tiny_demo, tmp_path, kind):
    src = _video(tiny_demo, kind)
    dst = tmp_path / "out.mp4"
    n = reencode(src, dst, short_side=48, gop=4)
    with open_video(src, backend="pyav") as a, open_video(dst, backend="pyav") as b:
        assert n == a.num_frames == b.num_frames
        assert tuple(b.read([0]).shape[-2:]) == (48, 60)  # 64x80 -> 48x60
    with av.open(str(dst)) as c:
        keys = [i for i, packet in enumerate(c.demux(video=0)) if packet.is_keyframe]
    assert keys[0] == 0 and max(b - a for a, b in zip(keys, [*keys[1:], n], strict=True)) <= 4
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary left


def test_extracted_frames_are_the_video_read_by_the_frame_reader(tiny_demo, tmp_path):
    src = _video(tiny_demo, "webm")
    n = extract_frames(src, tmp_path / "clip", short_side=64, quality=95)
    with open_video(src, backend="pyav") as video, open_video(tmp_path / "clip", backend="frames") as frames:
        assert frames.num_frames == video.num_frames == n
        a, b = video.read(range(n)).float(), frames.read(range(n)).float()  # (T, 3, 64, 80), JPEG-close
        assert a.shape == b.shape and (a - b).abs().mean() < 3
    assert sorted(p.name for p in (tmp_path / "clip").iterdir())[:2] == ["00001.jpg", "00002.jpg"]


@pytest.mark.parametrize("mode", ["reencode", "frames"])
def test_prepared_lists_train(tiny_demo, tmp_path, mode):
    src = "kinetics" if mode == "reencode" else "ssv2"
    out = tmp_path / "lists"
    res = run(["tools/prepare_data.py", "--source", src, "--root", tiny_demo / src, "--out", out,
               "--prepare", mode, "--short-side", "48", "--workers", "2"])  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    folder = out / ("videos" if mode == "reencode" else "frames")
    lines = (out / "train.txt").read_text().splitlines()
    assert len(lines) == 24 and all(line.startswith(folder.name + "/") for line in lines)
    res = run(["tools/train.py", f"data={src}", "data.source=list", f"data.root={out}", f"run_dir={tmp_path / 'run'}",
               "optim.epochs=1", "max_steps_per_epoch=2", "data.train_transform.flip=auto", *TINY_RUN])  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "24 train / 12 val clips" in res.stdout + res.stderr


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and its children (the prepare processes of its pool) at once."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    for p in [pid, *children]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_killed_prepare_run_is_finished_by_the_next_and_leaves_no_partial_file(tiny_demo, tmp_path):
    out = tmp_path / "lists"
    cmd = ["tools/prepare_data.py", "--source", "ssv2", "--root", tiny_demo / "ssv2", "--out", out,
           "--prepare", "frames", "--workers", "2"]  # fmt: skip
    frames = out / "frames" / "20bn-something-something-v2"
    first = start(cmd)
    deadline = time.monotonic() + 120
    while len([p for p in frames.glob("[0-9]*") if p.is_dir()]) < 4:  # a few videos done, others in progress
        assert first.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.005)
    _kill_tree(first.pid)
    first.wait()
    done = {p: p.stat().st_mtime_ns for p in frames.iterdir() if not p.name.startswith(".")}
    assert 4 <= len(done) < 36 and not (out / "train.txt").exists()

    res = run(cmd)
    assert res.returncode == 0, res.stderr[-2000:]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # no partial file or folder
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # finished videos were not redone
    assert len((out / "train.txt").read_text().splitlines()) == 24
    assert len((out / "val.txt").read_text().splitlines()) == 12
    for folder in frames.iterdir():  # every folder complete: as many frames as the video
        with open_video(tiny_demo / "ssv2" / "20bn-something-something-v2" / folder.name) as video:  # 123.webm/
            assert len(list(folder.glob("*.jpg"))) == video.num_frames, folder
    assert torch.is_tensor(open_video(next(frames.iterdir()), backend="frames").read([0]))


# ----------------------------------------------------------------------------- honest runs (issue 26)
SSV2_FRAMES = "frames/20bn-something-something-v2"


def _prepare(tiny_demo: Path, out: Path, *extra: str, splits: tuple[str, ...] = ("val",)) -> list[str]:
    return ["tools/prepare_data.py", "--source", "ssv2", "--root", str(tiny_demo / "ssv2"), "--out", str(out),
            "--prepare", "frames", "--splits", *splits, *extra]  # fmt: skip


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaps is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _complete(folder: Path) -> list[Path]:
    """The frame folders in ``folder``, each checked to hold every frame of its video."""
    done = [p for p in folder.iterdir() if not p.name.startswith(".")]
    for p in done:
        with open_video(p, backend="frames") as frames:
            assert frames.num_frames == len(list(p.glob("*.jpg"))) > 0
    return done


def _no_temporaries(out: Path) -> None:
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")], "a partial file or folder is left"


FULL_DISK = """
import runpy
from PIL import Image
real, written = Image.Image.save, [0]
def save(self, *args, **kwargs):  # this process' first {limit} frames are written, then the disk is full
    written[0] += 1
    if written[0] > {limit}:
        raise OSError({errno}, {strerror!r})
    real(self, *args, **kwargs)
Image.Image.save = save
runpy.run_path({tool!r}, run_name="__main__")
"""


@pytest.mark.parametrize("code, says, workers", [(errno.ENOSPC, "the disk is full", 2), (errno.EROFS, "Read-only", 0)])
def test_a_failed_write_stops_the_run_naming_the_path_and_no_video_is_counted_bad(
    tiny_demo, tmp_path, code, says, workers
):
    """Writing a JPEG fails (in every worker, or in the run itself with --workers 0) after 40
    frames (the videos have 24-39): exit 2, one line naming where and why, no list, no bad
    file; once the disk has room, the same command finishes the split."""
    wrapper = tmp_path / "full_disk.py"
    wrapper.write_text(FULL_DISK.format(limit=40, errno=code, strerror=os.strerror(code),
                                        tool=str(REPO / "tools" / "prepare_data.py")))  # fmt: skip
    out = tmp_path / "lists"
    cmd = _prepare(tiny_demo, out, "--workers", str(workers))
    res = run([wrapper, *cmd[1:]])
    text = res.stdout + res.stderr
    assert res.returncode == 2 and "Traceback" not in text, text[-3000:]
    errors = [line for line in text.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0] == text.strip().splitlines()[-1], text[-3000:]
    assert re.match(rf"error: writing {out / SSV2_FRAMES}/\d+\.webm failed, .*{says}", errors[0]), errors[0]
    assert not (out / "val.txt").exists() and not (out / "bad_files.txt").exists()
    _no_temporaries(out)
    kept = {p: p.stat().st_mtime_ns for p in _complete(out / SSV2_FRAMES)}
    assert 1 <= len(kept) < 12

    res = run(cmd)  # room again
    assert res.returncode == 0, res.stderr[-2000:]
    assert len((out / "val.txt").read_text().splitlines()) == 12 and (out / "bad_files.txt").read_text() == ""
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())


def test_a_rerun_with_other_settings_is_refused_naming_them_and_overwrite_prepares_again(tiny_demo, tmp_path):
    out = tmp_path / "lists"
    cmd = _prepare(tiny_demo, out, "--workers", "2")
    res = run([*cmd, "--short-side", "48"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((out / "prepare.json").read_text())["frames"]["short_side"] == 48
    listed = (out / "val.txt").read_text()
    before = {p: p.stat().st_mtime_ns for p in (out / SSV2_FRAMES).iterdir()}

    res = run([*cmd, "--short-side", "32", "--jpeg-quality", "90"])
    text = (res.stdout + res.stderr).strip()
    assert res.returncode == 2 and text.startswith("error: ") and len(text.splitlines()) == 1, text[-3000:]
    assert "with --short-side 48, this run asks for --short-side 32" in text and "--overwrite" in text, text
    assert {p: p.stat().st_mtime_ns for p in (out / SSV2_FRAMES).iterdir()} == before  # nothing added or redone
    assert (out / "val.txt").read_text() == listed

    res = run([*cmd, "--short-side", "32", "--overwrite"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((out / "prepare.json").read_text())["frames"]["short_side"] == 32
    folders = _complete(out / SSV2_FRAMES)
    assert len(folders) == 12 and {Image.open(next(p.glob("*.jpg"))).size for p in folders} == {(40, 32)}


STEMS = {"frames": ["frames/clip.mp4", "frames/clip.webm"], "reencode": ["videos/clip.mp4", "videos/clip.webm.mp4"]}


@pytest.mark.parametrize("mode, listed", STEMS.items(), ids=STEMS)
def test_two_videos_of_one_stem_are_prepared_apart(tiny_demo, tmp_path, mode, listed):
    """clip.mp4 and clip.webm (a list dataset)."""
    data = tmp_path / "data"
    data.mkdir()
    sources = {"clip.mp4": _video(tiny_demo, "mp4"), "clip.webm": _video(tiny_demo, "webm")}
    for name, src in sources.items():
        shutil.copy(src, data / name)
    (data / "train.txt").write_text("clip.mp4 0 0\nclip.webm 0 1\n")
    (data / "classes.txt").write_text("a\nb\n")
    out = tmp_path / "out"
    res = run(["tools/prepare_data.py", "--source", "list", "--root", data, "--out", out, "--splits", "train",
               "--prepare", mode, "--short-side", "48", "--workers", "1"])  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    rows = sorted(line.split() for line in (out / "train.txt").read_text().splitlines())
    assert [path for path, _, _ in rows] == listed
    for (path, n, label), name in zip(rows, sources, strict=True):
        with open_video(sources[name], backend="pyav") as video:
            assert (int(n), int(label)) == (video.num_frames, ["clip.mp4", "clip.webm"].index(name))
        with open_video(out / path) as prepared:
            assert prepared.num_frames == video.num_frames


@pytest.mark.parametrize("mode", ["reencode", "frames"])
def test_a_phone_video_is_prepared_upright_at_the_short_side_of_its_upright_picture(tmp_path, mode):
    """A portrait phone video (stored 96 wide and 64 high, display matrix -90: shown 64 wide and
    96 high): the prepared form is upright, scaled from the upright size (32 x 48 at
    --short-side 32), with no display rotation left, and lists the readers' frame count."""
    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip(f"PyAV {av.__version__} cannot write a display matrix (set_display_rotation: PyAV 18)")
    data = tmp_path / "data"
    write_video(data / "phone.mp4", 10, height=96, width=64, rotation=270, content=marked)
    (data / "train.txt").write_text("phone.mp4 0 0\n")
    (data / "classes.txt").write_text("a\n")
    out = tmp_path / "out"
    res = run(["tools/prepare_data.py", "--source", "list", "--root", data, "--out", out, "--splits", "train",
               "--prepare", mode, "--short-side", "32", "--workers", "1"])  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    path, n, _ = (out / "train.txt").read_text().split()
    with open_video(data / "phone.mp4", backend="pyav") as video:
        assert int(n) == video.num_frames == 10
    with open_video(out / path, backend="frames" if mode == "frames" else "pyav") as prepared:
        assert prepared.num_frames == 10
        frames = prepared.read(range(10))
    assert tuple(frames.shape) == (10, 3, 48, 32)
    assert [decode_marked(f) for f in frames] == [(i, "top-left") for i in range(10)]
    if mode == "reencode":
        with av.open(str(out / path)) as container:
            assert next(container.decode(video=0)).rotation == 0


def _started(cmd: list, folder: Path, *, done: int = 2):
    """Start ``cmd`` and wait until ``done`` videos are prepared in ``folder`` and both workers run."""
    first = start(cmd)
    deadline = time.monotonic() + 120
    while len([p for p in folder.glob("[0-9]*") if p.is_dir()]) < done or len(_children(first.pid)) < 2:
        assert first.poll() is None and time.monotonic() < deadline, "the run ended before it could be stopped"
        time.sleep(0.005)
    return first, _children(first.pid)


def test_the_workers_die_with_a_killed_run(tiny_demo, tmp_path):
    out = tmp_path / "lists"
    first, workers = _started(_prepare(tiny_demo, out, "--workers", "2", splits=("train", "val")), out / SSV2_FRAMES)
    os.kill(first.pid, signal.SIGKILL)  # the run only, as the kernel's OOM killer or `kill -9 PID` does
    first.wait()
    deadline = time.monotonic() + 5
    try:
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not [w for w in workers if _alive(w)], "workers outlived their run"
    finally:
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)


ORPHAN = """
import os, runpy, sys, time
die_with = runpy.run_path({tool!r})["_die_with"]
if sys.argv[1] == "watchdog":  # a platform without the kernel's request (not Linux)
    die_with.__globals__["die_with_parent"] = lambda sig: False
die_with(-1)  # a parent that died before the worker started (its parent now is another process)
time.sleep(20)
sys.exit(3)  # outlived its run
"""


@pytest.mark.parametrize("how", ["pdeathsig", "watchdog"])
def test_a_worker_whose_run_is_already_gone_ends_at_once(tmp_path, how):
    """``_die_with``: the kernel's SIGKILL (``videoattn.processes.die_with_parent``), or the
    watchdog thread where there is none; either way a worker started after its run died exits."""
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN.format(tool=str(REPO / "tools" / "prepare_data.py")))
    t0 = time.monotonic()
    res = run([script, how], timeout=60)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert time.monotonic() - t0 < 15


@pytest.mark.parametrize("signum, code, to_all", [(signal.SIGINT, 130, True), (signal.SIGTERM, 143, False)],
                         ids=["ctrl-c", "sigterm"])  # fmt: skip
def test_an_interrupted_run_says_how_far_it_got_in_one_line(tiny_demo, tmp_path, signum, code, to_all):
    """Ctrl-C reaches every process of the terminal's group (the run and its workers); ``kill``
    the run only: exit 128 + signal, one line, no traceback, no process, no partial file."""
    out = tmp_path / "lists"
    first, workers = _started(_prepare(tiny_demo, out, "--workers", "2", splits=("train", "val")), out / SSV2_FRAMES)
    for pid in [first.pid, *workers] if to_all else [first.pid]:
        os.kill(pid, signum)
    res = first.wait(60)
    text = res.stdout + res.stderr
    assert res.returncode == code and "Traceback" not in text, text[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    m = re.fullmatch(r"interrupted: (\d+) of 24 train videos prepared \(kept in .*\); .*rerun the same command.*", last)
    assert m and sum("interrupted" in line for line in text.splitlines()) == 1, text[-3000:]
    assert not [w for w in workers if _alive(w)]
    _no_temporaries(out)
    assert len(_complete(out / SSV2_FRAMES)) == int(m[1]) and not (out / "train.txt").exists()
