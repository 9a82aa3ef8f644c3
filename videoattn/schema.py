"""Checking plain config data against a dataclass schema: the one place that turns a dict (or
Hydra's ``DictConfig``) into checked, completed plain data and an OmegaConf error into one line.

A leaf module (it imports only :mod:`videoattn.errors`): every section's schema uses it, wherever
the section lives (:class:`videoattn.models.config.ModelConfig` next to the model builder, the data
sections beside the data classes, ``optim`` beside the optimiser), without an import circle.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ConfigError


def to_plain(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A dict from a dict or an OmegaConf ``DictConfig`` (Hydra's ``cfg.data``), resolved."""
    if hasattr(cfg, "items") and not isinstance(cfg, dict):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg)


def require(ok: bool, key: str, value: Any, expected: str) -> None:
    """Fail with ``key=value: expected ...`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}={value!r}: expected {expected}")


def choice(key: str, value: Any, choices: Sequence[str]) -> None:
    """Fail unless ``value`` is one of ``choices``."""
    require(value in choices, key, value, f"one of {', '.join(map(str, choices))}")


def validate(schema: type, cfg: Mapping[str, Any], *, section: str) -> dict[str, Any]:
    """``cfg`` checked against ``schema`` and completed with its defaults, as plain data. An
    unknown key, a wrong type or a value out of range fails naming the key (``section.key``).
    A config composed against ``schema`` (a section of the tools' config, checked once where it
    was composed: :func:`videoattn.compose.compose_jobs`) is trusted: only made plain data."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    if OmegaConf.is_config(cfg) and OmegaConf.get_type(cfg) is schema:
        return to_plain(cfg)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(to_plain(cfg)))
        return dataclasses.asdict(OmegaConf.to_object(merged))
    except MissingMandatoryValue as err:
        key = f"{section}.{err.full_key}" if section else err.full_key
        raise ConfigError(f"{key} is required: set it ({key}=...)") from None
    except OmegaConfBaseException as err:
        raise ConfigError(describe_error(err, section=section)) from None


def _no_such_key(full: str, names: list[str]) -> str:
    where, _, leaf = full.rpartition(".")
    close = [f"{where}.{c}" if where else c for c in difflib.get_close_matches(leaf, names, n=3)]
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"{full}: no such key{hint}; the keys there: {', '.join(names)}" if names else f"{full}: no such key"


def describe_error(err: BaseException, *, section: str = "") -> str:
    """One line for an OmegaConf validation error: the key, the value and what was expected."""
    key = getattr(err, "full_key", None) or ""
    full = f"{section}.{key}" if section and key else (key or section)
    msg = str(getattr(err, "msg", None) or str(err)).splitlines()[0]
    if "not in" in msg and ("struct" in msg or "Key" in msg):
        parent = getattr(err, "object_type", None)
        return _no_such_key(
            full, [f.name for f in dataclasses.fields(parent)] if dataclasses.is_dataclass(parent) else []
        )
    if "could not be converted to" in msg or "is not a valid" in msg:
        value = msg.split("'")[1] if "'" in msg else "?"
        expected = msg.rsplit("converted to ", 1)[-1] if "converted to" in msg else msg.split("is not a valid ", 1)[1]
        expected = expected.split(" (")[0].strip(" .")
        names = {
            "Integer": "an integer",
            "Float": "a number",
            "Boolean": "true or false",
            "bool": "true or false",
            "String": "a string",
        }
        return f"{full}={value}: expected {names.get(expected, expected)}"
    if "cannot be assigned None" in msg or "is not Optional" in msg or "Incompatible value 'None'" in msg:
        return f"{full}=null: expected a value (this key cannot be null)"
    return f"{full}: {msg}"
