"""Plain-data config helpers shared by the model, data and optim sections."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from typing import Any

from .errors import ConfigError


def to_plain(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A dict from a dict or an OmegaConf ``DictConfig`` (Hydra's ``cfg.data``), resolved."""
    if hasattr(cfg, "items") and not isinstance(cfg, dict):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg)


def check_keys(cfg: Mapping[str, Any], allowed: Collection[str], *, section: str) -> None:
    """Fail on the first unknown key, naming it, its close matches and the allowed keys."""
    for key in cfg:
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=3)
            hint = f"; did you mean {close}?" if close else ""
            raise ConfigError(f"{section} config: unknown key {key!r}{hint} (allowed: {sorted(allowed)})")
