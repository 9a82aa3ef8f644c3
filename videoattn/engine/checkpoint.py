"""Checkpoints: written atomically, resumable, and checked against the model they load into.

A training checkpoint holds the model's ``state_dict`` and config, the class names, the
optimiser / scheduler / grad-scaler state, the epoch, the best metric, the RNG states, and the
resolved training config. It is written to a temporary file in the same folder, flushed to
disk, then renamed over the target, so a crash (or SIGKILL) at any moment leaves either the
old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT = "videoattn-checkpoint-1"


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` through a temporary file + fsync + rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the legacy global state is what users seed)
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_atomic` (the format of ``tools/train.py``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"{path}: not a readable checkpoint ({e}); it may be truncated, delete it to resume from an older one") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(
            f"{path}: not a videoattn training checkpoint (no format={FORMAT!r}). Official TSM / TAM / "
            "ACTION-Net checkpoints are converted with tools/convert_checkpoint.py first."
        )
    return ckpt


def load_model_state(model: nn.Module, ckpt: Mapping[str, Any], *, path: str | os.PathLike = "checkpoint") -> None:
    """Load ``ckpt["model"]`` strictly into ``model``, with an error that names what differs
    when the checkpoint was trained with another model config."""
    own = getattr(model, "config", None)
    theirs = ckpt.get("model_config")
    if own is not None and theirs is not None:
        diff = {k: (theirs.get(k), own.get(k)) for k in set(own) | set(theirs) if k != "pretrained" and own.get(k) != theirs.get(k)}
        if diff:
            text = "; ".join(f"{k}: checkpoint {a!r} vs model {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ValueError(f"{path} was trained with another model config ({text}); build the model from the checkpoint's model_config")
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit this model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
