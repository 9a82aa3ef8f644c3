"""The embedded demo dataset: class design, determinism, real files in the official formats.

The annotation files are parsed here directly (json/csv), independently of the toolkit's
parsers, so these tests pin the official structure itself.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import sys
import threading
import types
from pathlib import Path

import av
import numpy as np
import pytest

from videoattn.data import synthetic as syn
from videoattn.data.synthetic import (
    APPEARANCE_CLASSES,
    DEMO_CLASSES,
    ORDER_DEPENDENT,
    REVERSED_PAIRS,
    TEMPLATES,
    DemoParams,
    ensure_demo_dataset,
    read_manifest,
    render_clip,
    write_demo_dataset,
    write_video,
)

TOOLS = Path(__file__).resolve().parents[1] / "tools"

try:
    import decord
except ImportError:  # pragma: no cover - decord has x86_64 wheels only
    decord = None

# A tiny dataset: one clip per class and split, 8..12 frames of 64x96.
TINY = dict(
    train_per_class=1,
    val_per_class=1,
    test_clips=2,
    kinetics_train_per_class=1,
    kinetics_val_per_class=1,
    size=(64, 96),
    num_frames=(8, 12),
)
# Smaller still, for the tests of the writing logic: 12 short Kinetics-format clips.
SMALL = dict(TINY, formats=("kinetics",), kinetics_val_per_class=0, num_frames=(4, 6))
SSV2_ENTRY_KEYS = ["id", "label", "template", "placeholders"]
KINETICS_HEADER = ["label", "youtube_id", "time_start", "time_end", "split"]
KINETICS_NAME = re.compile(r"^([A-Za-z0-9_-]{11})_(\d{6})_(\d{6})\.mp4$")


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def swap_left_right(name: str) -> str:
    """The SSv2 flip label map on names: swap the words 'left' and 'right'."""
    return " ".join({"left": "right", "right": "left"}.get(w, w) for w in name.split(" "))


def file_digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "demo", seed=3, **TINY)


# ---------------------------------------------------------------------------------------------
# Class design
# ---------------------------------------------------------------------------------------------


def test_classes_templates_and_pairs():
    assert DEMO_CLASSES == sorted(DEMO_CLASSES) and len(set(DEMO_CLASSES)) == 12
    for name, template in TEMPLATES.items():
        assert template.replace("[", "").replace("]", "") == name
        assert len(re.findall(r"\[[Ss]omething\]", template)) == 1
    paired = [c for pair in REVERSED_PAIRS for c in pair]
    assert len(paired) == len(set(paired)) == 8
    assert set(ORDER_DEPENDENT) == set(paired)
    assert sorted(APPEARANCE_CLASSES) == sorted(set(DEMO_CLASSES) - set(paired))
    assert len(APPEARANCE_CLASSES) == 4


def test_left_right_pairs_are_exact_word_swaps():
    left_right = [p for p in REVERSED_PAIRS if "left" in (p[0] + " " + p[1]).split()]
    assert len(left_right) >= 2  # moving across, turning
    for a, b in left_right:
        assert swap_left_right(a) == b and swap_left_right(b) == a
    # the flip label map is closed over the classes and only touches left/right names
    for name in DEMO_CLASSES:
        flipped = swap_left_right(name)
        assert flipped in DEMO_CLASSES
        assert (flipped != name) == any(name in p for p in left_right)


@pytest.mark.parametrize("first, second", REVERSED_PAIRS)
def test_reversed_pairs_are_exact_time_reversals(first, second):
    for seed, t in [(0, 24), (1, 31), (2, 9)]:
        a = render_clip(first, rng(seed), num_frames=t, size=(64, 96))
        b = render_clip(second, rng(seed), num_frames=t, size=(64, 96))
        np.testing.assert_array_equal(b, a[::-1])  # same frames, opposite order
        assert not np.array_equal(a, b)  # ... and the order matters


def test_render_shape_determinism_and_seed():
    for name in DEMO_CLASSES:
        a = render_clip(name, rng(7), num_frames=10, size=(64, 96))
        assert a.shape == (10, 64, 96, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, render_clip(name, rng(7), num_frames=10, size=(64, 96)))
        assert not np.array_equal(a, render_clip(name, rng(8), num_frames=10, size=(64, 96)))
    with pytest.raises(ValueError, match="did you mean"):
        render_clip("Moving something form left to right", rng(0), num_frames=4)


def _foreground(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) bool: pixels far from the frame's median colour (the plain background)."""
    bg = np.median(frames.reshape(len(frames), -1, 3), axis=1)  # (T, 3)
    return np.abs(frames.astype(np.int16) - bg[:, None, None, :].astype(np.int16)).sum(-1) > 60


def test_motion_directions_match_the_names():
    """The first class of each pair moves as named (the second is its exact reversal)."""
    h, w = 96, 128
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    for seed in range(4):

        def clip(name, seed=seed):
            return _foreground(render_clip(name, rng(seed), num_frames=20, size=(h, w)))

        fg = clip("Moving something from left to right")
        x = (fg * xs).sum((1, 2)) / fg.sum((1, 2))
        assert (np.diff(x) > 0).all() and x[-1] - x[0] > 0.3 * w
        fg = clip("Moving something up")
        y = (fg * ys).sum((1, 2)) / fg.sum((1, 2))
        assert (np.diff(y) < 0).all() and y[0] - y[-1] > 0.3 * h
        area = clip("Something growing").sum((1, 2))
        assert (np.diff(area) >= 0).all() and area[-1] > 8 * area[0]
        # clockwise on screen: the orientation of the second moments about the rotation
        # centre increases (x right, y down), by 6..15 degrees a frame
        fg = clip("Turning something to the right")
        cx, cy = (fg * xs).sum() / fg.sum(), (fg * ys).sum() / fg.sum()
        phi = []
        for m in fg:
            dx, dy = xs[m] - cx, ys[m] - cy
            phi.append(0.5 * np.arctan2(2 * (dx * dy).mean(), (dx * dx).mean() - (dy * dy).mean()))
        step = (np.degrees(np.diff(phi)) + 90) % 180 - 90
        assert (step > 3).all() and (step < 18).all(), step


def _luma(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def _euler_number(mask: np.ndarray) -> np.ndarray:
    """Euler number (components minus holes, 8-connected foreground) of each (H, W) map of
    (T, H, W), from counts of 2x2 pixel patterns (Gray's bit quads)."""
    m = np.pad(mask, ((0, 0), (1, 1), (1, 1))).astype(np.int8)
    a, b, c, d = m[:, :-1, :-1], m[:, :-1, 1:], m[:, 1:, :-1], m[:, 1:, 1:]
    n = a + b + c + d
    diagonal = (n == 2) & (a == d)
    q1, q3, qd = ((n == 1).sum((1, 2)), (n == 3).sum((1, 2)), diagonal.sum((1, 2)))
    return (q1 - q3 - 2 * qd) // 4


def frame_properties(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Single-frame tests, one bool per frame, one per appearance class."""
    lum = _luma(frames)
    dark = np.median(lum.reshape(len(lum), -1), axis=1) < 40
    dx = np.abs(np.diff(lum, axis=2))[:, :-1, :]
    dy = np.abs(np.diff(lum, axis=1))[:, :, :-1]
    striped = (np.maximum(dx, dy) > 20).reshape(len(lum), -1).mean(1) > 0.1
    fg = _foreground(frames)
    euler = _euler_number(fg)  # 1 for one filled object, 0 for an outline or nothing
    pile = ~striped & (euler >= 4)
    blinking = ~striped & (euler <= 0)
    return {
        "Showing something in the dark": dark,
        "Showing something on a striped background": striped,
        "Showing a pile of something": pile,
        "Something blinking": blinking,
    }


def test_appearance_classes_are_recognisable_from_any_single_frame():
    """Each appearance class has a property that every one of its frames has and no frame of
    any other class has (so a frame-level model can recognise it)."""
    assert set(frame_properties(np.zeros((1, 8, 8, 3), np.uint8))) == set(APPEARANCE_CLASSES)
    for name in DEMO_CLASSES:
        frames = np.concatenate([render_clip(name, rng(100 + s), num_frames=12, size=(96, 128)) for s in range(4)])
        for prop, holds in frame_properties(frames).items():
            expected = prop == name
            assert (holds == expected).all(), (name, prop, holds.mean())
    # blinking: both "on" (outline) and "off" (empty) frames occur
    blink = render_clip("Something blinking", rng(5), num_frames=24, size=(96, 128))
    per_frame_max = np.abs(blink.astype(np.int16) - np.median(blink, axis=(1, 2), keepdims=True)).max((1, 2, 3))
    assert (per_frame_max > 60).any() and (per_frame_max < 60).any()


def test_mean_colour_statistics_differ_between_appearance_classes():
    stats = {}
    for name in APPEARANCE_CLASSES:
        f = render_clip(name, rng(11), num_frames=8, size=(96, 128)).astype(np.float32)
        lum = _luma(f)
        stats[name] = (lum.mean(), np.abs(np.diff(lum, axis=2)).mean())
    assert (
        stats["Showing something in the dark"][0] < 60 < min(stats[n][0] for n in APPEARANCE_CLASSES if "dark" not in n)
    )
    stripes = stats["Showing something on a striped background"][1]
    assert stripes > 3 * max(stats[n][1] for n in APPEARANCE_CLASSES if "striped" not in n)


# ---------------------------------------------------------------------------------------------
# Encoded files
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix, codec", [(".webm", "libvpx-vp9"), (".mp4", "libx264")])
def test_write_video_roundtrip(tmp_path, suffix, codec):
    frames = render_clip("Moving something up", rng(0), num_frames=13, size=(64, 96))
    path = tmp_path / f"clip{suffix}"
    write_video(path, frames, codec=codec, fps=12)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind
    with av.open(str(path)) as c:
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        assert c.streams.video[0].codec_context.name in ("vp9", "libvpx-vp9", "h264")
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(np.int16) - frames).mean() < 6  # shapes stay crisp
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", frames[:, :63], codec=codec)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "f.mp4", frames.astype(np.float32), codec=codec)


def test_encoding_after_decord_was_imported_first_is_refused_in_one_line(tmp_path, monkeypatch):
    """decord 0.6 imported before PyAV binds PyAV's encoders to decord's libvpx (VP9 then fails to
    open); the fork decord2 does not."""
    modules = {k: v for k, v in sys.modules.items() if k not in ("av", "decord")}
    old_decord = types.SimpleNamespace(__version__="0.6.0")
    monkeypatch.setattr(sys, "modules", {**modules, "decord": old_decord, "av": av})  # decord first
    frames = render_clip("Something blinking", rng(1), num_frames=6, size=(64, 96))
    with pytest.raises(RuntimeError, match="decord 0.6 was imported before PyAV .* import av .* before decord"):
        write_video(tmp_path / "clip.webm", frames, codec="libvpx-vp9")
    assert not list(tmp_path.iterdir())


def _all_videos(root: Path) -> list[Path]:
    return sorted(root.rglob("*.webm")) + sorted(root.rglob("*.mp4"))


def test_videos_decode_with_decord_and_pyav(tiny):
    manifest = read_manifest(tiny)
    videos = _all_videos(tiny)
    assert len(videos) == manifest["total_clips"] == 12 * 2 + 2 + 12 * 2
    h, w = TINY["size"]
    for path in videos:
        t = manifest["frames_per_video"][path.relative_to(tiny).as_posix()]
        assert TINY["num_frames"][0] <= t <= TINY["num_frames"][1]
        with av.open(str(path)) as c:
            n = 0
            for frame in c.decode(video=0):
                assert (frame.height, frame.width) == (h, w)
                n += 1
        assert n == t, path
        if decord is not None:
            vr = decord.VideoReader(str(path))
            assert len(vr) == t, path
            assert vr[t - 1].shape == (h, w, 3)
    assert {p.suffix for p in (tiny / "ssv2").rglob("*.*") if p.parent.name.startswith("20bn")} == {".webm"}


def test_ssv2_files_have_the_official_structure(tiny):
    root = tiny / "ssv2"
    labels = json.loads((root / "labels.json").read_text())
    assert list(labels) == sorted(labels) == DEMO_CLASSES
    assert list(labels.values()) == [str(i) for i in range(len(labels))]
    ids = []
    for split, per_class in (
        ("train", TINY["train_per_class"]),
        ("validation", TINY["val_per_class"]),
    ):
        entries = json.loads((root / f"{split}.json").read_text())
        assert isinstance(entries, list) and len(entries) == per_class * len(DEMO_CLASSES)
        for e in entries:
            assert list(e) == SSV2_ENTRY_KEYS
            assert e["id"].isdigit() and isinstance(e["id"], str)
            name = e["template"].replace("[", "").replace("]", "")
            assert name in labels
            assert isinstance(e["placeholders"], list) and len(e["placeholders"]) == 1
            obj = e["placeholders"][0]
            filled = re.sub(r"\[something\]", obj, e["template"], flags=re.IGNORECASE)
            assert e["label"] == filled.lower()
            assert (root / "20bn-something-something-v2" / f"{e['id']}.webm").is_file()
            ids.append(e["id"])
        assert sorted(e["template"].replace("[", "").replace("]", "") for e in entries) == sorted(
            DEMO_CLASSES * per_class
        )
    test = json.loads((root / "test.json").read_text())
    assert len(test) == TINY["test_clips"] and all(list(e) == ["id"] for e in test)
    ids += [e["id"] for e in test]
    assert len(ids) == len(set(ids))
    assert {p.stem for p in (root / "20bn-something-something-v2").iterdir()} == set(ids)


def test_kinetics_files_have_the_official_structure(tiny):
    root = tiny / "kinetics"
    seen = set()
    for split in ("train", "val"):
        with open(root / f"kinetics-400_{split}.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == KINETICS_HEADER
        assert len(rows) - 1 == len(DEMO_CLASSES)
        for label, yid, start, end, row_split in rows[1:]:
            assert label in DEMO_CLASSES and row_split == split
            assert re.fullmatch(r"[A-Za-z0-9_-]{11}", yid) and yid not in seen
            seen.add(yid)
            assert start.isdigit() and end.isdigit() and int(end) == int(start) + 10
            name = f"{yid}_{int(start):06d}_{int(end):06d}.mp4"
            assert KINETICS_NAME.match(name)
            assert (root / split / label / name).is_file()
        assert sum(1 for _ in (root / split).rglob("*.mp4")) == len(rows) - 1


def test_manifest(tiny):
    m = read_manifest(tiny)
    assert m["classes"] == DEMO_CLASSES
    assert sorted(m["order_dependent"]) == sorted(ORDER_DEPENDENT)
    assert m["params"]["seed"] == 3 and m["params"]["size"] == [64, 96]
    assert m["counts"] == {
        "ssv2": {"train": 12, "validation": 12, "test": 2},
        "kinetics": {"train": 12, "val": 12},
    }
    assert m["format_version"] == syn.FORMAT_VERSION and "written_by" in m
    assert not [p for p in tiny.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


# ---------------------------------------------------------------------------------------------
# Determinism and ensure_demo_dataset
# ---------------------------------------------------------------------------------------------


def test_same_seed_same_files_any_workers_other_seed_differs(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(syn, "_MIN_PIXELS_FOR_WORKERS", 0)  # use the process pool even here
    again = write_demo_dataset(tmp_path / "again", seed=3, workers=2, **TINY)
    assert file_digests(again) == file_digests(tiny)  # annotations and encoded bytes
    other = write_demo_dataset(
        tmp_path / "other", seed=4, **dict(TINY, formats=("ssv2",), val_per_class=0, test_clips=0)
    )
    assert (other / "ssv2" / "train.json").read_bytes() != (tiny / "ssv2" / "train.json").read_bytes()
    assert (other / "ssv2" / "labels.json").read_bytes() == (tiny / "ssv2" / "labels.json").read_bytes()
    assert not (other / "kinetics").exists()


def test_ensure_reuses_a_matching_dataset_and_rewrites_on_change(tmp_path):
    small = SMALL
    root = ensure_demo_dataset(tmp_path / "demo", seed=1, **small)
    manifest = root / "manifest.json"
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert ensure_demo_dataset(tmp_path / "demo", seed=1, workers=2, **small) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == mtimes  # nothing rewritten
    ensure_demo_dataset(tmp_path / "demo", seed=2, **small)
    assert json.loads(manifest.read_text())["params"]["seed"] == 2
    assert manifest.stat().st_mtime_ns != mtimes[manifest]
    with pytest.raises(TypeError):
        ensure_demo_dataset(tmp_path / "demo", sed=2)  # typos are not swallowed


def test_existing_folders_are_protected(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a demo dataset"):
        ensure_demo_dataset(tmp_path / "mine", **TINY)
    with pytest.raises(FileExistsError, match="not a demo dataset"):
        write_demo_dataset(tmp_path / "mine", overwrite=True, **TINY)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    root = write_demo_dataset(tmp_path / "demo", **SMALL)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_demo_dataset(root, **SMALL)


def test_concurrent_ensure_writes_once(tmp_path):
    """Two callers at once (torchrun ranks): both get the same complete dataset."""
    small = SMALL
    results, errors = [], []

    def call():
        try:
            results.append(ensure_demo_dataset(tmp_path / "demo", seed=5, **small))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [tmp_path / "demo"] * 2
    assert read_manifest(tmp_path / "demo")["params"]["seed"] == 5
    assert sorted(os.listdir(tmp_path)) == [".demo.lock", "demo"]  # no temp or old folders left (the lock file stays)


def test_the_default_demo_folder_is_in_the_working_directory_never_in_the_package(tmp_path, monkeypatch):
    import videoattn
    from videoattn.data.synthetic import default_demo_root

    monkeypatch.delenv("VIDEOATTN_DEMO_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_demo_root() == tmp_path.resolve() / "data" / "demo"
    assert Path(videoattn.__file__).parent not in default_demo_root().parents
    monkeypatch.setenv("VIDEOATTN_DEMO_ROOT", str(tmp_path / "elsewhere"))
    assert default_demo_root() == tmp_path.resolve() / "elsewhere"


def test_make_demo_data_has_one_option_per_demo_param_and_writes_them(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_demo_data", TOOLS / "make_demo_data.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    defaults = vars(tool.parser().parse_args([]))
    assert {f.name: defaults[f.name] for f in dataclasses.fields(DemoParams)} == {
        **dataclasses.asdict(DemoParams()),
        "formats": list(syn.FORMATS),
    }
    argv = "--seed 7 --num-frames 4 6 --size 64 96 --formats kinetics --kinetics-train-per-class 1"
    tool.main(["--root", str(tmp_path / "demo"), *argv.split(), "--kinetics-val-per-class", "0"])
    assert "wrote the demo dataset" in capsys.readouterr().out
    params = read_manifest(tmp_path / "demo")["params"]
    assert (params["seed"], params["num_frames"], params["size"], params["formats"]) == (
        7,
        [4, 6],
        [64, 96],
        ["kinetics"],
    )
