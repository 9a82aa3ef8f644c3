"""Video readers: torchcodec, decord, PyAV (the fallback) and JPEG frame folders.

The only module that imports a decoder to read videos' frames (``synthetic.py`` and ``prepare.py``
import PyAV to write them; ``prepare.py`` also reads a source's frame rate from its header). Every
reader returns the frames at given 0-based indices as ``(len(indices), 3, H, W)`` uint8 (RGB), and
is opened per item: readers are cheap to open, never created in a dataset's ``__init__`` and never
shared across DataLoader workers.

Containers misreport frame counts (VP9 ``.webm`` carries none, MP4 edit lists and truncated
downloads disagree with the index). Readers therefore treat ``num_frames`` as an upper bound:
an index past the last decodable frame reads the last frame, and ``num_frames`` shrinks to
what was actually decoded. No read ever goes out of range.

Every backend returns the picture as players show it, in the same pixels: a display rotation
(the display matrix of phone videos: MP4/MOV ``tkhd``, WebM/Matroska ``ProjectionPoseRoll``) is
applied, as ``ffmpeg`` and torchcodec apply it, and PyAV converts to RGB with FFmpeg's
``format=rgb24`` filter, the conversion torchcodec and ``ffmpeg`` use (10-bit videos included).
Frame ``i`` is the ``i``-th decoded frame in presentation order for every backend, whatever the
timestamps (variable frame rate). What each backend does and how closely they agree:
docs/data_pipeline.md ("One picture per video").

:func:`read_clip` is the entry point of the datasets: it opens the file, lets the sampler pick
indices from the frame count, reads them, and falls back from decord or torchcodec to PyAV
when they cannot open or decode the file. ``backend="auto"`` takes the fastest exact backend
installed (:func:`auto_backend`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

# PyAV before decord: decord 0.6 (installed as eva-decord) loads its own FFmpeg / libvpx globally, and
# loading it first leaves PyAV with decord's VP9 library (the libvpx-vp9 encoder then fails to open,
# error 22). The fork decord2 keeps its libraries private.
import av
import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DataError, MissingFileError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "decord", "pyav", "torchcodec", "frames")
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")

try:  # decord has wheels for x86_64 only; PyAV is the fallback everywhere
    import decord

    decord.logging.set_level(decord.logging.QUIET)
except ImportError:  # pragma: no cover - depends on the platform
    decord = None

# decord 0.x (dmlc's, eva-decord) bundles FFmpeg 4.1, whose Matroska demuxer exports no display
# matrix: DecordReader turns those frames itself (verified in tests/test_readers.py)
_DECORD_IGNORES_MATROSKA_ROTATION = decord is not None and decord.__version__.startswith("0.")


class DecodeError(DataError, RuntimeError):
    """A video that cannot be opened or decoded; the message names the file and the backend."""

    def __init__(self, path: str | os.PathLike, backend: str, cause: str) -> None:
        super().__init__(f"{backend}: cannot decode {os.fspath(path)}: {cause}")
        self.path = os.fspath(path)
        self.backend = backend
        self.cause = cause


def _as_index_list(indices: Sequence[int] | np.ndarray) -> list[int]:
    return [int(i) for i in np.asarray(indices).reshape(-1)]


# ----------------------------------------------------------------------------- orientation and colour


def _quarter_turns(degrees: float | None) -> int:
    """Counter-clockwise quarter turns (0-3) nearest to a display rotation in FFmpeg's convention:
    degrees counter-clockwise (``av_display_rotation_get``, ``av.VideoFrame.rotation``, torchcodec's
    ``metadata.rotation``; a phone's portrait video is -90: shown turned 90 degrees clockwise, the
    ``rotate=90`` tag of old FFmpeg). 0 for None or NaN."""
    if degrees is None or degrees != degrees:
        return 0
    return round(degrees / 90) % 4


def _turn(frames: np.ndarray, turns: int, axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """``frames`` turned ``turns`` quarter turns counter-clockwise in the (rows, columns) plane
    ``axes``, as a contiguous array (the input itself when ``turns`` is 0)."""
    if turns % 4 == 0:
        return frames
    return np.ascontiguousarray(np.rot90(frames, turns, axes=axes))


class _RGB24:
    """PyAV frames as upright ``(H, W, 3)`` uint8 RGB, as ``ffmpeg`` and torchcodec give them.

    Colour: FFmpeg's ``format=rgb24`` filter (swscale with libavfilter's defaults), the conversion
    torchcodec makes; PyAV's own ``to_ndarray(format="rgb24")`` (bilinear chroma, no filter
    graph) differs from it by up to ~50 levels at colour edges of 10-bit and odd-sized videos.
    Orientation: the frame's display rotation (FFmpeg attaches the stream's display matrix to
    every decoded frame). One filter graph per frame size and pixel format, ``threads`` threads.
    """

    def __init__(self, threads: int = 1) -> None:
        self._threads = max(1, threads)
        self._graph: av.filter.Graph | None = None
        self._geometry: tuple[int, int, str] | None = None

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        geometry = (frame.width, frame.height, frame.format.name)
        if self._graph is None or geometry != self._geometry:
            self._graph, self._geometry = self._build(frame), geometry
        self._graph.push(frame)
        rgb = self._graph.pull().to_ndarray()  # (H, W, 3)
        return _turn(rgb, _quarter_turns(getattr(frame, "rotation", 0)))

    def _build(self, frame: av.VideoFrame) -> av.filter.Graph:
        graph = av.filter.Graph()
        with contextlib.suppress(AttributeError):  # an older PyAV without Graph.threads
            graph.threads = self._threads
        time_base = frame.time_base or Fraction(1, 1000)
        source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format, time_base=time_base)
        convert = graph.add("format", "rgb24")
        sink = graph.add("buffersink")
        source.link_to(convert)
        convert.link_to(sink)
        graph.configure()
        return graph


# WebM / Matroska: a recent FFmpeg (8.0 in PyAV 18) turns the rectangular Projection's pose into the
# display matrix; the FFmpeg 4.1 inside decord 0.6 does not (nor may an older system FFmpeg that
# torchcodec loads), so those readers are told the rotation from the file's header.
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_SEGMENT, _CLUSTER, _TRACKS, _TRACK_ENTRY, _TRACK_TYPE = 0x18538067, 0x1F43B675, 0x1654AE6B, 0xAE, 0x83
_VIDEO, _PROJECTION, _PROJECTION_TYPE = 0xE0, 0x7670, 0x7671
_PROJECTION_YAW, _PROJECTION_PITCH, _PROJECTION_ROLL = 0x7673, 0x7674, 0x7675
_VIDEO_TRACK = 1


def _ebml_number(f: BinaryIO, *, is_id: bool) -> int:
    """An EBML variable-length integer at the file position: an element ID (marker bit kept) or
    a size (-1 for the reserved "unknown size")."""
    head = f.read(1)
    if not head or head[0] == 0:
        raise EOFError("end of the EBML header")
    length = 9 - head[0].bit_length()  # leading zero bits + 1
    rest = f.read(length - 1)
    if len(rest) != length - 1:
        raise EOFError("truncated EBML number")
    value = head[0] if is_id else head[0] & ((1 << (8 - length)) - 1)
    for byte in rest:
        value = value << 8 | byte
    if not is_id and value == (1 << (7 * length)) - 1:
        return -1
    return value


def _ebml_children(f: BinaryIO, end: int | None) -> Iterator[tuple[int, int, int]]:
    """``(id, size, data offset)`` of the elements from the file position up to ``end`` (None:
    the end of the file); the file is at the element's data when one is yielded. Stops after an
    element of unknown size (it cannot be skipped)."""
    while end is None or f.tell() < end:
        try:
            element, size = _ebml_number(f, is_id=True), _ebml_number(f, is_id=False)
        except EOFError:
            return
        start = f.tell()
        yield element, size, start
        if size < 0:
            return
        f.seek(start + size)


def _projection_turns(f: BinaryIO, end: int) -> int:
    """The quarter turns FFmpeg reports (``av_display_rotation_get``) for a Projection element:
    a rectangular projection's roll (counter-clockwise); with a yaw of 180 (a mirror, which
    FFmpeg adds to the matrix) the matrix reads as ``roll - 180``; anything else is ignored."""
    values = {_PROJECTION_TYPE: 0, _PROJECTION_YAW: 0.0, _PROJECTION_PITCH: 0.0, _PROJECTION_ROLL: 0.0}
    for element, size, _ in _ebml_children(f, end):
        if element == _PROJECTION_TYPE:
            values[element] = int.from_bytes(f.read(size), "big")
        elif element in values and size in (4, 8):
            (values[element],) = struct.unpack(">f" if size == 4 else ">d", f.read(size))
    yaw, roll = values[_PROJECTION_YAW], values[_PROJECTION_ROLL]
    if values[_PROJECTION_TYPE] != 0 or values[_PROJECTION_PITCH] != 0 or yaw not in (0.0, 180.0, -180.0):
        return 0  # 360-degree video, or a pose FFmpeg ignores
    return _quarter_turns(roll - 180 if yaw else roll)


def _track_turns(f: BinaryIO, end: int) -> int | None:
    """Display rotation of a TrackEntry in quarter turns, None when it is not a video track."""
    kind, turns = 0, 0
    for element, size, start in _ebml_children(f, end):
        if element == _TRACK_TYPE:
            kind = int.from_bytes(f.read(size), "big")
        elif element == _VIDEO:
            for child, child_size, child_start in _ebml_children(f, start + size):
                if child == _PROJECTION:
                    turns = _projection_turns(f, child_start + child_size)
    return turns if kind == _VIDEO_TRACK else None


def _matroska_turns(path: str | os.PathLike) -> int | None:
    """Display rotation of the first video track of a WebM/Matroska file in counter-clockwise
    quarter turns, as FFmpeg 8 reports it (:func:`_projection_turns`), or None for a file of
    another container. Reads the header only (up to the first Cluster); 0 when it cannot."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != _EBML_MAGIC:
                return None
            f.seek(0)
            segment = next((e for e in _ebml_children(f, None) if e[0] == _SEGMENT), None)
            if segment is None:
                return 0
            _, size, start = segment
            for element, tracks_size, tracks_start in _ebml_children(f, None if size < 0 else start + size):
                if element == _CLUSTER:  # the media: no Tracks before it
                    return 0
                if element == _TRACKS:
                    for entry, entry_size, entry_start in _ebml_children(f, tracks_start + tracks_size):
                        turns = _track_turns(f, entry_start + entry_size) if entry == _TRACK_ENTRY else None
                        if turns is not None:
                            return turns
                    return 0
    except (OSError, EOFError, struct.error):
        return 0
    return 0
    return 0


class VideoReader:
    """Common interface: ``num_frames``, ``fps``, ``read(indices)``, context manager."""

    backend = ""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.num_frames = 0
        self.fps = 0.0

    def read(self, indices: Sequence[int] | np.ndarray) -> Tensor:
        """Frames at 0-based ``indices`` (clamped to ``[0, num_frames)``), ``(L, 3, H, W)`` uint8."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({os.fspath(self.path)!r}, num_frames={self.num_frames})"

    def _clamp(self, indices: Sequence[int] | np.ndarray) -> list[int]:
        top = self.num_frames - 1
        return [min(max(i, 0), top) for i in _as_index_list(indices)]


class DecordReader(VideoReader):
    """decord ``VideoReader`` (video stream only, no audio reader), ``num_threads`` decoding
    threads (1 inside DataLoader workers, where the workers are the parallelism).

    decord applies the display rotation of MP4/MOV files itself (its ``rotate`` tag); the FFmpeg 4.1
    inside decord 0.6 reads none from WebM/Matroska files, so this reader turns those frames
    (another decord build with a rotated Matroska file: a :class:`DecodeError`, read with PyAV)."""

    backend = "decord"

    def __init__(self, path: str | os.PathLike, *, num_threads: int = 1) -> None:
        super().__init__(path)
        if decord is None:
            raise DecodeError(path, self.backend, "decord is not installed on this platform")
        self._turns = _matroska_turns(path) or 0
        if self._turns and not _DECORD_IGNORES_MATROSKA_ROTATION:
            raise DecodeError(path, self.backend, f"decord {decord.__version__} on a rotated WebM/Matroska file")
        try:
            self._vr = decord.VideoReader(os.fspath(path), ctx=decord.cpu(0), num_threads=num_threads)
            self.num_frames = len(self._vr)
            self.fps = float(self._vr.get_avg_fps())
        except Exception as e:  # decord raises DECORDError / RuntimeError with ffmpeg's text
            raise DecodeError(path, self.backend, _short(e)) from e
        if self.num_frames < 1:
            raise DecodeError(path, self.backend, "no video frames")

    def read(self, indices: Sequence[int] | np.ndarray) -> Tensor:
        idx = self._clamp(indices)
        try:
            frames = self._vr.get_batch(idx).asnumpy()  # (L, H, W, 3)
        except Exception as e:
            # The index promised more frames than the stream holds: find the real end once,
            # then read again with the indices clamped to it.
            end = self._decodable_end()
            if end == self.num_frames:
                raise DecodeError(self.path, self.backend, _short(e)) from e
            log.debug("%s: %d frames reported, %d decodable", self.path, self.num_frames, end)
            self.num_frames = end
            idx = self._clamp(idx)
            try:
                frames = self._vr.get_batch(idx).asnumpy()
            except Exception as e2:
                raise DecodeError(self.path, self.backend, _short(e2)) from e2
        if frames.ndim != 4 or frames.shape[-1] != 3:  # decord2 3.4 at a few frame sizes (e.g. 96x64),
            # decord 0.6 at a width of 48 (a rotated 64x48 video among them)
            raise DecodeError(self.path, self.backend, f"decoded frames of shape {frames.shape}, not (L, H, W, 3)")
        frames = _turn(frames, self._turns, axes=(1, 2))
        return torch.from_numpy(frames).permute(0, 3, 1, 2)  # (L, H, W, 3) -> (L, 3, H, W)

    def _decodable_end(self) -> int:
        """Number of frames that actually decode: binary search for the first frame that
        does not (frames before it decode, frame ``num_frames`` does not exist)."""
        lo, hi = 0, self.num_frames
        while lo < hi:
            mid = (lo + hi) // 2
            try:
                self._vr.seek_accurate(mid)
                self._vr.next()
                lo = mid + 1
            except Exception:
                hi = mid
        if lo == 0:
            raise DecodeError(self.path, self.backend, "no frame decodes")
        return lo

    def close(self) -> None:
        self.__dict__.pop("_vr", None)


@functools.cache
def _torchcodec() -> tuple[type | None, str]:
    """torchcodec's ``VideoDecoder``, or None and why (not installed, or no FFmpeg libraries:
    torchcodec uses the FFmpeg 4-8 shared libraries of the system)."""
    try:
        from torchcodec.decoders import VideoDecoder
    except ImportError:
        return None, "torchcodec is not installed (uv sync --extra torchcodec)"
    except Exception as e:  # noqa: BLE001 - libtorchcodec found no FFmpeg to load (RuntimeError, OSError, ...)
        return None, f"torchcodec cannot load FFmpeg ({_short(e)}); install FFmpeg 4-8 (e.g. apt install ffmpeg)"
    return VideoDecoder, ""


def torchcodec_available() -> bool:
    return _torchcodec()[0] is not None


class TorchCodecReader(VideoReader):
    """torchcodec ``VideoDecoder`` (PyTorch's decoder; exact seeks from a scan of the file),
    ``num_threads`` FFmpeg threads. ``get_frames_at`` decodes each requested frame once.

    torchcodec applies the display rotation its FFmpeg reads (``metadata.rotation``); a WebM /
    Matroska rotation that an FFmpeg before 6.1 does not read is applied here."""

    backend = "torchcodec"

    def __init__(self, path: str | os.PathLike, *, num_threads: int = 1) -> None:
        super().__init__(path)
        decoder, why = _torchcodec()
        if decoder is None:
            raise DecodeError(path, self.backend, why)
        try:
            self._dec = decoder(
                os.fspath(path), dimension_order="NCHW", num_ffmpeg_threads=num_threads, seek_mode="exact"
            )
            meta = self._dec.metadata
            self.num_frames = int(meta.num_frames or 0)
            self.fps = float(meta.average_fps or 0.0)
            wanted = _matroska_turns(path)
            self._turns = 0 if wanted is None else (wanted - _quarter_turns(getattr(meta, "rotation", None))) % 4
        except Exception as e:  # torchcodec raises RuntimeError / ValueError with FFmpeg's text
            raise DecodeError(path, self.backend, _short(e)) from e
        if self.num_frames < 1:
            raise DecodeError(path, self.backend, "no video frames")

    def read(self, indices: Sequence[int] | np.ndarray) -> Tensor:
        try:
            frames = self._dec.get_frames_at(indices=self._clamp(indices)).data  # (L, 3, H, W) uint8
        except Exception as e:
            raise DecodeError(self.path, self.backend, _short(e)) from e
        return torch.rot90(frames, self._turns, dims=(2, 3)).contiguous() if self._turns else frames

    def close(self) -> None:
        self.__dict__.pop("_dec", None)


class PyAVReader(VideoReader):
    """PyAV (FFmpeg) reader. The frame count is the stream's, or the number of video packets
    when the container has none (``.webm``); reading decodes sequentially up to the largest
    index, so it is exact even when the count is wrong. Frames are converted and turned upright
    as ``ffmpeg`` and torchcodec do (:class:`_RGB24`)."""

    backend = "pyav"

    def __init__(self, path: str | os.PathLike, *, num_threads: int = 1) -> None:
        super().__init__(path)
        try:
            self._container = av.open(os.fspath(path))
            if not self._container.streams.video:
                raise ValueError("no video stream")
            self._stream = self._container.streams.video[0]
            self._stream.thread_count = max(1, num_threads)
            self._rgb = _RGB24(num_threads)
            rate = self._stream.average_rate or self._stream.guessed_rate
            self.fps = float(rate) if rate else 0.0
            self.num_frames = self._stream.frames or self._count_packets()
        except DecodeError:
            raise
        except Exception as e:  # av.error.FFmpegError, ValueError, ...
            self.close()
            raise DecodeError(path, self.backend, _short(e)) from e
        if self.num_frames < 1:
            self.close()
            raise DecodeError(path, self.backend, "no video frames")

    def _count_packets(self) -> int:
        n = sum(1 for p in self._container.demux(self._stream) if p.size > 0)
        self._container.seek(0)
        return n

    def read(self, indices: Sequence[int] | np.ndarray) -> Tensor:
        idx = self._clamp(indices)
        wanted = set(idx)
        last = max(idx)
        got: dict[int, np.ndarray] = {}
        frame = None
        n = 0
        try:
            self._container.seek(0)
            with contextlib.closing(self._frames()) as frames:
                for n, f in enumerate(frames):
                    if n in wanted:
                        got[n] = self._rgb(f)  # (H, W, 3), upright
                    frame = f
                    if n >= last:
                        break
        except Exception as e:
            if frame is None:
                raise DecodeError(self.path, self.backend, _short(e)) from e
            log.debug("%s: decoding stopped at frame %d: %s", self.path, n, e)
        if frame is None:
            raise DecodeError(self.path, self.backend, "no frame decodes")
        if n < last:  # the stream ended early: the last decoded frame stands in for the rest
            self.num_frames = n + 1
            if n not in got:
                got[n] = self._rgb(frame)
        frames = np.stack([got[min(i, n)] for i in idx])  # (L, H, W, 3)
        return torch.from_numpy(frames).permute(0, 3, 1, 2)  # (L, H, W, 3) -> (L, 3, H, W)

    def _frames(self) -> Iterator[av.VideoFrame]:
        """The stream's frames from the current position. PyAV's ``demux()`` frees its packet and
        stream table only when its generator finishes or is closed, and a read stops at the last
        wanted frame: left to the garbage collector, each read leaked ~150 bytes of native memory,
        which grew every DataLoader worker over an epoch (docs/data_pipeline.md)."""
        with contextlib.closing(self._container.demux(self._stream)) as packets:
            for packet in packets:
                yield from packet.decode()

    def close(self) -> None:
        self.__dict__.pop("_rgb", None)
        container = self.__dict__.pop("_container", None)
        if container is not None:
            container.close()


def stream_frames(
    source: str | os.PathLike,
    *,
    format: str | None = None,
    options: dict[str, str] | None = None,
    num_threads: int = 1,
) -> Iterator[tuple[float | None, Tensor]]:
    """Decode ``source`` one frame at a time with PyAV, as a live stream is read: yields
    ``(seconds, frame)``, the frame's presentation time (None when the stream has none) and the
    frame ``(3, H, W)`` uint8 RGB. ``source``: a file, a URL FFmpeg reads, or a capture device
    with its ``format`` (``/dev/video0`` with ``v4l2``, ``0`` with ``avfoundation``; ``options``
    such as ``{"framerate": "30", "video_size": "640x480"}`` go to FFmpeg). The frames are
    :class:`PyAVReader`'s: the same pixels, upright, one per decoded frame in presentation order.
    Opening fails with :class:`DecodeError`; a stream that breaks after frames were decoded ends
    there (logged)."""
    name = os.fspath(source)
    if format is None and "://" not in name and not Path(name).exists():
        raise MissingFileError(f"video not found: {name}")
    try:
        container = av.open(name, format=format, options=dict(options or {}))
    except Exception as e:  # av.error.FFmpegError (not a video, no such device), ValueError
        raise DecodeError(name, "pyav", _short(e)) from e
    with contextlib.closing(container):
        if not container.streams.video:
            raise DecodeError(name, "pyav", "no video stream")
        stream = container.streams.video[0]
        stream.thread_count = max(1, num_threads)
        to_rgb = _RGB24(num_threads)
        decoded = 0
        try:
            with contextlib.closing(container.demux(stream)) as packets:
                for packet in packets:
                    for f in packet.decode():
                        seconds = float(f.time) if f.time is not None else None
                        rgb = torch.from_numpy(to_rgb(f))  # (H, W, 3), upright
                        frame = rgb.permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)
                        decoded += 1
                        yield seconds, frame
        except (av.error.FFmpegError, ValueError) as e:
            if not decoded:
                raise DecodeError(name, "pyav", _short(e)) from e
            log.warning("%s: decoding stopped after frame %d: %s", name, decoded, _short(e))
        if not decoded:
            raise DecodeError(name, "pyav", "no frame decodes")


class FrameFolderReader(VideoReader):
    """A folder of JPEG/PNG frames (Something-Something v1: ``<id>/00001.jpg ...``); frame ``i``
    is the ``i``-th file in name order. Decoded with Pillow, as the official loaders do."""

    backend = "frames"

    def __init__(self, path: str | os.PathLike, *, num_threads: int = 1) -> None:
        super().__init__(path)
        try:
            names = sorted(e.name for e in os.scandir(path) if e.name.lower().endswith(FRAME_EXTENSIONS))
        except OSError as e:
            raise DecodeError(path, self.backend, _short(e)) from e
        if not names:
            raise DecodeError(path, self.backend, f"no {'/'.join(FRAME_EXTENSIONS)} frames in the folder")
        self._files = [self.path / n for n in names]
        self.num_frames = len(self._files)

    def read(self, indices: Sequence[int] | np.ndarray) -> Tensor:
        from PIL import Image

        idx = self._clamp(indices)
        decoded: dict[int, np.ndarray] = {}
        try:
            for i in sorted(set(idx)):
                with Image.open(self._files[i]) as img:
                    decoded[i] = np.asarray(img.convert("RGB"))  # (H, W, 3)
        except Exception as e:
            raise DecodeError(self.path, self.backend, _short(e)) from e
        shapes = {f.shape for f in decoded.values()}
        if len(shapes) > 1:
            raise DecodeError(self.path, self.backend, f"frames of different sizes {sorted(shapes)}")
        frames = np.stack([decoded[i] for i in idx])  # L x (H, W, 3) -> (L, H, W, 3)
        return torch.from_numpy(frames).permute(0, 3, 1, 2)  # (L, H, W, 3) -> (L, 3, H, W)


def auto_backend() -> str:
    """The fastest frame-exact backend installed: torchcodec, then decord, then PyAV (the order
    measured by ``tools/benchmark.py --sections loader``, docs/data_pipeline.md)."""
    if torchcodec_available():
        return "torchcodec"
    return "decord" if decord is not None else "pyav"


def open_video(path: str | os.PathLike, *, backend: str = "auto", num_threads: int = 1) -> VideoReader:
    """Open ``path`` with ``backend``: ``"auto"`` (a folder -> frames, else :func:`auto_backend`),
    ``"decord"``, ``"pyav"``, ``"torchcodec"`` or ``"frames"``.

    Raises :class:`~videoattn.errors.MissingFileError` (a ``FileNotFoundError``) for a missing path
    and :class:`DecodeError` for a file the backend cannot read.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown video backend {backend!r}; choose one of {list(BACKENDS)}")
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"video not found: {path}")
    if backend == "auto":
        backend = "frames" if path.is_dir() else auto_backend()
    if backend == "frames":
        return FrameFolderReader(path, num_threads=num_threads)
    if path.is_dir():
        raise DecodeError(path, backend, "is a folder; use backend='frames' for frame folders")
    if backend == "decord":
        return DecordReader(path, num_threads=num_threads)
    if backend == "torchcodec":
        return TorchCodecReader(path, num_threads=num_threads)
    return PyAVReader(path, num_threads=num_threads)


def read_clip(
    path: str | os.PathLike,
    choose: Callable[[int], np.ndarray],
    *,
    backend: str = "auto",
    fallback: bool = True,
    num_threads: int = 1,
) -> tuple[Tensor, np.ndarray]:
    """Read the frames a sampler chooses: ``choose(num_frames)`` returns indices of any shape
    ``S`` (``(T,)`` or ``(num_clips, T)``); the result is ``(*S, 3, H, W)`` uint8 and the
    indices actually read (clamped to the decodable frames).

    With ``fallback`` (the default), a file that decord or torchcodec cannot open or decode is
    read again with PyAV (logged when PyAV succeeds). Raises :class:`DecodeError` when no backend can
    read it, naming both readers' reasons.
    """
    try:
        with open_video(path, backend=backend, num_threads=num_threads) as reader:
            return _read(reader, choose)
    except DecodeError as e:
        if not (fallback and e.backend in ("decord", "torchcodec")):
            raise
        first = e
    try:
        with open_video(path, backend="pyav", num_threads=num_threads) as reader:
            out = _read(reader, choose)
    except DecodeError as e:  # one error naming both readers' reasons
        raise DecodeError(path, "pyav", f"{e.cause} ({first.backend}: {first.cause})") from e
    log.warning("%s; read with PyAV instead", first)
    return out


def _read(reader: VideoReader, choose: Callable[[int], np.ndarray]) -> tuple[Tensor, np.ndarray]:
    indices = np.asarray(choose(reader.num_frames), dtype=np.int64)
    flat = indices.reshape(-1)
    unique, inverse = np.unique(flat, return_inverse=True)
    frames = reader.read(unique)  # (U, 3, H, W), each frame decoded once
    if reader.num_frames <= int(unique[-1]):  # the count shrank while reading: indices were clamped
        indices = np.minimum(indices, reader.num_frames - 1)
    clip = frames[torch.from_numpy(inverse.reshape(-1))]  # (U, 3, H, W) -> (S*, 3, H, W)
    return clip.unflatten(0, indices.shape), indices  # (prod S, 3, H, W) -> (*S, 3, H, W)


def _short(e: BaseException) -> str:
    """The first line of an exception message (decord appends long C++ stack traces)."""
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
