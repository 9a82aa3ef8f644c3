"""Prepare once, read fast: the two standard speed-ups of a video dataset.

- :func:`reencode`: H.264 at a short side of ``short_side`` pixels with a keyframe every ``gop``
  frames, so that a segment sampler's sparse reads seek to a near keyframe instead of decoding
  the whole file (Kinetics' downloads carry a keyframe every 250 frames).
- :func:`extract_frames`: one JPEG per frame (``00001.jpg``, ...), the folder layout that the
  frame reader (``backend: frames``) and TSM's ``vid2img`` use.

Both write under a temporary name beside the result and move it into place at the end, so an
interrupted run leaves no partial result (only a temporary, ``.<name>.<pid>.tmp``, that
:func:`videoattn.files.remove_temp_files` removes once its writer is dead), and a result that
exists is complete: :func:`prepared` is true for it and a rerun skips it.
"""

from __future__ import annotations

import os
import shutil
from fractions import Fraction
from pathlib import Path

from ..files import temp_path

__all__ = ["extract_frames", "prepared", "reencode", "scaled_size"]


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """``(width, height)`` with the shorter side ``short_side`` (never enlarged), both even."""
    scale = min(1.0, short_side / min(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def prepared(dst: str | os.PathLike) -> bool:
    """Whether ``dst`` (a file or a frame folder) was written completely by this module."""
    dst = Path(dst)
    return dst.is_file() or (dst.is_dir() and any(dst.iterdir()))


def reencode(
    src: str | os.PathLike, dst: str | os.PathLike, *, short_side: int = 256, gop: int = 16, crf: int = 23
) -> int:
    """Re-encode ``src`` to H.264 ``dst`` (.mp4) at ``short_side``, a keyframe every ``gop``
    frames, constant quality ``crf``, the source's frame rate; returns the frames written."""
    import av

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dst)
    frames = 0
    try:
        with av.open(os.fspath(src)) as inp, av.open(os.fspath(tmp), mode="w", format="mp4") as out:
            stream = inp.streams.video[0]
            rate = stream.average_rate or Fraction(30)
            width, height = scaled_size(stream.codec_context.width, stream.codec_context.height, short_side)
            enc = out.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": "veryfast", "g": str(gop)})
            enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
            enc.codec_context.thread_count = 1  # one video per process: the processes are the parallelism
            for frame in inp.decode(stream):
                small = frame.reformat(width=width, height=height, format="yuv420p")
                small.pts, small.time_base = frames, 1 / rate
                out.mux(enc.encode(small))
                frames += 1
            out.mux(enc.encode(None))
        if frames == 0:
            raise ValueError(f"{src}: no video frames")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return frames


def extract_frames(src: str | os.PathLike, dst: str | os.PathLike, *, short_side: int = 256, quality: int = 90) -> int:
    """Write every frame of ``src`` as ``dst/00001.jpg, ...`` at ``short_side``, JPEG
    ``quality`` (1-100); returns the frames written."""
    import av

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dst)
    tmp.mkdir()
    frames = 0
    try:
        with av.open(os.fspath(src)) as inp:
            stream = inp.streams.video[0]
            width, height = scaled_size(stream.codec_context.width, stream.codec_context.height, short_side)
            for frame in inp.decode(stream):
                frames += 1
                image = frame.reformat(width=width, height=height, format="rgb24").to_image()
                image.save(tmp / f"{frames:05d}.jpg", quality=quality)
        if frames == 0:
            raise ValueError(f"{src}: no video frames")
        if dst.exists():  # an empty folder left by hand
            dst.rmdir()
        os.replace(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return frames
