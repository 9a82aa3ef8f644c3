"""Clip transforms on ``(T, C, H, W)`` uint8 tensors: one random draw per clip, applied to all
of its frames (a crop that moved from frame to frame would be fake motion).

The random parameters are drawn from an injected ``numpy.random.Generator`` (the dataset
derives it from ``(seed, epoch, index)``), and the pixel work is done by
``torchvision.transforms.v2.functional``, which treats the leading dimensions as a batch.

- :class:`TrainTransform`: optional short-side resize, then TSN multi-scale crop
  (``GroupMultiScaleCrop`` of the TSN / TSM / TAM code: scales ``1, .875, .75, .66``, aspect
  distortion ``<= 1`` step, 13 fixed crop positions) or random resized crop; horizontal flip
  with a flip label map; normalisation.
- :class:`EvalTransform`: short-side resize, then a centre crop, three crops along the long
  side (the "full resolution" views of TSM's accurate protocol) or ten crops (four corners and
  centre, each also flipped); normalisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from torch import Tensor

from ..config import keyword_schema
from ..errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRAIN_CROPS = ("multiscale", "random_resized", "short_side_jitter")
EVAL_CROPS = ("center", "three", "ten")
FLIP_MODES = ("off", "on", "swap")


def resize_short(clip: Tensor, size: int) -> Tensor:
    """Resize so that the short side is ``size`` (bilinear, antialiased), ``(..., H, W)``."""
    h, w = clip.shape[-2:]
    if min(h, w) == size:
        return clip
    if h <= w:
        out = (size, max(1, int(w * size / h)))
    else:
        out = (max(1, int(h * size / w)), size)
    return F.resize(clip, list(out), antialias=True)


def normalize(clip: Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """uint8 ``(..., F*3, H, W)`` -> float32 ``(x / 255 - mean) / std``, on ``clip``'s device (``F``
    frames stacked on the channels, frame-major then RGB: each frame's RGB normalised)."""
    x = clip.to(torch.float32).div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    rgb = x.unflatten(-3, (-1, 3))  # (..., F*3, H, W) -> (..., F, 3, H, W), a view of x
    rgb.sub_(m).div_(s)
    return x


class ToDevice:
    """Batches onto ``device`` (non-blocking from pinned memory); a uint8 batch (transforms with
    ``normalize=False``, the configs' default: a quarter of the bytes through shared memory and
    PCIe) is normalised there with ``mean`` / ``std``, exactly as :func:`normalize` on the host.
    The mean and std are uploaded once, not with every batch."""

    def __init__(
        self, device: torch.device, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
    ):
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1).to(self.device)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1).to(self.device)

    def __call__(self, clips: Tensor) -> Tensor:
        clips = clips.to(self.device, non_blocking=True)
        if clips.dtype != torch.uint8:
            return clips
        x = clips.to(torch.float32).div_(255.0)
        x.unflatten(-3, (-1, 3)).sub_(self.mean).div_(self.std)  # (..., F*3, H, W) as (..., F, 3, H, W), in place
        return x


def fixed_offsets(image_w: int, image_h: int, crop_w: int, crop_h: int, *, more: bool = True) -> list[tuple[int, int]]:
    """The TSN crop positions ``(x, y)``: corners, centre and, with ``more``, the edge centres
    and the four quarter points (13 in all), on a grid of quarter steps of the free space."""
    ws, hs = (image_w - crop_w) // 4, (image_h - crop_h) // 4
    grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2)]
    if more:
        grid += [(0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
    return [(i * ws, j * hs) for i, j in grid]


def multiscale_crop_params(
    image_w: int,
    image_h: int,
    size: int,
    rng: np.random.Generator,
    *,
    scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
    max_distort: int = 1,
    fix_crop: bool = True,
    more_fix_crop: bool = True,
) -> tuple[int, int, int, int]:
    """TSN multi-scale crop: ``(x, y, w, h)`` of the region to crop (then resized to ``size``).

    Crop sides are ``int(short_side * scale)`` (snapped to ``size`` when within 2 px), width
    and height chosen independently among the scales at most ``max_distort`` steps apart; the
    position is one of :func:`fixed_offsets` (``fix_crop``) or uniform.
    """
    base = min(image_w, image_h)
    sides = [int(base * s) for s in scales]
    sides = [size if abs(s - size) < 3 else s for s in sides]
    pairs = [(w, h) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= max_distort]
    w, h = pairs[int(rng.integers(len(pairs)))]
    w, h = min(w, image_w), min(h, image_h)
    if fix_crop:
        offsets = fixed_offsets(image_w, image_h, w, h, more=more_fix_crop)
        x, y = offsets[int(rng.integers(len(offsets)))]
    else:
        x, y = int(rng.integers(0, image_w - w + 1)), int(rng.integers(0, image_h - h + 1))
    return x, y, w, h


def random_resized_crop_params(
    image_w: int,
    image_h: int,
    rng: np.random.Generator,
    *,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """Inception-style crop ``(x, y, w, h)``: area fraction in ``scale``, log-uniform aspect
    ratio in ``ratio``, 10 attempts, then the largest centred crop within ``ratio``
    (the algorithm of ``torchvision.transforms.v2.RandomResizedCrop``, with our rng)."""
    area = image_w * image_h
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= image_w and 0 < h <= image_h:
            return int(rng.integers(0, image_w - w + 1)), int(rng.integers(0, image_h - h + 1)), w, h
    in_ratio = image_w / image_h
    if in_ratio < min(ratio):
        w, h = image_w, int(round(image_w / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(image_h * max(ratio))), image_h
    else:
        w, h = image_w, image_h
    return (image_w - w) // 2, (image_h - h) // 2, w, h


class TrainTransform:
    """Training augmentation of one clip ``(T, 3, H, W)`` uint8 -> ``(T, 3, size, size)`` float32
    (uint8 with ``normalize=False``: the consumer normalises on its device, :class:`ToDevice`).

    ``flip``: ``"off"``; ``"on"`` (plain flip, for datasets without direction classes); or
    ``"swap"``, a flip that also maps the label through ``flip_map`` (Something-Something's
    "left to right" <-> "right to left" classes; see ``annotations.flip_label_map``).
    """

    def __init__(
        self,
        *,
        size: int = 224,
        crop: str = "multiscale",
        resize: int | None = None,
        scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
        max_distort: int = 1,
        fix_crop: bool = True,
        more_fix_crop: bool = True,
        area: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        jitter: Sequence[int] = (224, 340),
        flip: str = "off",
        flip_map: Sequence[int] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        normalize: bool = True,
    ) -> None:
        if crop not in TRAIN_CROPS:
            raise ConfigError(f"train crop {crop!r} is not one of {TRAIN_CROPS}")
        if flip not in FLIP_MODES:
            raise ConfigError(f"flip {flip!r} is not one of {FLIP_MODES}")
        if crop == "short_side_jitter" and not (len(jitter) == 2 and size <= jitter[0] <= jitter[1]):
            raise ConfigError(f"train jitter {list(jitter)}: expected [min, max] with size ({size}) <= min <= max")
        if flip == "swap" and flip_map is None:
            raise ConfigError("flip='swap' needs the flip label map of the dataset's classes")
        self.size, self.crop, self.resize = size, crop, resize
        self.scales, self.max_distort = tuple(scales), max_distort
        self.fix_crop, self.more_fix_crop = fix_crop, more_fix_crop
        self.area, self.ratio, self.jitter = tuple(area), tuple(ratio), tuple(jitter)
        self.flip, self.flip_map = flip, (list(flip_map) if flip_map is not None else None)
        self.mean, self.std, self.normalize = tuple(mean), tuple(std), normalize

    def __call__(self, clip: Tensor, label: int, rng: np.random.Generator) -> tuple[Tensor, int]:
        if self.resize:
            clip = resize_short(clip, self.resize)
        if self.crop == "short_side_jitter":  # one short side and one position for every frame of the clip
            clip = resize_short(clip, int(rng.integers(self.jitter[0], self.jitter[1] + 1)))
            h, w = clip.shape[-2:]
            y, x = int(rng.integers(0, h - self.size + 1)), int(rng.integers(0, w - self.size + 1))
            clip = clip[..., y : y + self.size, x : x + self.size]  # (T, 3, S, S)
            return self._flip_and_normalize(clip, label, rng)
        h, w = clip.shape[-2:]
        if self.crop == "multiscale":
            x, y, cw, ch = multiscale_crop_params(
                w,
                h,
                self.size,
                rng,
                scales=self.scales,
                max_distort=self.max_distort,
                fix_crop=self.fix_crop,
                more_fix_crop=self.more_fix_crop,
            )
        else:
            x, y, cw, ch = random_resized_crop_params(w, h, rng, scale=self.area, ratio=self.ratio)
        clip = F.resized_crop(clip, y, x, ch, cw, [self.size, self.size], antialias=True)  # (T, 3, S, S)
        return self._flip_and_normalize(clip, label, rng)

    def _flip_and_normalize(self, clip: Tensor, label: int, rng: np.random.Generator) -> tuple[Tensor, int]:
        if self.flip != "off" and rng.random() < 0.5:
            clip = F.horizontal_flip(clip)
            if self.flip == "swap" and label >= 0:
                label = self.flip_map[label]
        return (normalize(clip, self.mean, self.std) if self.normalize else clip), label  # same layout either way

    def __repr__(self) -> str:
        return f"TrainTransform(size={self.size}, crop={self.crop!r}, resize={self.resize}, flip={self.flip!r})"


class EvalTransform:
    """Test views of a clip: ``(..., T, 3, H, W)`` uint8 -> ``(..., V_crop, T, 3, size, size)``
    float32 (uint8 with ``normalize=False``), or ``(..., T, 3, size, size)`` for the single centre
    crop when ``squeeze``.

    ``resize``: short side before cropping (``None`` keeps the decoded size). ``crops``:
    ``"center"``; ``"three"``: three ``size``-square crops at the start, end and centre of the long
    side (TSM's full-resolution three-crop, with ``size == resize``); ``"ten"``: the four corners
    and the centre on TSN's quarter-step grid, each followed by its horizontal flip. Ten-crop
    cannot be used with direction classes (flipped views would vote for the mirrored class).
    """

    def __init__(
        self,
        *,
        size: int = 224,
        resize: int | None = 256,
        crops: str = "center",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        normalize: bool = True,
    ) -> None:
        if crops not in EVAL_CROPS:
            raise ConfigError(f"test crops {crops!r} is not one of {EVAL_CROPS}")
        self.size, self.resize, self.crops = size, resize, crops
        self.mean, self.std, self.normalize = tuple(mean), tuple(std), normalize

    @property
    def num_crops(self) -> int:
        return {"center": 1, "three": 3, "ten": 10}[self.crops]

    def offsets(self, image_w: int, image_h: int) -> list[tuple[int, int]]:
        """Top-left ``(x, y)`` of every crop."""
        s = self.size
        if self.crops == "center":
            return [(int(round((image_w - s) / 2)), int(round((image_h - s) / 2)))]
        if self.crops == "three":
            cx, cy = (image_w - s) // 2, (image_h - s) // 2
            if image_w >= image_h:
                return [(0, cy), (image_w - s, cy), (cx, cy)]
            return [(cx, 0), (cx, image_h - s), (cx, cy)]
        return fixed_offsets(image_w, image_h, s, s, more=False)

    def __call__(self, clip: Tensor, *, squeeze: bool = False) -> Tensor:
        if self.resize:
            clip = resize_short(clip, self.resize)
        h, w = clip.shape[-2:]
        if min(h, w) < self.size:
            raise ConfigError(f"frames of {h}x{w} are smaller than the {self.size}px test crop; set resize >= size")
        views = []
        for x, y in self.offsets(w, h):
            view = clip[..., y : y + self.size, x : x + self.size]  # (..., T, 3, S, S)
            views.append(view)
            if self.crops == "ten":
                views.append(F.horizontal_flip(view))
        out = torch.stack(views, dim=-5)  # V_crop x (..., T, 3, S, S) -> (..., V_crop, T, 3, S, S)
        if squeeze:
            if self.num_crops != 1:
                raise ValueError("squeeze needs a single crop")
            out = out.squeeze(-5)  # (..., 1, T, 3, S, S) -> (..., T, 3, S, S)
        return normalize(out, self.mean, self.std) if self.normalize else out

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size}, resize={self.resize}, crops={self.crops!r})"


# ``data.train_transform`` / ``data.eval_transform``'s schemas: the transforms' keywords. flip: auto in a
# config (a flip that swaps mirrored classes, decided from the class names); normalize: false: batches
# travel as uint8 (a quarter of the bytes through shared memory and PCIe) and are normalised on the
# device, bit for bit the host's normalisation
TrainTransformConfig = keyword_schema(
    TrainTransform, name="TrainTransformConfig", exclude=("flip_map",), defaults={"flip": "auto", "normalize": False}
)
EvalTransformConfig = keyword_schema(
    EvalTransform, name="EvalTransformConfig", exclude=("crops",), defaults={"normalize": False}
)
