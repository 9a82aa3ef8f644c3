"""Frame samplers: the official deterministic rules index for index, and the training rules' properties.

The tables are the output of the official TSM / TAM / ACTION-Net samplers for T = 8 and 16 and
every num_frames from 1 to 400 (``tests/data/official_sampling/``, a gzipped copy of the
reference file ``official_sampling.json``).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from videoattn.data.sampling import (
    Sampling,
    dense_geometry,
    dense_sample,
    dense_test_clips,
    segment_sample,
    segment_test_clips,
)
from videoattn.errors import ConfigError

VENDORED = Path(__file__).parent / "data" / "official_sampling" / "official_sampling.json.gz"
SHARED = Path(__file__).parents[2] / "shared" / "reference" / "official_sampling.json"
MAX_FRAMES = 400

# every rule of the official tables -> (Sampling method, Sampling keywords besides num_segments)
OFFICIAL = {
    "tsm/val (_get_val_indices)": ("val", {}),
    "tsm/test 1 clip (_get_test_indices)": ("test", {}),
    "tsm/test twice_sample (2 clips)": ("test", {"num_clips": 2, "twice_sample": True}),
    "tsm/test dense_sample (10 clips, t_stride 64//T)": ("test", {"mode": "dense", "num_clips": 10}),
    "tam/val (_get_val_indices)": ("val", {"rules": "tam"}),
    "tam/val dense_sample (centre start)": ("val", {"rules": "tam", "mode": "dense"}),
    "tam/test uniform-1": ("test", {"rules": "tam"}),
    "tam/test uniform-2 (TAM's SSv2 script)": ("test", {"rules": "tam", "num_clips": 2}),
    "tam/test dense-10": ("test", {"rules": "tam", "mode": "dense", "num_clips": 10}),
    "tam/test dense-1 (centre)": ("test", {"rules": "tam", "mode": "dense", "num_clips": 1}),
    "action/val TemporalUniformCrop_val": ("val", {"rules": "action"}),
    "action/test TemporalUniformCrop_test (1 clip)": ("test", {"rules": "action"}),
}


@pytest.fixture(scope="module")
def tables() -> dict:
    if VENDORED.exists():
        return json.loads(gzip.decompress(VENDORED.read_bytes()))["tables"]
    if SHARED.exists():
        return json.loads(SHARED.read_text())["tables"]
    pytest.skip(f"the official sampling tables are in neither {VENDORED} nor {SHARED}")


def test_every_official_rule_is_mapped(tables):
    assert set(tables) == set(OFFICIAL)
    for by_t in tables.values():
        assert set(by_t) == {"8", "16"} and all(len(v) == MAX_FRAMES for v in by_t.values())


@pytest.mark.skipif(not (VENDORED.exists() and SHARED.exists()), reason="needs both the copy and the reference file")
def test_the_vendored_tables_are_the_reference_file():
    assert gzip.decompress(VENDORED.read_bytes()) == SHARED.read_bytes()


@pytest.mark.parametrize("t", [8, 16])
@pytest.mark.parametrize("rule", list(OFFICIAL))
def test_the_official_rules_index_for_index(tables, rule, t):
    method, kwargs = OFFICIAL[rule]
    variants = [Sampling(num_segments=t, **kwargs)]
    if kwargs.get("mode") == "dense":  # the default stride is 64 // T; saying so changes nothing
        variants.append(Sampling(num_segments=t, stride=64 // t, **kwargs))
    expected = tables[rule][str(t)]
    for sampling in variants:
        sample = getattr(sampling, method)
        for n in range(1, MAX_FRAMES + 1):
            got = sample(n)
            assert got.dtype == np.int64
            assert got.reshape(-1).tolist() == expected[n - 1], f"{rule}, T={t}, num_frames={n}, {sampling}"


# ----------------------------------------------------------------------------- properties

NUM_FRAMES = [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 66, 100, 129, 301]
SEGMENTS = [1, 3, 8, 16]


def _in_range(idx, n):
    return idx.dtype == np.int64 and idx.min() >= 0 and idx.max() < n


def _in_range_monotone(idx, n):
    return _in_range(idx, n) and (np.diff(idx) >= 0).all()


@pytest.mark.parametrize("t", SEGMENTS)
@pytest.mark.parametrize("n", NUM_FRAMES)
def test_segment_sampling_properties(n, t):
    rng = np.random.default_rng(n * 100 + t)
    length = n // t
    for _ in range(20):
        idx = segment_sample(n, t, rng=rng)
        assert idx.shape == (t,) and _in_range_monotone(idx, n)
        if length:  # one frame in each segment of n // T frames: the last n % T frames never drawn
            assert ((idx >= np.arange(t) * length) & (idx < np.arange(1, t + 1) * length)).all()
        else:  # the official rule for n < T: a still clip of frame 0
            assert (idx == 0).all()
        spread = segment_sample(n, t, rng=rng, short="spread")
        assert _in_range_monotone(spread, n)
        if length:
            assert ((spread >= np.arange(t) * length) & (spread < np.arange(1, t + 1) * length)).all()
        else:
            assert set(spread.tolist()) == set(range(n))  # every frame, in order
    if n == t:
        assert segment_sample(n, t, rng=rng).tolist() == list(range(t))
    val = segment_sample(n, t)
    assert val.shape == (t,) and _in_range_monotone(val, n) and np.array_equal(val, segment_sample(n, t))
    spread = segment_sample(n, t, short="spread")
    if n > t:
        assert len(set(val.tolist())) == t and np.array_equal(val, spread)  # distinct frames
    else:
        assert (val == 0).all()  # official: a still clip for n <= T
        assert set(spread.tolist()) == set(range(n))  # spread: every frame, in order
    # spread validation is the 1-clip test rule, for every n
    assert np.array_equal(spread, segment_test_clips(n, t)[0])


def test_segment_sampling_matches_the_tsn_formulas():
    # test: int(tick / 2 + tick * t) with tick = n / T; train: t * (n // T) + offset
    assert segment_sample(30, 4).tolist() == [3, 11, 18, 26]
    rng = np.random.default_rng(0)
    ref = np.random.default_rng(0)
    assert segment_sample(30, 4, rng=rng).tolist() == (np.arange(4) * 7 + ref.integers(0, 7, 4)).tolist()
    # TSM's twice_sample: centre of every segment, then start of every segment
    assert segment_test_clips(30, 4, num_clips=2, twice_sample=True).tolist() == [[3, 11, 18, 26], [0, 7, 15, 22]]
    # TAM's uniform-2: starts floor(linspace(0, tick - 1, 2)) = [0, 6], frames int(start + tick * t)
    assert segment_test_clips(30, 4, num_clips=2, rules="tam").tolist() == [[0, 7, 15, 22], [6, 13, 21, 28]]


def test_training_draws_cover_every_drawable_frame_and_vary():
    rng = np.random.default_rng(0)
    draws = np.stack([segment_sample(40, 8, rng=rng) for _ in range(500)])
    assert set(draws.reshape(-1).tolist()) == set(range(40))
    assert len({tuple(d) for d in draws}) > 100
    # 43 frames: segments of 5, the last 3 frames are never drawn (official)
    draws = np.stack([segment_sample(43, 8, rng=rng) for _ in range(500)])
    assert set(draws.reshape(-1).tolist()) == set(range(40))


@pytest.mark.parametrize("clips", [1, 2, 3, 10])
@pytest.mark.parametrize("n", NUM_FRAMES)
def test_multi_clip_test_views(n, clips):
    for rules in ("tsm", "tam", "action"):
        views = segment_test_clips(n, 8, num_clips=clips, rules=rules)
        assert views.shape == (clips, 8) and all(_in_range(v, n) for v in views)
        spread = segment_test_clips(n, 8, num_clips=clips, rules=rules, short="spread")
        assert all(_in_range_monotone(v, n) for v in spread)
        if n >= 8 or rules != "tam":  # TAM's uniform-k wraps only for n < T
            assert np.array_equal(views, spread)
        if clips == 1:
            assert np.array_equal(views[0], segment_sample(n, 8, short="spread"))
    dense = dense_test_clips(n, 8, stride=4, num_clips=clips, loop=False)
    assert dense.shape == (clips, 8) and all(_in_range_monotone(v, n) for v in dense)
    assert (np.diff(dense[:, 0]) >= 0).all()  # windows start in order
    wrapped = dense_test_clips(n, 8, stride=4, num_clips=clips)
    assert all(_in_range(v, n) for v in wrapped)
    if n >= 32:  # the window fits: wrapping and clamping agree
        assert np.array_equal(wrapped, dense)


@pytest.mark.parametrize("stride", [None, 1, 2, 8])
@pytest.mark.parametrize("n", NUM_FRAMES)
def test_dense_sampling_properties(n, stride):
    t = 8
    step, window = dense_geometry(t, stride)
    positions = max(1, n - window + 1)
    rng = np.random.default_rng(n)
    for _ in range(10):
        clamped = dense_sample(n, t, stride=stride, rng=rng, loop=False)
        assert clamped.shape == (t,) and _in_range_monotone(clamped, n)
        if n >= t * step:
            assert (np.diff(clamped) == step).all()
        wrapped = dense_sample(n, t, stride=stride, rng=rng)
        assert _in_range(wrapped, n)
        start = int(wrapped[0])
        assert 0 <= start <= max(0, positions - 2)  # the last start is never drawn
        assert np.array_equal(wrapped, (start + np.arange(t) * step) % n)  # wrapped modulo n
    val = dense_sample(n, t, stride=stride)
    assert np.array_equal(val, (positions // 2 + np.arange(t) * step) % n)  # the centre start
    assert np.array_equal(val, dense_sample(n, t, stride=stride)) and _in_range(val, n)


@pytest.mark.parametrize("t", [8, 16])
def test_dense_training_starts_are_uniform_and_skip_the_last(t):
    """Official: ``randint(0, sample_pos - 1)``, starts 0 .. n - 65 of the n - 63 positions, stride 64 // T."""
    rng = np.random.default_rng(t)
    for n in (64, 65, 66, 70, 100):
        starts = {int(dense_sample(n, t, rng=rng)[0]) for _ in range(400)}
        assert starts == set(range(max(1, n - 64))), n
    clip = dense_sample(300, t, rng=rng)
    assert (np.diff(clip) == 64 // t).all()
    # shorter than the window: start 0, wrapped (official) or clamped
    assert dense_sample(20, t, rng=rng).tolist() == ((np.arange(t) * (64 // t)) % 20).tolist()
    assert dense_sample(20, t, rng=rng, loop=False).tolist() == np.minimum(np.arange(t) * (64 // t), 19).tolist()


def test_samplers_stay_in_range_for_every_setting():
    rng = np.random.default_rng(0)
    settings = [
        {"mode": mode, "rules": rules, "short": short, "loop": loop, "stride": stride, "num_clips": clips}
        for mode in ("segment", "dense")
        for rules in ("tsm", "tam", "action")
        for short in ("official", "spread")
        for loop in (True, False)
        for stride in (None, 3)
        for clips in (1, 2, 10)
    ]
    for t in (1, 5, 8, 16, 100):
        samplings = [Sampling(num_segments=t, **s) for s in settings]
        for n in (1, 2, 4, 5, 6, 15, 16, 17, 63, 64, 65, 99, 100, 101, 257):
            for s in samplings:
                assert s.train(n, rng).shape == (t,) and _in_range(s.train(n, rng), n)
                assert s.val(n).shape == (t,) and _in_range(s.val(n), n)
                assert s.test(n).shape == (s.num_clips, t) and _in_range(s.test(n), n)


def test_dense_stride_defaults_to_the_official_64_over_t():
    assert dense_geometry(8) == (8, 64) and dense_geometry(16) == (4, 64) and dense_geometry(12) == (5, 64)
    assert dense_geometry(128) == (1, 128) and dense_geometry(8, 2) == (2, 16)
    assert np.diff(Sampling(num_segments=16, mode="dense").val(300)).tolist() == [4] * 15
    assert np.diff(Sampling(num_segments=16, mode="dense", stride=8).val(300)).tolist() == [8] * 15


def test_the_config_schema_and_stored_settings():
    from videoattn.data.sampling import SamplingConfig

    defaults = {f.name: f.default for f in dataclasses.fields(SamplingConfig)}
    assert defaults == {"mode": "segment", "rules": "tsm", "stride": None, "short": "official", "loop": True}
    # the settings stored in earlier checkpoints still build their sampler
    old = Sampling(num_segments=8, mode="dense", stride=8, loop=False)
    assert old.val(20).tolist() == [0, 8, 16, 19, 19, 19, 19, 19]


def test_sampling_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_frames"):
        segment_sample(0, 8)
    with pytest.raises(ValueError, match="twice_sample"):
        segment_test_clips(10, 4, num_clips=3, twice_sample=True)
    with pytest.raises(ValueError, match="short 'zeros' is not one of"):
        segment_sample(10, 4, short="zeros")
    with pytest.raises(ValueError, match="stride must be >= 1"):
        dense_sample(10, 4, stride=0)
    with pytest.raises(ConfigError, match="mode"):
        Sampling(num_segments=8, mode="uniform")
    with pytest.raises(ConfigError, match="sampling rules 'tdn' is not one of"):
        Sampling(num_segments=8, rules="tdn")
    with pytest.raises(ConfigError, match="sampling short 'zeros' is not one of"):
        Sampling(num_segments=8, short="zeros")
    # a setting the sampler cannot honour fails when the dataset is built, not on every video
    with pytest.raises(ConfigError, match="twice_sample produces 2 clips, but num_clips=1"):
        Sampling(num_segments=8, num_clips=1, twice_sample=True)
    with pytest.raises(ConfigError, match=">= 1"):
        Sampling(num_segments=8, mode="dense", stride=0)
    with pytest.raises(ConfigError, match="segment sampling only"):
        Sampling(num_segments=8, mode="dense", num_clips=2, twice_sample=True)
