"""MobileNetV2 with ``input`` and ``output`` slots in its residual blocks (TSM's online model).

torchvision's ``MobileNetV2`` (its parameter names, ``features.N.conv.M``), built with
:class:`SlotInvertedResidual` as the block. Like the official TSM MobileNetV2, inserts go into
the inverted-residual blocks that have an identity shortcut (``use_res_connect``): ``input``
on the residual branch before the expansion conv, ``output`` after the projection BN, before
the add. Stages group the blocks by output stride (1: /2 and /4, 2: /8, 3: /16, 4: /32).
The trunk maps ``(N*T, 3, H, W)`` to ``(N*T, 1280, H/32, W/32)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.models.mobilenetv2 import InvertedResidual, MobileNetV2

from ..attention import get_spec
from ..errors import ConfigError
from .inserts import Insert
from .resnet import Inserts, _named

MOBILENET_SLOTS = ("input", "output")


class SlotInvertedResidual(InvertedResidual):
    """torchvision's InvertedResidual with ``att_input`` / ``att_output`` slots."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # instance attributes, not class defaults: a class attribute would shadow the
        # submodules nn.Module registers under these names
        self.att_input: Inserts | None = None
        self.att_output: Inserts | None = None

    def forward(self, x: Tensor) -> Tensor:
        if not self.use_res_connect:
            return self.conv(x)
        out = x if self.att_input is None else self.att_input(x)
        out = self.conv(out)
        if self.att_output is not None:
            out = self.att_output(out)
        return x + out


class MobileNetV2Trunk(nn.Module):
    """``features`` of torchvision's MobileNetV2 (no classifier), with the inserts attached."""

    def __init__(self, *, num_segments: int, inserts: Sequence[Insert] = (), width_mult: float = 1.0) -> None:
        super().__init__()
        net = MobileNetV2(width_mult=width_mult, block=SlotInvertedResidual)  # torchvision init
        self.features = net.features
        self.num_features = net.last_channel
        self.num_segments = num_segments
        blocks = [(i, m) for i, m in enumerate(self.features) if isinstance(m, SlotInvertedResidual)]
        stride, stage_of = 2, {}
        for i, m in blocks:
            stride *= m.stride
            stage_of[i] = max(1, min(4, stride.bit_length() - 2))  # /2,/4 -> 1, /8 -> 2, /16 -> 3, /32 -> 4
        for ins in inserts:
            spec = get_spec(ins.name)
            if spec.scope == "stage":
                raise ConfigError(
                    f"{ins.name!r} needs ResNet stages (a state shared by their blocks); not available in mobilenet_v2"
                )
            if ins.slot not in (*MOBILENET_SLOTS, "head"):
                raise ConfigError(
                    f"mobilenet_v2 blocks have the slots {MOBILENET_SLOTS}, not {ins.slot!r} ({ins.name})"
                )
        for stage in (1, 2, 3, 4):
            in_stage = [(i, m) for i, m in blocks if stage_of[i] == stage and m.use_res_connect]
            for j, (_, m) in enumerate(in_stage):
                slots: dict[str, list] = {}
                for ins in inserts:
                    if ins.slot != "head" and ins.applies(stage, j, len(in_stage)):
                        module = ins.build(m.out_channels, stage=stage, num_segments=num_segments)
                        slots.setdefault(ins.slot, []).append((ins.name, module))
                m.att_input = _named(slots.get("input", []))
                m.att_output = _named(slots.get("output", []))

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)  # (N*T, 3, H, W) -> (N*T, 1280, H/32, W/32)
