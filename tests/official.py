"""Official TSM / TAM / ACTION-Net checkpoints with random weights, in the key layout, shapes and
dtypes of the official implementations (``tests/data/official_state_dicts``), saved the way
their training scripts save them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

LAYOUTS = Path(__file__).resolve().parent / "data" / "official_state_dicts"
SOURCES = ("tsm", "tam", "action")


def official_state_dict(source: str, seed: int = 0, *, num_classes: int | None = None) -> dict[str, torch.Tensor]:
    """A random state_dict with the official layout of ``source`` (ResNet-50, T=8, 174 classes;
    ``num_classes`` resizes the classifier ``new_fc``)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for row in (LAYOUTS / f"{source}_resnet50_8seg_174cls.tsv").read_text().splitlines()[1:]:
        key, shape, dtype = row.split("\t")
        shape = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
        if num_classes is not None and key.startswith("module.new_fc."):
            shape = (num_classes, *shape[1:])
        if dtype == "int64":
            sd[key] = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_var"):
            sd[key] = 0.5 + torch.rand(shape, generator=g)
        else:
            sd[key] = 0.1 * torch.randn(shape, generator=g)
    return sd


def save_official(
    path: Path, source: str, *, seed: int = 0, num_classes: int | None = None, legacy: bool = False
) -> Path:
    """Write an official-layout checkpoint as the official scripts do: ``{'epoch', 'arch',
    'state_dict', 'best_prec1'}`` with ``best_prec1`` a numpy scalar (not loadable with
    ``weights_only=True``); ``legacy``: in the pre-1.6 non-zip format of the older releases."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "epoch": 45,
            "arch": "resnet50",
            "state_dict": official_state_dict(source, seed, num_classes=num_classes),
            "best_prec1": np.float64(61.2),
        },
        path,
        _use_new_zipfile_serialization=not legacy,
    )
    return path
