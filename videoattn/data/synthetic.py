"""The embedded demo dataset: small real video files rendered with numpy and encoded with PyAV.

The dataset ships as code. :func:`write_demo_dataset` renders a few hundred short clips and
writes them in the formats of the real datasets, so the same parsers and readers are used:

* ``root/ssv2/``: Something-Something v2 (``labels.json``, ``train.json``,
  ``validation.json``, ``test.json``, VP9 ``20bn-something-something-v2/<id>.webm``);
* ``root/kinetics/``: Kinetics-400 (``kinetics-400_{train,val}.csv`` and H.264
  ``<split>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4``, the class-folder layout of the
  common downloader). Kinetics uses the same class names as SSv2 (same case, so one class
  list and one index order serve both formats);
* ``root/manifest.json``, written last: its presence marks a complete dataset.

Classes. The toolkit ablates temporal modelling against static excitation, and a TSN model
averages per-frame predictions. Eight of the twelve classes come in four **time-reversed
pairs**: the clip of the second class of a pair is the time reversal of a clip drawn from the
same random process as the first, so the two classes have exactly the same distribution of
frames and a frame-averaging model cannot do better than chance within a pair (expected TSN
accuracy about 8/12, a temporal model can reach 100%). The four **appearance classes** are
recognisable from any single frame (a dark background, a striped background, several small
objects, a hollow blinking outline) and none of their frames looks like a frame of another
class.

The rotation pair is named "Turning something to the right" (clockwise on screen) /
"Turning something to the left" (counterclockwise) rather than clockwise/counterclockwise:
a horizontal flip turns one into the other, so the SSv2 flip label map (swap the words
"left" and "right") stays correct for it, as for "Moving something from left to right" /
"... from right to left". Every shape used is mirror-symmetric and every random position is
drawn symmetrically, so a flipped clip follows the distribution of its flip-mapped class.

Default size: 12 classes x (48 train + 12 validation) SSv2-format clips + 24 unlabelled test
clips, 12 x (8 train + 4 val) Kinetics-format clips; 96x128 frames (H x W), 24..40 frames a
clip at 12 fps; about 6 MB. ``ensure_demo_dataset()`` writes it on first use.

Everything is a pure function of the seed: each clip has its own generator derived from
``(seed, format, split, index)``, so the result does not depend on the number of workers, and
the encoded bytes are reproducible on one machine (single-threaded encoders).
"""

from __future__ import annotations

import csv
import difflib
import json
import logging
import math
import multiprocessing
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "APPEARANCE_CLASSES",
    "DEMO_CLASSES",
    "DemoParams",
    "FORMAT_VERSION",
    "ORDER_DEPENDENT",
    "REVERSED_PAIRS",
    "TEMPLATES",
    "class_from_template",
    "default_demo_root",
    "ensure_demo_dataset",
    "read_manifest",
    "render_clip",
    "write_demo_dataset",
    "write_video",
]

FORMAT_VERSION = 1
DEFAULT_SIZE = (96, 128)  # (H, W)
DEFAULT_FPS = 12
DEFAULT_NUM_FRAMES = (24, 40)  # inclusive range of frames per clip
FORMATS = ("ssv2", "kinetics")
SSV2_VIDEO_DIR = "20bn-something-something-v2"
KINETICS_HEADER = ("label", "youtube_id", "time_start", "time_end", "split")
KINETICS_CLIP_SECONDS = 10
MANIFEST = "manifest.json"
_GENERATOR = "videoattn.data.synthetic"

# ---------------------------------------------------------------------------------------------
# Classes
# ---------------------------------------------------------------------------------------------

# (first, second): the second is rendered as the time reversal of the first's random process.
_PAIR_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("Moving [something] from left to right", "Moving [something] from right to left"),
    ("Moving [something] up", "Moving [something] down"),
    ("[Something] growing", "[Something] shrinking"),
    ("Turning [something] to the right", "Turning [something] to the left"),
)
_APPEARANCE_TEMPLATES: tuple[str, ...] = (
    "Showing [something] in the dark",
    "Showing [something] on a striped background",
    "Showing a pile of [something]",
    "[Something] blinking",
)


def class_from_template(template: str) -> str:
    """The SSv2 rule: the class name is the template with the brackets removed."""
    return template.replace("[", "").replace("]", "")


TEMPLATES: dict[str, str] = {
    class_from_template(t): t for t in [t for pair in _PAIR_TEMPLATES for t in pair] + list(_APPEARANCE_TEMPLATES)
}
DEMO_CLASSES: list[str] = sorted(TEMPLATES)  # class index = position in the sorted names
REVERSED_PAIRS: list[tuple[str, str]] = [(class_from_template(a), class_from_template(b)) for a, b in _PAIR_TEMPLATES]
ORDER_DEPENDENT: frozenset[str] = frozenset(name for pair in REVERSED_PAIRS for name in pair)
APPEARANCE_CLASSES: list[str] = [class_from_template(t) for t in _APPEARANCE_TEMPLATES]

# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

_PALETTE = np.array(
    [
        (225, 40, 40),  # red
        (40, 190, 60),  # green
        (45, 85, 235),  # blue
        (245, 220, 40),  # yellow
        (225, 55, 205),  # magenta
        (40, 215, 225),  # cyan
        (250, 140, 30),  # orange
        (245, 245, 245),  # white
        (25, 25, 25),  # black
    ],
    dtype=np.float32,
)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Shapes that look the same in a mirror (about their own axis): a horizontally flipped clip
# of one class is then a clip of its flip-mapped class.
_SHAPES = {"circle": "ball", "square": "box", "triangle": "triangle", "diamond": "diamond"}
_TURNING_SHAPES = {"pointer": "pointer", "hammer": "hammer", "lollipop": "lollipop"}
_PLURAL = {"ball": "balls", "box": "boxes", "triangle": "triangles", "diamond": "diamonds"}


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates, each (H, W) float32: x to the right, y downwards."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    ys.flags.writeable = False
    xs.flags.writeable = False
    return xs, ys


def _convex(u: np.ndarray, v: np.ndarray, verts: Sequence[tuple[float, float]]) -> np.ndarray:
    """Inside test of a convex polygon (vertices in order, either orientation)."""
    inside_pos = np.ones(u.shape, dtype=bool)
    inside_neg = np.ones(u.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(verts, list(verts[1:]) + [verts[0]], strict=True):
        cross = (x2 - x1) * (v - y1) - (y2 - y1) * (u - x1)
        inside_pos &= cross >= 0
        inside_neg &= cross <= 0
    return inside_pos | inside_neg


def _shape_mask(
    shape: str, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, r: float, angle: float = 0.0
) -> np.ndarray:
    """(H, W) bool mask of ``shape`` of size ``r`` centred at (cx, cy).

    ``angle`` (radians) turns the shape clockwise on screen (y points down): the shape's "up"
    direction (0, -1) goes to (sin a, -cos a).
    """
    dx = xs - cx
    dy = ys - cy
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        u = dx * c + dy * s  # local coordinates: rotate the pixel grid back by ``angle``
        v = dy * c - dx * s
    else:
        u, v = dx, dy
    if shape == "circle":
        return u * u + v * v < r * r
    if shape == "square":
        s = 0.886 * r  # same area as the circle
        return (np.abs(u) < s) & (np.abs(v) < s)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) < 1.25 * r
    if shape == "triangle":  # equilateral, apex up, centred on its centroid
        big = 1.4 * r
        return _convex(u, v, [(0.0, -big), (0.866 * big, 0.5 * big), (-0.866 * big, 0.5 * big)])
    if shape == "pointer":  # a long isosceles triangle
        return _convex(u, v, [(0.0, -1.8 * r), (0.7 * r, 0.9 * r), (-0.7 * r, 0.9 * r)])
    if shape == "hammer":  # a handle with a head across one end: a T
        handle = (np.abs(u) < 0.22 * r) & (v > -0.9 * r) & (v < 1.6 * r)
        head = (np.abs(u) < 0.95 * r) & (v > -1.6 * r) & (v <= -0.9 * r)
        return handle | head
    if shape == "lollipop":  # a stick with a disc at one end
        stick = (np.abs(u) < 0.2 * r) & (v > -0.4 * r) & (v < 1.7 * r)
        return stick | (u * u + (v + 0.9 * r) ** 2 < (0.8 * r) ** 2)
    raise ValueError(f"unknown shape {shape!r}")


def _outline(shape: str, xs, ys, cx: float, cy: float, r: float, thickness: float) -> np.ndarray:
    """A hollow version of ``shape``: the mask minus the mask shrunk by ``thickness``."""
    outer = _shape_mask(shape, xs, ys, cx, cy, r)
    inner = _shape_mask(shape, xs, ys, cx, cy, r - thickness)
    return outer & ~inner


def _colour(rng: np.random.Generator, avoid: Sequence[np.ndarray], min_dist: float) -> np.ndarray:
    """A jittered palette colour at least ``min_dist`` (RGB distance) from each of ``avoid``."""
    best, best_d = None, -1.0
    for _ in range(64):
        c = _PALETTE[rng.integers(len(_PALETTE))] + rng.uniform(-15, 15, 3).astype(np.float32)
        c = np.clip(c, 0, 255)
        d = min(float(np.linalg.norm(c - a)) for a in avoid) if avoid else math.inf
        if d >= min_dist:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def _midtone(rng: np.random.Generator) -> np.ndarray:
    """A plain background colour; luminance stays in [70, 190] (never dark)."""
    return rng.uniform(70, 190, 3).astype(np.float32)


def _finish(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add mild per-pixel noise to (T, H, W, 3) float32 frames and convert to uint8.

    Uniform noise of standard deviation 1..3.5 (uniform: 5x cheaper to draw than normal).
    """
    half_width = np.float32(rng.uniform(1.0, 3.5) * math.sqrt(3))
    noise = rng.random(frames.shape, dtype=np.float32)
    noise -= np.float32(0.5)
    noise *= 2 * half_width
    frames += noise
    np.clip(frames, 0, 255, out=frames)
    return frames.astype(np.uint8)


def _canvas(bg: np.ndarray, t: int, h: int, w: int) -> np.ndarray:
    """(T, H, W, 3) float32 frames filled with ``bg`` (a colour (3,) or an image (H, W, 3))."""
    frames = np.empty((t, h, w, 3), dtype=np.float32)
    frames[:] = bg
    return frames


def _shake(rng: np.random.Generator, t: int) -> np.ndarray:
    """(T, 2) small per-frame offsets (hand-held camera) for the static classes."""
    return rng.integers(-1, 2, size=(t, 2)).astype(np.float32)


def _moving(rng, t, h, w, *, vertical: bool):
    """An object moving left to right (or, when ``vertical``, bottom to top)."""
    m = min(h, w)
    shape = list(_SHAPES)[rng.integers(len(_SHAPES))]
    r = rng.uniform(0.10, 0.15) * m
    bg = _midtone(rng)
    colour = _colour(rng, [bg], 100)
    along, across = (h, w) if vertical else (w, h)
    dist = rng.uniform(0.45, 0.7) * along
    slack = max(0.0, along - 2 * r - dist)
    start = r + rng.uniform(0, slack)  # (start, start+dist) is mirror-symmetric in distribution
    pos_across = rng.uniform(r, across - r)
    drift = rng.uniform(-0.08, 0.08) * across
    xs, ys = _grid(h, w)
    frames = _canvas(bg, t, h, w)
    for i in range(t):
        a = i / max(t - 1, 1)
        p = start + a * dist
        q = pos_across + (a - 0.5) * drift
        cx, cy = (q, h - p) if vertical else (p, q)  # vertical: from the bottom upwards
        frames[i][_shape_mask(shape, xs, ys, cx, cy, r)] = colour
    return _finish(frames, rng), _SHAPES[shape]


def _render_left_to_right(rng, t, h, w):
    return _moving(rng, t, h, w, vertical=False)


def _render_up(rng, t, h, w):
    return _moving(rng, t, h, w, vertical=True)


def _render_growing(rng, t, h, w):
    m = min(h, w)
    shape = list(_SHAPES)[rng.integers(len(_SHAPES))]
    r0 = rng.uniform(0.04, 0.07) * m
    r1 = rng.uniform(0.22, 0.30) * m
    cx = w / 2 + rng.uniform(-0.15, 0.15) * w
    cy = h / 2 + rng.uniform(-0.12, 0.12) * h
    bg = _midtone(rng)
    colour = _colour(rng, [bg], 100)
    xs, ys = _grid(h, w)
    frames = _canvas(bg, t, h, w)
    for i in range(t):
        r = r0 + (r1 - r0) * i / max(t - 1, 1)
        frames[i][_shape_mask(shape, xs, ys, cx, cy, r)] = colour
    return _finish(frames, rng), _SHAPES[shape]


def _render_turning_right(rng, t, h, w):
    """An asymmetric object turning clockwise on screen by 6..15 degrees per frame.

    At most 15 degrees a frame keeps the direction unambiguous (< 180 degrees) between frames
    sampled up to 11 frames apart (T=4 segments of a 40-frame clip).
    """
    m = min(h, w)
    shape = list(_TURNING_SHAPES)[rng.integers(len(_TURNING_SHAPES))]
    r = rng.uniform(0.13, 0.17) * m
    cx = w / 2 + rng.uniform(-0.15, 0.15) * w
    cy = h / 2 + rng.uniform(-0.08, 0.08) * h
    angle0 = rng.uniform(0, 2 * math.pi)
    step = math.radians(rng.uniform(6, 15))
    bg = _midtone(rng)
    colour = _colour(rng, [bg], 100)
    xs, ys = _grid(h, w)
    frames = _canvas(bg, t, h, w)
    for i in range(t):
        frames[i][_shape_mask(shape, xs, ys, cx, cy, r, angle0 + i * step)] = colour
    return _finish(frames, rng), _TURNING_SHAPES[shape]


def _static_object(rng, t, h, w, bg, colour_dist, r_range):
    """A static shape (with camera shake) over ``bg``: frames and the object name."""
    m = min(h, w)
    shape = list(_SHAPES)[rng.integers(len(_SHAPES))]
    r = rng.uniform(*r_range) * m
    cx = rng.uniform(1.5 * r, w - 1.5 * r)
    cy = rng.uniform(1.5 * r, h - 1.5 * r)
    avoid = [bg] if bg.ndim == 1 else [bg.reshape(-1, 3).min(0), bg.reshape(-1, 3).max(0)]
    colour = _colour(rng, avoid, colour_dist)
    shake = _shake(rng, t)
    xs, ys = _grid(h, w)
    frames = _canvas(bg, t, h, w)
    for i in range(t):
        frames[i][_shape_mask(shape, xs, ys, cx + shake[i, 0], cy + shake[i, 1], r)] = colour
    return frames, _SHAPES[shape]


def _render_dark(rng, t, h, w):
    bg = rng.uniform(0, 22, 3).astype(np.float32)
    frames, obj = _static_object(rng, t, h, w, bg, 150, (0.12, 0.2))
    return _finish(frames, rng), obj


def _render_striped(rng, t, h, w):
    mid = rng.uniform(100, 155, 3).astype(np.float32)
    delta = np.float32(rng.uniform(60, 90))
    period = rng.uniform(6, 11)
    angle = math.radians(45 * rng.integers(4) + rng.uniform(-10, 10))
    phase = rng.uniform(0, period)
    xs, ys = _grid(h, w)
    proj = xs * math.cos(angle) + ys * math.sin(angle)
    stripe = ((proj + phase) % period) < period / 2
    bg = np.where(stripe[..., None], mid + delta / 2, mid - delta / 2).astype(np.float32)
    frames, obj = _static_object(rng, t, h, w, bg, 90, (0.10, 0.15))
    return _finish(frames, rng), obj


def _render_pile(rng, t, h, w):
    """5..8 small copies of one object, well apart."""
    m = min(h, w)
    shape = list(_SHAPES)[rng.integers(len(_SHAPES))]
    r = rng.uniform(0.055, 0.075) * m
    n = int(rng.integers(5, 9))
    gap = 3.2 * r + 3
    centres: list[tuple[float, float]] = []
    for _ in range(2000):
        if len(centres) == n:
            break
        c = (rng.uniform(1.6 * r, w - 1.6 * r), rng.uniform(1.6 * r, h - 1.6 * r))
        if all(math.dist(c, o) >= gap for o in centres):
            centres.append(c)
    bg = _midtone(rng)
    colour = _colour(rng, [bg], 100)
    shake = _shake(rng, t)
    xs, ys = _grid(h, w)
    frames = _canvas(bg, t, h, w)
    for i in range(t):
        mask = np.zeros((h, w), dtype=bool)
        for cx, cy in centres:
            mask |= _shape_mask(shape, xs, ys, cx + shake[i, 0], cy + shake[i, 1], r)
        frames[i][mask] = colour
    return _finish(frames, rng), _PLURAL[_SHAPES[shape]]


def _render_blinking(rng, t, h, w):
    """A hollow outline switched on and off in runs of 1..3 frames."""
    m = min(h, w)
    shape = list(_SHAPES)[rng.integers(len(_SHAPES))]
    r = rng.uniform(0.14, 0.22) * m
    thickness = max(2.5, 0.25 * r)
    cx = rng.uniform(1.5 * r, w - 1.5 * r)
    cy = rng.uniform(1.5 * r, h - 1.5 * r)
    bg = _midtone(rng)
    colour = _colour(rng, [bg], 100)
    on = np.zeros(t, dtype=bool)
    state, i = bool(rng.integers(2)), 0
    while i < t:
        run = int(rng.integers(1, 4))
        on[i : i + run] = state
        state, i = not state, i + run
    shake = _shake(rng, t)
    xs, ys = _grid(h, w)
    frames = _canvas(bg, t, h, w)
    for i in np.flatnonzero(on):
        frames[i][_outline(shape, xs, ys, cx + shake[i, 0], cy + shake[i, 1], r, thickness)] = colour
    return _finish(frames, rng), _SHAPES[shape]


_Renderer = Callable[[np.random.Generator, int, int, int], tuple[np.ndarray, str]]
_c = class_from_template
_RENDERERS: dict[str, _Renderer] = {
    _c(_PAIR_TEMPLATES[0][0]): _render_left_to_right,
    _c(_PAIR_TEMPLATES[1][0]): _render_up,
    _c(_PAIR_TEMPLATES[2][0]): _render_growing,
    _c(_PAIR_TEMPLATES[3][0]): _render_turning_right,
    _c(_APPEARANCE_TEMPLATES[0]): _render_dark,
    _c(_APPEARANCE_TEMPLATES[1]): _render_striped,
    _c(_APPEARANCE_TEMPLATES[2]): _render_pile,
    _c(_APPEARANCE_TEMPLATES[3]): _render_blinking,
}
_REVERSE_OF: dict[str, str] = {b: a for a, b in REVERSED_PAIRS}
del _c


def _check_class(class_name: str) -> None:
    if class_name not in TEMPLATES:
        close = difflib.get_close_matches(class_name, DEMO_CLASSES, n=3, cutoff=0.4)
        hint = f"; did you mean {close}?" if close else f"; known: {DEMO_CLASSES}"
        raise ValueError(f"unknown demo class {class_name!r}{hint}")


def _render(
    class_name: str, rng: np.random.Generator, num_frames: int, size: tuple[int, int]
) -> tuple[np.ndarray, str]:
    """Frames (T, H, W, 3) uint8 and the placeholder (object name) of one clip."""
    _check_class(class_name)
    h, w = (int(s) for s in size)
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if h < 16 or w < 16:
        raise ValueError(f"size (H, W) must be at least 16x16, got {size}")
    if class_name in _REVERSE_OF:  # same random process as the partner, played backwards
        frames, obj = _RENDERERS[_REVERSE_OF[class_name]](rng, num_frames, h, w)
        return np.ascontiguousarray(frames[::-1]), obj
    return _RENDERERS[class_name](rng, num_frames, h, w)


def render_clip(
    class_name: str,
    rng: np.random.Generator,
    *,
    num_frames: int,
    size: tuple[int, int] = DEFAULT_SIZE,
) -> np.ndarray:
    """Render one clip of a demo class as (T, H, W, 3) uint8 RGB frames; ``size`` is (H, W).

    Deterministic in the generator's state. For a pair ``(a, b)`` of :data:`REVERSED_PAIRS`,
    ``render_clip(b, g)`` equals ``render_clip(a, g')[::-1]`` when ``g`` and ``g'`` are in the
    same state.
    """
    return _render(class_name, rng, num_frames, size)[0]


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------

_CONTAINERS = {".webm": "webm", ".mp4": "mp4", ".mkv": "matroska", ".avi": "avi", ".mov": "mov"}
_CODEC_OPTIONS = {
    # fast single-pass VP9 in constant-quality mode; crf 30 keeps flat shapes crisp
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "crf": "30", "b:v": "0"},
    # constant QP: x264's CRF rate control gave different bytes in different processes
    "libx264": {"preset": "veryfast", "qp": "23"},
}


def write_video(
    path: str | Path,
    frames: np.ndarray,
    *,
    codec: str,
    fps: int = DEFAULT_FPS,
    options: dict[str, str] | None = None,
) -> None:
    """Encode (T, H, W, 3) uint8 RGB ``frames`` to ``path`` (yuv420p, one encoder thread).

    The container follows the suffix (.webm, .mp4, .mkv, .avi, .mov). The file is written
    under a temporary name in the same folder and moved into place, so a reader never sees a
    partial file. ``options`` update the codec defaults (fast settings for VP9 and H.264).

    Raises ``RuntimeError`` if decord was imported before PyAV in this process (see
    :func:`_check_encoders`).
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    t, h, w, _ = frames.shape
    if t < 1 or h % 2 or w % 2:
        raise ValueError(f"need >= 1 frame and even H, W for yuv420p, got (T, H, W) = {(t, h, w)}")
    container_format = _CONTAINERS.get(path.suffix.lower())
    if container_format is None:
        raise ValueError(f"unknown video suffix {path.suffix!r}; use one of {sorted(_CONTAINERS)}")
    _check_encoders()
    _encode(path, frames, container_format, codec, fps, {**_CODEC_OPTIONS.get(codec, {}), **(options or {})})


def _encode(
    path: Path,
    frames: np.ndarray,
    container_format: str,
    codec: str,
    fps: int,
    opts: dict[str, str],
) -> None:
    import av  # the only encoder import of this module, kept local

    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with av.open(str(tmp), mode="w", format=container_format, options={"fflags": "+bitexact"}) as container:
            stream = container.add_stream(codec, rate=fps, options=opts)
            stream.width, stream.height, stream.pix_fmt = (
                frames.shape[2],
                frames.shape[1],
                "yuv420p",
            )
            stream.codec_context.thread_count = 1  # reproducible bytes; clips run in parallel
            time_base = Fraction(1, fps)
            for i, rgb in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame.pts, frame.time_base = i, time_base
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))  # flush
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_encoders() -> None:
    """PyAV's encoders work in this process unless decord 0.6 was imported before PyAV.

    decord 0.6 (the last release of the original project) loads its own FFmpeg, libvpx and
    libx264 with RTLD_GLOBAL. If that happens before PyAV is imported, PyAV's libavcodec binds to
    decord's older libvpx and libx264 symbols: libvpx-vp9 then fails to open, and libx264 would
    run on a mix of two x264 builds. PyAV imported first binds its own libraries
    (``videoattn.data`` always imports it first); the fork decord2 bundles its libraries under
    private names and does not interfere.
    """
    decord = sys.modules.get("decord")
    if decord is None:
        import av  # noqa: F401  (bound now, before any later decord import)

        return
    names = list(sys.modules)  # insertion order = import order
    old = str(getattr(decord, "__version__", "0")).startswith("0.")
    if old and ("av" not in sys.modules or names.index("av") > names.index("decord")):
        raise RuntimeError(
            "decord 0.6 was imported before PyAV in this process, so PyAV's VP9 / H.264 encoders bind decord's "
            "libraries and cannot write the demo videos; import av (or videoattn.data) before decord, or run "
            "tools/make_demo_data.py"
        )


# ---------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------

_FORMAT_CODE = {"ssv2": 1, "kinetics": 2}
_SPLIT_CODE = {"train": 1, "validation": 2, "val": 2, "test": 3}
_YOUTUBE_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


def _param(default, help: str, **cli):
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class DemoParams:
    """Everything the content of a demo dataset depends on (stored in its manifest): the
    keywords of :func:`write_demo_dataset` / :func:`ensure_demo_dataset` and the options of
    ``tools/make_demo_data.py``."""

    seed: int = _param(0, "the same seed always gives the same dataset")
    train_per_class: int = _param(48, "SSv2-format train clips per class")
    val_per_class: int = _param(12, "SSv2-format validation clips per class")
    test_clips: int = _param(24, "SSv2-format unlabelled test clips")
    kinetics_train_per_class: int = _param(8, "Kinetics-format train clips per class")
    kinetics_val_per_class: int = _param(4, "Kinetics-format val clips per class")
    size: tuple[int, int] = _param(DEFAULT_SIZE, "frame size (H, W), even numbers", metavar=("H", "W"))
    num_frames: tuple[int, int] = _param(
        DEFAULT_NUM_FRAMES, "frames per clip, drawn per clip in [MIN, MAX]", metavar=("MIN", "MAX")
    )
    fps: int = _param(DEFAULT_FPS, "frames per second of the encoded clips")
    formats: tuple[str, ...] = _param(FORMATS, "dataset formats to write", choices=FORMATS)

    def __post_init__(self):
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        for name in (
            "train_per_class",
            "val_per_class",
            "test_clips",
            "kinetics_train_per_class",
            "kinetics_val_per_class",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        h, w = self.size
        if h < 32 or w < 32 or h % 2 or w % 2:
            raise ValueError(f"size (H, W) must be even and >= 32 (>= 64 wide for decord), got {self.size}")
        lo, hi = self.num_frames
        if not 1 <= lo <= hi:
            raise ValueError(f"num_frames must be a range (lo, hi) with 1 <= lo <= hi, got {self.num_frames}")
        if self.fps < 1:
            raise ValueError(f"fps must be >= 1, got {self.fps}")
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {self.formats}")

    @classmethod
    def make(cls, *, size=DEFAULT_SIZE, num_frames=DEFAULT_NUM_FRAMES, formats=FORMATS, **kw) -> DemoParams:
        """From keywords as a caller writes them (lists for the tuples, one format as a string)."""
        formats = (formats,) if isinstance(formats, str) else formats
        return cls(
            size=tuple(int(s) for s in size),
            num_frames=tuple(int(n) for n in num_frames),
            formats=tuple(dict.fromkeys(formats)),
            **kw,
        )

    def key(self) -> dict:
        """The JSON form compared against the manifest (format version and classes included)."""
        d = json.loads(json.dumps(asdict(self)))
        return {"format_version": FORMAT_VERSION, "classes": DEMO_CLASSES, **d}


class _Job(NamedTuple):
    path: str
    class_name: str
    key: tuple[int, ...]  # (seed, format, split, index) -> the clip's generator
    num_frames: tuple[int, int]
    size: tuple[int, int]
    fps: int
    codec: str


def _clip_rng(key: Sequence[int]) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(key)))


def _run_job(job: _Job) -> tuple[str, int]:
    """Render and encode one clip; returns (object name, number of frames)."""
    rng = _clip_rng(job.key)
    lo, hi = job.num_frames
    t = int(rng.integers(lo, hi, endpoint=True))
    frames, obj = _render(job.class_name, rng, t, job.size)
    write_video(job.path, frames, codec=job.codec, fps=job.fps)
    return obj, t


def _split_labels(classes: Sequence[str], per_class: int, rng: np.random.Generator) -> list[str]:
    labels = [c for c in classes for _ in range(per_class)]
    return [labels[i] for i in rng.permutation(len(labels))]


def _fill(template: str, obj: str) -> str:
    """SSv2 ``label``: the template with its placeholder filled, lower case."""
    return template.replace("[something]", obj).replace("[Something]", obj).lower()


def _plan_ssv2(p: DemoParams, root: Path) -> tuple[list[_Job], dict]:
    """Jobs and annotation skeletons of the SSv2-format split (ids, labels, test ids)."""
    code = _FORMAT_CODE["ssv2"]
    splits = {"train": p.train_per_class, "validation": p.val_per_class}
    labels = {s: _split_labels(DEMO_CLASSES, n, _clip_rng((p.seed, code, _SPLIT_CODE[s]))) for s, n in splits.items()}
    test_rng = _clip_rng((p.seed, code, _SPLIT_CODE["test"]))
    labels["test"] = [DEMO_CLASSES[i % len(DEMO_CLASSES)] for i in test_rng.permutation(p.test_clips)]
    total = sum(len(v) for v in labels.values())
    ids_rng = _clip_rng((p.seed, code, 0))
    ids = iter((ids_rng.choice(max(300_000, 2 * total), size=total, replace=False) + 1).tolist())
    videos = root / SSV2_VIDEO_DIR
    jobs, plan = [], {}
    for split, names in labels.items():
        plan[split] = []
        for index, name in enumerate(names):
            vid = str(next(ids))
            jobs.append(
                _Job(
                    str(videos / f"{vid}.webm"),
                    name,
                    (p.seed, code, _SPLIT_CODE[split], index),
                    p.num_frames,
                    p.size,
                    p.fps,
                    "libvpx-vp9",
                )
            )
            plan[split].append((vid, name))
    return jobs, plan


def _youtube_ids(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    out = []
    while len(out) < n:
        yid = "".join(_YOUTUBE_ALPHABET[rng.integers(len(_YOUTUBE_ALPHABET), size=11)])
        if yid not in taken:
            taken.add(yid)
            out.append(yid)
    return out


def _plan_kinetics(p: DemoParams, root: Path) -> tuple[list[_Job], dict]:
    code = _FORMAT_CODE["kinetics"]
    taken: set[str] = set()
    jobs, plan = [], {}
    for split, per_class in (
        ("train", p.kinetics_train_per_class),
        ("val", p.kinetics_val_per_class),
    ):
        rng = _clip_rng((p.seed, code, _SPLIT_CODE[split]))
        names = _split_labels(DEMO_CLASSES, per_class, rng)
        yids = _youtube_ids(rng, len(names), taken)
        starts = rng.integers(0, 300, size=len(names)).tolist()
        plan[split] = []
        for index, (name, yid, start) in enumerate(zip(names, yids, starts, strict=True)):
            end = start + KINETICS_CLIP_SECONDS
            path = root / split / name / f"{yid}_{start:06d}_{end:06d}.mp4"
            jobs.append(
                _Job(
                    str(path),
                    name,
                    (p.seed, code, _SPLIT_CODE[split], index),
                    p.num_frames,
                    p.size,
                    p.fps,
                    "libx264",
                )
            )
            plan[split].append((name, yid, start, end))
    return jobs, plan


def _write_json(path: Path, obj) -> None:
    from ..files import (
        write_atomic,  # not at import: the encoding workers load this file on its own
    )

    write_atomic(path, json.dumps(obj, indent=2) + "\n")


def _write_ssv2_annotations(root: Path, plan: dict, results: Sequence[tuple[str, int]]) -> None:
    _write_json(root / "labels.json", {name: str(i) for i, name in enumerate(DEMO_CLASSES)})
    it = iter(results)
    for split in ("train", "validation"):
        entries = []
        for vid, name in plan[split]:
            obj, _ = next(it)
            template = TEMPLATES[name]
            entries.append(
                {
                    "id": vid,
                    "label": _fill(template, obj),
                    "template": template,
                    "placeholders": [obj],
                }
            )
        _write_json(root / f"{split}.json", entries)
    _write_json(root / "test.json", [{"id": vid} for vid, _ in plan["test"]])


def _write_kinetics_annotations(root: Path, plan: dict) -> None:
    for split in ("train", "val"):
        with open(root / f"kinetics-400_{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(KINETICS_HEADER)
            for name, yid, start, end in sorted(plan[split]):
                writer.writerow((name, yid, start, end, split))


def _is_demo_dataset(root: Path) -> bool:
    manifest = read_manifest(root)
    return manifest is not None and manifest.get("generator") == _GENERATOR


def read_manifest(root: str | Path) -> dict | None:
    """The parsed ``root/manifest.json`` of a complete demo dataset, or None."""
    root = Path(root)
    try:
        return json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _matches(root: Path, params: DemoParams) -> bool:
    manifest = read_manifest(root)
    return manifest is not None and manifest.get("generator") == _GENERATOR and manifest.get("params") == params.key()


def holds_demo_dataset(root: str | Path | None, **kw) -> bool:
    """Whether ``root`` (None: :func:`default_demo_root`) holds a complete demo dataset written
    with these parameters (``kw``: those of :func:`write_demo_dataset`)."""
    return _matches(_resolve_root(root), DemoParams.make(**kw))


def default_demo_root() -> Path:
    """Where the demo dataset goes when no root is given: ``$VIDEOATTN_DEMO_ROOT``, else
    ``data/demo`` in the working directory (the repository root, where the README's commands
    run; never inside an installed package)."""
    return Path(os.environ.get("VIDEOATTN_DEMO_ROOT") or Path.cwd() / "data" / "demo").expanduser().resolve()


def _resolve_root(root: str | Path | None) -> Path:
    return default_demo_root() if root is None else Path(root).expanduser().resolve()


def _default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


_MIN_PIXELS_FOR_WORKERS = 40 * 32 * 96 * 128  # about 40 default clips: less work does not pay for starting a pool


def _run_jobs(jobs: Sequence[_Job], workers: int) -> list[tuple[str, int]]:
    """Run the jobs in this process, or in a pool of ``workers`` processes when there is enough
    work to pay for starting them; results in job order either way.

    The pool forks where fork is the platform's safe default (Linux: the children inherit PyAV's
    bound encoders and import nothing), and spawns elsewhere (a child imports this module, whose
    package imports PyAV before decord).
    """
    _check_encoders()
    work = sum((j.num_frames[0] + j.num_frames[1]) / 2 * j.size[0] * j.size[1] for j in jobs)  # pixels
    if workers <= 1 or work < _MIN_PIXELS_FOR_WORKERS:
        return [_run_job(j) for j in jobs]
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        return list(pool.map(_run_job, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


def _swap_in(tmp: Path, root: Path, params: DemoParams) -> None:
    """Move the finished ``tmp`` to ``root``, replacing an old demo dataset there."""
    old = None
    if root.exists():
        old = root.with_name(f".{root.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(root, old)
    try:
        os.replace(tmp, root)
    except OSError:
        # another process put a dataset there in between: keep it if it is the one we want
        if old is not None and not root.exists():
            os.replace(old, root)
            old = None
        if not _matches(root, params):
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_demo_dataset(
    root: str | Path | None = None, *, workers: int | None = None, overwrite: bool = False, **params
) -> Path:
    """Render and write the demo dataset under ``root`` (default :func:`default_demo_root`).

    ``params`` are the fields of :class:`DemoParams` (an unknown one is a ``TypeError``).
    ``workers`` processes render and encode in parallel (default ``min(2, cpu count)``); the
    result does not depend on it. The dataset is built in a temporary folder next to ``root``
    and moved in at the end, ``manifest.json`` last. An existing ``root`` is replaced only with
    ``overwrite=True``, and only if it is empty or a demo dataset. Returns ``root``.
    """
    params = DemoParams.make(**params)
    return _write(_resolve_root(root), params, workers=workers, overwrite=overwrite)


def _write(root: Path, params: DemoParams, *, workers: int | None, overwrite: bool) -> Path:
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root} exists and is not empty; pass overwrite=True")
        if not _is_demo_dataset(root):
            raise FileExistsError(
                f"refusing to replace {root}: not empty and not a demo dataset (no {MANIFEST} written by {_GENERATOR})"
            )
    workers = _default_workers() if workers is None else int(workers)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    t0 = time.perf_counter()
    logger.info("writing the demo dataset to %s (%s)", root, params)
    try:
        plans, jobs = {}, []
        for fmt in params.formats:
            planner = _plan_ssv2 if fmt == "ssv2" else _plan_kinetics
            fmt_jobs, plans[fmt] = planner(params, tmp / fmt)
            jobs += fmt_jobs
        for d in sorted({str(Path(j.path).parent) for j in jobs}):
            Path(d).mkdir(parents=True, exist_ok=True)
        results = _run_jobs(jobs, workers)

        counts, frames = {}, {}
        offset = 0
        for fmt in params.formats:
            n = sum(len(v) for v in plans[fmt].values())
            fmt_results = results[offset : offset + n]
            fmt_jobs = jobs[offset : offset + n]
            offset += n
            if fmt == "ssv2":
                _write_ssv2_annotations(tmp / fmt, plans[fmt], fmt_results)
            else:
                _write_kinetics_annotations(tmp / fmt, plans[fmt])
            counts[fmt] = {split: len(v) for split, v in plans[fmt].items()}
            for job, (_, t) in zip(fmt_jobs, fmt_results, strict=True):
                frames[Path(job.path).relative_to(tmp).as_posix()] = t
        seconds = time.perf_counter() - t0
        manifest = {
            "generator": _GENERATOR,
            "format_version": FORMAT_VERSION,
            "params": params.key(),
            "classes": DEMO_CLASSES,
            "order_dependent": sorted(ORDER_DEPENDENT),
            "reversed_pairs": [list(p) for p in REVERSED_PAIRS],
            "appearance": APPEARANCE_CLASSES,
            "counts": counts,
            "total_clips": len(jobs),
            "total_frames": sum(frames.values()),
            "frames_per_video": frames,  # relative video path -> number of frames
            "written_by": _written_by(workers, seconds),
        }
        _write_json(tmp / MANIFEST, manifest)  # last: its presence marks a complete dataset
        _swap_in(tmp, root, params)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("wrote %d clips to %s in %.1f s", len(jobs), root, time.perf_counter() - t0)
    return root


def _written_by(workers: int, seconds: float) -> dict:
    import av

    try:
        from importlib.metadata import version

        pkg_version = version("videoattn")
    except Exception:  # not installed as a distribution
        pkg_version = "unknown"
    return {
        "package": "videoattn",
        "version": pkg_version,
        "module": _GENERATOR,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "av": av.__version__,
        "workers": workers,
        "seconds": round(seconds, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _lock(root: Path):
    """An inter-process lock for writing ``root``: ``filelock`` on ``.<name>.lock`` beside it."""
    from filelock import FileLock

    root.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(root.parent / f".{root.name}.lock")


def ensure_demo_dataset(root: str | Path | None = None, *, workers: int | None = None, **kw) -> Path:
    """Return ``root`` holding the demo dataset, writing it on first use.

    If ``root/manifest.json`` records the same parameters (``kw``: those of
    :func:`write_demo_dataset`; ``workers`` does not change the result), return at once;
    otherwise (re)write it. Safe when several processes call it at once (torchrun ranks):
    one writes while the others wait on a lock, then find the manifest and return.
    """
    root = _resolve_root(root)
    params = DemoParams.make(**kw)
    if _matches(root, params):
        return root
    with _lock(root):
        if _matches(root, params):  # another process wrote it while we waited
            return root
        return _write(root, params, workers=workers, overwrite=True)
