"""MobileNetV2 with ``input`` and ``output`` slots in its residual blocks (TSM's online model).

torchvision's ``MobileNetV2`` (its parameter names, ``features.N.conv.M``), built with
:class:`SlotInvertedResidual` as the block. Like the official TSM MobileNetV2, inserts go into
the inverted-residual blocks that have an identity shortcut (``use_res_connect``): ``input``
on the residual branch before the expansion conv, ``output`` after the projection BN, before
the add. Stages group the blocks by output stride (1: /2 and /4, 2: /8, 3: /16, 4: /32).
The trunk maps ``(N*T, 3, H, W)`` to ``(N*T, 1280, H/32, W/32)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn
from torchvision.models.mobilenetv2 import InvertedResidual, MobileNetV2

from .inserts import Insert
from .placement import Inserts, Site, place, slot_container

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
    """``features`` of torchvision's MobileNetV2 (no classifier), with the inserts attached at
    the sites of its residual blocks (:func:`videoattn.models.placement.place`)."""

    def __init__(
        self,
        *,
        num_segments: int,
        inserts: Sequence[Insert] = (),
        width_mult: float = 1.0,
        model: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        net = MobileNetV2(width_mult=width_mult, block=SlotInvertedResidual)  # torchvision init
        self.features = net.features
        self.num_features = net.last_channel
        self.num_segments = num_segments
        blocks = [(i, m) for i, m in enumerate(self.features) if isinstance(m, SlotInvertedResidual)]
        stride, self._stage_of = 2, {}
        for i, m in blocks:
            stride *= m.stride
            self._stage_of[i] = max(1, min(4, stride.bit_length() - 2))  # /2,/4 -> 1, /8 -> 2, /16 -> 3, /32 -> 4
        sites: list[Site] = []
        for stage in (1, 2, 3, 4):
            in_stage = [(i, m) for i, m in blocks if self._stage_of[i] == stage and m.use_res_connect]
            for j, (i, m) in enumerate(in_stage):
                n, path = len(in_stage), f"features.{i}"
                here = [Site(stage, j, n, slot, m.out_channels, path=path) for slot in MOBILENET_SLOTS]
                placed = place(inserts, here, num_segments=num_segments, model=model)
                m.att_input = slot_container(placed, "input")
                m.att_output = slot_container(placed, "output")
                sites += here
        self.sites = tuple(sites)

    def stem(self, x: Tensor) -> Tensor:
        """The first conv-BN-ReLU6: ``(N*T, 3, H, W) -> (N*T, 32, H/2, W/2)``."""
        return self.features[0](x)

    @property
    def stages(self) -> tuple[Callable[[Tensor], Tensor], ...]:
        """The blocks of each stage (by output stride), the last conv in stage 4, as callables."""
        last = len(self.features) - 1
        stage_of = {**self._stage_of, last: 4}
        members = [[self.features[i] for i in sorted(stage_of) if stage_of[i] == s] for s in (1, 2, 3, 4)]
        return tuple(nn.Sequential(*m).forward for m in members)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)  # (N*T, 3, H, W) -> (N*T, 1280, H/32, W/32)


def build_mobilenet_v2(
    *, num_segments: int, inserts: Sequence[Insert] = (), model: dict[str, Any] | None = None
) -> MobileNetV2Trunk:
    """The table's builder of ``mobilenet_v2`` (it takes no ``layers`` / ``widths``)."""
    return MobileNetV2Trunk(num_segments=num_segments, inserts=inserts, model=model)
