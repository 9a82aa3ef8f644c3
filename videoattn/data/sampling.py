"""Frame index samplers: pure functions of ``(num_frames, num_segments, rng)``.

Every sampler returns 0-based int64 indices, never out of range, for any ``num_frames >= 1``.
Randomness comes only from the ``numpy.random.Generator`` passed in (``rng=None`` is the
deterministic test-time rule), so a clip is a function of ``(seed, epoch, index)`` whatever the
number of DataLoader workers.

The rules are those of the official TSN / TSM / TAM data loaders
(``TSNDataSet._sample_indices`` / ``_get_val_indices`` / ``_get_test_indices`` /
dense sampling), except where those produce degenerate or out-of-order clips for videos
shorter than the clip; each such case is noted in the function's docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

SAMPLING_MODES = ("segment", "dense")


def _check(num_frames: int, num_segments: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")


def _spread(num_frames: int, num_segments: int) -> np.ndarray:
    """``T`` monotone indices covering ``num_frames < T`` frames in order: ``floor(t * n / T)``."""
    return np.arange(num_segments, dtype=np.int64) * num_frames // num_segments


def segment_sample(num_frames: int, num_segments: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """TSN segment sampling: one frame from each of ``T`` equal segments, ``(T,)``.

    Training (``rng`` given): a random offset in each segment of length ``num_frames // T``
    (TSM ``_sample_indices``). Test (``rng=None``): the centre of each of ``T`` segments of
    fractional length ``num_frames / T`` (TSM ``_get_val_indices`` / ``_get_test_indices``).

    For ``num_frames < T`` the official code returns all zeros (a still clip); here the
    frames are spread in order, ``floor(t * num_frames / T)``, so every frame is seen.
    """
    _check(num_frames, num_segments)
    if num_frames < num_segments:
        return _spread(num_frames, num_segments)
    if rng is None:
        tick = num_frames / num_segments
        return (tick / 2.0 + tick * np.arange(num_segments)).astype(np.int64)
    length = num_frames // num_segments
    return np.arange(num_segments, dtype=np.int64) * length + rng.integers(0, length, num_segments)


def segment_test_clips(
    num_frames: int, num_segments: int, *, num_clips: int = 1, twice_sample: bool = False
) -> np.ndarray:
    """Deterministic multi-clip test views for segment sampling, ``(num_clips, T)``.

    Clip ``c`` takes the frame at fraction ``(c + 0.5) / num_clips`` of every segment, so
    ``num_clips=1`` is the centre rule of :func:`segment_sample`. ``twice_sample=True`` is the
    TSM ``--twice_sample`` protocol (the SSv2 "2 clips" views): the centre of every segment and
    the start of every segment, in that order (``num_clips`` must then be 2).
    """
    _check(num_frames, num_segments)
    if twice_sample and num_clips != 2:
        raise ValueError(f"twice_sample produces 2 clips, but num_clips={num_clips}")
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if num_frames < num_segments:
        return np.tile(_spread(num_frames, num_segments), (num_clips, 1))
    tick = num_frames / num_segments
    grid = tick * np.arange(num_segments)  # (T,) segment starts
    if twice_sample:
        fractions = np.array([0.5, 0.0])
    else:
        fractions = (np.arange(num_clips) + 0.5) / num_clips
    idx = (grid[None, :] + tick * fractions[:, None]).astype(np.int64)  # (num_clips, T)
    return np.minimum(idx, num_frames - 1)


def dense_sample(
    num_frames: int,
    num_segments: int,
    *,
    stride: int,
    rng: np.random.Generator | None = None,
    loop: bool = False,
) -> np.ndarray:
    """Dense sampling (Kinetics style): ``T`` frames ``stride`` apart from one window, ``(T,)``.

    The window spans ``T * stride`` frames (TSM's dense sampling: 64 frames with ``T=8``,
    ``stride=8``). Training draws its start uniformly among the ``num_frames - window + 1``
    possible starts; test (``rng=None``) takes the first. For videos shorter than the window
    the official code wraps around (``% num_frames``, out of order); with ``loop=False`` (the
    default) indices past the end are clamped to the last frame instead, keeping the clip in
    order; ``loop=True`` reproduces the official wrap-around.
    """
    _check(num_frames, num_segments)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    starts = max(1, num_frames - num_segments * stride + 1)
    start = 0 if rng is None or starts == 1 else int(rng.integers(0, starts))
    return _dense_from(start, num_frames, num_segments, stride, loop)


def dense_test_clips(
    num_frames: int, num_segments: int, *, stride: int, num_clips: int = 10, loop: bool = False
) -> np.ndarray:
    """``num_clips`` dense windows with starts evenly spaced over the video, ``(num_clips, T)``
    (TSM's 10-clip Kinetics test protocol: ``linspace(0, num_frames - window, num_clips)``).
    With ``num_clips=1`` the window is centred (the official validation draws it at random)."""
    _check(num_frames, num_segments)
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    starts = max(1, num_frames - num_segments * stride + 1)
    if num_clips == 1:
        first = np.array([(starts - 1) // 2])
    else:
        first = np.linspace(0, starts - 1, num=num_clips, dtype=np.int64)
    return np.stack([_dense_from(int(s), num_frames, num_segments, stride, loop) for s in first])


def _dense_from(start: int, num_frames: int, num_segments: int, stride: int, loop: bool) -> np.ndarray:
    idx = start + np.arange(num_segments, dtype=np.int64) * stride
    return idx % num_frames if loop else np.minimum(idx, num_frames - 1)


@dataclass(frozen=True)
class Sampling:
    """How a dataset picks the ``T`` frames of a clip (the ``data.sampling`` config group).

    ``mode``: ``"segment"`` (TSN, Something-Something) or ``"dense"`` (Kinetics, with
    ``stride``). ``num_clips`` / ``twice_sample``: the test-time views.
    """

    num_segments: int
    mode: str = "segment"
    stride: int = 8
    num_clips: int = 1
    twice_sample: bool = False
    loop: bool = False

    def __post_init__(self) -> None:
        if self.mode not in SAMPLING_MODES:
            raise ConfigError(f"sampling mode {self.mode!r} is not one of {SAMPLING_MODES}")
        if self.mode == "dense" and self.twice_sample:
            raise ConfigError("twice_sample applies to segment sampling only")
        # checked here, once, so that a bad setting fails at construction instead of being
        # taken, video after video, for an unreadable file
        if self.num_segments < 1 or self.stride < 1 or self.num_clips < 1:
            raise ConfigError(
                f"sampling needs num_segments, stride and num_clips >= 1, got {self.num_segments}, "
                f"{self.stride}, {self.num_clips}"
            )
        if self.twice_sample and self.num_clips != 2:
            raise ConfigError(f"twice_sample produces 2 clips, but num_clips={self.num_clips}")

    def train(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """Random training indices, ``(T,)``."""
        if self.mode == "dense":
            return dense_sample(num_frames, self.num_segments, stride=self.stride, rng=rng, loop=self.loop)
        return segment_sample(num_frames, self.num_segments, rng=rng)

    def val(self, num_frames: int) -> np.ndarray:
        """The deterministic validation clip, ``(T,)``: segment centres, or the centre window."""
        if self.mode == "dense":
            return dense_test_clips(num_frames, self.num_segments, stride=self.stride, num_clips=1, loop=self.loop)[0]
        return segment_sample(num_frames, self.num_segments)

    def test(self, num_frames: int) -> np.ndarray:
        """All test clips, ``(num_clips, T)``."""
        if self.mode == "dense":
            return dense_test_clips(
                num_frames, self.num_segments, stride=self.stride, num_clips=self.num_clips, loop=self.loop
            )
        return segment_test_clips(
            num_frames, self.num_segments, num_clips=self.num_clips, twice_sample=self.twice_sample
        )
