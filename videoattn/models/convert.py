"""Convert checkpoints of the official TSM / TAM / ACTION-Net code into videoattn checkpoints.

The official models (``TSN(..., base_model='resnet50')`` in each repository) hold torchvision's
ResNet as ``base_model`` with the temporal modules wrapped around or inside its blocks, and the
classifier as ``new_fc``; their checkpoints are ``{'state_dict': {'module.' + key: tensor},
'epoch', 'arch', 'best_prec1'}``. Key mapping (``X.Y`` = stage X, block Y):

========  ==========================================  ==========================================
source    official key                                videoattn key
========  ==========================================  ==========================================
all       ``module.base_model.<k>``                   ``backbone.<k>``
all       ``module.new_fc.{weight,bias}``             ``fc.{weight,bias}``
tsm       ``layerX.Y.conv1.net.weight``               ``layerX.Y.conv1.weight``
tam       ``layerX.Y.net.<k>``                        ``layerX.Y.<k>``
tam       ``layerX.Y.tam.{G,L}.<k>``                  ``layerX.Y.att_after_conv1.tam.{G,L}.<k>``
action    ``layerX.Y.conv1.net.weight``               ``layerX.Y.conv1.weight``
action    ``layerX.Y.conv1.action_<k>``               ``layerX.Y.att_input.action.action_<k>``
========  ==========================================  ==========================================

The result carries its model config (arch, classes, T, inserts with the blocks that have
them), so ``build_model(ckpt["model_config"])`` + ``load_state_dict(ckpt["state_dict"])``
rebuilds the official model.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

SOURCES = ("tsm", "tam", "action")
_DEPTHS = {(3, 4, 6, 3): "resnet50", (3, 4, 23, 3): "resnet101"}
_BLOCK = re.compile(r"^layer(\d)\.(\d+)\.")


def _strip(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module."): v for k, v in sd.items()}


def detect_source(sd: Mapping[str, torch.Tensor]) -> str:
    """Which official implementation a (``module.``-stripped) state_dict comes from."""
    keys = list(sd)
    if any(".tam." in k for k in keys):
        return "tam"
    if any(".action_shift." in k for k in keys):
        return "action"
    if any(k.endswith(".conv1.net.weight") for k in keys):
        return "tsm"
    return "unknown"


def _convert_key(key: str, source: str) -> str | None:
    if key.startswith("new_fc."):
        return "fc." + key.removeprefix("new_fc.")
    if not key.startswith("base_model."):
        return None
    k = key.removeprefix("base_model.")
    if k.startswith("fc."):
        return None
    if source in ("tsm", "action"):
        k = k.replace(".conv1.net.", ".conv1.")
        k = re.sub(r"\.conv1\.(action_\w+)", r".att_input.action.\1", k)
    elif source == "tam":
        k = re.sub(r"^(layer\d\.\d+)\.net\.", r"\1.", k)
        k = re.sub(r"^(layer\d\.\d+)\.tam\.", r"\1.att_after_conv1.tam.", k)
    return "backbone." + k


def _blocks_per_stage(keys: list[str]) -> tuple[int, ...]:
    depth = [0, 0, 0, 0]
    for k in keys:
        m = _BLOCK.match(k.removeprefix("base_model."))
        if m:
            s, b = int(m.group(1)), int(m.group(2))
            depth[s - 1] = max(depth[s - 1], b + 1)
    return tuple(depth)


def _insert_placement(keys: list[str], marker: str, depth: tuple[int, ...]) -> dict[str, Any]:
    """``every`` / ``blocks`` reproducing which blocks carry the module in the source."""
    have = {(int(m.group(1)), int(m.group(2))) for k in keys if marker in k and (m := _BLOCK.match(k.removeprefix("base_model.")))}
    for every in (1, 2):
        if have == {(s, b) for s in range(1, 5) for b in range(depth[s - 1]) if b % every == 0}:
            return {"every": every}
    raise ValueError(f"unsupported placement of {marker.strip('.')} modules: {sorted(have)}")


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, source: str, num_segments: int, shift_div: int = 8
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Map an official state_dict to ours; returns ``(state_dict, model_config)``."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {SOURCES}")
    sd = _strip(state_dict)
    found = detect_source(sd)
    if found != source:
        what = "not a TSM / TAM / ACTION-Net ResNet checkpoint" if found == "unknown" else f"a {found.upper()} checkpoint"
        raise ValueError(f"--source {source}, but this state_dict looks like {what}")
    if "new_fc.weight" not in sd:
        raise ValueError("no new_fc.weight in the checkpoint: not a TSN-style model of the official code")
    keys = list(sd)
    depth = _blocks_per_stage(keys)
    arch = _DEPTHS.get(depth)
    if arch is None:
        raise ValueError(f"blocks per stage {depth} match no supported ResNet (50: 3-4-6-3, 101: 3-4-23-3)")
    if source == "tam":
        t_ckpt = sd["base_model.layer1.0.tam.G.0.weight"].shape[1]  # Linear(T, 2T)
        if t_ckpt != num_segments:
            raise ValueError(f"this TAM checkpoint was trained with T={t_ckpt} segments, not {num_segments}")
    if source == "tsm":
        # the shift has no parameters; the official code shifts every block, every second
        # block when layer3 has >= 23 blocks (ResNet-101)
        insert = {"name": "tsm", "kwargs": {"shift_div": shift_div}, "every": 2 if depth[2] >= 23 else 1}
    elif source == "action":
        insert = {"name": "action", "kwargs": {"shift_div": shift_div}, **_insert_placement(keys, ".action_shift.", depth)}
    else:
        insert = {"name": "tam", **_insert_placement(keys, ".tam.G.0.weight", depth)}
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        nk = _convert_key(k, source)
        if nk is not None:
            out[nk] = v
    cfg = {
        "name": source,
        "arch": arch,
        "num_classes": int(sd["new_fc.weight"].shape[0]),
        "num_segments": num_segments,
        "inserts": [insert],
    }
    return out, cfg


def guess_num_segments(path: str | Path) -> int | None:
    """The official checkpoint names carry T (``..._segment8_...``)."""
    m = re.search(r"segment(\d+)", Path(path).name)
    return int(m.group(1)) if m else None


def convert_checkpoint(
    src: str | Path, dst: str | Path, *, source: str, num_segments: int | None = None, shift_div: int = 8
) -> dict[str, Any]:
    """Read an official checkpoint, convert it, check that it loads strictly into the model
    its config describes, and write ``{model_config, state_dict, class_names, converted_from}``
    to ``dst`` atomically."""
    from .build import build_model

    src = Path(src)
    if not src.is_file():
        raise FileNotFoundError(f"checkpoint {src} not found")
    try:
        obj = torch.load(src, map_location="cpu", weights_only=True)
    except Exception:  # official checkpoints may pickle numpy scalars (best_prec1): trusted files only
        log.warning("%s: not loadable with weights_only=True; loading it as a full pickle", src)
        obj = torch.load(src, map_location="cpu", weights_only=False)
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict):
        raise ValueError(f"{src}: expected a dict with a 'state_dict' (the official checkpoint format)")
    t = num_segments or guess_num_segments(src)
    if t is None:
        raise ValueError(f"{src}: pass num_segments (the T the model was trained with; not in the file name)")
    state_dict, cfg = convert_state_dict(sd, source=source, num_segments=t, shift_div=shift_div)
    model = build_model(cfg)
    model.load_state_dict(state_dict, strict=True)
    ckpt = {
        "model_config": model.config,
        "state_dict": state_dict,
        "class_names": None,
        "converted_from": {"source": source, "file": src.name, "arch": obj.get("arch") if isinstance(obj, dict) else None},
    }
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(dst)
    return ckpt
