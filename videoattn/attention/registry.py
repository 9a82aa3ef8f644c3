"""The attention registry: one explicit table from name to module class and its metadata.

``build_attention(name, channels, num_segments=None, *, stage=None, model=None, **hparams)`` is
the only way the models build an excitation module by name; ``list_attention()`` lists the
names. A registry row is a module's whole contract with the rest of the toolkit; the code
outside this package never names a module. What a row can say:

- ``scope``, the site the module takes: ``block`` (an instance per residual block:
  ``forward(x) -> y``, same shape), ``stage`` (one instance per backbone stage whose state runs
  through the blocks the insert selects: ``step(x, state) -> (y, state)``, ``state=None`` at
  the first of them; DIANet), ``head`` (after the last stage, on the last feature map),
  ``conv`` (in place of a block's spatial conv and its BN) or ``stem`` (in place of the stem
  and the first stage); each scope's constructor and call are a ``typing.Protocol`` of
  :mod:`videoattn.attention.protocols`, checked when the table is built;
- ``frames_per_segment``: the frames of each segment the module needs (a stem module only;
  default 1); the model reports the largest (``VideoClassifier.frames_per_segment``), the data
  side reads it there;
- ``pretrained_map`` (``conv`` modules): where the pretrained weights of the layers the module
  replaces go, by name prefix: ``{"conv.": "", "bn.": "bn."}`` puts the replaced conv's
  ``weight`` at the module's ``weight`` and the replaced BN's tensors under its ``bn``; the
  pretrained loader applies it (:func:`videoattn.models.load_pretrained`);
- ``pretrained_init`` (``conv`` and ``stem`` modules): ``fn(module, state_dict) -> names``,
  called by the pretrained loader after the backbone's weights are in, with the plain backbone's
  state_dict (torchvision's names), to initialise the module's own tensors from them (TDN's
  ``conv1_5`` from the ImageNet ``conv1`` averaged over RGB); returns the local names it set,
  which the load report counts as initialised;
- ``no_weight_decay``: the module's own parameter names the optimiser never decays (GCT's
  ``beta``, as its official recipe);
- ``stage_defaults``: hyper-parameters that depend on the stage (1-4) a module sits in
  (FcaNet's DCT size, GSoP's stride-2 first stage), below what the insert sets;
- ``from_model``: model settings the module takes as hyper-parameters unless the insert sets
  them (EncNet's SE-loss head predicts ``num_classes``);
- an auxiliary loss: a head module with ``forward_with_aux(x) -> (y, aux)`` (``aux`` per frame,
  ``(N*T, ...)``, or None) and ``aux_loss(aux, labels) -> loss`` (``aux`` averaged over the T
  frames, the loss already weighted); the training loop adds every such loss to its own.

Streaming (one frame at a time, :mod:`videoattn.attention.streaming`) is decided per built
module: static modules (block, stage and head scope alike) act on each frame alone in eval mode
and stream as they are; a temporal module streams when its ``stream_blocker()`` is None (it
then has ``stream_step(x, state) -> (y, state)``: ``tsm_online``, or ``tsm`` with
``direction="past"``), else that method says why not. :func:`stream_modules` and
:func:`streaming_blockers` read a built model.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from torch import Tensor, nn

from ..errors import ConfigError
from .action import Action
from .bilinear import BilinearAttention
from .dia import DIA
from .eca import ECA
from .encnet import EncModule
from .fca import FcaAttention
from .gct import GCT
from .gsop import GSoP
from .protocols import SITE_ARGUMENTS, AuxHeadModule, check_site_protocol
from .rcan import RCANChannelAttention
from .scse import SCSE, ChannelSE, SpatialSE
from .se import SqueezeExcitation
from .shift import TemporalShift
from .soca import SOCA
from .srm import SRM
from .tada import TAdaConv2d
from .tam import TAM
from .tdn import TDNLongTerm, TDNShortTerm, tdn_init_from_backbone

Slot = Literal["input", "after_conv1", "before_last", "output", "conv", "stem", "head"]
SLOTS: tuple[str, ...] = ("input", "after_conv1", "before_last", "output")  # the per-block slots
FIXED_SLOTS = {  # sites whose modules take no other (besides head): scope = slot
    "conv": "in place of a block's spatial conv and its BN",
    "stem": "in place of the stem and the first stage",
}


@dataclass(frozen=True)
class AttentionSpec:
    """What the toolkit knows about one registered module.

    ``temporal`` modules take ``num_segments`` and mix frames of a clip; static ones act on each
    frame alone. ``slot`` is the default insertion slot in a residual block (``head``, ``conv``
    or ``stem`` for modules at those sites). ``scope`` says which hook the model gives it:
    ``block`` (an instance per block), ``stage`` (one instance shared by the blocks of a stage,
    carrying state: DIANet), ``head``, ``conv`` or ``stem`` (see the module docstring).
    ``defaults`` are fixed hyper-parameters that make an ablation variant of a shared class
    (``action_ste`` = ``Action(paths=("ste",))``);
    ``stage_defaults(stage)`` and ``from_model`` are defaults the insert's kwargs override (see
    the module docstring). ``frames_per_segment`` and ``pretrained_map``: the module docstring.
    """

    name: str
    cls: type[nn.Module]
    temporal: bool
    slot: Slot
    paper: str
    arxiv: str | None
    venue: str
    scope: Literal["block", "stage", "head", "conv", "stem"] = "block"
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    stage_defaults: Callable[[int], Mapping[str, Any]] | None = None
    from_model: tuple[str, ...] = ()
    frames_per_segment: int = 1
    pretrained_map: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    no_weight_decay: tuple[str, ...] = ()
    pretrained_init: Callable[[nn.Module, Mapping[str, Tensor]], Sequence[str]] | None = None

    @property
    def kind(self) -> str:
        return "temporal" if self.temporal else "static"

    @property
    def aux_loss(self) -> bool:
        """Whether the module adds an auxiliary loss (``forward_with_aux`` / ``aux_loss``)."""
        return issubclass(self.cls, AuxHeadModule)

    def __post_init__(self) -> None:
        check_site_protocol(self.name, self.cls, self.scope, aux=self.aux_loss)
        for fixed in ("head", *FIXED_SLOTS):
            if (self.scope == fixed) != (self.slot == fixed):
                raise TypeError(f"{self.name}: {fixed} modules, and only they, take the slot {fixed!r}")
        if not isinstance(self.frames_per_segment, int) or self.frames_per_segment < 1:
            raise TypeError(f"{self.name}: frames_per_segment must be an integer >= 1")
        if self.frames_per_segment > 1 and self.scope != "stem":
            raise TypeError(f"{self.name}: only a stem module sees the frames, so only it can need several per segment")
        if self.pretrained_map and (
            self.scope != "conv" or not all(k.startswith(("conv.", "bn.")) for k in self.pretrained_map)
        ):
            raise TypeError(f"{self.name}: pretrained_map is for conv modules, from names under 'conv.' / 'bn.'")
        if self.pretrained_init is not None and self.scope not in FIXED_SLOTS:
            raise TypeError(f"{self.name}: pretrained_init is for conv and stem modules")


def _spec(
    name,
    cls,
    temporal,
    slot,
    paper,
    arxiv,
    venue,
    scope="block",
    stage_defaults=None,
    from_model=(),
    frames_per_segment=1,
    pretrained_map=None,
    no_weight_decay=(),
    pretrained_init=None,
    **defaults,
) -> AttentionSpec:
    return AttentionSpec(
        name,
        cls,
        temporal,
        slot,
        paper,
        arxiv,
        venue,
        scope,
        MappingProxyType(defaults),
        stage_defaults,
        tuple(from_model),
        frames_per_segment,
        MappingProxyType(dict(pretrained_map or {})),
        tuple(no_weight_decay),
        pretrained_init,
    )


def _fca_dct_size(stage: int) -> dict[str, Any]:
    """FcaNet's DCT size per ResNet stage, 56 / 28 / 14 / 7 (its ``c2wh`` table for 224 px input)."""
    return {"dct_size": 56 >> (stage - 1)}


def _gsop_stride(stage: int) -> dict[str, Any]:
    """GSoP's stride-2 reduction conv in the first stage (the official ResNet integration)."""
    return {"stride": 2} if stage == 1 else {}


_TSM = "TSM: Temporal Shift Module for Efficient Video Understanding"
_ACTION = "ACTION-Net: Multipath Excitation for Action Recognition"
_TAM = "TAM: Temporal Adaptive Module for Video Recognition"
_TDN = "TDN: Temporal Difference Networks for Efficient Action Recognition"
_TADA = "TAda! Temporally-Adaptive Convolutions for Video Understanding"
_SCSE = "Concurrent Spatial and Channel Squeeze & Excitation in Fully Convolutional Networks"

_REGISTRY: dict[str, AttentionSpec] = {
    s.name: s
    for s in (
        # temporal
        _spec("tsm", TemporalShift, True, "input", _TSM, "1811.08383", "ICCV 2019"),
        _spec("tsm_online", TemporalShift, True, "input", _TSM, "1811.08383", "ICCV 2019", direction="past"),
        _spec("action", Action, True, "input", _ACTION, "2103.07372", "CVPR 2021"),
        _spec("action_ste", Action, True, "input", _ACTION, "2103.07372", "CVPR 2021", paths=("ste",)),
        _spec("action_ce", Action, True, "input", _ACTION, "2103.07372", "CVPR 2021", paths=("ce",)),
        _spec("action_me", Action, True, "input", _ACTION, "2103.07372", "CVPR 2021", paths=("me",)),
        _spec("tam", TAM, True, "after_conv1", _TAM, "2005.06803", "ICCV 2021"),
        _spec("tam_local", TAM, True, "after_conv1", _TAM, "2005.06803", "ICCV 2021", branches=("local",)),
        _spec("tam_global", TAM, True, "after_conv1", _TAM, "2005.06803", "ICCV 2021", branches=("global",)),
        # TDN (Wang et al.): the short-term TDM in place of the stem and res2 (5 frames per
        # segment), the long-term TDM + learnable shift after conv1 of the blocks of res3-res5
        _spec(
            "tdn_stem",
            TDNShortTerm,
            True,
            "stem",
            _TDN,
            "2012.10071",
            "CVPR 2021",
            scope="stem",
            frames_per_segment=5,
            pretrained_init=tdn_init_from_backbone,
        ),
        _spec("tdn_long", TDNLongTerm, True, "after_conv1", _TDN, "2012.10071", "CVPR 2021"),
        # TAda2D (Huang et al.): TAdaConv + temporal aggregation in place of every conv2 + bn2
        _spec(
            "tada",
            TAdaConv2d,
            True,
            "conv",
            _TADA,
            "2110.06178",
            "ICLR 2022",
            scope="conv",
            pretrained_map={"conv.": "", "bn.": "bn."},
            no_weight_decay=("rf.g.bias", "rf.a.bias"),
        ),
        # static
        _spec("se", SqueezeExcitation, False, "output", "Squeeze-and-Excitation Networks", "1709.01507", "CVPR 2018"),
        _spec("cse", ChannelSE, False, "output", _SCSE, "1803.02579", "MICCAI 2018"),
        _spec("sse", SpatialSE, False, "output", _SCSE, "1803.02579", "MICCAI 2018"),
        _spec("scse", SCSE, False, "output", _SCSE, "1803.02579", "MICCAI 2018"),
        _spec(
            "eca",
            ECA,
            False,
            "output",
            "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
            "1910.03151",
            "CVPR 2020",
        ),
        _spec(
            "rcan_ca",
            RCANChannelAttention,
            False,
            "output",
            "Image Super-Resolution Using Very Deep Residual Channel Attention Networks",
            "1807.02758",
            "ECCV 2018",
        ),
        _spec(
            "srm",
            SRM,
            False,
            "output",
            "SRM: A Style-based Recalibration Module for Convolutional Neural Networks",
            "1903.10829",
            "ICCV 2019",
        ),
        _spec(
            "gct",
            GCT,
            False,
            "before_last",
            "Gated Channel Transformation for Visual Recognition",
            "1909.11519",
            "CVPR 2020",
            no_weight_decay=("beta",),
        ),
        _spec(
            "fca",
            FcaAttention,
            False,
            "output",
            "FcaNet: Frequency Channel Attention Networks",
            "2012.11879",
            "ICCV 2021",
            stage_defaults=_fca_dct_size,
        ),
        _spec(
            "encnet",
            EncModule,
            False,
            "head",
            "Context Encoding for Semantic Segmentation",
            "1803.08904",
            "CVPR 2018",
            scope="head",
            from_model=("num_classes",),
        ),
        _spec(
            "gsop",
            GSoP,
            False,
            "output",
            "Global Second-order Pooling Convolutional Networks",
            "1811.12006",
            "CVPR 2019",
            stage_defaults=_gsop_stride,
        ),
        _spec(
            "soca",
            SOCA,
            False,
            "output",
            "Second-order Attention Network for Single Image Super-Resolution",
            None,
            "CVPR 2019",
        ),
        _spec(
            "bilinear",
            BilinearAttention,
            False,
            "output",
            "Bilinear Attention Networks for Person Retrieval",
            None,
            "ICCV 2019",
        ),
        _spec(
            "dia",
            DIA,
            False,
            "output",
            "DIANet: Dense-and-Implicit Attention Network",
            "1905.10671",
            "AAAI 2020",
            scope="stage",
        ),
    )
}


def list_attention(kind: Literal["temporal", "static"] | None = None) -> list[str]:
    """Registered names in table order, optionally only the ``temporal`` or ``static`` ones."""
    return [n for n, s in _REGISTRY.items() if kind is None or s.kind == kind]


def get_spec(name: str) -> AttentionSpec:
    """The :class:`AttentionSpec` of ``name``; unknown names raise ``ValueError`` with close matches."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"unknown attention module {name!r}.{hint} Available: {', '.join(_REGISTRY)}") from None


def accepted_hparams(name: str) -> list[str]:
    """Keyword hyper-parameters ``name`` accepts (besides what its site gives: ``channels``,
    ``num_segments``; a conv module's ``stride``, a stem module's ``stage``)."""
    spec = get_spec(name)
    params = inspect.signature(spec.cls).parameters
    given = (*SITE_ARGUMENTS[spec.scope], *spec.defaults)
    return [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY and p not in given]


def build_attention(
    name: str,
    channels: int,
    num_segments: int | None = None,
    *,
    stage: int | None = None,
    model: Mapping[str, Any] | None = None,
    site: Mapping[str, Any] | None = None,
    **hparams: Any,
) -> nn.Module:
    """Build the module registered as ``name`` for ``channels`` input channels.

    Temporal modules need ``num_segments``; static modules ignore it. ``stage`` (1-4) applies
    the row's stage-dependent defaults, ``model`` (the model's settings, e.g. ``num_classes``)
    the settings the row takes from the model; ``hparams`` override both. ``site``: what a
    ``conv`` site gives (``out_channels``, ``stride``) or a ``stem`` site (``first_stage``, a
    plain copy of the backbone's first stage); see :mod:`videoattn.attention.protocols`.
    Unknown hyper-parameters raise ``ValueError`` naming the key and the accepted ones.
    """
    spec = get_spec(name)
    if channels < 1:
        raise ConfigError(f"{name}: channels must be positive, got {channels}")
    accepted = accepted_hparams(name)
    unknown = sorted(set(hparams) - set(accepted))
    if unknown:
        raise ConfigError(
            f"{name}: unknown hyper-parameter(s) {unknown}; {spec.cls.__name__} accepts {accepted or 'none'}"
        )
    implied: dict[str, Any] = {}
    if stage is not None and spec.stage_defaults is not None:
        implied |= spec.stage_defaults(stage)
    for key in spec.from_model:
        if model is not None and model.get(key) is not None:
            implied[key] = model[key]
    kwargs = {**spec.defaults, **implied, **hparams}
    if "num_segments" in SITE_ARGUMENTS[spec.scope] and (spec.temporal or spec.scope in FIXED_SLOTS):
        if num_segments is None:
            raise ConfigError(
                f"{name!r} is a temporal module: build it with num_segments=T (the number of "
                f"frames per clip), e.g. build_attention({name!r}, {channels}, num_segments=8)"
            )
        if num_segments < 1:
            raise ConfigError(f"{name}: num_segments must be >= 1, got {num_segments}")
        kwargs["num_segments"] = num_segments
    site = dict(site or {})
    try:
        if spec.scope == "conv":  # cls(in_channels, out_channels, *, stride, num_segments, **hp)
            return spec.cls(channels, site["out_channels"], stride=site["stride"], **kwargs)
        if spec.scope == "stem":  # cls(channels=C, num_segments=T, stage=<plain first stage>, **hp)
            return spec.cls(channels=channels, stage=site["first_stage"], **kwargs)
        return spec.cls(channels, **kwargs)
    except ConfigError:
        raise
    except ValueError as err:  # a module's check of its own hyper-parameters (impl, shift_div, ...)
        raise ConfigError(f"{name}: {err}") from err


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Full parameter names of the registered modules inside ``model`` that their rows exclude
    from weight decay (``no_weight_decay``: local names, e.g. GCT's ``beta``)."""
    by_class: dict[type[nn.Module], set[str]] = {}
    for spec in _REGISTRY.values():
        by_class.setdefault(spec.cls, set()).update(spec.no_weight_decay)
    names: set[str] = set()
    for prefix, module in model.named_modules():
        for n in by_class.get(type(module), ()):
            names.add(f"{prefix}.{n}" if prefix else n)
    return names


def _temporal_classes() -> dict[type[nn.Module], bool]:
    """Each registered class and whether it is temporal."""
    out: dict[type[nn.Module], bool] = {}
    for spec in _REGISTRY.values():
        out[spec.cls] = out.get(spec.cls, False) or spec.temporal
    return out


def _stream_blocker(module: nn.Module) -> str | None:
    """Why a registered temporal module cannot stream, or None when it can."""
    blocker = getattr(module, "stream_blocker", None)
    if not callable(blocker):
        return "mixes the frames of a clip and has no stream_step(x, state); it cannot run one frame at a time"
    reason = blocker()
    if reason is None and not callable(getattr(module, "stream_step", None)):
        return "says it streams but has no stream_step(x, state)"
    return reason


def stream_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The registered temporal modules of ``model`` that stream (``stream_step``), by their names
    in ``model`` and in module order: the modules whose state a streaming model carries."""
    temporal = _temporal_classes()
    return [(name, m) for name, m in model.named_modules() if temporal.get(type(m)) and _stream_blocker(m) is None]


def streaming_blockers(model: nn.Module) -> list[str]:
    """One line per registered module of ``model`` that cannot run one frame at a time,
    ``"<its name in model>: <reason>"`` (temporal modules that look at future frames or the
    whole clip); empty when the model can stream. Static modules never block: in eval mode
    they act on each frame alone."""
    temporal = _temporal_classes()
    lines = []
    for name, m in model.named_modules():
        if temporal.get(type(m)):
            reason = _stream_blocker(m)
            if reason is not None:
                lines.append(f"{name}: {reason}")
    return lines
