"""The typed config: one schema for every section, used by the library and by Hydra alike.

Each section is a dataclass: :class:`~videoattn.models.config.ModelConfig` (``model``, next to the
model builder), :class:`DataConfig` (``data``,
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
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, Union

from .errors import ConfigError
from .schema import _no_such_key, describe_error
from .schema import choice as choice  # re-exported: the schemas beside their classes use them
from .schema import require as require
from .schema import to_plain as to_plain
from .schema import validate as validate


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


# ----------------------------------------------------------------------------- the composed config
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
