"""Prepare once, read fast: the two standard speed-ups of a video dataset.

- :func:`reencode`: H.264 at a short side of ``short_side`` pixels with a keyframe every ``gop``
  frames, so that a segment sampler's sparse reads seek to a near keyframe instead of decoding
  the whole file (Kinetics' downloads carry a keyframe every 250 frames).
- :func:`extract_frames`: one JPEG per frame (``00001.jpg``, ...), the folder layout that the
  frame reader (``backend: frames``) and TSM's ``vid2img`` use.

Both read the frames as every reader of :mod:`videoattn.data.video` gives them
(:func:`~videoattn.data.video.stream_frames`): upright (a display rotation, e.g. of a phone's
portrait video, is applied), one per decoded frame in presentation order, converted to RGB with
FFmpeg's ``format=rgb24`` filter; the scaled size is that of the upright picture. A re-encoded
video therefore carries no display rotation (its pixels are upright), and a prepared form has the
frame count the readers give the source (docs/data_pipeline.md, "One picture per video").

Both write under a temporary name beside the result and move it into place at the end, so an
interrupted run leaves no partial result (only a temporary, ``.<name>.<pid>.tmp``, that
:func:`videoattn.files.remove_temp_files` removes once its writer is dead), and a result that
exists is complete: :func:`prepared` is true for it and a rerun skips it.

An operating-system error while *writing* (disk full, permission denied, read-only file system)
is a :class:`WriteError` naming the result's path: a fault of the output location, never of the
video, so that a caller stops instead of counting the video as unreadable. Errors while reading
the source stay what they are (a :class:`~videoattn.data.video.DecodeError`, a
:class:`~videoattn.errors.MissingFileError`, PyAV's errors).

A folder of prepared videos is only consistent when every video in it was prepared with the same
settings: :func:`output_settings` lists the settings that shape a result, and
:data:`RECORD` (``prepare.json`` beside the prepared folders, read and written with
:func:`read_record` / :func:`write_record`) keeps them per mode, so that a later run can compare
(:func:`differing_settings`) before adding to the folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import temp_path, write_atomic

if TYPE_CHECKING:
    import av
    import numpy as np

__all__ = [
    "FOLDERS",
    "RECORD",
    "RECORD_VERSION",
    "WriteError",
    "destination",
    "differing_settings",
    "extract_frames",
    "output_settings",
    "prepared",
    "read_record",
    "reencode",
    "scaled_size",
    "write_record",
]

RECORD = "prepare.json"  # in the output folder: {"version": 1, "<mode>": {setting: value, ...}, ...}
RECORD_VERSION = 1  # the layout of the prepared folders (names keep the source's extension)
FOLDERS = {"reencode": "videos", "frames": "frames"}  # mode -> the folder (under the output) it writes
CRF = 23  # reencode's constant quality
PRESET = "veryfast"


class WriteError(OSError):
    """An operating-system error writing a prepared result (``filename``: the result's path):
    the output location's fault (disk full, no permission, read-only), not the video's."""


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Re-raise an operating-system error of the block as a :class:`WriteError` naming ``path``
    (an ``OSError`` without an errno, e.g. an encoder's complaint, is left as it is)."""
    try:
        yield
    except WriteError:
        raise
    except OSError as err:
        if err.errno is None:
            raise
        raise WriteError(err.errno, err.strerror or str(err), os.fspath(path)) from err


def _save_frame(image: Any, path: Path, quality: int) -> None:
    """Write one frame (a PIL image) as a JPEG of ``quality``."""
    image.save(path, quality=quality)


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """``(width, height)`` with the shorter side ``short_side`` (never enlarged), both even."""
    scale = min(1.0, short_side / min(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def prepared(dst: str | os.PathLike) -> bool:
    """Whether ``dst`` (a file or a frame folder) was written completely by this module."""
    dst = Path(dst)
    return dst.is_file() or (dst.is_dir() and any(dst.iterdir()))


def destination(src: str | os.PathLike, root: str | os.PathLike, out: str | os.PathLike, mode: str) -> Path:
    """Where ``mode`` (reencode / frames) writes the result of the video ``src`` of the dataset
    at ``root``: ``out/videos/<path under root>`` with ``.mp4`` appended to the file name
    (``.mp4`` sources keep their name), or the frame folder ``out/frames/<path under root>``
    named as the file, extension included, so that ``clip.mp4`` and ``clip.webm`` stay apart."""
    path = Path(src).resolve()
    try:
        rel = path.relative_to(Path(root).resolve())
    except ValueError:  # a list whose paths lie outside root
        rel = Path(*path.parts[1:])
    if mode == "reencode":
        name = rel.name if rel.suffix.lower() == ".mp4" else rel.name + ".mp4"
        return Path(out) / FOLDERS[mode] / rel.with_name(name)
    return Path(out) / FOLDERS[mode] / rel


def output_settings(mode: str, *, short_side: int, gop: int = 16, quality: int = 90) -> dict[str, Any]:
    """Every setting that shapes the results of ``mode`` (what a folder's record keeps)."""
    if mode == "reencode":
        return {"short_side": short_side, "gop": gop, "codec": "libx264", "crf": CRF, "preset": PRESET}
    return {"short_side": short_side, "jpeg_quality": quality, "format": "jpeg"}


def read_record(out: str | os.PathLike) -> dict[str, Any]:
    """The record of ``out`` (``{}`` when there is none); a record that is not one is a
    ``ValueError``."""
    path = Path(out) / RECORD
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a record of prepared settings ({err})") from err
    if not isinstance(record, dict):
        raise ValueError(f"{path}: not a record of prepared settings (a JSON object)")
    return record


def write_record(out: str | os.PathLike, mode: str, settings: Mapping[str, Any]) -> Path:
    """Record ``settings`` as those of ``mode``'s folder in ``out`` (atomically; the other
    modes' records are kept)."""
    record = read_record(out)
    record.update({"version": RECORD_VERSION, mode: dict(settings)})
    return write_atomic(Path(out) / RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")


def differing_settings(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{setting: (recorded value, wanted value)}`` for each setting that differs (a setting
    missing on one side counts, as None)."""
    keys = [*recorded, *(k for k in wanted if k not in recorded)]
    return {k: (recorded.get(k), wanted.get(k)) for k in keys if recorded.get(k) != wanted.get(k)}


def _upright_frames(src: str | os.PathLike) -> Iterator[np.ndarray]:
    """The frames of ``src`` as the readers give them: upright ``(H, W, 3)`` uint8 RGB, one per
    decoded frame in presentation order (:func:`~videoattn.data.video.stream_frames`, one decoding
    thread: one video per process, the processes are the parallelism). Opening or decoding
    nothing is a :class:`~videoattn.data.video.DecodeError`, a missing file a
    :class:`~videoattn.errors.MissingFileError`."""
    from .video import stream_frames

    with contextlib.closing(stream_frames(src, num_threads=1)) as frames:
        for _, frame in frames:
            yield frame.permute(1, 2, 0).numpy()  # (3, H, W) -> (H, W, 3): a view of the decoded array


def _frame_rate(src: str | os.PathLike) -> Fraction:
    """The average frame rate of the first video stream of ``src`` (30 when it has none)."""
    import av

    with av.open(os.fspath(src)) as container:
        streams = container.streams.video
        return (streams[0].average_rate if streams else None) or Fraction(30)


class _Scaler:
    """Upright RGB frames to ``size`` (width, height) in pixel format ``format`` through one
    swscale context (bilinear, PyAV's default), built on the first frame and reused; one thread
    (one video per process: the processes are the parallelism; swscale's automatic threads cost
    more than they gain on small frames)."""

    def __init__(self, size: tuple[int, int], format: str) -> None:
        from av.video.reformatter import VideoReformatter

        self.width, self.height = size
        self.format = format
        self._reformatter = VideoReformatter()

    def __call__(self, rgb: np.ndarray) -> av.VideoFrame:
        import av
        import numpy as np

        # a frame over the array's memory: from_ndarray's copy cost more than the scaling (~3 ms at 720p)
        frame = av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(rgb), format="rgb24")
        return self._reformatter.reformat(frame, width=self.width, height=self.height, format=self.format, threads=1)


def reencode(
    src: str | os.PathLike, dst: str | os.PathLike, *, short_side: int = 256, gop: int = 16, crf: int = CRF
) -> int:
    """Re-encode ``src`` to H.264 ``dst`` (.mp4) at ``short_side``, a keyframe every ``gop``
    frames, constant quality ``crf``, the source's average frame rate; returns the frames written.
    The frames are those the readers give (upright, presentation order: :func:`_upright_frames`),
    so ``dst`` has no display rotation and as many frames as the readers count in ``src``.
    Writing errors are a :class:`WriteError`."""
    import av

    dst = Path(dst)
    with _writing(dst):
        dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dst)
    frames = 0
    out: Any = None
    try:
        try:
            enc: Any = None
            scale: _Scaler | None = None
            rate = Fraction(30)
            with contextlib.closing(_upright_frames(src)) as upright:
                for rgb in upright:
                    if out is None:  # the size of the upright picture, the rate of the stream
                        rate = _frame_rate(src)
                        scale = _Scaler(scaled_size(rgb.shape[1], rgb.shape[0], short_side), "yuv420p")
                        with _writing(dst):
                            out = av.open(os.fspath(tmp), mode="w", format="mp4")
                        options = {"crf": str(crf), "preset": PRESET, "g": str(gop)}
                        enc = out.add_stream("libx264", rate=rate, options=options)
                        enc.width, enc.height, enc.pix_fmt = scale.width, scale.height, "yuv420p"
                        enc.codec_context.thread_count = 1  # one video per process: the processes are the parallelism
                    assert scale is not None
                    small = scale(rgb)
                    small.pts, small.time_base = frames, 1 / rate
                    packets = enc.encode(small)
                    with _writing(dst):
                        out.mux(packets)
                    frames += 1
            if enc is not None:
                packets = enc.encode(None)
                with _writing(dst):
                    out.mux(packets)
        finally:
            if out is not None:
                with _writing(dst):
                    out.close()  # writes the index (moov): a full disk may show only here
        if frames == 0:
            raise ValueError(f"{src}: no video frames")
        with _writing(dst):
            os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return frames


def extract_frames(src: str | os.PathLike, dst: str | os.PathLike, *, short_side: int = 256, quality: int = 90) -> int:
    """Write every frame of ``src`` as ``dst/00001.jpg, ...`` at ``short_side``, JPEG
    ``quality`` (1-100); returns the frames written. The frames are those the readers give
    (upright, presentation order: :func:`_upright_frames`), as many as they count in ``src``.
    Writing errors are a :class:`WriteError`."""
    from PIL import Image

    dst = Path(dst)
    tmp = temp_path(dst)
    with _writing(dst):
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    frames = 0
    try:
        scale: _Scaler | None = None
        with contextlib.closing(_upright_frames(src)) as upright:
            for rgb in upright:
                if scale is None:  # the size of the upright picture
                    scale = _Scaler(scaled_size(rgb.shape[1], rgb.shape[0], short_side), "rgb24")
                if (scale.width, scale.height) == (rgb.shape[1], rgb.shape[0]):
                    image = Image.fromarray(rgb)
                else:
                    image = scale(rgb).to_image()
                frames += 1
                with _writing(dst):
                    _save_frame(image, tmp / f"{frames:05d}.jpg", quality)
        if frames == 0:
            raise ValueError(f"{src}: no video frames")
        with _writing(dst):
            if dst.exists():  # an empty folder left by hand
                dst.rmdir()
            os.replace(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return frames
