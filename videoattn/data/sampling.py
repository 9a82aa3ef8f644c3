"""Frame index samplers: pure functions of ``(num_frames, num_segments, rng)``.

Every sampler returns 0-based int64 indices, never out of range, for any ``num_frames >= 1``.
Randomness comes only from the ``numpy.random.Generator`` passed in (``rng=None`` is the
deterministic validation rule), so a clip is a function of ``(seed, epoch, index)`` whatever the
number of DataLoader workers.

By default every rule is the official code's, index for index (``tests/test_sampling.py`` checks
the deterministic ones against tables of the official samplers' output for ``T`` = 8 and 16 and
every ``num_frames`` from 1 to 400):

- TSM: mit-han-lab/temporal-shift-module@1f6a834 ``ops/dataset.py``, ``TSNDataSet._sample_indices``
  (training), ``_get_val_indices``, ``_get_test_indices`` (with ``twice_sample`` / ``dense_sample``);
- TAM: liu-zhy/temporal-adaptive-module@5fcb46f ``ops/dataset.py``, the same methods, the test
  views picked by ``test_sample`` (``uniform-k``, ``dense-k``);
- ACTION-Net: V-Sense/ACTION-Net@3122b11 ``models/temporal_transforms.py``,
  ``TemporalUniformCrop_val`` / ``TemporalUniformCrop_test`` (the same indices as TSM's);
- TDN: MCG-NJU/TDN@a7c7e9b ``ops/dataset.py``, ``TSNDataSet._sample_indices``,
  ``_get_val_indices`` / ``_get_test_indices`` with ``new_length = 5``: ``F`` consecutive frames per
  segment (:func:`snippet_sample`, ``frames_per_segment``; ``T * F`` indices, segment after segment);
- TAda2D: alibaba-mmai-research/TAdaConv@75b7839 ``tadaconv/datasets/base/base_dataset.py``,
  ``_segment_based_sampling`` (Something-Something: :func:`rounded_segment_sample`) and
  ``_interval_based_sampling`` (Kinetics, 30 fps: :func:`interval_sample`).

The official files number frames from 1 (``img_00001.jpg``; ACTION-Net from 0): the indices here
are those numbers less one. Two deviations can be chosen by name, neither is the default:

- ``short="spread"``: the official segment rules give a still clip of frame 0 to a video of at
  most ``T`` frames at validation (fewer than ``T`` in training), although the 1-clip test rule
  of the same code spreads the same video's frames in order; and TAM's ``uniform-k`` test clips
  wrap around to the video's end for ``num_frames < T``. ``"spread"`` takes the centre of each of
  ``T`` fractional segments instead (the 1-clip test rule: every frame, in order) and starts
  TAM's clips at frame 0 or later, so that validation sees what test sees and no clip runs
  backwards.
- ``loop=False``: the official dense clips wrap around (``% num_frames``) in a video shorter
  than the 64-frame window, so that the clip jumps back to the start, out of order; ``False``
  clamps the indices to the last frame instead (the project's former default, kept for the
  checkpoints trained with it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import keyword_schema
from ..errors import ConfigError

SAMPLING_MODES = ("segment", "dense")
SAMPLING_RULES = ("tsm", "tam", "action", "tdn", "tada")  # whose official rules / test views
SHORT_VIDEO_RULES = ("official", "spread")  # segment mode, videos of at most T frames
DENSE_WINDOW = 64  # frames a dense clip spans in the official code, whatever T: stride 64 // T


def _check(num_frames: int, num_segments: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} {value!r} is not one of {allowed}")


def _centres(num_frames: int, num_segments: int) -> np.ndarray:
    """``int(tick / 2 + tick * t)``, ``tick = num_frames / T``: the centre of each of ``T``
    fractional segments (official ``_get_test_indices``; in order, every frame for ``n < T``)."""
    tick = num_frames / num_segments
    return (tick / 2.0 + tick * np.arange(num_segments)).astype(np.int64)


def segment_sample(
    num_frames: int,
    num_segments: int,
    *,
    rng: np.random.Generator | None = None,
    short: str = "official",
) -> np.ndarray:
    """TSN segment sampling: one frame from each of ``T`` segments, ``(T,)``.

    Training (``rng`` given; TSM / TAM ``_sample_indices``): ``T`` segments of
    ``length = num_frames // T`` frames and one uniform random offset in each,
    ``t * length + U{0, length - 1}``, so that ``num_frames == T`` gives ``0..T-1`` and the last
    ``num_frames % T`` frames are never drawn. ``num_frames < T`` (empty segments): all zeros.

    Validation (``rng=None``; TSM / TAM ``_get_val_indices``, ACTION-Net
    ``TemporalUniformCrop_val``): the centres ``int(tick / 2 + tick * t)``, ``tick = num_frames / T``,
    for ``num_frames > T``; all zeros for ``num_frames <= T`` (unlike the test rule, see
    :func:`segment_test_clips`).

    ``short="spread"`` (a deviation, see the module docstring) replaces the all-zeros clips by
    the centres, so that every frame of a short video is seen in order.
    """
    _check(num_frames, num_segments)
    _choice("short", short, SHORT_VIDEO_RULES)
    if rng is None:
        if num_frames > num_segments or short == "spread":
            return _centres(num_frames, num_segments)
        return np.zeros(num_segments, dtype=np.int64)
    length = num_frames // num_segments
    if length == 0:
        return _centres(num_frames, num_segments) if short == "spread" else np.zeros(num_segments, dtype=np.int64)
    return np.arange(num_segments, dtype=np.int64) * length + rng.integers(0, length, num_segments)


def segment_test_clips(
    num_frames: int,
    num_segments: int,
    *,
    num_clips: int = 1,
    twice_sample: bool = False,
    rules: str = "tsm",
    short: str = "official",
) -> np.ndarray:
    """Deterministic test views for segment sampling, ``(num_clips, T)``; ``tick = num_frames / T``.

    - ``num_clips=1``: the centres ``int(tick / 2 + tick * t)`` for every ``num_frames`` (TSM
      ``_get_test_indices``, TAM ``uniform-1``, ACTION-Net ``TemporalUniformCrop_test``).
    - ``twice_sample=True`` (``num_clips=2``; TSM ``--twice_sample``, its Something-Something
      "accurate" protocol): the centres, then the segment starts ``int(tick * t)``.
    - ``rules="tam"``, ``num_clips=k >= 2`` (TAM ``_get_test_indices`` with ``test_sample="uniform-k"``;
      ``uniform-2`` is its SSv2 script's protocol): clip ``c`` starts at
      ``s_c = floor(linspace(0, tick - 1, k))[c]`` and takes ``int(s_c + tick * t) % num_frames``.
      For ``num_frames < T``, ``s_c`` can be -1, so that the clip's first frame is the video's
      last; ``short="spread"`` starts the clips at ``max(tick - 1, 0)`` at the latest instead.
    - ``rules="tsm"`` / ``"action"``, ``num_clips=k >= 2`` without ``twice_sample``: no official
      deterministic rule (TSM has none; ACTION-Net draws its test clips at random); clip ``c``
      takes the frame at fraction ``(c + 0.5) / k`` of every segment, ``int(tick * (t + (c + 0.5) / k))``.
    """
    _check(num_frames, num_segments)
    _choice("rules", rules, SAMPLING_RULES)
    _choice("short", short, SHORT_VIDEO_RULES)
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if twice_sample and num_clips != 2:
        raise ValueError(f"twice_sample produces 2 clips, but num_clips={num_clips}")
    tick = num_frames / num_segments
    steps = tick * np.arange(num_segments)  # (T,) segment starts, fractional
    if num_clips == 1:
        return _centres(num_frames, num_segments)[None]
    if twice_sample:
        return np.stack([_centres(num_frames, num_segments), steps.astype(np.int64)])
    if rules == "tam":
        last = max(tick - 1.0, 0.0) if short == "spread" else tick - 1.0
        starts = np.floor(np.linspace(0.0, last, num_clips))  # numpy's linspace(..., dtype=int) floors
        idx = (starts[:, None] + steps[None, :]).astype(np.int64)  # int(): truncation towards 0
        return idx % num_frames
    fractions = (np.arange(num_clips) + 0.5) / num_clips
    idx = (tick * (np.arange(num_segments)[None, :] + fractions[:, None])).astype(np.int64)
    return np.minimum(idx, num_frames - 1)


def dense_geometry(num_segments: int, stride: int | None = None) -> tuple[int, int]:
    """``(stride, window)`` of a dense clip: ``stride=None`` is the official rule, ``64 // T``
    frames apart within a 64-frame window (TSM / TAM ``t_stride = 64 // num_segments``; at least
    1, and a window of at least ``T`` frames for ``T > 64``); a given ``stride`` spans ``T * stride``
    frames (64 when ``stride = 64 // T`` and ``T`` divides 64)."""
    if stride is None:
        step = max(1, DENSE_WINDOW // num_segments)
        return step, max(DENSE_WINDOW, num_segments * step)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return stride, num_segments * stride


def _dense_positions(num_frames: int, num_segments: int, stride: int | None) -> tuple[int, int]:
    """``(stride, positions)``: the official ``sample_pos = max(1, 1 + num_frames - window)``."""
    step, window = dense_geometry(num_segments, stride)
    return step, max(1, num_frames - window + 1)


def _dense_from(starts: np.ndarray, num_frames: int, num_segments: int, stride: int, loop: bool) -> np.ndarray:
    idx = starts[:, None] + np.arange(num_segments, dtype=np.int64)[None, :] * stride  # (clips, T)
    return idx % num_frames if loop else np.minimum(idx, num_frames - 1)


def dense_sample(
    num_frames: int,
    num_segments: int,
    *,
    stride: int | None = None,
    rng: np.random.Generator | None = None,
    loop: bool = True,
) -> np.ndarray:
    """Dense sampling (Kinetics): ``T`` frames ``stride`` apart from one window, ``(T,)``.

    ``start + t * stride`` (``stride=None``: ``64 // T``, see :func:`dense_geometry`), wrapped
    modulo ``num_frames`` (``loop=False``: clamped to the last frame), with ``positions =
    max(1, num_frames - window + 1)`` possible starts. Training (``rng`` given; TSM / TAM
    ``_sample_indices`` with ``dense_sample``): the start is drawn uniformly from
    ``[0, positions - 1)``, numpy's ``randint(0, sample_pos - 1)``: the last start is never drawn
    (and ``positions <= 2`` always gives 0). Validation (``rng=None``; TAM ``_get_val_indices``
    with ``dense_sample``, TAM ``dense-1``): the centre start ``positions // 2``. TSM's
    validation draws the start at random (no fixed clip); here it is TAM's centre too.
    """
    _check(num_frames, num_segments)
    step, positions = _dense_positions(num_frames, num_segments, stride)
    if rng is None:
        start = positions // 2
    else:
        start = int(rng.integers(0, max(1, positions - 1)))
    return _dense_from(np.array([start], dtype=np.int64), num_frames, num_segments, step, loop)[0]


def dense_test_clips(
    num_frames: int,
    num_segments: int,
    *,
    stride: int | None = None,
    num_clips: int = 10,
    loop: bool = True,
) -> np.ndarray:
    """``num_clips`` dense windows, ``(num_clips, T)``, indices as in :func:`dense_sample`.

    ``num_clips=k >= 2`` (TSM ``_get_test_indices`` with ``dense_sample``, always 10 clips there;
    TAM ``dense-k``): starts ``floor(linspace(0, positions - 1, k))``. ``num_clips=1`` (TAM
    ``dense-1``): the centre start ``positions // 2``, the validation clip.
    """
    _check(num_frames, num_segments)
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    step, positions = _dense_positions(num_frames, num_segments, stride)
    if num_clips == 1:
        starts = np.array([positions // 2], dtype=np.int64)
    else:
        starts = np.floor(np.linspace(0.0, positions - 1, num_clips)).astype(np.int64)
    return _dense_from(starts, num_frames, num_segments, step, loop)


# ----------------------------------------------------------------------------- TDN: snippets


def _expand_snippets(starts: np.ndarray, num_frames: int, frames_per_segment: int) -> np.ndarray:
    """``start .. start + F - 1`` for each start, clamped at the last frame: ``(..., T) -> (..., T*F)``,
    segment after segment (TDN's ``if p < num_frames: p += 1``)."""
    idx = starts[..., None] + np.arange(frames_per_segment, dtype=np.int64)  # (..., T, F)
    return np.minimum(idx, num_frames - 1).reshape(*starts.shape[:-1], -1)  # (..., T*F)


def snippet_sample(
    num_frames: int,
    num_segments: int,
    *,
    frames_per_segment: int = 5,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """TDN's sampling: ``F = frames_per_segment`` consecutive frames from each of ``T`` segments,
    ``(T*F,)``, segment after segment (frames ``s_i .. s_i + F - 1``, clamped at the last frame).

    The starts ``s_i`` (``n = num_frames``): training (``rng`` given; TDN ``_sample_indices``):
    ``d = (n - F + 1) // T``; ``s_i = i * d + U{0, d - 1}`` if ``d > 0``, else ``T`` sorted draws
    from ``U{0, n - F}`` if ``n > T``, else all 0. Validation and the 1-clip test (``rng=None``;
    ``_get_val_indices`` == ``_get_test_indices``): ``tick = (n - F + 1) / T``,
    ``s_i = int(tick / 2 + i * tick)`` if ``n > T + F - 1``, else all 0. With ``F = 1`` both are
    TSM's rules (:func:`segment_sample`).
    """
    _check(num_frames, num_segments)
    if frames_per_segment < 1:
        raise ValueError(f"frames_per_segment must be >= 1, got {frames_per_segment}")
    span = num_frames - frames_per_segment + 1  # the possible starts, 0 .. n - F
    if rng is None:
        if num_frames > num_segments + frames_per_segment - 1:
            tick = span / num_segments
            starts = (tick / 2.0 + tick * np.arange(num_segments)).astype(np.int64)
        else:
            starts = np.zeros(num_segments, dtype=np.int64)
    else:
        length = span // num_segments
        if length > 0:
            starts = np.arange(num_segments, dtype=np.int64) * length + rng.integers(0, length, num_segments)
        elif num_frames > num_segments:
            starts = np.sort(rng.integers(0, max(span, 1), num_segments))
        else:
            starts = np.zeros(num_segments, dtype=np.int64)
    return _expand_snippets(starts, num_frames, frames_per_segment)


def snippet_test_clips(
    num_frames: int, num_segments: int, *, frames_per_segment: int = 5, num_clips: int = 1
) -> np.ndarray:
    """TDN's test views, ``(num_clips, T*F)``. ``num_clips=1``: the validation snippets
    (:func:`snippet_sample`, TDN's Something-Something protocol). ``num_clips=k >= 2``: the official
    Kinetics test draws its 10 clips at random (training-style); here clip ``c`` starts each segment
    at fraction ``(c + 0.5) / k`` of it, ``int(tick * (i + (c + 0.5) / k))`` with
    ``tick = (n - F + 1) / T`` (all 0 for ``n <= T + F - 1``), deterministic and spread evenly."""
    _check(num_frames, num_segments)
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if num_clips == 1:
        return snippet_sample(num_frames, num_segments, frames_per_segment=frames_per_segment)[None]
    if frames_per_segment < 1:
        raise ValueError(f"frames_per_segment must be >= 1, got {frames_per_segment}")
    if num_frames > num_segments + frames_per_segment - 1:
        tick = (num_frames - frames_per_segment + 1) / num_segments
        fractions = (np.arange(num_clips) + 0.5) / num_clips
        starts = (tick * (np.arange(num_segments)[None, :] + fractions[:, None])).astype(np.int64)  # (k, T)
    else:
        starts = np.zeros((num_clips, num_segments), dtype=np.int64)
    return _expand_snippets(starts, num_frames, frames_per_segment)


# ----------------------------------------------------------------------------- TAda2D


def _edges(num_frames: int, num_segments: int) -> torch.Tensor:
    """``e_i = i * n / T``, ``i = 0..T``, as the official float32 ``torch.linspace(0, n, T + 1)``."""
    return torch.linspace(0, num_frames, num_segments + 1, dtype=torch.float32)


def _round_clamp(x: torch.Tensor, num_frames: int) -> np.ndarray:
    """``torch.round`` (half to even) then clamped to ``[0, n - 1]``, as int64 indices."""
    return torch.clamp(torch.round(x), 0, num_frames - 1).to(torch.int64).numpy()


def rounded_segment_sample(num_frames: int, num_segments: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """TAda2D's segment-based sampling (Something-Something), ``(T,)``: the float32 edges
    ``e_i = i * n / T``; training (``rng`` given): ``round(U(e_i, e_{i+1}))``; validation and the
    1-clip test (``rng=None``): the rounded midpoints ``round((e_i + e_{i+1}) / 2)``; rounding
    half to even (``torch.round``), clamped to ``[0, n - 1]``. Unlike TSN's rule a short video
    gives its frames in order, with repeats."""
    _check(num_frames, num_segments)
    e = _edges(num_frames, num_segments)
    if rng is None:
        return _round_clamp((e[:-1] + e[1:]) / 2, num_frames)
    u = torch.from_numpy(rng.random(num_segments).astype(np.float32))
    return _round_clamp(e[:-1] + u * (e[1:] - e[:-1]), num_frames)


def rounded_segment_test_clips(num_frames: int, num_segments: int, *, num_clips: int = 1) -> np.ndarray:
    """TAda2D's segment-based test views, ``(num_clips, T)``: ``num_clips=1``, the midpoints;
    ``num_clips=2`` (its SSv2 protocol), the midpoints, then the segment ends ``e_{i+1}``. In
    general clip ``c`` of ``k >= 2`` takes ``round(e_i + (c + 1) / k * (e_{i+1} - e_i))`` (``k = 2``
    gives the official two; larger ``k`` is this toolkit's extension)."""
    _check(num_frames, num_segments)
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if num_clips == 1:
        return rounded_segment_sample(num_frames, num_segments)[None]
    e = _edges(num_frames, num_segments)
    if num_clips == 2:  # the official expressions, float32
        return np.stack([_round_clamp((e[:-1] + e[1:]) / 2, num_frames), _round_clamp(e[1:], num_frames)])
    fractions = torch.arange(1, num_clips + 1, dtype=torch.float32)[:, None] / num_clips  # (k, 1)
    return _round_clamp(e[None, :-1] + fractions * (e[1:] - e[:-1])[None], num_frames)


TADA_INTERVAL_RATES = {8: 8, 16: 5}  # the official Kinetics configs: "8x8" and "16x5"


def interval_rate(num_segments: int, rate: int | None = None) -> int:
    """The interval-based sampling rate: ``rate``, or the official one for ``T`` (8 for ``T = 8``,
    5 for ``T = 16``; ``max(1, 64 // T)`` for other ``T``, this toolkit's choice)."""
    if rate is None:
        return TADA_INTERVAL_RATES.get(num_segments, max(1, DENSE_WINDOW // num_segments))
    if rate < 1:
        raise ValueError(f"rate must be >= 1, got {rate}")
    return rate


def _interval_from(start: float, num_frames: int, num_segments: int, rate: int) -> np.ndarray:
    """``floor(linspace(start, start + T * rate - 1, T))`` in float32, clamped to ``[0, n - 1]``."""
    idx = torch.linspace(start, start + num_segments * rate - 1, num_segments, dtype=torch.float32)
    return torch.clamp(idx, 0, num_frames - 1).to(torch.int64).numpy()  # truncation: floor, idx >= 0


def interval_sample(
    num_frames: int, num_segments: int, *, rate: int | None = None, rng: np.random.Generator | None = None
) -> np.ndarray:
    """TAda2D's interval-based sampling (Kinetics at 30 fps), ``(T,)``: ``T`` frames evenly over a
    window of ``L = T * rate`` frames, ``floor(linspace(s, s + L - 1, T))`` (float32; for 8x8 the
    frames are 9 apart), clamped to ``[0, n - 1]``, with ``s`` in ``[0, max(n - L, 0)]``: training
    (``rng`` given) uniform, validation (``rng=None``) the centre ``max(n - L, 0) / 2``."""
    _check(num_frames, num_segments)
    rate = interval_rate(num_segments, rate)
    last = max(num_frames - num_segments * rate, 0)
    start = last / 2 if rng is None else float(rng.uniform(0, last))
    return _interval_from(start, num_frames, num_segments, rate)


def interval_test_clips(
    num_frames: int, num_segments: int, *, rate: int | None = None, num_clips: int = 10
) -> np.ndarray:
    """TAda2D's Kinetics test clips, ``(num_clips, T)``: window starts ``max(n - L, 0) * c / k``
    for ``c = 0..k-1`` (``k = 1``: the centre, the validation clip), frames as in
    :func:`interval_sample`."""
    _check(num_frames, num_segments)
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    rate = interval_rate(num_segments, rate)
    if num_clips == 1:
        return interval_sample(num_frames, num_segments, rate=rate)[None]
    last = max(num_frames - num_segments * rate, 0)
    return np.stack([_interval_from(last * c / num_clips, num_frames, num_segments, rate) for c in range(num_clips)])


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """How a dataset picks the frames of a clip (the ``data.sampling`` config group).

    ``mode``: ``"segment"`` (TSN, Something-Something) or ``"dense"`` (Kinetics). ``rules``: whose
    official rules, ``"tsm"`` | ``"tam"`` | ``"action"`` (the three give the same training,
    validation and 1-clip test indices; ``"tam"`` makes ``num_clips = k >= 2`` segment clips TAM's
    ``uniform-k``, see :func:`segment_test_clips`), ``"tdn"`` (segment mode only: snippets of
    ``frames_per_segment`` consecutive frames, :func:`snippet_sample`) or ``"tada"`` (segment mode:
    :func:`rounded_segment_sample`; dense mode: TAda2D's interval-based sampling,
    :func:`interval_sample`, ``stride`` being its rate). ``stride``: the dense stride, ``None`` = the
    official ``64 // T`` (8 for ``T = 8``, 4 for ``T = 16``; ``"tada"``: the rate, ``None`` = 8 for
    ``T = 8``, 5 for ``T = 16``). ``short``: ``"official"`` | ``"spread"``, segment clips of short
    videos; ``loop``: dense clips of short videos wrap around (official) or are clamped (both
    deviations of the TSM / TAM / ACTION rules: see the module docstring). ``frames_per_segment``:
    ``F`` frames per segment, ``> 1`` with ``rules="tdn"`` only (TDN: 5); the clip is then ``T*F``
    indices, segment after segment. ``num_clips`` / ``twice_sample``: the test views (from the
    config's ``data.test``).

    Shapes: :meth:`train` and :meth:`val` give ``(T*F,)``, :meth:`test` ``(num_clips, T*F)``.

    The official protocols (``T`` = ``num_segments``; defaults left out):

    - TSM / TAM / ACTION-Net validation: ``Sampling(num_segments=T).val``; TAM Kinetics
      (dense): ``Sampling(num_segments=T, mode="dense").val``.
    - 1-clip test (TSM "efficient" and Kinetics uniform, TAM ``uniform-1``, ACTION-Net):
      ``Sampling(num_segments=T).test``.
    - TSM "accurate" (SSv1/v2): ``Sampling(num_segments=T, num_clips=2, twice_sample=True).test``.
    - TAM SSv2 ``uniform-2``: ``Sampling(num_segments=T, rules="tam", num_clips=2).test``.
    - TSM / TAM Kinetics dense 10 clips: ``Sampling(num_segments=T, mode="dense", num_clips=10).test``;
      TAM ``dense-1``: ``num_clips=1``.
    - TDN validation and test (SSv1/v2): ``Sampling(num_segments=T, rules="tdn", frames_per_segment=5).val``
      / ``.test``.
    - TAda2D SSv2 2 clips: ``Sampling(num_segments=T, rules="tada", num_clips=2).test``; Kinetics
      10 clips (8x8, 16x5): ``Sampling(num_segments=T, rules="tada", mode="dense", num_clips=10).test``.
    """

    num_segments: int
    mode: str = "segment"
    rules: str = "tsm"
    stride: int | None = None
    short: str = "official"
    loop: bool = True
    frames_per_segment: int = 1
    num_clips: int = 1
    twice_sample: bool = False

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("sampling mode", self.mode, SAMPLING_MODES),
            ("sampling rules", self.rules, SAMPLING_RULES),
            ("sampling short", self.short, SHORT_VIDEO_RULES),
        ):
            if value not in allowed:
                raise ConfigError(f"{name} {value!r} is not one of {allowed}")
        if self.mode == "dense" and self.twice_sample:
            raise ConfigError("twice_sample applies to segment sampling only")
        # checked here, once, so that a bad setting fails at construction instead of being
        # taken, video after video, for an unreadable file
        if (
            self.num_segments < 1
            or (self.stride is not None and self.stride < 1)
            or self.num_clips < 1
            or self.frames_per_segment < 1
        ):
            raise ConfigError(
                f"sampling needs num_segments, stride (or null: 64 // T), num_clips and frames_per_segment >= 1, "
                f"got {self.num_segments}, {self.stride}, {self.num_clips}, {self.frames_per_segment}"
            )
        if self.twice_sample and self.num_clips != 2:
            raise ConfigError(f"twice_sample produces 2 clips, but num_clips={self.num_clips}")
        if self.twice_sample and self.rules in ("tdn", "tada"):
            raise ConfigError(
                f"twice_sample is TSM's protocol; sampling rules {self.rules!r} have their own test clips"
            )
        if self.rules == "tdn" and self.mode != "segment":
            raise ConfigError("sampling rules 'tdn' sample segments (mode: segment); TDN has no dense sampling")
        if self.frames_per_segment > 1 and self.rules != "tdn":
            raise ConfigError(
                f"frames_per_segment={self.frames_per_segment} needs sampling rules 'tdn' (consecutive frames "
                f"per segment); rules {self.rules!r} take one frame per segment"
            )

    def train(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """Random training indices, ``(T*F,)``."""
        if self.rules == "tdn":
            return snippet_sample(num_frames, self.num_segments, frames_per_segment=self.frames_per_segment, rng=rng)
        if self.rules == "tada":
            if self.mode == "dense":
                return interval_sample(num_frames, self.num_segments, rate=self.stride, rng=rng)
            return rounded_segment_sample(num_frames, self.num_segments, rng=rng)
        if self.mode == "dense":
            return dense_sample(num_frames, self.num_segments, stride=self.stride, rng=rng, loop=self.loop)
        return segment_sample(num_frames, self.num_segments, rng=rng, short=self.short)

    def val(self, num_frames: int) -> np.ndarray:
        """The deterministic validation clip, ``(T*F,)``: segment centres, or the centre window."""
        if self.rules == "tdn":
            return snippet_sample(num_frames, self.num_segments, frames_per_segment=self.frames_per_segment)
        if self.rules == "tada":
            if self.mode == "dense":
                return interval_sample(num_frames, self.num_segments, rate=self.stride)
            return rounded_segment_sample(num_frames, self.num_segments)
        if self.mode == "dense":
            return dense_sample(num_frames, self.num_segments, stride=self.stride, loop=self.loop)
        return segment_sample(num_frames, self.num_segments, short=self.short)

    def test(self, num_frames: int) -> np.ndarray:
        """All test clips, ``(num_clips, T*F)``."""
        if self.rules == "tdn":
            return snippet_test_clips(
                num_frames, self.num_segments, frames_per_segment=self.frames_per_segment, num_clips=self.num_clips
            )
        if self.rules == "tada":
            if self.mode == "dense":
                return interval_test_clips(num_frames, self.num_segments, rate=self.stride, num_clips=self.num_clips)
            return rounded_segment_test_clips(num_frames, self.num_segments, num_clips=self.num_clips)
        if self.mode == "dense":
            return dense_test_clips(
                num_frames, self.num_segments, stride=self.stride, num_clips=self.num_clips, loop=self.loop
            )
        return segment_test_clips(
            num_frames,
            self.num_segments,
            num_clips=self.num_clips,
            twice_sample=self.twice_sample,
            rules=self.rules,
            short=self.short,
        )


# ``data.sampling``'s schema: Sampling's keywords (num_segments is the top-level one; the test views: data.test)
SamplingConfig = keyword_schema(Sampling, name="SamplingConfig", exclude=("num_segments", "num_clips", "twice_sample"))
