"""A toy backbone, as a new backbone is written: one file with its builder, and one table row
(:data:`ROW`, added by the test for its duration). Four stages of one residual block each, the
blocks offering the ``input`` and ``output`` slots; ``(N*T, 3, H, W) -> (N*T, 64, H/32, W/32)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from videoattn.models.backbones import BackboneSpec
from videoattn.models.inserts import Insert
from videoattn.models.placement import Site, place, slot_container


class ToyBlock(nn.Module):
    """``relu(x + output(bn(conv(input(x)))))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.att_input: nn.Module | None = None
        self.att_output: nn.Module | None = None

    def forward(self, x: Tensor) -> Tensor:
        out = x if self.att_input is None else self.att_input(x)
        out = self.bn(self.conv(out))
        if self.att_output is not None:
            out = self.att_output(out)
        return (x + out).relu()


class ToyNet(nn.Module):
    def __init__(
        self, *, num_segments: int, inserts: Sequence[Insert] = (), model: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        widths = (8, 16, 32, 64)
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=4, padding=1)  # /4
        layers, sites, c_in = [], [], widths[0]
        for stage, c in enumerate(widths, start=1):
            down = nn.Sequential(nn.Conv2d(c_in, c, 3, stride=1 if stage == 1 else 2, padding=1), nn.ReLU())
            block = ToyBlock(c)
            here = [Site(stage, 0, 1, slot, c, path=f"layers.{stage - 1}.1") for slot in ("input", "output")]
            placed = place(inserts, here, num_segments=num_segments, model=model)
            block.att_input, block.att_output = slot_container(placed, "input"), slot_container(placed, "output")
            layers.append(nn.Sequential(down, block))
            sites += here
            c_in = c
        self.layers = nn.ModuleList(layers)
        self.sites = tuple(sites)
        self.num_features = widths[-1]

    def stem(self, x: Tensor) -> Tensor:
        return self.conv1(x)  # (N*T, 3, H, W) -> (N*T, 8, H/4, W/4)

    @property
    def stages(self) -> tuple[nn.Module, ...]:
        return tuple(self.layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        return x  # (N*T, 64, H/32, W/32)


def build_toy(*, num_segments: int, inserts: Sequence[Insert] = (), model: dict[str, Any] | None = None) -> ToyNet:
    return ToyNet(num_segments=num_segments, inserts=inserts, model=model)


ROW = BackboneSpec("toy", build_toy, ("input", "output"), False, None, "a test backbone")
