"""Video readers, samplers, transforms and the dataset, on real video files written by PyAV."""

from __future__ import annotations

import logging
import types

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from videos import bars, decode_bars, write_frame_folder, write_video

from videoattn.data import video as video_mod
from videoattn.data.annotations import VideoRecord, flip_label_map
from videoattn.data.build import RECYCLE_WORKERS, loader_options, sampling_for_model
from videoattn.data.dataset import VideoDataset, read_report
from videoattn.data.sampling import Sampling, segment_sample, segment_test_clips
from videoattn.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    ToDevice,
    TrainTransform,
    fixed_offsets,
    multiscale_crop_params,
    normalize,
    random_resized_crop_params,
    resize_short,
)
from videoattn.data.video import DecodeError, open_video, read_clip
from videoattn.errors import ConfigError, DataError

N_FRAMES = 40


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    return {
        "webm": write_video(root / "a.webm", N_FRAMES),
        "mp4": write_video(root / "a.mp4", N_FRAMES),
        "frames": write_frame_folder(root / "a_frames", N_FRAMES),
    }


# ----------------------------------------------------------------------------- readers

TORCHCODEC = pytest.mark.skipif(
    not video_mod.torchcodec_available(), reason=video_mod._torchcodec()[1] or "torchcodec available"
)
READERS = [
    ("webm", "decord"),
    ("webm", "pyav"),
    pytest.param("webm", "torchcodec", marks=TORCHCODEC),
    ("mp4", "decord"),
    ("mp4", "pyav"),
    pytest.param("mp4", "torchcodec", marks=TORCHCODEC),
    ("frames", "frames"),
    ("frames", "auto"),
]


@pytest.mark.parametrize("kind, backend", READERS)
def test_readers_are_frame_exact(videos, kind, backend):
    with open_video(videos[kind], backend=backend) as reader:
        assert reader.num_frames == N_FRAMES
        idx = [0, 1, 7, 20, 39, 3, 3]
        frames = reader.read(idx)
    assert frames.shape == (len(idx), 3, 64, 96) and frames.dtype == torch.uint8
    assert [decode_bars(f) for f in frames] == idx


@TORCHCODEC
@pytest.mark.parametrize("kind", ["webm", "mp4"])  # VP9, H.264
def test_torchcodec_decodes_the_same_pixels_as_pyav(videos, tiny_demo, kind):
    demo = sorted(tiny_demo.rglob(f"*.{kind}"))[:3]  # the demo's real content, as well as the bars
    assert demo
    for path in [videos[kind], *demo]:
        with open_video(path, backend="pyav") as ref, open_video(path, backend="torchcodec") as tc:
            assert tc.num_frames == ref.num_frames, path
            idx = list(range(ref.num_frames))[::-1]  # every frame, backwards: seeks
            assert torch.equal(tc.read(idx), ref.read(idx)), path


@pytest.mark.parametrize("kind, backend", READERS)
def test_reads_past_the_end_are_clamped(videos, kind, backend):
    with open_video(videos[kind], backend=backend) as reader:
        frames = reader.read([N_FRAMES - 1, N_FRAMES, 10 * N_FRAMES])
    assert [decode_bars(f) for f in frames] == [N_FRAMES - 1] * 3


def _malloc_in_use() -> int | None:
    """Bytes glibc's main arena has handed out (``mallinfo2``), or None off glibc."""
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks".split()]

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2
    except (OSError, AttributeError):
        return None
    return libc.mallinfo2().uordblks


@pytest.mark.skipif(_malloc_in_use() is None, reason="needs glibc's mallinfo2")
def test_pyav_reads_that_stop_early_leave_no_native_memory_behind(videos):
    """A read stops decoding at its last wanted frame; PyAV frees its demuxer's packet only when
    the demux generator is closed. Left open, each read kept ~150 bytes: a worker grew ~25 MB
    over an epoch of SSv2."""
    import gc

    def reads(n):
        for _ in range(n):
            with open_video(videos["webm"], backend="pyav") as reader:
                reader.read([0, 3])  # stops after frame 3 of 40

    reads(100)  # warm: FFmpeg's and PyAV's one-off allocations
    gc.collect()
    before = _malloc_in_use()
    reads(600)
    gc.collect()
    assert _malloc_in_use() - before < 30_000  # with the generators left open: ~90 kB


@pytest.mark.skipif(video_mod.decord is None, reason="decord not installed")
def test_decord_frames_of_another_shape_are_a_decode_error_read_again_with_pyav(videos, monkeypatch):
    """decord2 3.4 returns 4-channel frames at some sizes: never passed on as a clip."""

    class FourChannels:
        def __init__(self, vr):
            self.vr = vr

        def __getattr__(self, name):
            return getattr(self.vr, name)

        def get_batch(self, idx):
            frames = self.vr.get_batch(idx).asnumpy()
            four = np.concatenate([frames, frames[..., :1]], axis=-1)  # (L, H, W, 4)
            return types.SimpleNamespace(asnumpy=lambda: four)

    init = video_mod.DecordReader.__init__

    def patched(self, *args, **kw):
        init(self, *args, **kw)
        self._vr = FourChannels(self._vr)

    monkeypatch.setattr(video_mod.DecordReader, "__init__", patched)
    with pytest.raises(DecodeError, match=r"decord: cannot decode .*a.webm: decoded frames of shape \(2, 64, 96, 4\)"):
        read_clip(videos["webm"], lambda n: np.array([0, 5]), backend="decord", fallback=False)
    clip, _ = read_clip(videos["webm"], lambda n: np.array([0, 5]), backend="decord")
    assert [decode_bars(f) for f in clip] == [0, 5]  # PyAV's frames


def test_read_clip_keeps_the_sampler_shape(videos):
    clip, idx = read_clip(videos["webm"], lambda n: segment_test_clips(n, 4, num_clips=2))
    assert clip.shape == (2, 4, 3, 64, 96) and idx.shape == (2, 4)
    assert [[decode_bars(f) for f in c] for c in clip] == idx.tolist()


def test_fallback_to_pyav_on_a_file_decord_rejects(tmp_path, caplog):
    # decord cannot read 16x16 streams; PyAV can. Frame i is the grey level 12 * i.
    grey = np.stack([np.full((16, 16, 3), 12 * i, np.uint8) for i in range(12)])
    path = write_video(tmp_path / "tiny.mp4", 12, height=16, width=16, frames=grey)
    with pytest.raises(DecodeError, match="decord.*tiny.mp4"):
        read_clip(path, lambda n: np.arange(n), backend="decord", fallback=False)
    clip, idx = read_clip(path, lambda n: np.arange(0, n, 3), backend="decord")
    assert idx.tolist() == [0, 3, 6, 9]
    levels = clip.float().mean(dim=(1, 2, 3)) / 12
    assert levels.round().tolist() == [0, 3, 6, 9]
    assert "read with PyAV instead" in caplog.text and "tiny.mp4" in caplog.text


def test_misreported_frame_count_never_reads_out_of_range(tmp_path):
    # An MP4 with its index first, cut in half: the index promises 60 frames, fewer decode.
    rng = np.random.default_rng(0)
    noisy = np.stack(
        [np.clip(bars(i).astype(int) + rng.integers(-30, 30, (64, 96, 3)), 0, 255).astype(np.uint8) for i in range(60)]
    )
    full = write_video(tmp_path / "full.mp4", 60, frames=noisy, container_options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with open_video(cut, backend="pyav") as reader:
        assert reader.num_frames == 60
        frames = reader.read([0, 5, 59])
        decodable = reader.num_frames
    assert 5 < decodable < 60
    assert [decode_bars(f) for f in frames] == [0, 5, decodable - 1]
    # decord rejects the cut file; the dataset path falls back and clamps the sampled indices
    clip, idx = read_clip(cut, lambda n: segment_sample(n, 8), backend="decord")
    assert idx.max() < decodable and [decode_bars(f) for f in clip] == idx.tolist()


def test_decord_reader_finds_the_real_end_when_the_count_is_wrong(videos):
    """decord's count can exceed the decodable frames: the reader searches for the real end."""
    with open_video(videos["mp4"], backend="decord") as reader:
        real = reader._vr

        class Shorter:  # the same stream, but frames >= 25 fail as in a truncated file
            def get_batch(self, idx):
                if max(idx) >= 25:
                    raise RuntimeError("av_read_frame failed")
                return real.get_batch(idx)

            def seek_accurate(self, i):
                if i >= 25:
                    raise RuntimeError("seek failed")
                real.seek_accurate(i)

            def next(self):
                return real.next()

        reader._vr = Shorter()
        frames = reader.read([0, 24, 30, 39])
        assert reader.num_frames == 25
    assert [decode_bars(f) for f in frames] == [0, 24, 24, 24]


def test_missing_and_corrupt_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        open_video(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.webm"
    bad.write_bytes(b"\x1aE\xdf\xa3 not a video" * 50)
    with pytest.raises(DecodeError, match="pyav: cannot decode .*bad.webm"):
        read_clip(bad, lambda n: np.arange(2))
    with pytest.raises(ValueError, match="unknown video backend"):
        open_video(bad, backend="opencv")
    empty = tmp_path / "empty_frames"
    empty.mkdir()
    with pytest.raises(DecodeError, match="no .*frames"):
        open_video(empty)


# ----------------------------------------------------------------------------- transforms


def _clip(t=4, h=120, w=160, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (t, 3, h, w), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("crop", ["multiscale", "random_resized", "short_side_jitter"])
def test_train_transform_applies_one_draw_to_every_frame(crop):
    frame = _clip(t=1)
    clip = frame.expand(6, -1, -1, -1)  # six identical frames
    tf = TrainTransform(size=64, crop=crop, flip="on", jitter=(64, 80))
    for seed in range(10):
        out, label = tf(clip, 3, np.random.default_rng(seed))
        assert out.shape == (6, 3, 64, 64) and out.dtype == torch.float32 and label == 3
        assert all(torch.equal(out[0], o) for o in out[1:])


def test_short_side_jitter_is_a_window_of_the_clip_resized_to_a_short_side_in_the_range():
    """TAda2D's train crop: short side ~ U{min..max}, then a size x size window, no second resize."""
    clip = _clip(t=2)  # (2, 3, H, W)
    tf = TrainTransform(size=32, crop="short_side_jitter", jitter=(40, 44), normalize=False)
    sides = set()
    for seed in range(40):
        out, _ = tf(clip, 0, np.random.default_rng(seed))
        assert out.shape == (2, 3, 32, 32) and out.dtype == torch.uint8
        rng = np.random.default_rng(seed)
        side = int(rng.integers(40, 45))
        resized = resize_short(clip, side)
        windows = resized.unfold(-2, 32, 1).unfold(-2, 32, 1)  # (2, 3, H', W', 32, 32): every position
        positions = [(i, j) for i in range(windows.shape[2]) for j in range(windows.shape[3])]
        assert any(torch.equal(out, windows[:, :, i, j]) for i, j in positions)
        sides.add(side)
    assert sides == set(range(40, 45))  # every short side of the range is drawn
    with pytest.raises(ConfigError, match=r"jitter \[16, 44\]"):
        TrainTransform(size=32, crop="short_side_jitter", jitter=(16, 44))


def test_train_transform_is_a_function_of_the_rng():
    clip = _clip()
    tf = TrainTransform(size=64, flip="on")
    a, _ = tf(clip, 0, np.random.default_rng(5))
    b, _ = tf(clip, 0, np.random.default_rng(5))
    c = [tf(clip, 0, np.random.default_rng(s))[0] for s in range(6)]
    assert torch.equal(a, b) and not all(torch.equal(c[0], x) for x in c[1:])


def test_multiscale_crop_follows_tsn():
    assert len(fixed_offsets(340, 256, 224, 224)) == 13 and len(fixed_offsets(340, 256, 224, 224, more=False)) == 5
    rng = np.random.default_rng(0)
    sides = {int(256 * s) for s in (1, 0.875, 0.75, 0.66)} | {224}
    seen = set()
    for _ in range(400):
        x, y, w, h = multiscale_crop_params(340, 256, 224, rng)
        assert 0 <= x and x + w <= 340 and 0 <= y and y + h <= 256
        assert w in sides and h in sides
        seen.add((w, h))
        assert (x, y) in fixed_offsets(340, 256, w, h)
    # int(256 * .875) = 224 is snapped; pairs at most one scale step apart: 4 + 3 + 3 = 10
    assert len(seen) == 10
    x, y, w, h = random_resized_crop_params(340, 256, rng, scale=(0.3, 1.0))
    assert 0 <= x and x + w <= 340 and 0 <= y and y + h <= 256 and w * h >= 0.3 * 340 * 256 * 0.95


def test_normalisation_and_flip():
    clip = _clip(h=64, w=64)
    out, _ = TrainTransform(size=64, crop="multiscale", scales=(1.0,))(clip, 0, np.random.default_rng(0))
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(out, (clip.float() / 255 - mean) / std)
    flips = set()
    for seed in range(20):
        out, _ = TrainTransform(size=64, scales=(1.0,), flip="on")(clip, 0, np.random.default_rng(seed))
        flipped = torch.allclose(out, (TF.horizontal_flip(clip).float() / 255 - mean) / std)
        flips.add(flipped)
    assert flips == {True, False}


def test_flip_swaps_left_right_labels():
    classes = sorted(
        [
            "Pushing something from left to right",
            "Pushing something from right to left",
            "Dropping something",
            "Turning the camera left while filming something",
            "Turning the camera right while filming something",
        ]
    )
    fmap = flip_label_map(classes)
    tf = TrainTransform(size=64, scales=(1.0,), flip="swap", flip_map=fmap)
    left = classes.index("Pushing something from left to right")
    right = classes.index("Pushing something from right to left")
    drop = classes.index("Dropping something")
    clip = _clip(h=64, w=64)
    results = {}
    for seed in range(20):
        out, label = tf(clip, left, np.random.default_rng(seed))
        flipped = not torch.allclose(
            out, TrainTransform(size=64, scales=(1.0,))(clip, left, np.random.default_rng(0))[0]
        )
        results[flipped] = label
        assert tf(clip, drop, np.random.default_rng(seed))[1] == drop
    assert results == {True: right, False: left}
    with pytest.raises(ValueError, match="flip label map"):
        TrainTransform(flip="swap")


def _rotating_dot(t: int = 8, size: int = 64) -> np.ndarray:
    """``(T, H, W, 3)`` frames of a dot turning clockwise on screen (x right, y down)."""
    frames = np.zeros((t, size, size, 3), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for i in range(t):
        angle = i * np.pi / 6  # increasing angle with y down: clockwise as seen
        cx, cy = size / 2 + 20 * np.cos(angle), size / 2 + 20 * np.sin(angle)
        frames[i][(xx - cx) ** 2 + (yy - cy) ** 2 <= 16] = 255
    return frames


def _turn(clip: torch.Tensor) -> float:
    """Total turn of the bright dot over the clip, in radians: > 0 clockwise on screen."""
    size = clip.shape[-1]
    angles = []
    for frame in clip[:, 0].float():  # (T, 3, H, W) -> the first channel of each frame (uint8 or normalised)
        ys, xs = torch.nonzero(frame > frame.mean() + frame.std(), as_tuple=True)
        angles.append(np.arctan2(float(ys.float().mean()) - size / 2, float(xs.float().mean()) - size / 2))
    return float(np.diff(np.unwrap(np.array(angles))).sum())


def test_a_flipped_clockwise_clip_gets_the_counterclockwise_label(tmp_path):
    """Jester's layout end to end: flip auto -> swap, and every flipped draw of a clip turning
    clockwise turns counterclockwise and is labelled so (unflipped draws keep their label)."""
    from PIL import Image

    from videoattn.data.build import build_dataset, normalize_data_config

    classes = ["Doing other things", "Turning Hand Clockwise", "Turning Hand Counterclockwise"]
    (tmp_path / "jester-v1-labels.csv").write_text("\n".join(classes) + "\n")
    (tmp_path / "jester-v1-train.csv").write_text("7;Turning Hand Clockwise\n")
    folder = tmp_path / "20bn-jester-v1" / "7"
    folder.mkdir(parents=True)
    for i, frame in enumerate(_rotating_dot()):
        Image.fromarray(frame).save(folder / f"{i + 1:05d}.jpg", quality=95)
    cfg = {
        "name": "jester",
        "source": "jester",
        "root": str(tmp_path),
        "backend": "frames",
        "train_transform": {"size": 64, "scales": [1.0], "flip": "auto"},
    }
    ds = build_dataset(normalize_data_config(cfg), "train", mode="train", num_segments=8)
    assert ds.transform.flip == "swap"
    cw, ccw = classes.index("Turning Hand Clockwise"), classes.index("Turning Hand Counterclockwise")
    labels = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        clip, label, _, _ = ds[0]
        turn = _turn(clip)
        assert abs(turn) > 2.0  # the dot turned about 7 * 30 degrees
        assert label == (cw if turn > 0 else ccw)
        labels.add(label)
    assert labels == {cw, ccw}  # both flipped and unflipped draws were seen
    unpaired = {**cfg, "root": str(tmp_path)}
    (tmp_path / "jester-v1-labels.csv").write_text("Doing other things\nTurning Hand Clockwise\n")
    with pytest.raises(ValueError, match="flip: auto would flip clips of 'Turning Hand Clockwise', whose mirror image"):
        build_dataset(normalize_data_config(unpaired), "train", mode="train", num_segments=8)
    assert (
        build_dataset(
            normalize_data_config({**unpaired, "train_transform": {"size": 64, "flip": "off"}}),
            "train",
            mode="train",
            num_segments=8,
        ).transform.flip
        == "off"
    )


def test_eval_views():
    clip = _clip(t=4, h=120, w=160)
    center = EvalTransform(size=64, resize=72)(clip, squeeze=True)
    assert center.shape == (4, 3, 64, 64)
    three = EvalTransform(size=72, resize=72, crops="three")(clip)
    assert three.shape == (3, 4, 3, 72, 72)
    resized = TF.resize(clip, [72, 96], antialias=True)
    expect = [resized[..., :72], resized[..., 24:], resized[..., 12:84]]  # left, right, centre
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for view, ref in zip(three, expect, strict=True):
        torch.testing.assert_close(view, (ref.float() / 255 - mean) / std)
    ten = EvalTransform(size=64, resize=72, crops="ten")(clip.unsqueeze(0).expand(2, -1, -1, -1, -1))
    assert ten.shape == (2, 10, 4, 3, 64, 64)
    torch.testing.assert_close(ten[:, 1], TF.horizontal_flip(ten[:, 0]))
    with pytest.raises(ValueError, match="smaller than"):
        EvalTransform(size=224, resize=None)(clip)


@pytest.mark.parametrize("backend", ["torchcodec", "decord", "pyav", "frames", "auto"])
def test_loader_options_recycle_the_workers_of_a_backend_that_keeps_memory_per_file(backend, monkeypatch):
    monkeypatch.setattr(video_mod, "auto_backend", lambda: "torchcodec")  # what auto resolves to, here
    kw = loader_options(backend, workers=3, pin_memory=True, cpus=8)
    recycled = (video_mod.auto_backend() if backend == "auto" else backend) in RECYCLE_WORKERS
    assert kw == {"num_workers": 3, "pin_memory": True, "persistent_workers": not recycled, "prefetch_factor": 2}
    explicit = loader_options(backend, workers=3, pin_memory=False, persistent=True, prefetch=4, cpus=8)
    assert (explicit["persistent_workers"], explicit["prefetch_factor"]) == (True, 4)  # what the user set wins


def test_loader_options_cap_the_workers_to_the_cpus_with_one_line(caplog):
    caplog.set_level(logging.INFO, logger="videoattn.data.build")
    assert loader_options("pyav", workers=8, pin_memory=False, cpus=2)["num_workers"] == 2
    assert caplog.messages == ["workers=8: this machine gives the process 2 CPUs; using 2 DataLoader workers"]
    assert loader_options("pyav", workers=2, pin_memory=False, cpus=2)["num_workers"] == 2
    assert len(caplog.messages) == 1  # nothing to say when they fit


def test_loader_options_without_workers_refuse_worker_settings_rather_than_ignore_them():
    assert loader_options("pyav", workers=0, pin_memory=False) == {"num_workers": 0, "pin_memory": False}
    for kw in ({"persistent": False}, {"prefetch": 2}):
        with pytest.raises(ConfigError, match="needs workers >= 1"):
            loader_options("pyav", workers=0, pin_memory=False, **kw)


# ----------------------------------------------------------------------------- dataset


def _records(tmp_path, n=6, bad=True):
    recs = [
        VideoRecord(path=write_video(tmp_path / f"v{i}.webm", 24 + i), label=i % 3, video_id=str(i)) for i in range(n)
    ]
    if bad:
        corrupt = tmp_path / "corrupt.webm"
        corrupt.write_bytes(b"\x1aE\xdf\xa3" + b"\x00garbage" * 200)
        recs += [
            VideoRecord(path=corrupt, label=0, video_id="corrupt"),
            VideoRecord(path=tmp_path / "missing.webm", label=1, video_id="missing"),
        ]
    return recs


def test_dataset_items_in_every_mode(tmp_path):
    recs = _records(tmp_path, n=3, bad=False)
    sampling = Sampling(num_segments=4, num_clips=2)
    train = VideoDataset(recs, sampling=sampling, transform=TrainTransform(size=48), mode="train")
    clip, label, index, substituted = train[1]
    assert clip.shape == (4, 3, 48, 48) and clip.dtype == torch.float32 and (label, index, substituted) == (1, 1, False)
    val = VideoDataset(recs, sampling=sampling, transform=EvalTransform(size=48, resize=56), mode="val")
    a, b = val[2][0], val[2][0]
    assert a.shape == (4, 3, 48, 48) and torch.equal(a, b)
    test = VideoDataset(
        recs, sampling=sampling, transform=EvalTransform(size=48, resize=56, crops="three"), mode="test"
    )
    views, label, index, substituted = test[0]
    assert views.shape == (6, 4, 3, 48, 48) and (label, index, substituted) == (0, 0, False)
    with pytest.raises(TypeError, match="EvalTransform"):
        VideoDataset(recs, sampling=sampling, transform=TrainTransform(), mode="val")


@pytest.mark.parametrize("mode", ["train", "val", "test"])
def test_snippets_of_f_frames_are_stacked_on_the_channels_frame_major(tmp_path, mode):
    """A model taking F = 5 frames per segment (TDN's stem row): the sampler's T*F indices become
    (T, F*3, S, S), segment t's channels 3f..3f+2 being its f-th frame (one crop for all)."""
    path = write_frame_folder(tmp_path / "v", 40, height=64, width=64)  # crops of 64: the whole frame
    recs = [VideoRecord(path=path, label=0, video_id="v")]
    sampling = Sampling(**sampling_for_model({"num_clips": 2 if mode == "test" else 1}, 5), num_segments=4)
    make = {
        "train": lambda **kw: TrainTransform(size=64, scales=[1.0], **kw),
        "val": lambda **kw: EvalTransform(size=64, resize=64, **kw),
    }
    transform = make.get(mode, make["val"])
    ds = VideoDataset(recs, sampling=sampling, transform=transform(), mode=mode, backend="frames")
    raw = VideoDataset(recs, sampling=sampling, transform=transform(normalize=False), mode=mode, backend="frames")
    indices = {"train": lambda: sampling.train(40, ds.rng(0)), "val": lambda: sampling.val(40)}.get(
        mode, lambda: sampling.test(40)
    )()
    views = ds[0][0] if mode == "test" else ds[0][0][None]  # (V, T, F*3, S, S)
    assert views.shape[1:] == (4, 15, 64, 64) and views.dtype == torch.float32
    frames = (raw[0][0] if mode == "test" else raw[0][0][None]).unflatten(2, (5, 3))  # (V, T, 5, 3, S, S) uint8
    expected = np.asarray(indices).reshape(-1, 4, 5)  # (clips, T, F): the snippet of each segment
    got = [[[decode_bars(frames[v, t, f]) for f in range(5)] for t in range(4)] for v in range(len(expected))]
    assert got == expected.tolist()
    assert np.all(np.diff(expected, axis=-1) == 1)  # consecutive frames within a segment


def test_a_model_with_several_frames_per_segment_takes_tdns_sampling_or_says_which_key():
    assert sampling_for_model({"rules": "tsm"}, 1) == {"rules": "tsm"}
    assert sampling_for_model({"mode": "segment"}, 5) == {"mode": "segment", "rules": "tdn", "frames_per_segment": 5}
    with pytest.raises(ConfigError, match="data.sampling.frames_per_segment=3, but the model takes 5"):
        sampling_for_model({"frames_per_segment": 3}, 5)
    with pytest.raises(ConfigError, match="data.sampling.rules='tada' samples one frame per segment"):
        sampling_for_model({"rules": "tada"}, 5)


def test_to_device_normalises_every_frame_of_the_stacked_channels():
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 256, (2, 3, 15, 8, 8), dtype=torch.uint8, generator=g)  # (N, T, F*3, H, W)
    got = ToDevice(torch.device("cpu"), (0.45,) * 3, (0.225,) * 3)(batch)
    want = normalize(batch.unflatten(2, (5, 3)), (0.45,) * 3, (0.225,) * 3).flatten(2, 3)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(got[:, :, 3:6], (batch[:, :, 3:6] / 255.0 - 0.45) / 0.225)


def test_train_clips_are_reproducible_per_epoch_and_vary_across_epochs(tmp_path):
    recs = _records(tmp_path, n=1, bad=False)
    ds = VideoDataset(recs, sampling=Sampling(num_segments=4), transform=TrainTransform(size=48), seed=1)
    first = ds[0][0]
    assert torch.equal(first, ds[0][0])
    ds.set_epoch(1)
    assert not torch.equal(first, ds[0][0])
    ds.set_epoch(0)
    assert torch.equal(first, ds[0][0])


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_persistent_workers_follow_set_epoch(tmp_path, start):
    """Workers started in epoch 0 must draw epoch 1's augmentation after set_epoch(1), exactly
    as the main process does (a copied epoch counter would replay epoch 0 forever)."""
    recs = _records(tmp_path, n=2, bad=False)
    ds = VideoDataset(recs, sampling=Sampling(num_segments=4), transform=TrainTransform(size=48), seed=3)
    workers = 2 if start == "fork" else 1  # a spawned worker imports torch afresh: one is enough to show it
    loader = torch.utils.data.DataLoader(
        ds, batch_size=2, num_workers=workers, persistent_workers=True, multiprocessing_context=start
    )
    epochs = []
    for epoch in (0, 1, 2):
        ds.set_epoch(epoch)
        ((clips, _, index, _),) = list(loader)
        expected = torch.stack([ds[i][0] for i in index.tolist()])
        assert torch.equal(clips, expected), f"epoch {epoch}: the workers drew another epoch's clips"
        epochs.append(clips)
    assert not torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[1], epochs[2])


@pytest.mark.parametrize("workers", [0, 2])
def test_an_epoch_with_a_corrupt_and_a_missing_video_completes_and_reports_both(tmp_path, workers, caplog):
    recs = _records(tmp_path)
    report = tmp_path / "bad_files.jsonl"
    ds = VideoDataset(recs, sampling=Sampling(num_segments=4), transform=TrainTransform(size=48), report=report)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=workers, shuffle=False)
    seen = 0
    for clips, labels, index, substituted in loader:
        assert clips.shape[1:] == (4, 3, 48, 48) and torch.isfinite(clips).all()
        assert index.max() < 6  # the bad records were replaced by good ones
        assert substituted.tolist() == [i >= 6 for i in range(4 * (seen // 4), 4 * (seen // 4) + len(labels))]
        seen += len(labels)
    assert seen == len(recs)
    bad = read_report(report)
    assert set(bad) == {str(tmp_path / "corrupt.webm"), str(tmp_path / "missing.webm")}
    assert "video not found" in bad[str(tmp_path / "missing.webm")]
    if workers == 0:
        assert "corrupt.webm" in caplog.text and len(ds.failures) == 2


@pytest.mark.parametrize("bad", [False, True])
def test_evaluation_counts_substituted_items_under_a_shuffling_sampler(tmp_path, bad):
    """The substitution flag travels with the item: a shuffled order (a sampler that cannot
    be replayed) counts exactly the unreadable videos, and the metrics cover the others."""
    from videoattn.engine.distributed import World
    from videoattn.engine.evaluate import evaluate
    from videoattn.models import build_model

    recs = _records(tmp_path, bad=bad)
    ds = VideoDataset(recs, sampling=Sampling(num_segments=4), transform=EvalTransform(size=32, resize=32), mode="val")
    loader = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = build_model(
        {"arch": "resnet18", "num_classes": 3, "num_segments": 4, "layers": [1, 1, 1, 1], "widths": [8, 8, 8, 8]}
    )
    result = evaluate(model, loader, num_classes=3, world=World())
    assert (result.num_clips, result.substituted) == (6, 2 if bad else 0)
    assert int(result.confusion.sum()) == 6


def test_a_transform_that_cannot_apply_is_raised_at_once_not_a_bad_video(tmp_path):
    recs = _records(tmp_path, n=3, bad=False)  # 64x96 videos
    ds = VideoDataset(
        recs,
        sampling=Sampling(num_segments=4),
        transform=EvalTransform(size=80, resize=None),
        mode="val",
        report=tmp_path / "bad_files.jsonl",
    )
    with pytest.raises(ValueError, match="smaller than the 80px test crop"):
        ds[0]
    assert ds.failures == [] and not (tmp_path / "bad_files.jsonl").exists()


def test_dataset_gives_up_after_max_retries(tmp_path):
    bad = [VideoRecord(path=tmp_path / f"gone{i}.mp4", label=0) for i in range(3)]
    ds = VideoDataset(bad, sampling=Sampling(num_segments=4), transform=TrainTransform(size=48), max_retries=3)
    with pytest.raises(DataError, match="could not be read.*gone"):
        ds[0]


def test_frame_folder_dataset(tmp_path):
    recs = [VideoRecord(path=write_frame_folder(tmp_path / "100218", 20), label=0, num_frames=20)]
    ds = VideoDataset(
        recs, sampling=Sampling(num_segments=5), transform=EvalTransform(size=64, resize=None), mode="val"
    )
    clip = ds[0][0]
    assert clip.shape == (5, 3, 64, 64)
    frames, idx = read_clip(recs[0].path, Sampling(num_segments=5).val)
    assert [decode_bars(f) for f in frames] == idx.tolist() == [2, 6, 10, 14, 18]


def test_video_module_is_the_only_decoder_import():
    import pathlib

    src = pathlib.Path(video_mod.__file__).parent
    for f in src.glob("*.py"):
        if f.name not in (
            "video.py",
            "synthetic.py",
            "prepare.py",
        ):  # the readers; the two writers (demo, prepared data)
            text = f.read_text()
            assert "import decord" not in text and "import av" not in text, f.name


def test_uint8_batches_normalised_on_the_device_equal_the_host_normalisation(videos):
    from videoattn.data.transforms import ToDevice

    clip, _ = read_clip(videos["webm"], lambda n: np.arange(4))  # (4, 3, 64, 96) uint8
    rng = np.random.default_rng
    host, _ = TrainTransform(size=48)(clip, 0, rng(1))
    raw, _ = TrainTransform(size=48, normalize=False)(clip, 0, rng(1))
    assert raw.dtype == torch.uint8 and raw.shape == host.shape  # a quarter of the bytes cross
    to_device = ToDevice(torch.device("cpu"), IMAGENET_MEAN, IMAGENET_STD)
    assert torch.equal(to_device(raw[None])[0], host)
    assert to_device(host) is host  # a float batch passes through
    views = EvalTransform(size=48, resize=56, crops="three")(clip)
    raw_views = EvalTransform(size=48, resize=56, crops="three", normalize=False)(clip)
    assert torch.equal(to_device(raw_views), views)
