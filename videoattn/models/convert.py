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

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import (
    add_classes_command,
    as_checkpoint,
    describe,
    detect_source,
    make_checkpoint,
    model_folder_of,
    official_state_dict_of,
    read_torch_file,
    refuse_overwrite,
    save_checkpoint,
    save_model_folder,
)
from ..errors import CheckpointError, ConfigError, DataError
from .build import build_model

log = logging.getLogger(__name__)

SOURCES = ("tsm", "tam", "action", "tdn", "tada2d")
FORMATS = ("pth", "safetensors")  # a torch.save file; a model folder (model.safetensors + config.json)
_DEPTHS = {(3, 4, 6, 3): "resnet50", (3, 4, 23, 3): "resnet101"}
_BLOCK = re.compile(r"^layer(\d)\.(\d+)\.")


def _strip(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("module."): v for k, v in sd.items()}


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
    have = {
        (int(m.group(1)), int(m.group(2)))
        for k in keys
        if marker in k and (m := _BLOCK.match(k.removeprefix("base_model.")))
    }
    for every in (1, 2):
        if have == {(s, b) for s in range(1, 5) for b in range(depth[s - 1]) if b % every == 0}:
            return {"every": every}
    raise CheckpointError(f"unsupported placement of {marker.strip('.')} modules: {sorted(have)}")


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, source: str, num_segments: int, shift_div: int = 8
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Map an official state_dict to ours; returns ``(state_dict, model_config)``."""
    if source not in SOURCES:
        raise ConfigError(f"unknown source {source!r}; choose one of {SOURCES}")
    sd = _strip(state_dict)
    found = detect_source(sd)
    if found != source:
        what = (
            "not a TSM / TAM / ACTION-Net / TDN / TAda2D ResNet checkpoint"
            if found == "unknown"
            else f"a {found.upper()} checkpoint"
        )
        raise CheckpointError(f"--source {source}, but this checkpoint looks like {what}")
    if source == "tdn":
        return _convert_tdn(sd, num_segments=num_segments)
    if source == "tada2d":
        return _convert_tada2d(sd, num_segments=num_segments)
    if "new_fc.weight" not in sd:
        raise CheckpointError("no new_fc.weight in the checkpoint: not a TSN-style model of the official code")
    keys = list(sd)
    depth = _blocks_per_stage(keys)
    arch = _DEPTHS.get(depth)
    if arch is None:
        raise CheckpointError(f"blocks per stage {depth} match no supported ResNet (50: 3-4-6-3, 101: 3-4-23-3)")
    if source == "tam":
        t_ckpt = sd["base_model.layer1.0.tam.G.0.weight"].shape[1]  # Linear(T, 2T)
        if t_ckpt != num_segments:
            raise CheckpointError(f"this TAM checkpoint was trained with T={t_ckpt} segments, not {num_segments}")
    if source == "tsm":
        # the shift has no parameters; the official code shifts every block, every second
        # block when layer3 has >= 23 blocks (ResNet-101)
        insert = {"name": "tsm", "kwargs": {"shift_div": shift_div}, "every": 2 if depth[2] >= 23 else 1}
    elif source == "action":
        insert = {
            "name": "action",
            "kwargs": {"shift_div": shift_div},
            **_insert_placement(keys, ".action_shift.", depth),
        }
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


_T_IN_NAME = (
    re.compile(r"segments?_?(\d+)", re.I),
    re.compile(r"clip_len_?(\d+)", re.I),
    re.compile(r"num_segments_?(\d+)", re.I),
)


def num_segments_from_path(path: str | Path) -> tuple[int, str] | None:
    """T as the official scripts write it into the file name or its folder's name, and where:
    ``TSM_..._segment8_e45.pth``, ``TSM_..._segment8_e50/ckpt.best.pth.tar`` (TSM / TAM:
    ``<store_name>/ckpt.best.pth.tar``), ``clip_len_8frame_sample_rate_1_checkpoint.pth.tar``
    (ACTION-Net). Two different values (file vs folder) are refused."""
    path = Path(path)
    found: dict[int, str] = {}
    for part in (path.name, path.parent.name):
        for pattern in _T_IN_NAME:
            for m in pattern.finditer(part):
                found.setdefault(int(m.group(1)), f"{m.group(0)!r} in {part!r}")
    if len(found) > 1:
        raise CheckpointError(
            f"{path}: the names say different numbers of segments ({'; '.join(found.values())}); pass --num-segments"
        )
    return next(iter(found.items()), None)


def guess_num_segments(path: str | Path) -> int | None:
    """T from the file name or its folder's name (:func:`num_segments_from_path`), or None."""
    found = num_segments_from_path(path)
    return found[0] if found else None


# The test views of each official test script (../shared/reference/official_recipes.md), by source and
# dataset: (num_clips, num_crops, twice_sample); the 3-crop views are full resolution (the short side, 256)
OFFICIAL_TEST_VIEWS = {
    ("tsm", "ssv2"): (2, 3, True),  # README "accurate" (the model zoo's Something-Something numbers)
    ("tsm", "ssv1"): (2, 3, True),
    ("tsm", "kinetics"): (1, 1, False),  # scripts/test_tsm_kinetics_rgb_8f.sh; dense models: 10 x 3 below
    ("tsm", "jester"): (1, 1, False),
    ("tam", "ssv2"): (2, 3, False),  # scripts/test_tam_somethingv2_rgb_8f.sh: uniform-2
    ("tam", "ssv1"): (1, 1, False),  # uniform-1
    ("tam", "kinetics"): (10, 3, False),  # dense-10
    ("action", "ssv2"): (10, 3, False),  # test_sthv2_8f.sh: 10 clips (random there, evenly spaced here)
    ("action", "jester"): (10, 3, False),
    ("tdn", "ssv2"): (1, 1, False),  # README: 1 view (protocol tdn_1view)
    ("tdn", "ssv1"): (1, 1, False),
    ("tdn", "kinetics"): (10, 3, False),  # 10 clips x 3 crops 256 (protocol tdn_k400)
    ("tada2d", "ssv2"): (2, 3, False),  # 2 clips x 3 crops 256 (protocol tada2d_ssv2)
    ("tada2d", "kinetics"): (10, 3, False),  # protocol tada2d_k400
}
_TADA_NORM = {"mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]}  # TAda2D's input normalisation


def official_data_settings(
    path: str | Path,
    num_segments: int,
    sampling: str | None = None,
    *,
    source: str = "tsm",
    dataset_hint: str | None = None,
) -> dict[str, Any]:
    """The clip settings of the official test scripts for a checkpoint of ``source``: TSN segment
    sampling, or dense sampling (8 frames 64/T apart: TSM's ``--dense_sample``, named ``..._dense`` in
    its model zoo) when the name says ``dense`` or ``sampling="dense"``, with the source's official
    rules (:mod:`videoattn.data.sampling`); validation resizes to 256 and centre-crops 224; the test
    views of the source's script for the dataset the file name shows (:data:`OFFICIAL_TEST_VIEWS`),
    which then travel with the converted checkpoint to ``tools/test.py``. TDN: snippets of 5 frames
    per segment (segment mode only); TAda2D: its rules (segment for Something-Something, interval
    for Kinetics), 256 px crops and its mean / std. ``dataset_hint``: what the file's training
    config says of the dataset (TAdaConv's ``cfg``), read like the name."""
    names = f"{Path(path).parent.name}/{Path(path).name}{'/' + dataset_hint if dataset_hint else ''}".lower()
    dense = "dense" in names
    mode = sampling or ("dense" if dense and source != "tdn" else "segment")
    if mode not in ("segment", "dense"):
        raise ConfigError(f"sampling must be segment or dense, got {mode!r}")
    if source == "tdn" and mode == "dense":
        raise ConfigError("--sampling dense: TDN samples snippets of 5 frames per segment only; leave --sampling out")
    dataset = next(
        (
            name
            for key, name in (
                ("somethingv2", "ssv2"),
                ("something", "ssv1"),
                ("kinetics", "kinetics"),
                ("k400", "kinetics"),
                ("ssv2", "ssv2"),
                ("jester", "jester"),
            )
            if key in names
        ),
        None,
    )
    rules = source if source in ("tsm", "tam", "action", "tdn", "tada2d") else "tsm"
    if source == "tada2d":
        rules = "tada"
        mode = sampling or ("dense" if dense or dataset == "kinetics" else "segment")
    entry: dict[str, Any] = {
        "name": dataset,
        "sampling": {"mode": mode, "rules": rules, **({"stride": None} if mode == "dense" else {})},
        "eval_transform": {"size": 224, "resize": 256},
    }
    if source == "tdn":
        entry["sampling"]["frames_per_segment"] = 5
    if source == "tada2d":
        entry["eval_transform"] = {"size": 256, "resize": 256, **_TADA_NORM}
    views = OFFICIAL_TEST_VIEWS.get((source, dataset))
    if mode == "dense" and (source != "tada2d" or views is None):  # TSM / TAM dense: 10 clips x 3 crops
        views = (10, 3, False)
    if views is not None:
        entry["test"] = dict(zip(("num_clips", "num_crops", "twice_sample"), views, strict=True))
    return entry


def read_official(path: str | Path, *, obj: Any = None) -> tuple[dict[str, torch.Tensor], Any]:
    """The (``module.``-stripped) state_dict of an official checkpoint file (or ``obj``, the file
    already loaded) and the loaded object."""
    path = Path(path)
    obj = read_torch_file(path) if obj is None else obj  # weights_only, with the official files' numpy scalars allowed
    sd = official_state_dict_of(obj)
    if as_checkpoint(obj, path) is not None:
        raise CheckpointError(
            f"{path} is already a videoattn checkpoint; give it to the tools as it is (to add class "
            f"names: {add_classes_command(path)})"
        )
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(
            f"{path}: not an official TSM / TAM / ACTION-Net / TDN / TAda2D checkpoint (expected a dict whose "
            "'state_dict' or 'model_state' maps names to tensors)"
        )
    return _strip(sd), obj


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    *,
    source: str | None = None,
    num_segments: int | None = None,
    classes: Sequence[str] | None = None,
    shift_div: int = 8,
    sampling: str | None = None,
    format: str = "pth",
    trust: bool | None = None,
) -> dict[str, Any]:
    """Convert the official checkpoint ``src`` into a videoattn checkpoint at ``dst`` (written
    atomically) and return it. ``source`` defaults to what the weights show; T comes from
    ``num_segments``, or the file / folder name, or TAM's weights, and a given value that
    contradicts the name or the weights is refused. ``classes`` are the class names in the
    project's order (sorted; :func:`videoattn.data.annotations.read_class_names`), checked
    against the classifier. The converted model is checked to load strictly. ``format``: ``pth``
    (a ``torch.save`` file) or ``safetensors`` (a model folder ``dst``: model.safetensors +
    config.json, :func:`videoattn.checkpoint.save_model_folder`). ``dst`` may not be ``src``
    (nothing is written over its input); ``trust``: :func:`videoattn.checkpoint.read_torch_file`.

    ``src`` may also be a videoattn checkpoint (a file or a model folder): it is written to
    ``dst`` with ``classes``, or in the other ``format``."""
    src, dst = Path(src), Path(dst)
    _check_destination(src, dst, format)
    obj = read_torch_file(src, trust=trust)
    existing = as_checkpoint(obj, src)
    if existing is not None:
        return _rewrite(existing, src, dst, classes, format)
    sd, obj = read_official(src, obj=obj)
    found = detect_source(sd)
    source = source or found
    if source == "unknown":
        raise CheckpointError(f"{src}: {describe(obj, src)}")
    trained = _training_config(obj)  # TAdaConv's cfg (a JSON string): its T and dataset
    t = _num_segments(src, sd, num_segments, stored=_dig(trained, "DATA", "NUM_INPUT_FRAMES"))
    state_dict, cfg = convert_state_dict(sd, source=source, num_segments=t, shift_div=shift_div)
    model = build_model(cfg)
    model.load_state_dict(state_dict, strict=True)
    names = _check_names(classes, cfg["num_classes"], src)
    hint = " ".join(str(_dig(trained, part, "DATASET") or "") for part in ("TRAIN", "TEST")).strip() or None
    ckpt = make_checkpoint(
        model,
        classes=names,
        data=official_data_settings(src, t, sampling, source=source, dataset_hint=hint),
        origin={
            "kind": "converted",
            "source": source,
            "file": str(src.resolve()),
            "arch": obj.get("arch") if isinstance(obj, dict) else None,
            "epoch": _plain(obj.get("epoch")) if isinstance(obj, dict) else None,
            "best_prec1": _plain(obj.get("best_prec1")) if isinstance(obj, dict) else None,
        },
    )
    _save(ckpt, dst, format)
    return ckpt


_FILE_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt", ".bin", ".safetensors", ".json", ".onnx")


def _check_destination(src: Path, dst: Path, format: str) -> None:
    """``dst`` fits ``format`` and is not ``src`` (or a file of it): refused before anything is read."""
    if format not in FORMATS:
        raise ConfigError(f"format {format!r}: choose one of {', '.join(FORMATS)}")
    if format == "safetensors" and dst.suffix.lower() in _FILE_SUFFIXES:
        raise ConfigError(
            f"--dst {dst}: --format safetensors writes a model folder (model.safetensors + config.json); give a "
            "folder name, without a file extension"
        )
    if format == "pth" and (dst.is_dir() or model_folder_of(dst) is not None):
        raise ConfigError(f"--dst {dst} is a folder; give the .pth file to write (or --format safetensors)")
    refuse_overwrite(dst, {"--src": src}, flag="--dst")


def _save(ckpt: dict[str, Any], dst: Path, format: str) -> None:
    if format == "safetensors":
        save_model_folder(ckpt, dst)
    else:
        save_checkpoint(ckpt, dst)


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _training_config(obj: Any) -> dict[str, Any]:
    """The training config an official file keeps as a JSON string (TAdaConv's ``cfg``), or {}."""
    text = obj.get("cfg") if isinstance(obj, dict) else None
    if not isinstance(text, str):
        return {}
    try:
        cfg = json.loads(text)
    except ValueError:
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _dig(cfg: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        cfg = cfg.get(key) if isinstance(cfg, Mapping) else None
    return cfg


def _num_segments(src: Path, sd: Mapping[str, torch.Tensor], given: int | None, *, stored: int | None = None) -> int:
    named = num_segments_from_path(src)
    weights = (
        int(sd["base_model.layer1.0.tam.G.0.weight"].shape[1]) if "base_model.layer1.0.tam.G.0.weight" in sd else None
    )
    if given is not None and given < 1:
        raise ConfigError(f"--num-segments must be >= 1, got {given}")
    if given is not None and named is not None and given != named[0]:
        raise ConfigError(
            f"--num-segments {given} contradicts the checkpoint's name ({named[1]} says T={named[0]}); "
            "the model was trained with that T, give that or leave --num-segments out"
        )
    t = given or (named[0] if named else None)
    if isinstance(stored, int) and stored >= 1:  # the file's own training config (TAdaConv's cfg)
        if t is not None and t != stored:
            what = f"--num-segments {given}" if given else f"its name ({named[1]})"
            raise CheckpointError(f"{src}: {what} says T={t}, but its training config says T={stored}")
        t = stored
    if weights is not None:  # TAM: the global branch's Linear(T, 2T) fixes T
        if t is not None and t != weights:
            what = f"--num-segments {given}" if given else f"its name ({named[1]})"
            raise CheckpointError(
                f"{src}: {what} says T={t}, but its TAM weights were trained with T={weights} "
                "(Linear(T, 2T) of the global branch)"
            )
        t = weights
    if t is None:
        raise ConfigError(
            f"{src}: neither the file name nor its folder says the number of segments (like 'segment8' or "
            "'clip_len_8'); pass --num-segments T, the T the model was trained with"
        )
    return t


def _check_names(classes: Sequence[str] | None, num_classes: int, src: Path) -> list[str] | None:
    if classes is None:
        return None
    names = list(classes)
    if len(names) != num_classes:
        raise DataError(
            f"the label file has {len(names)} classes, but {src}'s classifier predicts {num_classes}; "
            "give the label file of the dataset the model was trained on"
        )
    return names


def _rewrite(ckpt: dict[str, Any], src: Path, dst: Path, classes: Sequence[str] | None, format: str) -> dict[str, Any]:
    """A videoattn checkpoint written to ``dst``: with class names, or in the other format."""
    same_format = (model_folder_of(src) is not None) == (format == "safetensors")
    if classes is None and same_format:
        raise ConfigError(
            f"{src} is already a videoattn checkpoint; pass --classes LABEL_FILE to store class names in a copy "
            f"(--dst), or --format {'pth' if format == 'safetensors' else 'safetensors'} to write it in the other "
            "format"
        )
    if classes is not None:
        ckpt["classes"] = _check_names(classes, ckpt["model_config"]["num_classes"], src)
    _save(ckpt, dst, format)
    return ckpt


# ----------------------------------------------------------------------------- TDN and TAda2D key maps
#
# Pure functions from the official state_dicts of TDN (MCG-NJU/TDN@a7c7e9b) and TAda2D
# (alibaba-mmai-research/TAdaConv@75b7839) to a flat videoattn layout (layouts and facts:
# ``tests/data/official_state_dicts/{tdn,tada2d}_*.tsv``), not yet wired into the model builder.
# Each plan maps every official key to one action: ``("copy", key)``, ``("fold", key)`` (a conv
# bias subtracted from the running mean ``key`` of the BN it feeds) or ``("drop", None)``; a key
# the plan does not know is refused. Where the inserted modules sit is a keyword (the defaults
# follow the insertion slots' names: ``<block>.att_after_conv1.tdn``).
#
# TDN (``module.`` stripped):
#
# ==============================================  ==================================================
# official key                                    videoattn key
# ==============================================  ==================================================
# ``base_model.{conv1,bn1}.<k>``                  ``backbone.{conv1,bn1}.<k>`` (conv1's bias folded)
# ``base_model.layerN_bak.B.<k>``                 ``backbone.layerN.B.<k>`` (conv biases folded)
# ``base_model.layerN_bak.B.{mse,shift}.<k>``     ``backbone.layerN.B.<long_term>.{mse,shift}.<k>``
# ``base_model.conv1_5.<k>``                      ``backbone.<stem>.conv1_5.<k>``
# ``base_model.resnext_layer1.<k>``               ``backbone.<stem>.resnext_layer1.<k>`` (folded)
# ``base_model.conv1_temp.*``                     dropped (never used in the forward)
# ``new_fc.{weight,bias}``                        ``fc.{weight,bias}``
# ==============================================  ==================================================
#
# Every ResNet conv of TDN's FBResNet has a bias and feeds a BN: ``BN(conv(x) + b)`` is
# ``BN'(conv(x))`` with ``running_mean' = running_mean - b`` (exact in eval mode; in training mode
# the batch mean absorbs ``b``), so the bias-free torchvision convs take the weights unchanged.
#
# TAda2D (no prefix; 5-D kernels of temporal size 1 squeezed to 2-D / 1-D):
#
# =====================================================  ============================================
# official key                                           videoattn key
# =====================================================  ============================================
# ``backbone.conv1.a.weight`` (64x3x1x7x7)               ``backbone.conv1.weight`` (64x3x7x7)
# ``backbone.conv1.a_bn.<k>``                            ``backbone.bn1.<k>``
# ``backbone.conv{S}.res_{K}.short_cut.weight``          ``backbone.layer{S-1}.{K-1}.downsample.0.weight``
# ``backbone.conv{S}.res_{K}.short_cut_bn.<k>``          ``backbone.layer{S-1}.{K-1}.downsample.1.<k>``
# ``...conv_branch.a.weight`` / ``a_bn.<k>``             ``...conv1.weight`` / ``bn1.<k>``
# ``...conv_branch.b.weight`` (1x1xCxCx3x3)              ``...<conv_site>.weight`` (CxCx3x3)
# ``...conv_branch.b_bn.<k>``                            ``...<conv_site>.bn.<k>``
# ``...conv_branch.b_avgpool_bn.<k>``                    ``...<conv_site>.bn_pool.<k>``
# ``...conv_branch.b_rf.{g,a,bn,b}.<k>`` (Cx..xkx1x1)    ``...<conv_site>.rf.{g,a,bn,b}.<k>`` (Cx..xk)
# ``...conv_branch.c.weight`` / ``c_bn.<k>``             ``...conv3.weight`` / ``bn3.<k>``
# ``head.out.{weight,bias}``                             ``fc.{weight,bias}``
# =====================================================  ============================================
#
# (``<conv_site>``: the module that replaces the bottleneck's conv2 + bn2,
# :class:`videoattn.attention.tada.TAdaConv2d`; its default name ``conv2``.) The TAda2D backbone
# differs from torchvision's in topology, not in names: no stem max-pool, stride 2 in the first
# block of every stage (res2 included).

Plan = dict[str, tuple[str, str | None]]

_TDN_BLOCK = re.compile(r"^(layer[1-4])_bak\.(\d+)\.(.+)$")
_TDN_STEM_STAGE = re.compile(r"^resnext_layer1\.(\d+)\.(.+)$")
_CONV_BN = {"conv1": "bn1", "conv2": "bn2", "conv3": "bn3", "downsample.0": "downsample.1"}
_BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _resnet_block_action(rest: str, prefix: str, key: str) -> tuple[str, str | None]:
    """A torchvision bottleneck tensor ``rest`` (``conv1.weight``, ``bn2.running_mean``, ...) of an
    FBResNet block (the official ``key``) under ``prefix``: its conv biases fold into the BN that
    follows."""
    for conv, bn in _CONV_BN.items():
        if rest == f"{conv}.weight":
            return "copy", prefix + rest
        if rest == f"{conv}.bias":
            return "fold", f"{prefix}{bn}.running_mean"
        if rest.startswith(f"{bn}.") and rest.removeprefix(f"{bn}.") in _BN_TENSORS:
            return "copy", prefix + rest
    raise CheckpointError(f"unexpected tensor {key} in a TDN checkpoint")


def tdn_plan(keys: Sequence[str], *, long_term: str = "att_after_conv1.tdn", stem: str = "att_stem.tdn") -> Plan:
    """The action for each key of an official TDN state_dict (``module.`` prefix or not): see
    the table above. Raises :class:`CheckpointError` naming a key it does not know."""
    plan: Plan = {}
    for key in keys:
        k = key.removeprefix("module.")
        if k.startswith("new_fc."):
            plan[key] = ("copy", "fc." + k.removeprefix("new_fc."))
            continue
        if not k.startswith("base_model."):
            raise CheckpointError(f"unexpected tensor {key} in a TDN checkpoint")
        k = k.removeprefix("base_model.")
        if k.startswith("conv1_temp."):
            plan[key] = ("drop", None)
        elif k == "conv1.weight":
            plan[key] = ("copy", "backbone.conv1.weight")
        elif k == "conv1.bias":
            plan[key] = ("fold", "backbone.bn1.running_mean")
        elif k.startswith("bn1.") and k.removeprefix("bn1.") in _BN_TENSORS:
            plan[key] = ("copy", "backbone." + k)
        elif k.startswith("conv1_5."):
            plan[key] = ("copy", f"backbone.{stem}.{k}")
        elif m := _TDN_STEM_STAGE.match(k):
            plan[key] = _resnet_block_action(m.group(2), f"backbone.{stem}.resnext_layer1.{m.group(1)}.", key)
        elif m := _TDN_BLOCK.match(k):
            stage, block, rest = m.groups()
            if rest.startswith(("mse.", "shift.")):
                plan[key] = ("copy", f"backbone.{stage}.{block}.{long_term}.{rest}")
            else:
                plan[key] = _resnet_block_action(rest, f"backbone.{stage}.{block}.", key)
        else:
            raise CheckpointError(f"unexpected tensor {key} in a TDN checkpoint")
    return plan


_TADA_BLOCK = re.compile(r"^backbone\.conv([2-5])\.res_(\d+)\.(.+)$")
_TADA_BRANCH = {"a": "conv1", "a_bn": "bn1", "c": "conv3", "c_bn": "bn3"}


def tada2d_plan(keys: Sequence[str], *, conv_site: str = "conv2") -> Plan:
    """The action for each key of an official TAda2D state_dict: see the table above. Raises
    :class:`CheckpointError` naming a key it does not know."""
    plan: Plan = {}
    for key in keys:
        if key.startswith("head.out."):
            plan[key] = ("copy", "fc." + key.removeprefix("head.out."))
        elif key == "backbone.conv1.a.weight":
            plan[key] = ("copy", "backbone.conv1.weight")
        elif key.startswith("backbone.conv1.a_bn."):
            plan[key] = ("copy", "backbone.bn1." + key.removeprefix("backbone.conv1.a_bn."))
        elif m := _TADA_BLOCK.match(key):
            stage, index, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            prefix = f"backbone.layer{stage - 1}.{index - 1}."
            if rest == "short_cut.weight":
                plan[key] = ("copy", prefix + "downsample.0.weight")
            elif rest.startswith("short_cut_bn."):
                plan[key] = ("copy", prefix + "downsample.1." + rest.removeprefix("short_cut_bn."))
            elif rest.startswith("conv_branch."):
                plan[key] = ("copy", prefix + _tada_branch_key(rest.removeprefix("conv_branch."), conv_site, key))
            else:
                raise CheckpointError(f"unexpected tensor {key} in a TAda2D checkpoint")
        else:
            raise CheckpointError(f"unexpected tensor {key} in a TAda2D checkpoint")
    return plan


def _tada_branch_key(rest: str, conv_site: str, key: str) -> str:
    name, _, tensor = rest.partition(".")
    if name in _TADA_BRANCH:
        return f"{_TADA_BRANCH[name]}.{tensor}"
    if rest == "b.weight":
        return f"{conv_site}.weight"
    if name == "b_bn":
        return f"{conv_site}.bn.{tensor}"
    if name == "b_avgpool_bn":
        return f"{conv_site}.bn_pool.{tensor}"
    if name == "b_rf" and tensor.split(".")[0] in ("g", "a", "bn", "b"):
        return f"{conv_site}.rf.{tensor}"
    raise CheckpointError(f"unexpected tensor {key} in a TAda2D checkpoint")


def _squeeze_time(key: str, v: torch.Tensor) -> torch.Tensor:
    """A TAda2D kernel without its size-1 temporal dimension(s): ``(Co, Ci, 1, k, k)`` ->
    ``(Co, Ci, k, k)``, ``1 x 1 x Co x Ci x 3 x 3`` -> ``(Co, Ci, 3, 3)``, ``(Co, Ci, kT, 1, 1)``
    -> ``(Co, Ci, kT)`` (the calibration's temporal convs)."""
    if v.dim() == 6:  # the TAdaConv base weight, 1 x 1 x Co x Ci x k x k
        if v.shape[:2] != (1, 1):
            raise CheckpointError(f"{key}: expected a 1x1xCoxCixkxk TAdaConv kernel, got {tuple(v.shape)}")
        return v[0, 0]
    if v.dim() == 5:
        if ".b_rf." in key:  # Co x Ci x kT x 1 x 1
            if v.shape[3:] != (1, 1):
                raise CheckpointError(f"{key}: expected a temporal kernel Co x Ci x kT x 1 x 1, got {tuple(v.shape)}")
            return v[:, :, :, 0, 0]
        if v.shape[2] != 1:
            raise CheckpointError(f"{key}: a temporal kernel size {v.shape[2]}, expected 1 (a 2D network)")
        return v[:, :, 0]
    return v


def apply_plan(
    state_dict: Mapping[str, torch.Tensor], plan: Plan, *, squeeze_time: bool = False
) -> dict[str, torch.Tensor]:
    """The videoattn state_dict of ``plan`` (:func:`tdn_plan`, :func:`tada2d_plan`): copies, then
    each folded conv bias subtracted from its BN's running mean; ``squeeze_time`` drops TAda2D's
    size-1 temporal kernel dimensions. Every key of ``state_dict`` must be in ``plan``, and no two
    copies may land on one key."""
    out: dict[str, torch.Tensor] = {}
    folds = []
    for key, v in state_dict.items():
        if key not in plan:
            raise CheckpointError(f"no rule for the tensor {key}")
        action, target = plan[key]
        if action == "copy":
            if target in out:
                raise CheckpointError(f"two tensors map to {target} (the second: {key})")
            out[target] = _squeeze_time(key, v) if squeeze_time else v
        elif action == "fold":
            folds.append((key, target, v))
    for key, target, bias in folds:
        if target not in out:
            raise CheckpointError(f"{key}: the BN it feeds ({target}) is missing")
        out[target] = out[target] - bias  # BN(conv(x) + b) == BN'(conv(x)), running_mean' = running_mean - b
    return out


# ----------------------------------------------------------------------------- TDN and TAda2D converters
# the registry rows and the model configs/model/{tdn,tada2d}.yaml they convert to; the plans' site
# keywords are the prefixes of the built model's modules (the placement's names)
_TDN_INSERTS = [{"name": "tdn_stem"}, {"name": "tdn_long", "stages": [2, 3, 4]}]
_TDN_SITES = {"long_term": "att_after_conv1.tdn_long", "stem": "att_stem.tdn_stem"}
_TADA_INSERTS = [{"name": "tada"}]
_TADA_SITE = "att_conv.tada"
_TDN_DEPTH = re.compile(r"^base_model\.layer([1-4])_bak\.(\d+)\.")
_TADA_DEPTH = re.compile(r"^backbone\.conv([2-5])\.res_(\d+)\.")
_TADA_ARCHS = {(3, 4, 6, 3): "resnet50_tada"}


def official_plan(source: str, keys: Sequence[str]) -> Plan:
    """The key map of an official TDN / TAda2D state_dict onto the model ``model=tdn`` /
    ``model=tada2d`` builds (:func:`tdn_plan` / :func:`tada2d_plan` with its module prefixes)."""
    if source == "tdn":
        return tdn_plan(keys, **_TDN_SITES)
    if source == "tada2d":
        return tada2d_plan(keys, conv_site=_TADA_SITE)
    raise ConfigError(f"official_plan: {source!r} is not tdn or tada2d (the others: convert_state_dict)")


def _depth(keys: Sequence[str], pattern: re.Pattern[str], *, first_block: int) -> tuple[int, ...]:
    depth = [0, 0, 0, 0]
    for k in keys:
        if m := pattern.match(k):
            stage, block = int(m.group(1)), int(m.group(2)) - first_block
            index = stage - 1 if pattern is _TDN_DEPTH else stage - 2
            depth[index] = max(depth[index], block + 1)
    return tuple(depth)


def _convert_tdn(sd: Mapping[str, torch.Tensor], *, num_segments: int) -> tuple[dict[str, torch.Tensor], dict]:
    """TDN (MCG-NJU/TDN@a7c7e9b, ``module.`` stripped) -> ``model=tdn``: :func:`tdn_plan` with the
    built model's module prefixes; the FBResNet's conv biases folded into the BNs they feed."""
    if "new_fc.weight" not in sd:
        raise CheckpointError("no new_fc.weight in the checkpoint: not a TDN model of the official code")
    depth = _depth(list(sd), _TDN_DEPTH, first_block=0)
    arch = _DEPTHS.get(depth)
    if arch is None:
        raise CheckpointError(f"blocks per stage {depth} match no supported ResNet (50: 3-4-6-3, 101: 3-4-23-3)")
    out = apply_plan(sd, official_plan("tdn", list(sd)))
    cfg = {
        "name": "tdn",
        "arch": arch,
        "num_classes": int(sd["new_fc.weight"].shape[0]),
        "num_segments": num_segments,
        "inserts": [dict(i) for i in _TDN_INSERTS],
    }
    return out, cfg


def _convert_tada2d(sd: Mapping[str, torch.Tensor], *, num_segments: int) -> tuple[dict[str, torch.Tensor], dict]:
    """TAda2D (TAdaConv@75b7839 ``model_state``) -> ``model=tada2d``: :func:`tada2d_plan` with the
    built model's conv-site prefix, the size-1 temporal kernel dimensions squeezed."""
    if "head.out.weight" not in sd:
        raise CheckpointError("no head.out.weight in the checkpoint: not a TAda2D classifier of the official code")
    depth = _depth(list(sd), _TADA_DEPTH, first_block=1)
    arch = _TADA_ARCHS.get(depth)
    if arch is None:
        raise CheckpointError(f"blocks per stage {depth}: only the TAda2D ResNet-50 (3-4-6-3) is supported")
    out = apply_plan(sd, official_plan("tada2d", list(sd)), squeeze_time=True)
    cfg = {
        "name": "tada2d",
        "arch": arch,
        "num_classes": int(sd["head.out.weight"].shape[0]),
        "num_segments": num_segments,
        "inserts": [dict(i) for i in _TADA_INSERTS],
    }
    return out, cfg
