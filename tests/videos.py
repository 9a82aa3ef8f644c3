"""Test videos whose frame ``i`` encodes ``i``: eight vertical bars, bar ``b`` white when bit
``b`` of ``i`` is set. Survives lossy codecs, resizing and crops that keep the bars' centres."""

from __future__ import annotations

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
) -> Path:
    """Write a bar-coded video (or the given ``(T, H, W, 3)`` frames) with the codec of the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options=container_options or {}) as c:
        s = c.add_stream(CODECS[path.suffix], rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = options or ({"deadline": "realtime", "cpu-used": "8"} if path.suffix == ".webm" else {})
        for i in range(num_frames):
            img = frames[i] if frames is not None else bars(i, height=height, width=width)
            for packet in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
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
