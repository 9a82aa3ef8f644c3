"""One picture per video (issue 26): every reader gives the same frames, as ``ffmpeg`` shows them.

Videos rotated by their display matrix (phone videos), with a variable frame rate, 10-bit and
odd-sized, written by ``tests/videos.py``; each backend's frames are compared with a reference
made here with PyAV alone: every decoded frame in presentation order, converted by FFmpeg's
``format=rgb24`` filter (the conversion torchcodec makes) and turned by the filters ``ffmpeg``
inserts for the frame's display matrix. Tolerances (docs/data_pipeline.md, "One picture per
video"): PyAV's reader and ``stream_frames`` give the reference bit for bit; decord and
torchcodec do on 8-bit videos of even size; on 10-bit and odd-sized videos a decoder with its
own conversion (decord's FFmpeg 4.1) may differ at colour edges: :data:`TOLERANCE`. The prepared
forms (``tools/prepare_data.py --prepare frames | reencode``) are the reference frames too: upright,
as many as every reader counts, within :data:`TOLERANCE`; a re-encoded video has no display matrix.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch import Tensor
from videos import decode_marked, marked, write_video

from videoattn.data import video as video_mod
from videoattn.data.prepare import extract_frames, reencode, scaled_size
from videoattn.data.video import DecodeError, open_video, read_clip, stream_frames

N = 12
VFR_MS = [0, 40, 120, 130, 300, 310, 330, 500, 520, 700, 760, 1000]  # irregular gaps, 10 ms to 200 ms
MS = Fraction(1, 1000)
UPRIGHT_PORTRAIT = {"height": 96, "width": 64}  # shown 64 wide, 96 high: stored 96 x 64, turned

# name -> write_video arguments; the frames are marked(i): bars of i below, a red square top-left
FIXTURES = {
    "rot90.mp4": {"rotation": 90, **UPRIGHT_PORTRAIT},
    "rot180.mp4": {"rotation": 180},
    "rot270.mp4": {"rotation": 270, **UPRIGHT_PORTRAIT},  # -90: a phone's portrait video
    "rot90.webm": {"rotation": 90, **UPRIGHT_PORTRAIT},  # Matroska's ProjectionPoseRoll
    "rot180.webm": {"rotation": 180},
    "vfr.mp4": {"pts": VFR_MS, "time_base": MS},  # H.264 with B-frames: decode order != presentation
    "vfr.webm": {"pts": VFR_MS, "time_base": MS},
    "10bit.mp4": {"pix_fmt": "yuv420p10le"},  # H.264 High 10
    "odd.webm": {"height": 49, "width": 65},  # VP9 4:2:0 at odd sizes (x264 takes only even ones)
}
ROTATED = [name for name, kw in FIXTURES.items() if kw.get("rotation")]
# 8-bit 4:2:0 at even sizes: every decoder's conversion gives the same pixels
EXACT = [name for name, kw in FIXTURES.items() if "pix_fmt" not in kw and kw.get("width", 96) % 2 == 0]

# a decoder with its own RGB conversion (decord: FFmpeg 4.1's swscale, turning before converting)
# on 10-bit / odd-sized video: the mean |difference| over the video (measured <= 0.37 levels) and
# the 99th percentile (measured <= 12 levels); the rest lies at the edges of colours, where the
# chroma interpolations differ (up to ~55 levels). The prepared forms are held to the same: JPEG
# frames (quality 90, measured mean <= 0.46, p99 <= 7) and re-encoded videos (H.264 CRF 23, <= 0.46, <= 6).
TOLERANCE = {"mean": 1.0, "p99": 24.0}


def _backend(name: str):
    if name == "decord":
        return pytest.param(name, marks=pytest.mark.skipif(video_mod.decord is None, reason="decord is not installed"))
    if name == "torchcodec":
        reason = f"torchcodec: {video_mod._torchcodec()[1]}"
        return pytest.param(name, marks=pytest.mark.skipif(not video_mod.torchcodec_available(), reason=reason))
    return name


BACKENDS = [_backend(b) for b in ("pyav", "decord", "torchcodec")]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip(f"PyAV {av.__version__} cannot write a display matrix (set_display_rotation: PyAV 18)")
    root = tmp_path_factory.mktemp("readers")
    return {name: write_video(root / name, N, content=marked, **kw) for name, kw in FIXTURES.items()}


_references: dict[Path, Tensor] = {}


def reference(path: Path) -> Tensor:
    """``(N, 3, H, W)`` uint8: every frame PyAV decodes, in presentation order, through
    ``format=rgb24`` and the rotation filters of ffmpeg's autorotate (:func:`_ffmpeg_turn`)."""
    if path not in _references:
        frames = []
        with av.open(str(path)) as container:
            graph = None
            for frame in container.decode(video=0):
                if graph is None:
                    graph = av.filter.Graph()
                    chain = [graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                              time_base=frame.time_base)]  # fmt: skip
                    chain.append(graph.add("format", "rgb24"))
                    chain += [graph.add(name, args) for name, args in _ffmpeg_turn(frame.rotation)]
                    chain.append(graph.add("buffersink"))
                    graph.link_nodes(*chain).configure()
                graph.push(frame)
                frames.append(graph.pull().to_ndarray())  # (H, W, 3)
        _references[path] = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
    return _references[path]


def _ffmpeg_turn(rotation: float) -> list[tuple[str, str | None]]:
    """The filters ``ffmpeg`` inserts for a display matrix of ``rotation`` degrees counter-clockwise
    (``av_display_rotation_get``): it turns the picture ``-rotation`` degrees clockwise, 90 with
    ``transpose=clock``, 180 with ``hflip,vflip``, 270 with ``transpose=cclock``."""
    clockwise = round(-rotation / 90) % 4 * 90
    return {0: [], 90: [("transpose", "clock")], 180: [("hflip", None), ("vflip", None)],
            270: [("transpose", "cclock")]}[clockwise]  # fmt: skip


def assert_agree(frames: Tensor, ref: Tensor, *, exact: bool, what: str) -> None:
    """``frames`` are ``ref``: same shape, bit for bit when ``exact``, else within TOLERANCE."""
    assert frames.shape == ref.shape, f"{what}: frames of shape {tuple(frames.shape)}, reference {tuple(ref.shape)}"
    assert frames.dtype == torch.uint8
    diff = (frames.int() - ref.int()).abs().float()
    if exact:
        assert torch.equal(frames, ref), f"{what}: {int((diff > 0).sum())} values differ, up to {int(diff.max())}"
    else:
        mean, p99 = float(diff.mean()), float(diff.quantile(0.99))
        assert mean <= TOLERANCE["mean"] and p99 <= TOLERANCE["p99"], f"{what}: mean |diff| {mean:.2f}, p99 {p99}"


def assert_upright(frames: Tensor, indices: list[int], what: str) -> None:
    """Each frame is ``marked(i)`` for its index, the red square top-left: shown as written."""
    got = [decode_marked(f) for f in frames]
    assert got == [(i, "top-left") for i in indices], f"{what}: (frame, corner of the red square) {got}"


# ----------------------------------------------------------------------------- the reference


@pytest.mark.parametrize("name", FIXTURES)
def test_the_reference_shows_every_frame_upright_in_presentation_order(videos, name):
    ref = reference(videos[name])
    kw = FIXTURES[name]
    assert ref.shape == (N, 3, kw.get("height", 64), kw.get("width", 96))
    assert_upright(ref, list(range(N)), name)


def test_a_phone_portrait_video_is_turned_clockwise(videos):
    """rotation -90 (270) is what phones write: the MP4 ``tkhd`` matrix (0 1 / -1 0), the old
    ``rotate=90`` tag. The stored picture is the upright one turned counter-clockwise; players
    (and every reader) turn it 90 degrees clockwise."""
    data = videos["rot270.mp4"].read_bytes()
    at = data.index(b"tkhd") + 4
    fields = 32 if data[at] == 1 else 20  # version 1: 64-bit times
    matrix = struct.unpack(">9i", data[at + 4 + fields + 16 : at + 4 + fields + 52])
    assert matrix[:2] == (0, 1 << 16) and matrix[3:5] == (-(1 << 16), 0)
    with av.open(str(videos["rot270.mp4"])) as container:
        stored = next(container.decode(video=0))
        assert stored.rotation == -90
        picture = stored.to_ndarray(format="rgb24")  # (H, W, 3) as stored, 96 wide
        assert decode_marked(picture)[1] == "bottom-left"  # the red square of the top-left, turned
        assert decode_marked(np.rot90(picture, -1))[1] == "top-left"  # turned back clockwise
    assert decode_marked(reference(videos["rot270.mp4"])[0])[1] == "top-left"


@pytest.mark.parametrize("name", ROTATED)
def test_the_matroska_header_gives_ffmpeg_s_rotation(videos, name):
    turns = video_mod._matroska_turns(videos[name])
    if name.endswith(".webm"):
        assert turns == FIXTURES[name]["rotation"] // 90 % 4
    else:
        assert turns is None  # not a Matroska file
    assert video_mod._matroska_turns(videos["vfr.webm"]) == 0


# ----------------------------------------------------------------------------- every backend


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", FIXTURES)
def test_every_backend_gives_the_reference_frames(videos, name, backend):
    path = videos[name]
    idx = [11, 0, 5, 3, 9, 2, 2, 7]  # backwards and forwards: seeks, a repeat
    with open_video(path, backend=backend) as reader:
        assert reader.num_frames == N, f"{backend} counts {reader.num_frames} frames"
        frames = reader.read(idx)
    exact = backend == "pyav" or name in EXACT
    assert_agree(frames, reference(path)[idx], exact=exact, what=f"{backend} on {name}")
    assert_upright(frames, idx, f"{backend} on {name}")


@pytest.mark.parametrize("name", FIXTURES)
def test_stream_frames_and_read_clip_give_the_same_frames_and_count(videos, name):
    path, ref = videos[name], reference(videos[name])
    times, frames = zip(*stream_frames(path), strict=True)
    assert_agree(torch.stack(frames), ref, exact=True, what=f"stream_frames on {name}")
    if "pts" in FIXTURES[name]:  # presentation times as written, in order
        assert np.allclose(times, np.array(VFR_MS) / 1000, atol=1e-3), times
    clip, idx = read_clip(path, lambda n: np.arange(n), backend="pyav")
    assert idx.tolist() == list(range(N))
    assert_agree(clip, ref, exact=True, what=f"read_clip (pyav) on {name}")
    clip, idx = read_clip(path, lambda n: np.arange(n))  # backend auto: torchcodec, decord or PyAV
    assert idx.tolist() == list(range(N))
    assert_agree(clip, ref, exact=name in EXACT, what=f"read_clip (auto) on {name}")


@pytest.mark.skipif(video_mod.decord is None, reason="decord is not installed")
def test_a_rotated_video_decord_cannot_read_is_read_upright_by_the_pyav_fallback(videos, tmp_path):
    """decord 0.6 returns 4-channel frames at a width of 48, here once it has turned a 64x48 video."""
    path = write_video(tmp_path / "narrow.mp4", N, height=64, width=48, rotation=270, content=marked)
    clip, idx = read_clip(path, lambda n: np.arange(n), backend="decord")
    assert_agree(clip, reference(path), exact=True, what="read_clip (decord, else PyAV)")


@pytest.mark.skipif(video_mod.decord is None, reason="decord is not installed")
def test_a_decord_build_that_may_read_matroska_rotation_leaves_rotated_webm_to_pyav(videos, monkeypatch):
    monkeypatch.setattr(video_mod, "_DECORD_IGNORES_MATROSKA_ROTATION", False)
    with pytest.raises(DecodeError, match="rotated WebM"):
        open_video(videos["rot90.webm"], backend="decord")
    clip, _ = read_clip(videos["rot90.webm"], lambda n: np.arange(n), backend="decord")
    assert_agree(clip, reference(videos["rot90.webm"]), exact=True, what="read_clip (decord, else PyAV)")


# ----------------------------------------------------------------------------- prepared forms


def reader_counts(path: Path) -> dict[str, int]:
    """``{reader: num_frames}`` of ``path`` for every installed backend, and ``stream_frames``'."""
    installed = ["pyav", "decord"] if video_mod.decord is not None else ["pyav"]
    counts = {}
    for backend in installed + ["torchcodec"] * video_mod.torchcodec_available():
        with open_video(path, backend=backend) as reader:
            counts[backend] = reader.num_frames
    counts["stream_frames"] = sum(1 for _ in stream_frames(path))
    return counts


def assert_prepared(frames: Tensor, ref: Tensor, what: str) -> None:
    """Prepared ``frames`` (``(N, 3, H, W)``, the default short side) are the reference frames:
    upright, at the upright picture's ``scaled_size`` (odd sizes become even), within TOLERANCE
    of the reference where the size is kept."""
    width, height = scaled_size(ref.shape[-1], ref.shape[-2], 256)
    assert frames.shape == (len(ref), 3, height, width), f"{what}: frames of shape {tuple(frames.shape)}"
    assert_upright(frames, list(range(len(ref))), what)
    if frames.shape == ref.shape:
        assert_agree(frames, ref, exact=False, what=what)


@pytest.mark.parametrize("name", FIXTURES)
def test_prepared_jpeg_frames_are_the_reference_frames(videos, name, tmp_path):
    """``tools/prepare_data.py --prepare frames``: a JPEG per decoded frame, as many as every
    reader counts in the video, read back by the frames backend."""
    counts = reader_counts(videos[name])
    assert extract_frames(videos[name], tmp_path / "frames") == N
    with open_video(tmp_path / "frames", backend="frames") as reader:
        assert {what: reader.num_frames for what in counts} == counts
        frames = reader.read(range(N))
    assert_prepared(frames, reference(videos[name]), f"frames of {name}")


@pytest.fixture(scope="module")
def reencoded(videos, tmp_path_factory) -> dict[str, Path]:
    """Each fixture as ``tools/prepare_data.py --prepare reencode`` writes it (default settings)."""
    root = tmp_path_factory.mktemp("reencoded")
    done = {}
    for name, path in videos.items():
        done[name] = root / f"{name}.mp4"
        assert reencode(path, done[name]) == N, name
    return done


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", FIXTURES)
def test_reencoded_videos_are_the_reference_frames_without_a_rotation(videos, reencoded, name, backend):
    """``tools/prepare_data.py --prepare reencode``: H.264 of the upright frames with no display
    matrix, as many frames as every reader counts in the source, read back by each backend."""
    with av.open(str(reencoded[name])) as container:
        assert next(container.decode(video=0)).rotation == 0, "the re-encoded video keeps a display rotation"
    counts = reader_counts(videos[name])
    with open_video(reencoded[name], backend=backend) as reader:
        assert {what: reader.num_frames for what in counts} == counts
        frames = reader.read(range(N))
    assert_prepared(frames, reference(videos[name]), f"{backend} on the re-encoded {name}")
