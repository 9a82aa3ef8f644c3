"""The one checkpoint format, and the one loader every tool uses.

A checkpoint is a ``torch.save``'d dict; the same format holds a training run's ``last.pth`` /
``best.pth`` and an official TSM / TAM / ACTION-Net checkpoint converted by
``tools/convert_checkpoint.py``, so every tool (test, infer, train's fine-tuning and resume,
benchmark) reads both alike:

================  ===============================================================================
key               what
================  ===============================================================================
``format``        ``"videoattn-checkpoint-1"``
``model``         the ``state_dict`` of the :class:`~videoattn.models.VideoClassifier`
``model_config``  the normalised config of :func:`~videoattn.models.build_model` (arch, classes, T,
                  inserts): ``build_model(model_config)`` rebuilds the network
``classes``       the class names, index = logit; ``None`` for a converted checkpoint whose label
                  file was not given (``--classes``)
``data``          how a clip is made for the model: ``sampling`` (``Sampling`` keywords),
                  ``eval_transform`` (``EvalTransform`` keywords), the dataset ``name``
``origin``        where the weights come from: ``{"kind": "training", ...}`` or
                  ``{"kind": "converted", "source": "tsm", "file": ...}``
training state    a training run's checkpoints also hold ``optimizer``, ``scheduler``, ``scaler``,
                  ``epoch``, ``best_top1``, ``history``, ``rng`` and the resolved ``config``
================  ===============================================================================

:func:`load_checkpoint` reads any file a tool is given and answers every mistake in one line
(:class:`~videoattn.errors.CheckpointError`): a missing, empty, truncated or non-PyTorch file;
an official checkpoint not converted yet (with the command that converts it); bare weights.
Checkpoints of earlier versions of this format are upgraded in memory.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError, DataError, MissingFileError
from .files import atomic_file

__all__ = [
    "FORMAT",
    "as_checkpoint",
    "check_classes",
    "check_torch_file",
    "describe",
    "load_checkpoint",
    "load_model_state",
    "make_checkpoint",
    "read_torch_file",
    "save_atomic",
    "save_checkpoint",
]

FORMAT = "videoattn-checkpoint-1"
DEFAULT_DATA = {"name": None, "sampling": {"mode": "segment"}, "eval_transform": {"size": 224, "resize": 256}}
_REQUIRED = ("model", "model_config", "classes", "data", "origin")


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` through :func:`videoattn.files.atomic_file`: a crash at any
    moment leaves the old file or the new one, never a torn one. The object is serialised in
    memory first, so a full disk is an ``OSError`` (ENOSPC) naming ``path``, not a torch error."""
    with atomic_file(path) as f:
        buf = io.BytesIO()
        torch.save(obj, buf)
        f.write(buf.getbuffer())
    return Path(path)


def check_torch_file(path: str | os.PathLike, *, what: str = "checkpoint") -> Path:
    """Fail early, in one line, unless ``path`` is a file that starts like a ``torch.save``
    archive (a zip) or a legacy pickle; it reads only the first bytes."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MissingFileError(f"{what} {path} not found")
    if path.is_dir():
        raise CheckpointError(f"{what} {path} is a folder; give the .pth file (e.g. {path}/best.pth)")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"{what} {path} is an empty file (an interrupted copy or download?)")
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # zip archive, pickle protocol >= 2
        raise CheckpointError(f"{what} {path} is not a PyTorch checkpoint (it does not start like one)")
    return path


def read_torch_file(path: str | os.PathLike, *, what: str = "checkpoint") -> Any:
    """``torch.load`` of ``path`` on the CPU, once, with one-line errors for a missing, empty,
    truncated or non-PyTorch file. A file holding only tensors and plain data (this toolkit's
    checkpoints) loads with ``weights_only=True``; one that pickles other Python objects (the
    official checkpoints' numpy scalars) is unpickled in full: load only checkpoints you trust.
    Which of the two a zip archive is, is read from its pickle alone; a legacy (pre-1.6) file is
    tried both ways."""
    path = check_torch_file(path, what=what)
    if zipfile.is_zipfile(path):
        try:
            attempts: tuple[bool, ...] = (not torch.serialization.get_unsafe_globals_in_checkpoint(path),)
        except (RuntimeError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise CheckpointError(
                f"{what} {path} cannot be read: truncated or not a PyTorch checkpoint ({_short(err)})"
            ) from err
    else:
        attempts = (True, False)
    for weights_only in attempts:
        try:
            return torch.load(path, map_location="cpu", weights_only=weights_only)
        except pickle.UnpicklingError as err:
            if weights_only and len(attempts) > 1:
                continue  # other Python objects than tensors and plain data: unpickle in full
            raise CheckpointError(f"{what} {path} is not a PyTorch checkpoint ({_short(err)})") from err
        except (RuntimeError, EOFError, ValueError, OSError) as err:
            raise CheckpointError(
                f"{what} {path} cannot be read: truncated or not a PyTorch checkpoint ({_short(err)})"
            ) from err
        except Exception as err:  # a pickle that cannot be rebuilt here: classes of another program
            raise CheckpointError(f"{what} {path} cannot be read ({_short(err)})") from err
    raise AssertionError("unreachable")


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def make_checkpoint(
    model: nn.Module, *, classes: Sequence[str] | None, data: Mapping[str, Any], origin: Mapping[str, Any], **extra: Any
) -> dict[str, Any]:
    """The checkpoint dict of ``model`` (its ``state_dict`` and ``config``) with the class names,
    the clip settings ``data`` (``sampling``, ``eval_transform``, ``name``), the ``origin`` and any
    ``extra`` entries (a training run's state)."""
    config = getattr(model, "config", None)
    if config is None:
        raise TypeError("make_checkpoint needs a model built by build_model (it has no .config)")
    if classes is not None and len(classes) != config["num_classes"]:
        raise CheckpointError(f"{len(classes)} class names for a model with {config['num_classes']} classes")
    return {
        "format": FORMAT,
        "model": model.state_dict(),
        "model_config": dict(config),
        "classes": None if classes is None else list(classes),
        "data": _data_entry(data),
        "origin": dict(origin),
        **extra,
    }


def _data_entry(data: Mapping[str, Any]) -> dict[str, Any]:
    """What a test of the model reads from the checkpoint: the dataset's name, its sampling, the
    evaluation transform, the test views (``test``) and the training crop size (``train_size``)."""
    entry = {
        "name": data.get("name"),
        "sampling": dict(data.get("sampling") or DEFAULT_DATA["sampling"]),
        "eval_transform": dict(data.get("eval_transform") or DEFAULT_DATA["eval_transform"]),
    }
    if data.get("test"):
        entry["test"] = dict(data["test"])
    train = data.get("train_transform") or {}
    if train.get("size") is not None:
        entry["train_size"] = train["size"]
    return entry


def save_checkpoint(ckpt: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a checkpoint made by :func:`make_checkpoint` atomically."""
    missing = [k for k in ("format", *_REQUIRED) if k not in ckpt]
    if missing:
        raise ValueError(f"not a complete checkpoint: missing {missing}")
    return save_atomic(dict(ckpt), path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint file for a tool: a training run's or a converted one (see the module
    docstring), earlier versions upgraded. Anything else fails with one line saying what the
    file is and what to do with it."""
    path = Path(path).expanduser()
    obj = read_torch_file(path)
    ckpt = as_checkpoint(obj, path)
    if ckpt is None:
        raise CheckpointError(f"{path}: {describe(obj, path)}")
    return ckpt


def as_checkpoint(obj: Any, path: str | os.PathLike = "checkpoint") -> dict[str, Any] | None:
    """``obj`` (what ``torch.load`` returned) as a checkpoint of the current format, or ``None``
    when it is not a videoattn checkpoint."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return _upgrade(obj, Path(path))
    if isinstance(obj, dict) and "converted_from" in obj and "state_dict" in obj:  # converted before format 1 held them
        return _upgrade(
            {
                "format": FORMAT,
                "model": obj["state_dict"],
                "model_config": obj["model_config"],
                "classes": obj.get("class_names"),
                "origin": {"kind": "converted", **obj["converted_from"]},
            },
            Path(path),
        )
    return None


def _upgrade(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    for key in ("model", "model_config"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"{path}: a videoattn checkpoint without its {key!r}; the file is damaged")
    ckpt.setdefault("classes", None)
    if "data" not in ckpt:  # training checkpoints before the data entry: the run's data config
        ckpt["data"] = _data_entry((ckpt.get("config") or {}).get("data") or {})
    ckpt.setdefault("origin", {"kind": "training"} if "optimizer" in ckpt else {"kind": "unknown"})
    return ckpt


def describe(obj: Any, path: str | os.PathLike) -> str:
    """What ``obj`` (a loaded file that is not a videoattn checkpoint) is, and what to do with it."""
    path = Path(path)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if isinstance(sd, dict) and sd and all(isinstance(v, torch.Tensor) for v in sd.values()):
        from .models.convert import detect_source  # lazy: the models package imports this module

        source = detect_source({k.removeprefix("module."): v for k, v in sd.items()})
        if source != "unknown":
            return (
                f"an official {source.upper()} checkpoint, not converted yet: run tools/convert_checkpoint.py "
                f"--src {path} --dst {path.parent / 'converted.pth'} --classes LABEL_FILE, then use the converted file"
            )
        return (
            "bare weights (a state_dict), not a videoattn checkpoint: to initialise a model for training use it as "
            f"model.pretrained={path}"
        )
    return "not a videoattn checkpoint (tools write them with tools/train.py or tools/convert_checkpoint.py)"


def check_classes(
    ckpt: Mapping[str, Any], data_classes: Sequence[str], *, checkpoint: str | os.PathLike, dataset: str
) -> bool:
    """Fail unless the checkpoint predicts the dataset's classes: the same names in the same
    order (the message names the first difference). A checkpoint without names is checked by
    its number of classes only; returns whether the names were compared."""
    theirs, ours = list(data_classes), ckpt["classes"]
    if ours is None:
        k = ckpt["model_config"]["num_classes"]
        if k != len(theirs):
            raise DataError(
                f"{checkpoint} predicts {k} classes, {dataset} has {len(theirs)}; use the dataset the "
                "model was trained on"
            )
        return False
    ours = list(ours)
    if ours == theirs:
        return True
    first = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), min(len(ours), len(theirs)))
    a = repr(ours[first]) if first < len(ours) else "nothing"
    b = repr(theirs[first]) if first < len(theirs) else "nothing"
    raise DataError(
        f"{checkpoint} predicts other classes than {dataset}: {len(ours)} vs {len(theirs)} classes, the first "
        f"difference at index {first}: {a} in the checkpoint, {b} in the dataset; use the dataset the model was "
        "trained on (for a converted checkpoint: convert it again with --classes <that dataset's label file>)"
    )


def load_model_state(model: nn.Module, ckpt: Mapping[str, Any], *, path: str | os.PathLike = "checkpoint") -> None:
    """Load ``ckpt["model"]`` strictly into ``model``, with an error naming what differs when
    the checkpoint was made with another model config."""
    own = getattr(model, "config", None)
    theirs = ckpt.get("model_config")
    if own is not None and theirs is not None:
        diff = {
            k: (theirs.get(k), own.get(k))
            for k in set(own) | set(theirs)
            if k != "pretrained" and own.get(k) != theirs.get(k)
        }
        if diff:
            text = "; ".join(f"{k}: checkpoint {a!r} vs model {b!r}" for k, (a, b) in sorted(diff.items()))
            raise CheckpointError(
                f"{path} was made with another model config ({text}); build the model from the "
                "checkpoint's model_config"
            )
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit this model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
