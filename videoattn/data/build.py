"""``build_dataset(cfg, split, mode, num_segments)``: a :class:`VideoDataset` from the ``data``
config (``configs/data/*.yaml``), its schema (:class:`DataConfig`) checked once, by
:func:`normalize_data_config`."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from torch import Tensor

from ..config import choice, require, validate
from ..errors import ConfigError, MissingFileError
from .annotations import (
    Annotations,
    flip_label_map,
    has_mirrored,
    load_annotations,
    unpaired_mirrored_classes,
)
from .dataset import VideoDataset
from .protocols import TestProtocol
from .sampling import Sampling, SamplingConfig
from .transforms import EvalTransform, EvalTransformConfig, TrainTransform, TrainTransformConfig
from .video import BACKENDS

log = logging.getLogger(__name__)

TEST_CROPS = {1: "center", 3: "three", 10: "ten"}


@dataclass
class DataConfig:
    """``data``: a dataset in one of the supported annotation formats (see data/README.md)."""

    name: str | None = None  # a label for run names and tables
    source: str | None = None  # ssv2 | ssv1 | jester | kinetics | list | folders (required)
    # dataset root (read, never written); null with demo: true = the built-in demo dataset. Required
    # (???) in the schema, so that a data config's own ``root: ???`` stays required when composed over it
    root: str | None = "???"
    demo: bool = False  # root: null means the built-in demo dataset, written on first use
    annotations: dict[str, Any] = field(default_factory=dict)  # keywords of the format's parser (video_dir, ...)
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "val": "val", "test": "val"})
    on_error: str = "raise"  # malformed annotation lines / missing videos: raise | skip
    backend: str = "auto"  # auto | torchcodec | decord | pyav | frames
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    train_transform: TrainTransformConfig = field(default_factory=TrainTransformConfig)
    eval_transform: EvalTransformConfig = field(default_factory=EvalTransformConfig)
    test: TestProtocol = field(default_factory=TestProtocol)
    max_retries: int = 10
    order_dependent: list[str] = field(default_factory=list)  # classes that need temporal order, reported apart

    def __post_init__(self) -> None:
        choice("data.on_error", self.on_error, ("raise", "skip"))
        choice("data.backend", self.backend, BACKENDS)
        require(self.max_retries >= 0, "data.max_retries", self.max_retries, "an integer >= 0")


def normalize_data_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check the config against :class:`DataConfig` (keys, types, ranges; the
    transforms' and the sampler's keys are their classes' keywords) and fill in the defaults."""
    if not OmegaConf.is_config(cfg):  # plain data: no root means the demo's, with demo: true
        cfg = {"root": None, **cfg}
    out = validate(DataConfig, cfg, section="data")
    if not out["source"]:
        raise ConfigError("data config: `source` is required (ssv2 | ssv1 | jester | kinetics | list | folders)")
    if not out["root"] and not out["demo"]:
        raise ConfigError(f"data config {out['name']!r}: set `root` to the dataset folder (data.root=/path/to/dataset)")
    return out


def dataset_root(cfg: Mapping[str, Any]) -> Path:
    """The dataset folder. A given ``root`` is a real dataset there: it is read, never written,
    and a missing folder fails naming it. Only ``root: null`` with ``demo: true`` means the
    built-in demo dataset, written to its default folder on first use."""
    if cfg["root"]:
        root = Path(cfg["root"]).expanduser()
        if not root.exists():
            raise MissingFileError(
                f"data.root={root}: no such folder; give the {cfg['source']} dataset's root "
                f"(see data/README.md for the files it holds)"
            )
        return root
    from .synthetic import default_demo_root, ensure_demo_dataset

    root = default_demo_root() / cfg["source"]
    if root not in _ANNOUNCED:  # once per process, not once per split
        _ANNOUNCED.add(root)
        log.info("demo dataset: %s (data.root=null; written on first use)", root)
    return ensure_demo_dataset(None) / cfg["source"]


_ANNOUNCED: set[Path] = set()  # the demo folders already named in the log


def load_split(cfg: Mapping[str, Any], split: str) -> Annotations:
    """The parsed annotations of ``split`` (``train`` / ``val`` / ``test`` -> ``cfg.splits``)."""
    if split not in cfg["splits"]:
        raise ConfigError(f"split={split!r} is not one of the data config's splits {sorted(cfg['splits'])}")
    return load_annotations(
        cfg["source"], dataset_root(cfg), cfg["splits"][split], on_error=cfg["on_error"], **cfg["annotations"]
    )


def order_dependent_indices(names: Sequence[str], classes: Sequence[str]) -> list[int]:
    """The class indices of ``data.order_dependent`` (``names``: classes whose clips need the
    frames' order, reported apart) among the dataset's ``classes``. A name that is not a class
    is a :class:`~videoattn.errors.ConfigError` naming it and the close matches (one line)."""
    indices = []
    for name in names:
        name = str(name)
        if name in classes:
            indices.append(list(classes).index(name))
            continue
        same = [c for c in classes if c.casefold() == name.casefold()]
        close = same + [c for c in difflib.get_close_matches(name, list(classes), n=3, cutoff=0.6) if c not in same]
        hint = f"did you mean {', '.join(repr(c) for c in close[:3])}?" if close else "no class is close"
        shown = ", ".join(repr(c) for c in list(classes)[:5]) + (", ..." if len(classes) > 5 else "")
        raise ConfigError(
            f"data.order_dependent: {name!r} is not a class of this dataset ({hint}); its {len(classes)} classes: "
            f"{shown}"
        )
    return indices


def flip_mode(flip: str, classes: list[str]) -> str:
    """The horizontal-flip mode for ``classes``: ``auto`` is ``swap`` (flip, and swap the labels
    of mirrored classes: left <-> right, clockwise <-> counterclockwise) when a class names a
    mirrored direction, else ``on``. A mirrored class without its mirror image in the list makes
    ``auto`` and ``swap`` refuse (its flipped clips would keep a wrong label), naming it;
    ``on`` refuses mirrored classes altogether."""
    if not has_mirrored(classes) or flip == "off":
        return "on" if flip == "auto" else flip
    if flip == "on":
        raise ConfigError(
            f"data config: train_transform.flip: on would mirror this dataset's direction classes (e.g. "
            f"{_first_mirrored(classes)!r}) without swapping their labels; use swap or off"
        )
    unpaired = unpaired_mirrored_classes(classes)
    if flip in ("auto", "swap") and unpaired:
        raise ConfigError(
            f"data config: train_transform.flip: {flip} would flip clips of {unpaired[0]!r}, whose mirror "
            f"image is not a class of this dataset, and keep a wrong label ({len(unpaired)} such classes); "
            "set data.train_transform.flip=off"
        )
    return "swap" if flip == "auto" else flip


def _make(cls: type, settings: Mapping[str, Any], **fixed: Any) -> Any:
    """``cls(**settings, **fixed)``; ``settings`` were checked by the schema (``cls``'s keywords
    less the ``fixed`` ones, see :mod:`videoattn.config`)."""
    return cls(**settings, **fixed)


def sampling_for_model(sampling: Mapping[str, Any], frames: int) -> dict[str, Any]:
    """The ``data.sampling`` keywords ``sampling`` for a model taking ``frames`` frames per segment
    (``VideoClassifier.frames_per_segment``): unchanged for 1, else TDN's snippet rules
    (``rules: tdn``, ``frames`` consecutive frames per segment); one line naming the key when the
    config asks for another sampling."""
    sampling = dict(sampling)
    if frames == 1:
        return sampling
    given = sampling.get("frames_per_segment", 1)
    if given not in (1, frames):
        raise ConfigError(
            f"data.sampling.frames_per_segment={given}, but the model takes {frames} frames per segment; "
            f"remove the key or set it to {frames}"
        )
    rules = sampling.get("rules", "tsm")
    if rules not in ("tsm", "tdn"):
        raise ConfigError(
            f"data.sampling.rules={rules!r} samples one frame per segment, but the model takes {frames}; "
            "use data.sampling.rules=tdn (consecutive frames per segment)"
        )
    return {**sampling, "rules": "tdn", "frames_per_segment": frames}


def _first_mirrored(classes: list[str]) -> str:
    return next(c for c in classes if has_mirrored([c]))


def build_dataset(
    cfg: Mapping[str, Any],
    split: str,
    *,
    mode: str,
    num_segments: int,
    frames_per_segment: int = 1,
    seed: int = 0,
    report: str | Path | None = None,
) -> VideoDataset:
    """The dataset of ``split`` in ``mode`` (``train``: augmentation; ``val``: one centre view;
    ``test``: the ``test`` protocol's ``num_clips x num_crops`` views). ``cfg`` is the checked
    ``data`` config (:func:`normalize_data_config`), taken as it is. ``frames_per_segment``: what
    the model takes (``VideoClassifier.frames_per_segment``, from its modules' registry rows); with
    ``F > 1`` the clips are sampled with the snippet rules (``rules: tdn``, ``F`` consecutive frames
    per segment) and stacked on the channels, ``(T, F*3, S, S)``."""
    ann = load_split(cfg, split)
    sampling_kw = dict(cfg["sampling"])
    sampling_kw = sampling_for_model(sampling_kw, frames_per_segment)
    if mode == "test":
        test = cfg["test"]
        if test["twice_sample"] and test["num_clips"] != 2:
            raise ConfigError(
                f"data config: test.twice_sample=true takes exactly 2 clips per video, got test.num_clips="
                f"{test['num_clips']}; set data.test.twice_sample=false for {test['num_clips']} evenly spaced clips"
            )
        sampling_kw.update(num_clips=test["num_clips"], twice_sample=test["twice_sample"])
        crops = TEST_CROPS.get(test["num_crops"])
        if crops is None:
            raise ConfigError(
                f"data config: test.num_crops must be one of {sorted(TEST_CROPS)}, got {test['num_crops']}"
            )
        if crops == "ten" and has_mirrored(ann.classes):
            raise ConfigError(
                "data config: ten-crop test views flip the clips, which mirrors this dataset's "
                f"direction classes (e.g. {_first_mirrored(ann.classes)!r}); use num_crops 1 or 3"
            )
        ev = dict(cfg["eval_transform"])
        if test.get("resize") is not None:
            ev["resize"] = test["resize"]
        if test.get("size") is not None:
            ev["size"] = test["size"]
        elif crops == "three":  # TSM's full-resolution three-crop: squares of the resized short side
            ev["size"] = ev.get("resize") or ev.get("size", 224)
        transform: TrainTransform | EvalTransform = _make(EvalTransform, ev, crops=crops)
    elif mode == "val":
        transform = _make(EvalTransform, cfg["eval_transform"])
    else:
        tt = dict(cfg["train_transform"])
        flip = flip_mode(tt.pop("flip", "auto"), ann.classes)
        transform = _make(
            TrainTransform, tt, flip=flip, flip_map=flip_label_map(ann.classes) if flip == "swap" else None
        )
    sampling = _make(Sampling, sampling_kw, num_segments=num_segments)
    return VideoDataset(
        ann,
        sampling=sampling,
        transform=transform,
        mode=mode,
        backend=cfg["backend"],
        max_retries=cfg["max_retries"],
        seed=seed,
        report=report,
        split=split,
    )


# Backends whose decoder keeps native memory per file it opens (measured by tools/benchmark.py
# --sections index; docs/data_pipeline.md): torchcodec 0.15 ~330 bytes per VideoDecoder, in its
# C++ core. Their workers are started afresh each epoch, which bounds the growth to one epoch's
# share of the split; the others keep their workers (no start-up cost per epoch).
RECYCLE_WORKERS = frozenset({"torchcodec"})


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, as PyTorch's DataLoader counts them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def loader_options(
    backend: str,
    *,
    workers: int,
    pin_memory: bool,
    persistent: bool | None = None,
    prefetch: int | None = None,
    cpus: int | None = None,
) -> dict[str, Any]:
    """The ``DataLoader`` keywords for ``workers`` processes reading with ``backend`` (``auto``
    resolved to the backend it picks), at most one per CPU (``cpus``, default :func:`usable_cpus`;
    more only compete for them: capped, with one line saying so): persistent workers unless the backend is in
    :data:`RECYCLE_WORKERS`, ``prefetch`` batches in flight per worker (PyTorch's 2 by default:
    one batch decoding while one waits covers a step's variance; more only holds memory).
    ``persistent`` / ``prefetch`` set explicitly win; with ``workers=0`` they are an error, not
    ignored."""
    from .video import auto_backend

    if workers == 0:
        for key, value in (("persistent_workers", persistent), ("prefetch_factor", prefetch)):
            if value is not None:
                raise ConfigError(f"{key}={value}: DataLoader workers only; it needs workers >= 1 (workers=0)")
        return {"num_workers": 0, "pin_memory": pin_memory}
    cpus = usable_cpus() if cpus is None else cpus
    if workers > cpus:
        log.info("workers=%d: this machine gives the process %d CPUs; using %d DataLoader workers", workers, cpus, cpus)
        workers = cpus
    backend = auto_backend() if backend == "auto" else backend
    return {
        "num_workers": workers,
        "pin_memory": pin_memory,
        "persistent_workers": backend not in RECYCLE_WORKERS if persistent is None else persistent,
        "prefetch_factor": 2 if prefetch is None else prefetch,
    }


def shared_memory_free(path: str = "/dev/shm") -> int | None:
    """Bytes free in the shared-memory file system the DataLoader's workers hand batches through
    (None where there is none to measure: not Linux)."""
    try:
        st = os.statvfs(path)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def check_shared_memory(
    item: Tensor | None, *, batch_size: int, options: dict[str, Any], free: int | None = None
) -> int:
    """Refuse, in one line, a loader whose batches in flight do not fit in ``/dev/shm`` (``free``
    bytes; measured when None): each worker keeps ``prefetch_factor`` batches there, and running
    out is a "bus error" that kills the run mid-epoch (Docker gives containers 64 MB by default).
    ``item`` is one item of the dataset (its clip tensor). Returns the bytes needed."""
    workers = options.get("num_workers", 0)
    if not workers or item is None:
        return 0
    batch = item.nelement() * item.element_size() * batch_size
    need = batch * workers * options.get("prefetch_factor", 2)
    free = shared_memory_free() if free is None else free
    if free is not None and need > free:
        raise ConfigError(
            f"/dev/shm has {free / 2**20:.0f} MiB free, but {workers} DataLoader workers keep about "
            f"{need / 2**20:.0f} MiB of batches there ({options.get('prefetch_factor', 2)} batches of "
            f"{batch / 2**20:.1f} MiB each, {item.dtype} clips): give the container more (docker run "
            "--shm-size=16g, or --ipc=host), or lower workers / batch_size / prefetch_factor"
        )
    return need
