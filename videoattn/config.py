"""The typed config: one schema for every section, used by the library and by Hydra alike.

Each section is a dataclass: :class:`ModelConfig` (``model``), :class:`DataConfig` (``data``,
with the transforms' and the sampler's keywords as schemas generated from their signatures),
:class:`OptimConfig` (``optim``), and the tools' top levels :class:`TrainConfig` /
:class:`TestConfig`. A key the schema lacks fails with its name and the close matches, a value
of the wrong type with the key and the type expected, a value out of range (``num_segments=0``)
with the key and the range; the library's :func:`validate` and Hydra's composition (the
schemas are registered in its ConfigStore by :func:`register_configs`) give the same answers.

``model=NAME`` works for every registry name: :func:`register_configs` also stores a model
config per registry module (ResNet-50, ImageNet weights, the module in its default slot) unless
``configs/model/NAME.yaml`` exists for a module that needs settings of its own (GSoP's
last-block placement) or a combination (``tsm_se``).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from .errors import ConfigError


def to_plain(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A dict from a dict or an OmegaConf ``DictConfig`` (Hydra's ``cfg.data``), resolved."""
    if hasattr(cfg, "items") and not isinstance(cfg, dict):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg)


def require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: expected {expected}")


def choice(key: str, value: Any, choices: Sequence[str]) -> None:
    require(value in choices, key, value, f"one of {', '.join(map(str, choices))}")


# ----------------------------------------------------------------------------- schemas from signatures
def _plain_type(tp: Any) -> Any:
    """An annotation as OmegaConf takes it: ``Sequence[float]`` / ``tuple[float, ...]`` ->
    ``list[float]``, ``X | None`` -> ``Optional[X]``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = _plain_type(rest[0]) if len(rest) == 1 else Any
        return typing.Optional[inner] if type(None) in args else inner  # noqa: UP045 (a runtime type: OmegaConf reads it)
    if origin in (list, tuple, collections.abc.Sequence):
        item = [a for a in args if a is not Ellipsis]
        return list[_plain_type(item[0])] if item else list[Any]
    return tp


def keyword_schema(
    fn: Callable, *, name: str, exclude: Sequence[str] = (), defaults: Mapping[str, Any] | None = None
) -> type:
    """A dataclass of ``fn``'s keyword parameters (names, types, defaults), less ``exclude``, with
    ``defaults`` replacing some defaults: the config schema of a class configured by keywords,
    kept in one place, its signature."""
    hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    fields_ = []
    for p in inspect.signature(fn).parameters.values():
        if p.name in exclude or p.name == "self" or p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            continue
        tp = _plain_type(hints.get(p.name, Any))
        default = (defaults or {}).get(p.name, p.default)
        if isinstance(default, (list, tuple, dict)):
            default = list(default) if not isinstance(default, dict) else dict(default)
            fields_.append((p.name, tp, field(default_factory=lambda d=default: type(d)(d))))
        else:
            fields_.append((p.name, tp, field(default=default)))
    return dataclasses.make_dataclass(name, fields_)


# ----------------------------------------------------------------------------- the sections
@dataclass
class ModelConfig:
    """``model``: a VideoClassifier (see :func:`videoattn.models.build_model`)."""

    name: str | None = None  # a label for tables and checkpoints ("tsm", "action", ...)
    arch: str | None = None  # resnet18 | resnet34 | resnet50 | resnet101 | mobilenet_v2 (required)
    num_classes: int | None = None  # required; the tools take it from the dataset
    num_segments: int | None = None  # required; the tools take it from the top-level num_segments
    dropout: float = 0.5
    partial_bn: bool = False
    pretrained: str | None = None  # imagenet | imagenet_v2 | a state_dict file | a checkpoint to fine-tune
    inserts: list[Any] = field(default_factory=list)  # {name, slot?, stages?, every?, blocks?, kwargs?} or a name
    layers: list[int] | None = None  # blocks per stage (small networks)
    widths: list[int] | None = None  # channels per stage

    def __post_init__(self) -> None:
        for key in ("num_classes", "num_segments"):
            value = getattr(self, key)
            require(value is None or value >= 1, f"model.{key}", value, "a positive integer")
        require(0.0 <= self.dropout < 1.0, "model.dropout", self.dropout, "a probability in [0, 1)")
        for key in ("layers", "widths"):
            value = getattr(self, key)
            require(
                value is None or (len(value) == 4 and all(v >= 1 for v in value)),
                f"model.{key}",
                value,
                "4 positive integers (one per stage) or null",
            )


# ----------------------------------------------------------------------------- checking plain data
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


def check_config(cfg: Any) -> None:
    """The schema's checks on a composed Hydra config, the one check of a tool's config: its types
    were checked by the composition; a key that ``+key=value`` added to a section whose schema
    lacks it (Hydra lets ``+`` add to a typed node) and the ranges are checked here, as it
    becomes its dataclasses. The library trusts what passed (:func:`validate`)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    _no_added_keys(cfg)
    try:
        OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        raise ConfigError(describe_error(err)) from None


def _no_added_keys(node: Any, path: str = "") -> None:
    """Fail on a key of a typed node that its dataclass lacks (added with ``+``), naming it."""
    from omegaconf import DictConfig, OmegaConf

    schema = OmegaConf.get_type(node)
    names = [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else None
    for key in node.keys():
        if names is not None and key not in names:
            raise ConfigError(_no_such_key(f"{path}{key}", names))
        child = node._get_node(key)
        if isinstance(child, DictConfig) and names is not None:  # the sections of a schema, not free dicts
            _no_added_keys(child, f"{path}{key}.")


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


# ----------------------------------------------------------------------------- Hydra
def model_preset(name: str) -> dict[str, Any]:
    """The model config a registry module gets without a file of its own: ResNet-50 from
    ImageNet weights with the module inserted in its default slot."""
    return {
        "name": name,
        "arch": "resnet50",
        "pretrained": "imagenet",
        "dropout": 0.5,
        "partial_bn": False,
        "inserts": [{"name": name}],
    }


def model_configs(config_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Every ``model=NAME`` the tools accept: ``configs/model/*.yaml`` and the registry's
    modules without one (:func:`model_preset`), as plain data."""
    import yaml

    from .attention import list_attention

    folder = Path(config_dir) / "model"
    out = {p.stem: yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml"))}
    for name in list_attention():
        out.setdefault(name, model_preset(name))
    return dict(sorted(out.items()))
