"""ResNet-18/34/50/101 with four insertion slots in every residual block.

The network is torchvision's (its ``BasicBlock`` / ``Bottleneck`` classes, its parameter names
``conv1``, ``bn1``, ``layer1.0.conv1``, ...), so torchvision's ImageNet weights load with only
the inserted modules missing. Each block gets, where an insert asks for it, an
``Inserts`` container per slot:

    x ──► [input] ─► conv1-bn1-relu ─► [after_conv1] ─► ... ─► [before_last] ─► conv_last-bn
              │                                                                   │
              └────────────────── shortcut (downsample) ──── + ◄── [output] ◄────┘

``before_last`` is before conv3 in a Bottleneck and before conv2 in a BasicBlock (where it
coincides with ``after_conv1``). Stage-scoped modules (DIANet) live once per stage
(``layerX.<name>``) and gate the ``output`` slot of the blocks their insert selects, carrying
their state from one of those blocks to the next. Two more sites: a Bottleneck's ``conv``
(a module in place of ``conv2`` + ``bn2``, ``layerX.Y.att_conv.<name>``) and the ``stem`` (a
module in place of ``layer1(stem(x))``, ``att_stem.<name>``); the placement is
:func:`videoattn.models.placement.place`, as for every backbone. The backbone maps
``(N*T, 3, H, W)`` to the last feature map ``(N*T, F, H/32, W/32)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

from ..attention import FusesConv
from .inserts import Insert
from .placement import (
    BLOCK_SLOTS,
    Inserts,
    Replacement,
    SharedStage,
    Site,
    inserted_prefixes,
    place,
    slot_container,
    unique_names,
)

__all__ = ["ARCHS", "ResNet", "Stage", "build_resnet", "inserted_prefixes", "unique_names"]

ARCHS: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}
Stage = SharedStage  # the blocks of a stage and its stage-shared modules (videoattn.models.placement)


def _slot_channels(block_cls: type[nn.Module], inplanes: int, planes: int) -> dict[str, int]:
    expansion = block_cls.expansion
    return {"input": inplanes, "after_conv1": planes, "before_last": planes, "output": planes * expansion}


class _SlotsMixin:
    """Slot containers (``att_input``, ``att_after_conv1``, ``att_before_last``,
    ``att_output``) on top of a torchvision block; each is absent (``None``) when nothing is
    inserted there, and an absent slot costs nothing (no call, no copy). Subclasses define the
    residual branch in :meth:`_branch`."""

    att_input: Inserts | None
    att_after_conv1: Inserts | None
    att_before_last: Inserts | None
    att_output: Inserts | None
    att_conv: Replacement | None

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__(inplanes, planes, stride, downsample)
        self._init_slots({})  # the builder attaches the slots after torchvision's init

    def _init_slots(self, slots: dict[str, nn.Module | None]) -> None:
        for slot in BLOCK_SLOTS:
            setattr(self, f"att_{slot}", slots.get(slot))
        ins = self.att_input  # a lone input module that can fuse itself with conv1 (FusesConv)
        self._fuses_conv1 = ins is not None and len(ins) == 1 and isinstance(ins[0], FusesConv)
        self.att_conv = slots.get("conv")
        if self.att_conv is not None:  # the module takes the place of the spatial conv and its BN
            for layer in dict(self.att_conv.site.replaces).values():
                delattr(self, layer)

    def _branch(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _conv1_of_input(self, x: Tensor) -> Tensor:
        """``conv1(input slot(x))``. A lone insert that fuses with a conv
        (:class:`~videoattn.attention.FusesConv`) may compute that itself (TSM: shift in place,
        convolve, undo; no shifted copy of ``x``) or decline with None."""
        ins = self.att_input
        if ins is None:
            return self.conv1(x)
        if self._fuses_conv1 and not ins._forward_hooks and not ins._forward_pre_hooks:
            out = ins[0].conv_after(x, self.conv1)
            if out is not None:
                return out
        return self.conv1(ins(x))

    def _residual(self, out: Tensor, x: Tensor, *, inplace: bool) -> Tensor:
        """``relu(out + shortcut(x))``. ``inplace``: ``out`` is the last BN's own output (as
        in torchvision, added to in place). An inserted module's output may be saved by its
        backward, so it gets a new tensor, unless no graph is recorded (inference)."""
        identity = x if self.downsample is None else self.downsample(x)
        if inplace or not torch.is_grad_enabled():
            out += identity
        else:
            out = out + identity
        return self.relu(out)  # torchvision's ReLU(inplace=True)

    def forward_shared(self, x: Tensor, steps: Sequence[nn.Module], states: list) -> Tensor:
        """The block, with stage-shared modules (DIANet) gating the branch output after the
        ``output`` slot; ``states[i]`` is ``steps[i]``'s state, replaced by the new one."""
        out = self._branch(x)
        if self.att_output is not None:
            out = self.att_output(out)
        for i, module in enumerate(steps):
            out, states[i] = module.step(out, states[i])
        inplace = self.att_output is None and not steps
        return self._residual(out, x, inplace=inplace)

    def forward(self, x: Tensor) -> Tensor:
        out = self._branch(x)
        if self.att_output is None:
            return self._residual(out, x, inplace=True)
        return self._residual(self.att_output(out), x, inplace=False)


class SlotBasicBlock(_SlotsMixin, BasicBlock):
    """torchvision's BasicBlock with insertion slots (``before_last`` = before conv2)."""

    def _branch(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self._conv1_of_input(x)))
        if self.att_after_conv1 is not None:
            out = self.att_after_conv1(out)
        if self.att_before_last is not None:
            out = self.att_before_last(out)
        return self.bn2(self.conv2(out))


class SlotBottleneck(_SlotsMixin, Bottleneck):
    """torchvision's Bottleneck (ResNet v1.5, stride on conv2) with insertion slots, and a
    ``conv`` site: a module (``att_conv``) in place of ``conv2`` + ``bn2``."""

    def _branch(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self._conv1_of_input(x)))
        if self.att_after_conv1 is not None:
            out = self.att_after_conv1(out)
        if self.att_conv is None:
            out = self.relu(self.bn2(self.conv2(out)))
        else:
            out = self.relu(self.att_conv.module(out))  # (N*T, planes, H, W) -> (N*T, planes, H/s, W/s)
        if self.att_before_last is not None:
            out = self.att_before_last(out)
        return self.bn3(self.conv3(out))


class ResNet(nn.Module):
    """A torchvision-compatible ResNet trunk (no ``fc``) whose blocks carry the inserts.

    ``widths`` narrows the network for tests (default 64, 128, 256, 512 as torchvision);
    ``num_segments`` is handed to the temporal modules. ``stem_pool=False`` drops the stem's
    max-pool and ``stage_strides`` sets the stride of each stage's first block (on its 3x3 conv
    and its 1x1 shortcut; default 1, 2, 2, 2): TAda2D's ResNet is ``stem_pool=False,
    stage_strides=(2, 2, 2, 2)`` (the same /32 output). Backbone convs and BNs get torchvision's
    init (Kaiming normal, fan_out; BN weight 1, bias 0); inserted modules keep the init of their
    papers. Sites (:class:`~videoattn.models.placement.Site`): the four slots of every block, a
    Bottleneck's ``conv`` (its ``conv2`` + ``bn2``) and the ``stem`` (``stage1(stem(x))``).
    """

    def __init__(
        self,
        block: type[nn.Module],
        layers: Sequence[int],
        *,
        num_segments: int,
        inserts: Sequence[Insert] = (),
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_pool: bool = True,
        stage_strides: Sequence[int] = (1, 2, 2, 2),
        model: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._block = {BasicBlock: SlotBasicBlock, Bottleneck: SlotBottleneck}[block]
        self._plan = tuple(zip(widths, layers, stage_strides, strict=True))  # (planes, blocks, stride) per stage
        self.num_segments = num_segments
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem_pool else nn.Identity()
        self._init_backbone()  # before any insert exists
        sites: list[Site] = []
        inplanes = widths[0]
        for stage in range(1, len(self._plan) + 1):
            layer, inplanes = self._make_stage(stage, inplanes, inserts, num_segments, model, sites)
            setattr(self, f"layer{stage}", layer)
        stem = Site(1, 0, 1, "stem", widths[0], layout="NT,F*3,H,W")
        placed = place(inserts, [stem], num_segments=num_segments, model=model, first_stage=self._plain_first_stage)
        self.att_stem = slot_container(placed, "stem")
        self.sites = (*sites, stem)
        self.num_features = inplanes

    def _init_backbone(self, modules: Sequence[nn.Module] | None = None) -> None:
        for m in modules if modules is not None else self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_stage(
        self,
        stage: int,
        inplanes: int,
        inserts: Sequence[Insert],
        num_segments: int,
        model: dict[str, Any] | None,
        sites: list[Site],
    ) -> tuple[SharedStage, int]:
        """Stage ``stage`` (1-based) from ``inplanes`` channels, with the inserts placed at its
        sites (appended to ``sites``), and its output channels."""
        block = self._block
        planes, n, stride = self._plan[stage - 1]
        out_channels = planes * block.expansion
        blocks, outputs = [], []
        for i in range(n):
            downsample = None
            s = stride if i == 0 else 1
            if i == 0 and (s != 1 or inplanes != out_channels):
                downsample = nn.Sequential(conv1x1(inplanes, out_channels, s), nn.BatchNorm2d(out_channels))
            path = f"layer{stage}.{i}"
            channels = _slot_channels(block, inplanes, planes)
            here = [Site(stage, i, n, slot, c, path=path) for slot, c in channels.items()]
            if block is SlotBottleneck:
                conv = (("conv", "conv2"), ("bn", "bn2"))
                here.append(Site(stage, i, n, "conv", planes, out_channels=planes, stride=s, path=path, replaces=conv))
            placed = place(inserts, here, num_segments=num_segments, model=model)
            # build the plain block first, init it as torchvision does, then attach the slots
            b = block(inplanes, planes, s, downsample)
            self._init_backbone(list(b.modules()))
            b._init_slots({slot: slot_container(placed, slot) for slot in (*BLOCK_SLOTS, "conv")})
            blocks.append(b)
            sites += here
            outputs.append(here[3])  # the output site: where stage-shared modules gate the block
            inplanes = out_channels
        # one module per stage-scoped insert, gating the blocks it selects
        shared = place(inserts, outputs, num_segments=num_segments, model=model, shared=True)
        return SharedStage(blocks, shared), out_channels

    def _plain_first_stage(self) -> nn.Module:
        """A fresh first stage without inserts, initialised as the backbone's (for a stem module)."""
        stage, _ = self._make_stage(1, self._plan[0][0], (), self.num_segments, None, [])
        return stage

    def stem(self, x: Tensor) -> Tensor:
        """conv1-bn1-relu-maxpool: ``(N*T, 3, H, W) -> (N*T, C1, H/4, W/4)`` (``H/2`` without the pool)."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    @property
    def stages(self) -> tuple[nn.Module, ...]:
        return tuple(self.get_submodule(f"layer{s}") for s in range(1, len(self._plan) + 1))

    def forward(self, x: Tensor) -> Tensor:
        if self.att_stem is None:
            x = self.layer1(self.stem(x))  # (N*T, 3, H, W) -> (N*T, 64, H/4, W/4) -> layer1
        else:  # (N*T, F*3, H, W) -> what layer1 returns
            x = self.att_stem.module(x, stem=self.stem, stage=self.layer1)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)  # (N*T, F, H/32, W/32)


def build_resnet(
    arch: str,
    *,
    num_segments: int,
    inserts: Sequence[Insert] = (),
    layers: Sequence[int] | None = None,
    widths: Sequence[int] | None = None,
    model: dict[str, Any] | None = None,
    **options: Any,
) -> ResNet:
    """``resnet18/34/50/101``; ``layers`` / ``widths`` override depth and width (tiny test nets);
    ``options``: :class:`ResNet`'s ``stem_pool`` / ``stage_strides``."""
    if arch not in ARCHS:
        raise ValueError(f"unknown ResNet arch {arch!r}; choose one of {sorted(ARCHS)}")
    block, default_layers = ARCHS[arch]
    return ResNet(
        block,
        tuple(layers or default_layers),
        num_segments=num_segments,
        inserts=inserts,
        widths=tuple(widths or (64, 128, 256, 512)),
        model=model,
        **options,
    )


def resnet_builder(arch: str, **options: Any) -> Callable[..., ResNet]:
    """The table's builder of ``arch`` with fixed :class:`ResNet` options (``stem_pool``, ...)."""

    def build(
        *,
        num_segments: int,
        inserts: Sequence[Insert] = (),
        model: dict[str, Any] | None = None,
        layers: Sequence[int] | None = None,
        widths: Sequence[int] | None = None,
    ) -> ResNet:
        return build_resnet(
            arch, num_segments=num_segments, inserts=inserts, model=model, layers=layers, widths=widths, **options
        )

    return build
