"""Sites and placement: where a backbone offers room to inserted modules, and the one function
that builds each insert for each site it applies to, for every backbone.

A backbone (:mod:`videoattn.models.backbones`) describes each place it offers as a
:class:`Site` (stage, block, slot, channels, layout) and, while it builds itself, hands the
sites of each block to :func:`place`, which builds the modules of the inserts that apply there
(by the registry row: :func:`videoattn.attention.build_attention`), named by registry name. The
backbone attaches what it gets back in the containers below, so that every backbone's inserted
modules are found the same way (:func:`inserted_prefixes`). Site kinds (the ``slot`` of a site):

- the per-block slots ``input`` / ``after_conv1`` / ``before_last`` / ``output``: a block-scoped
  module, ``(N*T, C, H, W) -> (N*T, C, H, W)``; stage-scoped modules (DIANet) gate the
  ``output`` slot of the blocks they select, one module per stage (``shared=True``);
- ``conv``: a module in place of a block's spatial conv and its BN (a ResNet bottleneck's
  ``conv2`` + ``bn2``), ``(N*T, Cin, H, W) -> (N*T, Cout, H/s, W/s)``;
- ``stem``: a module in place of ``stage1(stem(x))``, given the stem and the first stage.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ..attention import get_spec
from ..errors import ConfigError
from .inserts import Insert

BLOCK_SLOTS = ("input", "after_conv1", "before_last", "output")
SITE_SLOTS = (*BLOCK_SLOTS, "conv", "stem")
ONE_PER_SITE = ("conv", "stem")  # a site whose layer a module replaces takes one module


@dataclass(frozen=True)
class Site:
    """One place a backbone offers to an inserted module.

    ``stage`` (1-4) and ``block`` (0-based among the ``num_blocks`` blocks of the stage that
    offer sites) select it for an insert (:meth:`Insert.applies`); ``slot`` is its kind (see the
    module docstring); ``channels`` the channels of the module's input (a ``stem`` site: the
    stem's output channels, what the module is built for), ``layout`` the layout of that input
    (``"NT,C,H,W"``: the backbone's frames, the T frames of a clip contiguous; the stem's
    ``"NT,F*3,H,W"``: F frames per segment on the channels). A
    ``conv`` site also has ``out_channels`` and ``stride`` (of the replaced conv), and
    ``replaces``: the local names of the layers the module replaces by role (``("conv",
    "conv2"), ("bn", "bn2")``), under ``path``, the block's name in the backbone
    (``"layer1.0"``): the pretrained weights of those layers reach the module through its
    row's ``pretrained_map``.
    """

    stage: int
    block: int
    num_blocks: int
    slot: str
    channels: int
    layout: str = "NT,C,H,W"
    out_channels: int | None = None
    stride: int = 1
    path: str = ""
    replaces: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Placed:
    """A module :func:`place` built: its name (the registry name, made unique), the module and
    its sites (one; a stage-shared module: the sites of the blocks it gates)."""

    name: str
    module: nn.Module
    sites: tuple[Site, ...] = field(default=())


def unique_names(names: Sequence[str]) -> list[str]:
    """Registry names made unique in order: ``se, se, eca -> se, se_1, eca``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        k = seen.get(name, 0)
        seen[name] = k + 1
        out.append(name if k == 0 else f"{name}_{k}")
    return out


def check_inserts(inserts: Sequence[Insert], *, backbone: str, slots: Sequence[str], shared_stages: bool) -> None:
    """Fail in one line when an insert asks for a site the backbone ``backbone`` does not offer
    (``slots``: the sites it offers; ``shared_stages``: whether it has stages that can share a
    module between their blocks)."""
    for ins in inserts:
        if ins.slot == "head":
            continue
        if get_spec(ins.name).scope == "stage" and not shared_stages:
            raise ConfigError(f"{ins.name!r} needs stages whose blocks share its state; {backbone} has none")
        if ins.slot not in slots:
            raise ConfigError(f"{backbone} offers the slots / sites {tuple(slots)}, not {ins.slot!r} ({ins.name})")


def place(
    inserts: Sequence[Insert],
    sites: Sequence[Site],
    *,
    num_segments: int,
    model: dict[str, Any] | None = None,
    shared: bool = False,
    first_stage: Callable[[], nn.Module] | None = None,
) -> list[Placed]:
    """Build each insert for each of ``sites`` it applies to (its slot, its stages and blocks),
    in the order of the inserts: the placement of every backbone.

    ``shared=False``: a module per site for the modules with one instance per place (per-block
    slots, ``conv``, ``stem``); ``shared=True``: one module for all the ``sites`` a stage-scoped
    insert selects (the caller gives the sites of one stage). Names are the registry names made
    unique per site (per call when shared). ``first_stage()``: a fresh plain copy of the
    backbone's first stage, for a ``stem`` module. At most one module replaces a layer: two
    inserts on one ``conv`` or ``stem`` site fail."""
    out: list[Placed] = []
    for ins in inserts:
        spec = get_spec(ins.name)
        if ins.slot == "head" or (spec.scope == "stage") != shared:
            continue
        here = tuple(s for s in sites if s.slot == ins.slot and ins.applies(s.stage, s.block, s.num_blocks))
        if not here:
            continue
        if shared:
            out.append(Placed(ins.name, _build(ins, here[0], num_segments, model, first_stage), here))
            continue
        for site in here:
            if site.slot in ONE_PER_SITE and any(site in p.sites for p in out):
                where = f"{site.path}" if site.path else "the stem"
                raise ConfigError(f"two inserts replace the {site.slot} of {where}: {ins.name!r} and another one")
            out.append(Placed(ins.name, _build(ins, site, num_segments, model, first_stage), (site,)))
    if shared:
        return [Placed(n, p.module, p.sites) for n, p in zip(unique_names([p.name for p in out]), out, strict=True)]
    by_site: dict[Site, list[Placed]] = {}
    for p in out:
        by_site.setdefault(p.sites[0], []).append(p)
    names: dict[int, str] = {}
    for group in by_site.values():
        names |= {id(p): n for p, n in zip(group, unique_names([q.name for q in group]), strict=True)}
    return [Placed(names[id(p)], p.module, p.sites) for p in out]


def _build(
    ins: Insert,
    site: Site,
    num_segments: int,
    model: dict[str, Any] | None,
    first_stage: Callable[[], nn.Module] | None,
) -> nn.Module:
    """The module of ``ins`` at ``site``, with what the site kind gives its constructor."""
    if site.slot == "conv":
        extra: dict[str, Any] = {"out_channels": site.out_channels, "stride": site.stride}
    elif site.slot == "stem":
        if first_stage is None:
            raise ValueError("a stem site needs first_stage, the backbone's plain first stage")
        extra = {"first_stage": first_stage()}
    else:
        extra = {}
    return ins.build(site.channels, stage=site.stage, num_segments=num_segments, model=model, site=extra)


class Inserts(nn.Sequential):
    """The modules inserted in one per-block slot, applied in order; named by registry name."""


class Replacement(nn.ModuleDict):
    """The one module in place of a backbone layer (a ``conv`` or ``stem`` site), under its
    registry name (``layer1.0.att_conv.<name>.``, ``att_stem.<name>.``), with its site."""

    def __init__(self, placed: Placed) -> None:
        super().__init__({placed.name: placed.module})
        self.name = placed.name  # the registry name: one module per such site, no suffix
        self.site = placed.sites[0]

    @property
    def module(self) -> nn.Module:
        return self[self.name]


def slot_container(placed: Sequence[Placed], slot: str) -> nn.Module | None:
    """The container of the modules placed at a site of kind ``slot`` (None when there is none)."""
    here = [p for p in placed if p.sites[0].slot == slot]
    if not here:
        return None
    if slot in ONE_PER_SITE:
        return Replacement(here[0])
    return Inserts(OrderedDict((p.name, p.module) for p in here))


class SharedStage(nn.Sequential):
    """The blocks of one stage (``layerX.0``, ``layerX.1``, ...), plus its stage-shared modules
    (``layerX.<name>``), each with the blocks it gates; the stage threads each one's state
    through its blocks, from ``None`` at the first. A block gated by shared modules runs
    ``block.forward_shared(x, modules, states)``."""

    def __init__(self, blocks: Sequence[nn.Module], shared: Sequence[Placed] = ()) -> None:
        super().__init__(*blocks)
        self.num_blocks = len(blocks)
        self.shared: dict[str, tuple[int, ...]] = {}  # name -> the blocks it gates
        for p in shared:
            self.add_module(p.name, p.module)
            self.shared[p.name] = tuple(s.block for s in p.sites)

    def forward(self, x: Tensor) -> Tensor:
        if not self.shared:  # plain chain of blocks
            for i in range(self.num_blocks):
                x = self[i](x)
            return x
        states: dict[str, object] = dict.fromkeys(self.shared)
        for i in range(self.num_blocks):
            names = [n for n, where in self.shared.items() if i in where]
            if not names:
                x = self[i](x)
                continue
            mine = [states[n] for n in names]
            x = self[i].forward_shared(x, [self.get_submodule(n) for n in names], mine)
            states.update(zip(names, mine, strict=True))
        return x


def inserted_prefixes(backbone: nn.Module) -> list[str]:
    """State-dict prefixes of the modules inserted into ``backbone`` (any backbone built with
    these containers): ``layer1.0.att_input.``, ``layer1.0.att_conv.``, ``att_stem.``,
    ``layer4.<name>.`` for a stage-shared one."""
    out = []
    for name, m in backbone.named_modules():
        if isinstance(m, (Inserts, Replacement)):
            out.append(f"{name}.")
        elif isinstance(m, SharedStage):
            out += [f"{name}.{shared}." for shared in m.shared]
    return out


def pretrained_renames(backbone: nn.Module) -> list[tuple[str, str]]:
    """``(their prefix, our prefix)`` pairs that carry a plain backbone's weights (torchvision's
    names) into the ``conv`` modules of ``backbone``: for each replaced layer (the site's
    ``replaces``, e.g. ``layer1.0.conv2.``), the module's own names by its row's
    ``pretrained_map`` (e.g. ``layer1.0.att_conv.<name>.``). Empty when nothing is replaced."""
    out = []
    for name, m in backbone.named_modules():
        if isinstance(m, Replacement):
            layers = dict(m.site.replaces)
            for theirs, ours in get_spec(m.name).pretrained_map.items():
                role, _, rest = theirs.partition(".")
                if role in layers:
                    out.append((f"{m.site.path}.{layers[role]}.{rest}", f"{name}.{m.name}.{ours}"))
    return out


def pretrained_inits(backbone: nn.Module) -> list[tuple[str, nn.Module, Callable[..., Sequence[str]]]]:
    """``(state-dict prefix, module, fn)`` for each ``conv`` / ``stem`` module of ``backbone``
    whose row initialises it from the plain backbone's pretrained weights (``pretrained_init``)."""
    out = []
    for name, m in backbone.named_modules():
        if isinstance(m, Replacement) and (init := get_spec(m.name).pretrained_init) is not None:
            out.append((f"{name}.{m.name}.", m.module, init))
    return out
