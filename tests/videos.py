"""Test videos whose frame ``i`` encodes ``i``: eight vertical bars, bar ``b`` white when bit
``b`` of ``i`` is set. Survives lossy codecs, resizing and crops that keep the bars' centres.

:func:`marked` frames add an orientation cue (a red square in the top-left corner) above the
bars, for the videos of the readers' agreement tests (``tests/test_readers.py``): rotated by the
display matrix, variable frame rate, 10-bit, odd-sized (:func:`write_video`'s ``rotation``,
``pts``, ``pix_fmt`` and sizes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

CODECS = {".webm": "libvpx-vp9", ".mp4": "libx264"}


def bars(i: int, *, height: int = 64, width: int = 96) -> np.ndarray:
    """``(H, W, 3)`` uint8 frame encoding ``i`` (0 <= i < 256) in eight bars."""
    frame = np.zeros((height, width, 3), np.uint8)
    for b in range(8):
        if (i >> b) & 1:
            frame[:, b * width // 8 : (b + 1) * width // 8] = 255
    return frame


def decode_bars(frame: np.ndarray | torch.Tensor) -> int:
    """Inverse of :func:`bars` for ``(3, H, W)`` or ``(H, W, 3)`` frames."""
    a = frame.numpy() if isinstance(frame, torch.Tensor) else frame
    if a.shape[0] == 3:
        a = a.transpose(1, 2, 0)
    w = a.shape[1]
    margin = max(1, w // 40)
    return sum(1 << b for b in range(8) if a[:, b * w // 8 + margin : (b + 1) * w // 8 - margin].mean() > 127)


def marked(i: int, *, height: int = 64, width: int = 96) -> np.ndarray:
    """``(H, W, 3)`` uint8 upright frame: :func:`bars` of ``i`` in the bottom half, a red square
    (a quarter of each side) in the top-left corner of the black top half."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[height // 2 :] = bars(i, height=height - height // 2, width=width)
    frame[: height // 4, : width // 4] = (255, 0, 0)
    return frame


def decode_marked(frame: np.ndarray | torch.Tensor) -> tuple[int, str]:
    """``(i, corner)`` of a :func:`marked` frame, ``(3, H, W)`` or ``(H, W, 3)``: the bars' number
    and the corner the red square is in (``"top-left"`` when upright)."""
    a = frame.numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if a.shape[0] == 3:
        a = a.transpose(1, 2, 0)
    a = a.astype(np.int32)
    h, w = a.shape[:2]
    red = a[..., 0] - (a[..., 1] + a[..., 2]) // 2  # (H, W): high on red only
    corners = {
        "top-left": red[: h // 4, : w // 4],
        "top-right": red[: h // 4, w - w // 4 :],
        "bottom-left": red[h - h // 4 :, : w // 4],
        "bottom-right": red[h - h // 4 :, w - w // 4 :],
    }
    return decode_bars(a[h // 2 :]), max(corners, key=lambda k: corners[k].mean())


def write_video(
    path: Path,
    num_frames: int,
    *,
    height: int = 64,
    width: int = 96,
    fps: int = 12,
    frames: np.ndarray | None = None,
    options: dict | None = None,
    container_options: dict | None = None,
    pix_fmt: str = "yuv420p",
    rotation: int = 0,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    content: Callable[..., np.ndarray] = bars,
) -> Path:
    """Write a video of ``content(i, height=, width=)`` frames (bar-coded; or the given
    ``(T, H, W, 3)`` frames) with the codec of the suffix, in ``pix_fmt`` (e.g. ``yuv420p10le``).

    ``rotation``: a display rotation in FFmpeg's convention (degrees counter-clockwise, a multiple
    of 90; -90 / 270 is a phone's portrait video): the upright frames are stored turned by
    ``-rotation`` (the coded size is ``width x height`` turned) with the display matrix that shows
    them upright again (MP4 ``tkhd`` matrix, WebM ``ProjectionPoseRoll``; PyAV 18's
    ``set_display_rotation``). ``pts``: each frame's presentation time in ``time_base`` units (a
    variable frame rate), instead of ``i / fps``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    turns = rotation // 90 % 4
    with av.open(str(path), "w", options=container_options or {}) as c:
        s = c.add_stream(CODECS[path.suffix], rate=fps)
        s.width, s.height = (height, width) if turns % 2 else (width, height)
        s.pix_fmt = pix_fmt
        s.options = options or ({"deadline": "realtime", "cpu-used": "8"} if path.suffix == ".webm" else {})
        if turns:
            s.set_display_rotation(rotation)
        if time_base is not None:
            s.time_base = s.codec_context.time_base = time_base
        for i in range(num_frames):
            img = frames[i] if frames is not None else content(i, height=height, width=width)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(img, -turns)), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def write_frame_folder(path: Path, num_frames: int, *, height: int = 64, width: int = 96) -> Path:
    """Something-Something v1 style folder ``00001.jpg ...``."""
    path.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        Image.fromarray(bars(i, height=height, width=width)).save(path / f"{i + 1:05d}.jpg", quality=90)
    return path


def ssv2_as_frame_folders(ssv2_root: Path, out: Path, *, layout: str = "ssv1") -> Path:
    """The SSv2-format demo split (``labels.json``, ``train.json``, ``validation.json``, ``.webm``
    videos) rewritten in the 20BN frame-folder layout: Something-Something v1 (``labels.csv``,
    ``train.csv`` / ``validation.csv`` with ``id;class`` lines, ``20bn-something-something-v1/<id>/
    00001.jpg``) or Jester (the same with the ``jester-v1-`` file names and ``20bn-jester-v1``)."""
    import json

    prefix, frames_dir = {"ssv1": ("", "20bn-something-something-v1"), "jester": ("jester-v1-", "20bn-jester-v1")}[
        layout
    ]
    out.mkdir(parents=True, exist_ok=True)
    classes = sorted(json.loads((ssv2_root / "labels.json").read_text()))
    (out / f"{prefix}labels.csv").write_text("".join(c + "\n" for c in classes))
    for split in ("train", "validation"):
        entries = json.loads((ssv2_root / f"{split}.json").read_text())
        lines = []
        for e in entries:
            folder = out / frames_dir / e["id"]
            folder.mkdir(parents=True, exist_ok=True)
            with av.open(str(ssv2_root / "20bn-something-something-v2" / f"{e['id']}.webm")) as c:
                for i, frame in enumerate(c.decode(video=0)):
                    frame.to_image().save(folder / f"{i + 1:05d}.jpg", quality=90)
            lines.append(f"{e['id']};{e['template'].replace('[', '').replace(']', '')}\n")
        (out / f"{prefix}{split}.csv").write_text("".join(lines))
    return out
