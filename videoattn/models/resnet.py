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
their state from one of those blocks to the next. The backbone maps ``(N*T, 3, H, W)`` to the
last feature map ``(N*T, F, H/32, W/32)``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

from ..attention import get_spec
from .inserts import Insert

ARCHS: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}


class Inserts(nn.Sequential):
    """The modules inserted in one slot, applied in order; named by registry name."""


def _slot_channels(block_cls: type[nn.Module], inplanes: int, planes: int) -> dict[str, int]:
    expansion = block_cls.expansion
    return {"input": inplanes, "after_conv1": planes, "before_last": planes, "output": planes * expansion}


def unique_names(names: Sequence[str]) -> list[str]:
    """Registry names made unique in order: ``se, se, eca -> se, se_1, eca``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        k = seen.get(name, 0)
        seen[name] = k + 1
        out.append(name if k == 0 else f"{name}_{k}")
    return out


def _named(mods: list[tuple[str, nn.Module]]) -> Inserts | None:
    if not mods:
        return None
    return Inserts(OrderedDict(zip(unique_names([n for n, _ in mods]), [m for _, m in mods], strict=True)))


def inserted_prefixes(backbone: nn.Module) -> list[str]:
    """State-dict prefixes (``layer1.0.att_input.``, ``layer4.<name>.`` for a stage-shared one) of the modules inserted
    into ``backbone``: the slot containers and the stage-shared modules."""
    out = []
    for name, m in backbone.named_modules():
        if isinstance(m, Inserts):
            out.append(f"{name}.")
        elif isinstance(m, Stage):
            out += [f"{name}.{shared}." for shared in m.shared]
    return out


class _SlotsMixin:
    """Slot containers (``att_input``, ``att_after_conv1``, ``att_before_last``,
    ``att_output``) on top of a torchvision block; each is absent (``None``) when nothing is
    inserted there, and an absent slot costs nothing (no call, no copy). Subclasses define the
    residual branch in :meth:`_branch`."""

    att_input: Inserts | None
    att_after_conv1: Inserts | None
    att_before_last: Inserts | None
    att_output: Inserts | None

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__(inplanes, planes, stride, downsample)
        self._init_slots({})  # the builder attaches the slots after torchvision's init

    def _init_slots(self, slots: dict[str, Inserts | None]) -> None:
        for slot in ("input", "after_conv1", "before_last", "output"):
            setattr(self, f"att_{slot}", slots.get(slot))

    def _branch(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _conv1_of_input(self, x: Tensor) -> Tensor:
        """``conv1(input slot(x))``. A lone insert with a ``conv_after(x, conv)`` method may
        compute that itself (TSM: shift in place, convolve, undo; no shifted copy of ``x``)
        or decline with None."""
        ins = self.att_input
        if ins is None:
            return self.conv1(x)
        if len(ins) == 1 and not ins._forward_hooks and not ins._forward_pre_hooks:
            conv_after = getattr(ins[0], "conv_after", None)
            out = None if conv_after is None else conv_after(x, self.conv1)
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
    """torchvision's Bottleneck (ResNet v1.5, stride on conv2) with insertion slots."""

    def _branch(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self._conv1_of_input(x)))
        if self.att_after_conv1 is not None:
            out = self.att_after_conv1(out)
        out = self.relu(self.bn2(self.conv2(out)))
        if self.att_before_last is not None:
            out = self.att_before_last(out)
        return self.bn3(self.conv3(out))


class Stage(nn.Sequential):
    """The blocks of one stage (``layerX.0``, ``layerX.1``, ...), plus its stage-shared modules
    (``layerX.<name>``), each with the blocks it gates; the stage threads each one's state
    through its blocks, from ``None`` at the first."""

    def __init__(
        self, blocks: Sequence[nn.Module], shared: Sequence[tuple[str, nn.Module, Sequence[int]]] = ()
    ) -> None:
        super().__init__(*blocks)
        self.num_blocks = len(blocks)
        self.shared: dict[str, tuple[int, ...]] = {}  # name -> the blocks it gates
        for name, module, where in shared:
            self.add_module(name, module)
            self.shared[name] = tuple(where)

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
            x = self[i].forward_shared(x, [getattr(self, n) for n in names], mine)
            states.update(zip(names, mine, strict=True))
        return x


class ResNet(nn.Module):
    """A torchvision-compatible ResNet trunk (no ``fc``) whose blocks carry the inserts.

    ``widths`` narrows the network for tests (default 64, 128, 256, 512 as torchvision);
    ``num_segments`` is handed to the temporal modules. Backbone convs and BNs get
    torchvision's init (Kaiming normal, fan_out; BN weight 1, bias 0); inserted modules keep
    the init of their papers.
    """

    def __init__(
        self,
        block: type[nn.Module],
        layers: Sequence[int],
        *,
        num_segments: int,
        inserts: Sequence[Insert] = (),
        widths: Sequence[int] = (64, 128, 256, 512),
    ) -> None:
        super().__init__()
        slot_block = {BasicBlock: SlotBasicBlock, Bottleneck: SlotBottleneck}[block]
        self.num_segments = num_segments
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._init_backbone()  # before any insert exists
        for stage, (planes, n) in enumerate(zip(widths, layers, strict=True), start=1):
            stride = 1 if stage == 1 else 2
            setattr(self, f"layer{stage}", self._make_stage(slot_block, planes, n, stride, stage, inserts))
        self.num_features = widths[-1] * block.expansion

    def _init_backbone(self, modules: Sequence[nn.Module] | None = None) -> None:
        for m in modules if modules is not None else self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_stage(self, block, planes, n, stride, stage, inserts) -> Stage:
        blocks = []
        shared = [ins for ins in inserts if get_spec(ins.name).scope == "stage"]
        for i in range(n):
            downsample = None
            s = stride if i == 0 else 1
            if i == 0 and (s != 1 or self.inplanes != planes * block.expansion):
                downsample = nn.Sequential(
                    conv1x1(self.inplanes, planes * block.expansion, s),
                    nn.BatchNorm2d(planes * block.expansion),
                )
            channels = _slot_channels(block, self.inplanes, planes)
            slots: dict[str, list] = {}
            for ins in inserts:
                if ins.slot == "head" or ins in shared or not ins.applies(stage, i, n):
                    continue
                module = ins.build(channels[ins.slot], stage=stage, num_segments=self.num_segments)
                slots.setdefault(ins.slot, []).append((ins.name, module))
            # build the plain block first, init it as torchvision does, then attach the slots
            b = block(self.inplanes, planes, s, downsample)
            self._init_backbone(list(b.modules()))
            b._init_slots({k: _named(v) for k, v in slots.items()})
            blocks.append(b)
            self.inplanes = planes * block.expansion
        # one module per stage-scoped insert, gating the blocks it selects
        out_channels = planes * block.expansion
        gated = [(ins, [i for i in range(n) if ins.applies(stage, i, n)]) for ins in shared]
        gated = [(ins, where) for ins, where in gated if where]
        names = unique_names([ins.name for ins, _ in gated])
        return Stage(
            blocks,
            [
                (name, ins.build(out_channels, stage=stage, num_segments=self.num_segments), where)
                for name, (ins, where) in zip(names, gated, strict=True)
            ],
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N*T, 64, H/4, W/4)
        x = self.layer1(x)
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
) -> ResNet:
    """``resnet18/34/50/101``; ``layers`` / ``widths`` override depth and width (tiny test nets)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown ResNet arch {arch!r}; choose one of {sorted(ARCHS)}")
    block, default_layers = ARCHS[arch]
    return ResNet(
        block,
        tuple(layers or default_layers),
        num_segments=num_segments,
        inserts=inserts,
        widths=tuple(widths or (64, 128, 256, 512)),
    )
