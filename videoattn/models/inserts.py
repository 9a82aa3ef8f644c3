"""Insert specifications: which excitation module goes where in a backbone, as plain data.

An insert is ``{name, slot?, stages?, every?, blocks?, kwargs?}``:

- ``name``: a registry name (``videoattn.attention.list_attention()``);
- ``slot``: ``input`` | ``after_conv1`` | ``before_last`` | ``output`` (per-block slots),
  ``conv`` (in place of a block's spatial conv and BN), ``stem`` (in place of the stem and the
  first stage) | ``head``; default the module's registry slot (a ``conv`` / ``stem`` / ``head``
  module has no other);
- ``stages``: backbone stages (1-4) that get it, default all;
- ``every``: every k-th block of a stage (block index % k == 0), default 1 (TSM and
  ACTION use 2 on ResNet-101, as their official code does);
- ``blocks``: explicit block indices in each stage, negatives from the end (``[-1]``: the last
  block, GSoP's placement); overrides ``every``;
- ``kwargs``: the module's hyper-parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from torch import nn

from ..attention import FIXED_SLOTS, SLOTS, accepted_hparams, build_attention, get_spec
from ..errors import ConfigError

ALL_SLOTS = (*SLOTS, "conv", "stem", "head")


@dataclass(frozen=True)
class Insert:
    name: str
    slot: str
    stages: tuple[int, ...] = (1, 2, 3, 4)
    every: int = 1
    blocks: tuple[int, ...] | None = None
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any] | str, *, where: str = "inserts") -> Insert:
        """Validate one insert given as a dict (or a bare name) and fill in the defaults."""
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: an insert is a mapping with a 'name', got {spec!r}")
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown} in insert {dict(spec)}; allowed: {sorted(allowed)}")
        if "name" not in spec:
            raise ConfigError(f"{where}: insert {dict(spec)} has no 'name'")
        name = spec["name"]
        try:
            reg = get_spec(name)
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
        slot = spec.get("slot") or reg.slot
        if slot not in ALL_SLOTS:
            raise ConfigError(f"{where}: slot {slot!r} of {name!r} is not one of {ALL_SLOTS}")
        if reg.scope == "head" and slot != "head":
            raise ConfigError(f"{where}: {name!r} is a head module (after the last stage); use slot 'head'")
        if reg.scope in FIXED_SLOTS and slot != reg.scope:
            raise ConfigError(
                f"{where}: {name!r} sits at the {reg.scope!r} site ({FIXED_SLOTS[reg.scope]}), not {slot!r}"
            )
        if reg.scope not in FIXED_SLOTS and slot in FIXED_SLOTS:
            raise ConfigError(f"{where}: {name!r} is not a module for the {slot!r} site ({FIXED_SLOTS[slot]})")
        if reg.scope == "stage" and slot != "output":
            raise ConfigError(
                f"{where}: {name!r} is shared across the blocks of a stage and gates the 'output' slot only"
            )
        if reg.temporal and slot == "head":
            raise ConfigError(f"{where}: temporal module {name!r} cannot be a head module")
        stages = _ints(spec.get("stages") or (1, 2, 3, 4), f"{where}.stages")
        if not stages or any(s not in (1, 2, 3, 4) for s in stages):
            raise ConfigError(f"{where}: stages of {name!r} must be a subset of 1-4, got {list(stages)}")
        every = _ints(spec.get("every", 1), f"{where}.every")[0]
        if every < 1:
            raise ConfigError(f"{where}: every must be >= 1, got {every}")
        blocks = spec.get("blocks")
        blocks = None if blocks is None else _ints(blocks, f"{where}.blocks")
        kwargs = dict(spec.get("kwargs") or {})
        unknown_hp = sorted(set(kwargs) - set(accepted_hparams(name)))
        if unknown_hp:
            raise ConfigError(f"{where}: unknown kwargs {unknown_hp} for {name!r}; accepted: {accepted_hparams(name)}")
        return cls(name, slot, stages, every, blocks, MappingProxyType(kwargs))

    def applies(self, stage: int, block: int, num_blocks: int) -> bool:
        """Whether block ``block`` (0-based) of stage ``stage`` (1-based) gets this insert."""
        if stage not in self.stages:
            return False
        if self.blocks is not None:
            return block in {b % num_blocks for b in self.blocks if -num_blocks <= b < num_blocks}
        return block % self.every == 0

    def build(
        self,
        channels: int,
        *,
        num_segments: int,
        stage: int | None = None,
        model: Mapping[str, Any] | None = None,
        site: Mapping[str, Any] | None = None,
    ) -> nn.Module:
        """The module for one place (in stage ``stage``; ``model``: the model's settings; ``site``:
        what a ``conv`` / ``stem`` site gives its constructor): the insert's kwargs over the
        registry row's stage and model defaults."""
        return build_attention(self.name, channels, num_segments, stage=stage, model=model, site=site, **self.kwargs)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "slot": self.slot, "stages": list(self.stages), "every": self.every}
        if self.blocks is not None:
            d["blocks"] = list(self.blocks)
        if self.kwargs:
            d["kwargs"] = dict(self.kwargs)
        return d


def _ints(value: Any, key: str) -> tuple[int, ...]:
    """An integer or a list of them as a tuple; anything else fails naming ``key``."""
    items = [value] if isinstance(value, (int, str)) else value
    try:
        out = tuple(int(v) for v in items)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r}: expected an integer or a list of integers") from None
    if any(isinstance(v, bool) or (isinstance(v, float) and v != int(v)) for v in items):
        raise ConfigError(f"{key}={value!r}: expected an integer or a list of integers")
    return out


def parse_inserts(specs: Sequence[Mapping[str, Any] | str] | None) -> tuple[Insert, ...]:
    return tuple(Insert.from_dict(s, where=f"inserts[{i}]") for i, s in enumerate(specs or ()))
