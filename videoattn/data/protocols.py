"""The papers' test protocols by name (``tools/test.py protocol=NAME``).

A protocol fixes the views of a test video: the clips (``data.test.num_clips``, TSM's
``twice_sample``, and the sampler's ``rules`` / ``mode`` in ``data.sampling``) and the crops
(``data.test.num_crops``, their size and the short side they are cut from). Each is the setting
of one official script, measured against the official code (``../shared/reference``: the frame
indices of every rule are tested in ``tests/test_sampling.py``). ``tools/test.py`` without a
protocol tests with the views stored in the checkpoint (those of the recipe it was trained with).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import require
from ..errors import ConfigError


@dataclass(frozen=True)
class Protocol:
    """``test``: keys of ``data.test``; ``sampling``: keys of ``data.sampling``."""

    source: str  # the official script or command it follows
    test: Mapping[str, Any] = field(default_factory=dict)
    sampling: Mapping[str, Any] = field(default_factory=dict)


def _views(clips: int, crops: int, size: int, *, twice: bool = False) -> dict[str, Any]:
    return {"num_clips": clips, "num_crops": crops, "twice_sample": twice, "size": size, "resize": 256}


PROTOCOLS: dict[str, Protocol] = {
    "tsm_efficient": Protocol(
        "TSM README, Something-Something 'efficient' (--test_crops=1): 1 clip x centre crop 224",
        _views(1, 1, 224),
        {"mode": "segment", "rules": "tsm"},
    ),
    "tsm_accurate": Protocol(
        "TSM README, Something-Something 'accurate' (--test_crops=3 --twice_sample, full resolution): "
        "2 clips x 3 crops 256",
        _views(2, 3, 256, twice=True),
        {"mode": "segment", "rules": "tsm"},
    ),
    "tsm_accurate_224": Protocol(
        "TSM README's accurate command as typed (no --full_res): 2 clips x 3 crops 224",
        _views(2, 3, 224, twice=True),
        {"mode": "segment", "rules": "tsm"},
    ),
    "tsm_dense": Protocol(
        "TSM README, Kinetics dense models (--dense_sample --test_crops=3 --full_res): 10 clips x 3 crops 256",
        _views(10, 3, 256),
        {"mode": "dense", "rules": "tsm", "stride": None},
    ),
    "tam_uniform1": Protocol(
        "TAM scripts/test_tam_something_rgb_8f.sh (uniform-1): 1 clip x centre crop 224",
        _views(1, 1, 224),
        {"mode": "segment", "rules": "tam"},
    ),
    "tam_uniform2": Protocol(
        "TAM scripts/test_tam_somethingv2_rgb_8f.sh (uniform-2, full resolution): 2 clips x 3 crops 256",
        _views(2, 3, 256),
        {"mode": "segment", "rules": "tam"},
    ),
    "tam_dense10": Protocol(
        "TAM scripts/test_tam_kinetics_rgb_8f.sh (dense-10, full resolution): 10 clips x 3 crops 256",
        _views(10, 3, 256),
        {"mode": "dense", "rules": "tam", "stride": None},
    ),
    "tam_dense1": Protocol(
        "TAM dense-1 (the centre window): 1 clip x centre crop 224",
        _views(1, 1, 224),
        {"mode": "dense", "rules": "tam", "stride": None},
    ),
    "tdn_1view": Protocol(
        "TDN README (MCG-NJU/TDN@a7c7e9b test_models_center_crop.py, 1 view): 1 clip x centre crop 224 "
        "of the short side 256",
        _views(1, 1, 224),
        {"mode": "segment", "rules": "tdn", "frames_per_segment": 5},
    ),
    "tdn_full_res": Protocol(
        "TDN README (--full_res): 1 clip x 3 crops 256 (left, centre, right)",
        _views(1, 3, 256),
        {"mode": "segment", "rules": "tdn", "frames_per_segment": 5},
    ),
    "tdn_k400": Protocol(
        "TDN README, Kinetics-400: 10 clips x 3 crops 256 (the official clips are random training-style "
        "draws; these are the evenly spaced snippet clips)",
        _views(10, 3, 256),
        {"mode": "segment", "rules": "tdn", "frames_per_segment": 5},
    ),
    "tada2d_ssv2": Protocol(
        "TAda2D configs/projects/tada/ssv2/tada2d_8f.yaml (TAdaConv@f08df6a): 2 clips (segment midpoints, "
        "segment ends) x 3 crops 256 of the short side 256",
        _views(2, 3, 256),
        {"mode": "segment", "rules": "tada"},
    ),
    "tada2d_k400": Protocol(
        "TAda2D configs/projects/tada/k400/tada2d_8x8.yaml (TAdaConv@f08df6a): 10 interval clips x 3 crops 256",
        _views(10, 3, 256),
        {"mode": "dense", "rules": "tada", "stride": None},
    ),
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        import difflib

        close = difflib.get_close_matches(name, PROTOCOLS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"protocol={name}: no such test protocol{hint}; the protocols: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


VIEW_SECTIONS = ("sampling", "eval_transform", "test")


def resolve_views(
    data_cfg: Mapping[str, Any],
    *,
    checkpoint: Mapping[str, Any],
    protocol: str | None = None,
    explicit: set[str] | frozenset[str] = frozenset(),
) -> tuple[dict[str, Any], list[str]]:
    """The ``data`` config a test of a checkpoint runs with, and notes for the log.

    The view settings (``data.sampling``, ``data.eval_transform``, ``data.test``) travel with the
    model: the checkpoint's (``checkpoint``: its ``data`` entry, those of the run that trained it)
    replace the data config's, a ``protocol`` replaces those, and a key set on the command line
    (``explicit``: ``"data.test.num_clips"``, ...) wins over all. An inherited ``twice_sample``
    (2 clips) yields to an explicit ``num_clips`` other than 2."""
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data_cfg.items()}
    chosen = get_protocol(protocol) if protocol else None
    notes: list[str] = []
    for section in VIEW_SECTIONS:
        inherited = dict(checkpoint.get(section) or {})
        if chosen is not None:
            inherited.update({"test": chosen.test, "sampling": chosen.sampling}.get(section, {}))
        merged = dict(out.get(section) or {})
        merged.update({k: v for k, v in inherited.items() if f"data.{section}.{k}" not in explicit})
        out[section] = merged
    test = out["test"]
    if test.get("twice_sample") and test.get("num_clips") != 2 and "data.test.twice_sample" not in explicit:
        test["twice_sample"] = False
        notes.append(f"data.test.num_clips={test['num_clips']}: evenly spaced clips (twice_sample takes 2 clips)")
    ev = out["eval_transform"]
    size = test.get("size") or (
        (test.get("resize") or ev.get("resize") or ev.get("size")) if test.get("num_crops") == 3 else ev.get("size")
    )
    trained = checkpoint.get("train_size") or (checkpoint.get("eval_transform") or {}).get("size")
    if trained and size and size != trained:
        notes.append(
            f"the test views are {size} px crops, the model was trained on {trained} px crops"
            + (" (the official full-resolution views are, by design)" if test.get("num_crops") == 3 else "")
        )
    return out, notes


@dataclass
class TestProtocol:
    """``data.test``: the views of a test video (named sets of them: :mod:`videoattn.data.protocols`)."""

    num_clips: int = 1
    num_crops: int = 1  # 1 (centre) | 3 (TSM's three crops along the long side) | 10
    twice_sample: bool = False  # TSM's 2 clips: the segments' centres and starts
    # the views' crop and short side; null: eval_transform's (for 3 crops: squares of the short side,
    # the official "full resolution")
    size: int | None = None
    resize: int | None = None

    def __post_init__(self) -> None:
        require(self.num_clips >= 1, "data.test.num_clips", self.num_clips, "a positive integer")
        require(self.num_crops in (1, 3, 10), "data.test.num_crops", self.num_crops, "1, 3 or 10")
        for key in ("size", "resize"):
            value = getattr(self, key)
            require(value is None or value >= 1, f"data.test.{key}", value, "a positive integer or null")
