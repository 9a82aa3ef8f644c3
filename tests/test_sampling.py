"""Frame samplers: the official deterministic rules index for index, and the training rules' properties.

The tables are the output of the official TSM / TAM / ACTION-Net samplers, and of TDN's and
TAda2D's, for T = 8 and 16 and every num_frames from 1 to 400 (``tests/data/official_sampling/``,
gzipped copies of the reference files ``official_sampling.json`` and ``newmods_sampling.json``).
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
    interval_rate,
    interval_sample,
    interval_test_clips,
    rounded_segment_sample,
    rounded_segment_test_clips,
    segment_sample,
    segment_test_clips,
    snippet_sample,
    snippet_test_clips,
)
from videoattn.errors import ConfigError

VENDORED = Path(__file__).parent / "data" / "official_sampling" / "official_sampling.json.gz"
SHARED = Path(__file__).parents[2] / "shared" / "reference" / "official_sampling.json"
NEW_VENDORED = Path(__file__).parent / "data" / "official_sampling" / "newmods_sampling.json.gz"
NEW_SHARED = Path(__file__).parents[2] / "shared" / "reference" / "newmods_sampling.json"
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
# the TDN / TAda2D tables (newmods_sampling.json), likewise; TDN's val and test are one rule
NEW_OFFICIAL = {
    "tdn/test and val (_get_test_indices == _get_val_indices, 5 frames per segment)": (
        ("val", "test"),
        {"rules": "tdn", "frames_per_segment": 5},
    ),
    "tada2d/ssv2 test 1 clip (segment_based, centre of segment)": (("val", "test"), {"rules": "tada"}),
    "tada2d/ssv2 test 2 clips (segment_based, AUTOMATIC_MULTI_SCALE_TEST)": (
        ("test",),
        {"rules": "tada", "num_clips": 2},
    ),
    "tada2d/k400 test 10 clips (interval_based, fps 30, rate 8 for T=8 / 5 for T=16)": (
        ("test",),
        {"rules": "tada", "mode": "dense", "num_clips": 10},
    ),
}


@pytest.fixture(scope="module")
def tables() -> dict:
    if VENDORED.exists():
        return json.loads(gzip.decompress(VENDORED.read_bytes()))["tables"]
    if SHARED.exists():
        return json.loads(SHARED.read_text())["tables"]
    pytest.skip(f"the official sampling tables are in neither {VENDORED} nor {SHARED}")


@pytest.fixture(scope="module")
def new_tables() -> dict:
    if NEW_VENDORED.exists():
        return json.loads(gzip.decompress(NEW_VENDORED.read_bytes()))["tables"]
    if NEW_SHARED.exists():
        return json.loads(NEW_SHARED.read_text())["tables"]
    pytest.skip(f"the TDN / TAda2D sampling tables are in neither {NEW_VENDORED} nor {NEW_SHARED}")


def test_every_official_rule_is_mapped(tables):
    assert set(tables) == set(OFFICIAL)
    for by_t in tables.values():
        assert set(by_t) == {"8", "16"} and all(len(v) == MAX_FRAMES for v in by_t.values())


@pytest.mark.skipif(not (VENDORED.exists() and SHARED.exists()), reason="needs both the copy and the reference file")
def test_the_vendored_tables_are_the_reference_file():
    assert gzip.decompress(VENDORED.read_bytes()) == SHARED.read_bytes()


def test_every_new_official_rule_is_mapped(new_tables):
    assert set(new_tables) == set(NEW_OFFICIAL)
    for by_t in new_tables.values():
        assert set(by_t) == {"8", "16"} and all(len(v) == MAX_FRAMES for v in by_t.values())


@pytest.mark.skipif(
    not (NEW_VENDORED.exists() and NEW_SHARED.exists()), reason="needs both the copy and the reference file"
)
def test_the_vendored_new_tables_are_the_reference_file():
    assert gzip.decompress(NEW_VENDORED.read_bytes()) == NEW_SHARED.read_bytes()


@pytest.mark.parametrize("t", [8, 16])
@pytest.mark.parametrize("rule", list(NEW_OFFICIAL))
def test_the_tdn_and_tada_rules_index_for_index(new_tables, rule, t):
    methods, kwargs = NEW_OFFICIAL[rule]
    variants = [Sampling(num_segments=t, **kwargs)]
    if kwargs.get("mode") == "dense":  # the default rate is the official one; saying so changes nothing
        variants.append(Sampling(num_segments=t, stride={8: 8, 16: 5}[t], **kwargs))
    expected = new_tables[rule][str(t)]
    for sampling in variants:
        for method in methods:
            sample = getattr(sampling, method)
            for n in range(1, MAX_FRAMES + 1):
                got = sample(n)
                assert got.dtype == np.int64
                assert got.reshape(-1).tolist() == expected[n - 1], f"{rule}, T={t}, num_frames={n}, {method}"


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
    assert defaults == {
        "mode": "segment",
        "rules": "tsm",
        "stride": None,
        "short": "official",
        "loop": True,
        "frames_per_segment": 1,
    }
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
    with pytest.raises(ConfigError, match="sampling rules 'tsn' is not one of"):
        Sampling(num_segments=8, rules="tsn")
    with pytest.raises(ConfigError, match="frames_per_segment=5 needs sampling rules 'tdn'"):
        Sampling(num_segments=8, frames_per_segment=5)
    with pytest.raises(ConfigError, match="frames_per_segment >= 1"):
        Sampling(num_segments=8, rules="tdn", frames_per_segment=0)
    with pytest.raises(ConfigError, match="'tdn' sample segments"):
        Sampling(num_segments=8, rules="tdn", mode="dense")
    with pytest.raises(ConfigError, match="twice_sample is TSM's protocol"):
        Sampling(num_segments=8, rules="tada", num_clips=2, twice_sample=True)
    with pytest.raises(ValueError, match="frames_per_segment must be >= 1"):
        snippet_sample(10, 4, frames_per_segment=0)
    with pytest.raises(ValueError, match="rate must be >= 1"):
        interval_sample(10, 4, rate=0)
    with pytest.raises(ConfigError, match="sampling short 'zeros' is not one of"):
        Sampling(num_segments=8, short="zeros")
    # a setting the sampler cannot honour fails when the dataset is built, not on every video
    with pytest.raises(ConfigError, match="twice_sample produces 2 clips, but num_clips=1"):
        Sampling(num_segments=8, num_clips=1, twice_sample=True)
    with pytest.raises(ConfigError, match=">= 1"):
        Sampling(num_segments=8, mode="dense", stride=0)
    with pytest.raises(ConfigError, match="segment sampling only"):
        Sampling(num_segments=8, mode="dense", num_clips=2, twice_sample=True)


# ----------------------------------------------------------------------------- TDN and TAda2D rules


def _snippet_starts(idx: np.ndarray, n: int, t: int, f: int) -> np.ndarray:
    """The starts of the ``T`` snippets of ``idx`` ``(T*F,)``, checking each is ``s .. s + F - 1`` clamped."""
    snippets = idx.reshape(t, f)
    assert np.array_equal(snippets, np.minimum(snippets[:, :1] + np.arange(f), n - 1))
    return snippets[:, 0]


@pytest.mark.parametrize("f", [1, 3, 5])
@pytest.mark.parametrize("t", SEGMENTS)
@pytest.mark.parametrize("n", NUM_FRAMES)
def test_snippet_sampling_properties(n, t, f):
    rng = np.random.default_rng(n * 100 + t)
    length = (n - f + 1) // t
    for _ in range(20):
        idx = snippet_sample(n, t, frames_per_segment=f, rng=rng)
        assert idx.shape == (t * f,) and _in_range(idx, n)
        starts = _snippet_starts(idx, n, t, f)
        assert (np.diff(starts) >= 0).all()
        if length > 0:  # one start in each of T segments of (n - F + 1) // T starts
            assert ((starts >= np.arange(t) * length) & (starts < np.arange(1, t + 1) * length)).all()
        elif n > t:  # sorted draws among all possible starts
            assert starts.min() >= 0 and starts.max() <= max(n - f, 0)
        else:
            assert (starts == 0).all()
    val = snippet_sample(n, t, frames_per_segment=f)
    starts = _snippet_starts(val, n, t, f)
    assert (np.diff(starts) >= 0).all() and np.array_equal(val, snippet_test_clips(n, t, frames_per_segment=f)[0])
    if n > t + f - 1:
        assert len(set(starts.tolist())) == t  # distinct snippets
    else:
        assert (starts == 0).all()
    for k in (2, 3, 10):
        views = snippet_test_clips(n, t, frames_per_segment=f, num_clips=k)
        assert views.shape == (k, t * f) and all(_in_range(v, n) for v in views)
        starts = np.stack([_snippet_starts(v, n, t, f) for v in views])
        assert (np.diff(starts, axis=0) >= 0).all() and (np.diff(starts, axis=1) >= 0).all()


@pytest.mark.parametrize("t", [1, 3, 8, 16])
def test_one_frame_snippets_are_the_tsm_rule(t):
    for n in range(1, 120):
        assert np.array_equal(snippet_sample(n, t, frames_per_segment=1), segment_sample(n, t))
        draws = snippet_sample(n, t, frames_per_segment=1, rng=np.random.default_rng(n))
        assert np.array_equal(draws, segment_sample(n, t, rng=np.random.default_rng(n)))


def test_snippet_training_draws_cover_every_possible_start():
    rng = np.random.default_rng(0)
    # 44 frames, T = 8, F = 5: 40 possible starts in 8 segments of 5; frames up to 43
    draws = np.stack([snippet_sample(44, 8, rng=rng) for _ in range(500)])
    starts = draws.reshape(500, 8, 5)[:, :, 0]
    assert set(starts.reshape(-1).tolist()) == set(range(40))
    assert set(draws.reshape(-1).tolist()) == set(range(44))
    # 10 frames, T = 8: no full segment; sorted draws among the 6 starts 0..5
    starts = np.stack([snippet_sample(10, 8, rng=rng).reshape(8, 5)[:, 0] for _ in range(300)])
    assert set(starts.reshape(-1).tolist()) == set(range(6)) and (np.diff(starts, axis=1) >= 0).all()
    assert len({tuple(s) for s in starts}) > 50


@pytest.mark.parametrize("t", SEGMENTS)
@pytest.mark.parametrize("n", NUM_FRAMES)
def test_rounded_segment_sampling_properties(n, t):
    rng = np.random.default_rng(n * 10 + t)
    edges = np.arange(t + 1) * n / t
    lo = np.minimum(np.round(edges[:-1]), n - 1)
    hi = np.minimum(np.round(edges[1:]), n - 1)
    for _ in range(20):
        idx = rounded_segment_sample(n, t, rng=rng)
        assert idx.shape == (t,) and _in_range_monotone(idx, n)
        assert ((idx >= lo) & (idx <= hi)).all()  # within its segment, rounded
    val = rounded_segment_sample(n, t)
    assert _in_range_monotone(val, n) and ((val >= lo) & (val <= hi)).all()
    for k in (1, 2, 3, 10):
        views = rounded_segment_test_clips(n, t, num_clips=k)
        assert views.shape == (k, t) and all(_in_range_monotone(v, n) for v in views)
        assert (np.diff(views, axis=0) >= 0).all()  # later clips later in each segment
        assert np.array_equal(views[0 if k <= 2 else -1], val if k <= 2 else hi)  # the midpoints; the ends
    if n >= t:
        assert set(rounded_segment_test_clips(n, t, num_clips=2)[1].tolist()) == set(hi.tolist())


def test_rounded_segment_training_draws_cover_every_frame():
    rng = np.random.default_rng(0)
    draws = np.stack([rounded_segment_sample(43, 8, rng=rng) for _ in range(500)])
    assert set(draws.reshape(-1).tolist()) == set(range(43))  # unlike TSN's rule, the last frames too
    assert len({tuple(d) for d in draws}) > 100


@pytest.mark.parametrize("t", [1, 3, 8, 16])
@pytest.mark.parametrize("n", NUM_FRAMES)
def test_interval_sampling_properties(n, t):
    rate = interval_rate(t)
    window = t * rate
    rng = np.random.default_rng(n)
    for _ in range(20):
        idx = interval_sample(n, t, rng=rng)
        assert idx.shape == (t,) and _in_range_monotone(idx, n)
        assert idx[0] <= max(n - window, 0)
        if n >= window and t > 1:  # frames (L - 1) / (T - 1) apart, up to the floor
            step = (window - 1) / (t - 1)
            assert (np.abs(np.diff(idx) - step) < 1).all()
    assert np.array_equal(interval_sample(n, t), interval_test_clips(n, t, num_clips=1)[0])
    views = interval_test_clips(n, t)
    assert views.shape == (10, t) and all(_in_range_monotone(v, n) for v in views)
    assert (np.diff(views[:, 0]) >= 0).all() and views[0, 0] == 0


def test_interval_rates_and_training_starts():
    assert (interval_rate(8), interval_rate(16), interval_rate(4), interval_rate(8, 2)) == (8, 5, 16, 2)
    assert np.diff(interval_sample(300, 8)).tolist() == [9] * 7  # 8x8: floor(linspace(s, s + 63, 8))
    rng = np.random.default_rng(0)
    starts = {int(interval_sample(80, 8, rng=rng)[0]) for _ in range(400)}  # L = 64: starts U(0, 16)
    assert set(range(16)) <= starts <= set(range(17))


def test_new_rules_stay_in_range_for_every_setting():
    rng = np.random.default_rng(0)
    settings = [{"rules": "tdn", "frames_per_segment": f, "num_clips": k} for f in (1, 2, 5) for k in (1, 2, 10)]
    settings += [
        {"rules": "tada", "mode": m, "stride": s, "num_clips": k}
        for m in ("segment", "dense")
        for s in (None, 3)
        for k in (1, 2, 10)
    ]
    for t in (1, 5, 8, 16, 100):
        samplings = [Sampling(num_segments=t, **s) for s in settings]
        for n in (1, 2, 4, 5, 6, 15, 16, 17, 63, 64, 65, 99, 100, 101, 257):
            for s in samplings:
                width = t * s.frames_per_segment
                assert s.train(n, rng).shape == (width,) and _in_range(s.train(n, rng), n)
                assert s.val(n).shape == (width,) and _in_range(s.val(n), n)
                assert s.test(n).shape == (s.num_clips, width) and _in_range(s.test(n), n)
