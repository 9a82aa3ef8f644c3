"""Prepare once, read fast: re-encoded videos and extracted frames, through prepare_data.py to
training, and a prepare run killed part-way that a rerun finishes without a partial file."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import av
import pytest
import torch
from cli import TINY_RUN, run, start

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
        with open_video(tiny_demo / "ssv2" / "20bn-something-something-v2" / f"{folder.name}.webm") as video:
            assert len(list(folder.glob("*.jpg"))) == video.num_frames, folder
    assert torch.is_tensor(open_video(next(frames.iterdir()), backend="frames").read([0]))
