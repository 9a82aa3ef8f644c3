"""What a resumed run may change: where and how it runs, never what it trains.

A run continues from its checkpoint with the settings it was trained with: its optimiser and
schedule state hold the learning rate, weight decay and batch scaling, and the seed drives the
data order. An override of any other setting would be ignored, or break the exact continuation,
so :func:`check_resumed_settings` refuses it, naming each. The rules are a pure function of the
checkpoint's config and the run's (no files, no processes), kept apart from the run folder,
which decides *which* checkpoint a run continues, not whether the run may continue it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError

__all__ = ["RESUME_MAY_CHANGE", "check_resumed_settings"]

# Settings a resumed run may change (a key, and every key below it): where and how it runs, not
# what it trains (the optimiser and schedule state in the checkpoint hold lr, weight decay, batch
# scaling, seed-driven order).
RESUME_MAY_CHANGE = (
    "resume",
    "trust_checkpoint",
    "overwrite",
    "keep_last",
    "run_dir",
    "workers",
    "progress",
    "device",
    "tensorboard",
    "loggers",
    "log_every",
    "malloc_cache",
    "tf32",
    "compile",
    "recipe",
    "eval_every",
    "precision",
    "channels_last",
    "deterministic",
    "optim.epochs",
    "data.root",
    "data.backend",
    "data.max_retries",
    "data.on_error",
    "data.annotations",
    "data.test",
)


def check_resumed_settings(ckpt: Mapping[str, Any], cfg: DictConfig, path: Path) -> None:
    """Refuse to resume the checkpoint ``ckpt`` (read from ``path``) with a config ``cfg`` that
    changes a setting outside :data:`RESUME_MAY_CHANGE`, naming each change. A key only one side
    has is a setting another version of the toolkit added or dropped: not a change of the run.
    A checkpoint without its config (converted, or older) is not checked."""
    if not isinstance(ckpt.get("config"), dict):
        return
    old, new = _flat(ckpt["config"]), _flat(OmegaConf.to_container(cfg, resolve=True))
    changed = [
        f"{k}: {old[k]!r} -> {new[k]!r}"
        for k in sorted(old.keys() & new.keys())
        if old[k] != new[k] and not any(k == m or k.startswith(m + ".") for m in RESUME_MAY_CHANGE)
    ]
    if changed:
        raise ConfigError(
            f"resume: {path} was trained with other settings ({'; '.join(changed[:6])}"
            f"{'; ...' if len(changed) > 6 else ''}); a resumed run keeps its own (its optimiser and "
            "schedule state hold them): drop these overrides to continue it, or start another run "
            f"(another run_dir, or model.pretrained={path} to start from its weights)"
        )


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are values)."""
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}
