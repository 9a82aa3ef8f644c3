"""ONNX parity of ResNet-50 models at 224 px, T=8 (docs/deploy.md).

    uv run python docs/scripts/onnx_parity_r50.py tsm tam action

Random weights, with the BatchNorm statistics calibrated on two random batches: eval-mode BN
with its initial statistics (mean 0, variance 1) lets a random ResNet-50's logits grow to 1e6
and more, where fp32 rounding alone exceeds any absolute bound; calibrated, the logits have a
trained network's scale. The export is checked (<= 1e-4 max abs, else it raises) on a batch
of 2 after tracing with 1.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from videoattn.deploy.onnx import export_onnx
from videoattn.models import build_model


def calibrated(name: str, *, generator: torch.Generator) -> torch.nn.Module:
    model = build_model(
        {"arch": "resnet50", "num_classes": 174, "num_segments": 8, "inserts": [{"name": name}], "pretrained": None}
    )
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # the cumulative average of the batches below
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 8, 3, 224, 224, generator=generator))  # (N, T, 3, H, W)
    return model.eval()


def main(names: list[str]) -> None:
    torch.set_num_threads(2)
    for name in names:
        g = torch.Generator().manual_seed(0)
        model = calibrated(name, generator=g)
        x, y = torch.randn(1, 8, 3, 224, 224, generator=g), torch.randn(2, 8, 3, 224, 224, generator=g)
        with torch.no_grad():
            scale = model(y).abs().max().item()
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            diff = export_onnx(model, Path(tmp) / "m.onnx", example=[x], check_inputs=[y], metadata={})
        seconds = time.perf_counter() - t0
        print(f"{name}: max abs diff {diff:.2e} (max abs logit {scale:.2f}), export + check {seconds:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:] or ["tsm", "tam", "action"])
