"""The backbone table: one explicit row per backbone, name -> builder, sites and weights.

``model.arch`` names a row of :data:`BACKBONES`; :func:`videoattn.models.build_model` builds
it by table lookup (:func:`get_backbone`), and nothing else in the toolkit knows a backbone by
name. A row (:class:`BackboneSpec`) says:

- ``build(*, num_segments, inserts, model, **options) -> Backbone``: the builder, which places
  the inserts with :func:`videoattn.models.placement.place` while it builds itself (the same
  placement for every backbone); ``options`` are the model-config keys it takes (``layers``,
  ``widths``), read from its signature: a key a builder does not take is refused;
- ``slots``: the sites it offers (per-block slots, ``conv``, ``stem``), and ``shared_stages``:
  whether stage-scoped modules (DIANet) can share their state over its blocks; an insert that
  asks for anything else fails in one line before anything is built;
- ``weights``: torchvision's weights enum of the same network (``ResNet50_Weights``), which
  ``pretrained: imagenet`` loads; the backbone's parameter names are torchvision's, and the
  weights of layers a ``conv`` module replaces go to that module
  (:func:`videoattn.models.placement.pretrained_renames`); None: no ImageNet weights.

A backbone (:class:`Backbone`) is an ``nn.Module`` mapping ``(N*T, C, H, W)`` frames to the last
feature map ``(N*T, num_features, h, w)``, with its ``sites`` and ``stem`` / ``stages`` (without
a stem module, ``forward(x)`` is the stages applied in order to ``stem(x)``). A new backbone is
one file with its builder and one row here (tests/test_backbones.py registers a toy one).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from ..errors import ConfigError
from .mobilenet import MOBILENET_SLOTS, build_mobilenet_v2
from .placement import BLOCK_SLOTS, Site
from .resnet import resnet_builder

OPTIONS = ("layers", "widths")  # model-config keys a builder may take


@runtime_checkable
class Backbone(Protocol):
    """What the classifier, the placement and the weight loader need of a backbone."""

    num_features: int  # channels of the last feature map
    sites: tuple[Site, ...]  # every place it offered to the inserts (with a module there or not)

    def stem(self, x: Tensor) -> Tensor: ...

    @property
    def stages(self) -> tuple[Callable[[Tensor], Tensor], ...]: ...

    def __call__(self, x: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class BackboneSpec:
    """One row of the table (see the module docstring)."""

    name: str
    build: Callable[..., nn.Module]
    slots: tuple[str, ...]
    shared_stages: bool
    weights: str | None
    paper: str

    @property
    def options(self) -> tuple[str, ...]:
        """The model-config keys (``layers``, ``widths``) the builder takes."""
        params = inspect.signature(self.build).parameters
        return tuple(k for k in OPTIONS if k in params)

    def __post_init__(self) -> None:
        params = inspect.signature(self.build).parameters
        missing = [k for k in ("num_segments", "inserts", "model") if k not in params]
        if missing:
            raise TypeError(f"backbone {self.name}: its builder takes num_segments, inserts, model; not {missing}")
        unknown = sorted(set(self.slots) - {*BLOCK_SLOTS, "conv", "stem"})
        if unknown:
            raise TypeError(f"backbone {self.name}: unknown sites {unknown}")


_RESNET = "Deep Residual Learning for Image Recognition (arXiv 1512.03385)"
_BASIC = (*BLOCK_SLOTS, "stem")
_BOTTLENECK = (*BLOCK_SLOTS, "conv", "stem")

BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in (
        BackboneSpec("resnet18", resnet_builder("resnet18"), _BASIC, True, "ResNet18_Weights", _RESNET),
        BackboneSpec("resnet34", resnet_builder("resnet34"), _BASIC, True, "ResNet34_Weights", _RESNET),
        BackboneSpec("resnet50", resnet_builder("resnet50"), _BOTTLENECK, True, "ResNet50_Weights", _RESNET),
        BackboneSpec("resnet101", resnet_builder("resnet101"), _BOTTLENECK, True, "ResNet101_Weights", _RESNET),
        # TAda2D's ResNet-50 (TAdaConv, arXiv 2110.06178): no stem max-pool, stride 2 in every
        # stage's first block (res2 too); the same parameters, so torchvision's weights load
        BackboneSpec(
            "resnet50_tada",
            resnet_builder("resnet50", stem_pool=False, stage_strides=(2, 2, 2, 2)),
            _BOTTLENECK,
            True,
            "ResNet50_Weights",
            _RESNET,
        ),
        BackboneSpec(
            "mobilenet_v2",
            build_mobilenet_v2,
            MOBILENET_SLOTS,
            False,
            "MobileNet_V2_Weights",
            "MobileNetV2: Inverted Residuals and Linear Bottlenecks (arXiv 1801.04381)",
        ),
    )
}


def list_backbones() -> list[str]:
    """The backbone names, in table order."""
    return list(BACKBONES)


def get_backbone(name: str) -> BackboneSpec:
    """The row of ``name``; an unknown name is one line listing the names (and the close ones)."""
    try:
        return BACKBONES[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), BACKBONES, n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"model.arch={name!r}: expected one of {', '.join(BACKBONES)}{hint}") from None


def build_backbone(
    name: str, *, num_segments: int, inserts: Sequence[Any], model: dict[str, Any], **options: Any
) -> nn.Module:
    """The backbone of row ``name`` with ``inserts`` placed; ``options`` (``layers``, ``widths``)
    set to None are left out, others must be keys the builder takes."""
    spec = get_backbone(name)
    given = {k: v for k, v in options.items() if v is not None}
    refused = [k for k in given if k not in spec.options]
    if refused:
        takes = f"it takes {', '.join(spec.options)}" if spec.options else "it takes none"
        raise ConfigError(f"model.{refused[0]} does not apply to the {name} backbone ({takes}); leave it null")
    backbone = spec.build(num_segments=num_segments, inserts=inserts, model=model, **given)
    if not isinstance(backbone, Backbone):
        raise TypeError(f"backbone {name}: its builder returned a {type(backbone).__name__}, not a Backbone")
    return backbone
