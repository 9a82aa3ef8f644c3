"""``build_model(cfg)``: a VideoClassifier from plain config data (a dict, or Hydra's resolved
``cfg.model``), and the loading of pretrained / checkpoint weights into it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..attention import build_attention
from .classifier import VideoClassifier
from .inserts import parse_inserts
from .mobilenet import MobileNetV2Trunk
from .resnet import ARCHS, Inserts, build_resnet

ALL_ARCHS = (*ARCHS, "mobilenet_v2")

log = logging.getLogger(__name__)

MODEL_KEYS = {
    "name": None,  # a label for tables and checkpoints ("tsm", "action", ...)
    "arch": None,  # required
    "num_classes": None,  # required
    "num_segments": None,  # required
    "dropout": 0.5,
    "partial_bn": False,
    "pretrained": None,  # None | "imagenet" | "imagenet_v2" | path to a torchvision-format state_dict
    "inserts": [],
    "layers": None,  # override the depth per stage (tiny test networks)
    "widths": None,  # override the width per stage
}
REQUIRED = ("arch", "num_classes", "num_segments")


def normalize_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the keys and fill in the defaults; the result is what checkpoints store."""
    if hasattr(cfg, "items") and not isinstance(cfg, dict):  # an OmegaConf DictConfig
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(cfg, resolve=True)
    unknown = sorted(set(cfg) - set(MODEL_KEYS))
    if unknown:
        raise ValueError(f"model config: unknown key(s) {unknown}; allowed: {sorted(MODEL_KEYS)}")
    missing = [k for k in REQUIRED if cfg.get(k) is None]
    if missing:
        raise ValueError(f"model config: missing required key(s) {missing}")
    out = {k: cfg.get(k, default) for k, default in MODEL_KEYS.items()}
    if out["arch"] not in ALL_ARCHS:
        raise ValueError(f"model config: unknown arch {out['arch']!r}; choose one of {list(ALL_ARCHS)}")
    for k in ("num_classes", "num_segments"):
        if not isinstance(out[k], int) or out[k] < 1:
            raise ValueError(f"model config: {k} must be a positive integer, got {out[k]!r}")
    out["inserts"] = [i.as_dict() for i in parse_inserts(out["inserts"])]
    return out


def build_model(cfg: Mapping[str, Any]) -> VideoClassifier:
    """Build the classifier described by ``cfg`` (see ``MODEL_KEYS``), and load
    ``cfg["pretrained"]`` into its backbone. The normalised config is kept as ``model.config``.

    >>> build_model({"arch": "resnet50", "num_classes": 174, "num_segments": 8,
    ...              "inserts": [{"name": "action"}, {"name": "se", "stages": [3, 4]}]})
    """
    cfg = normalize_config(cfg)
    inserts = parse_inserts(cfg["inserts"])
    t = cfg["num_segments"]
    if cfg["arch"] == "mobilenet_v2":
        if cfg["layers"] or cfg["widths"]:
            raise ValueError("model config: layers / widths apply to ResNets only")
        backbone = MobileNetV2Trunk(num_segments=t, inserts=inserts)
    else:
        backbone = build_resnet(cfg["arch"], num_segments=t, inserts=inserts, layers=cfg["layers"], widths=cfg["widths"])
    head = []
    for ins in inserts:
        if ins.slot == "head":
            kw = dict(ins.kwargs)
            if ins.name == "encnet":  # its SE-loss head predicts the dataset's classes
                kw.setdefault("num_classes", cfg["num_classes"])
            head.append((ins.name, build_attention(ins.name, backbone.num_features, t, **kw)))
    model = VideoClassifier(
        backbone,
        num_classes=cfg["num_classes"],
        num_segments=t,
        num_features=backbone.num_features,
        dropout=cfg["dropout"],
        partial_bn=cfg["partial_bn"],
        head=head,
    )
    model.config = cfg
    if cfg["pretrained"]:
        load_pretrained(model, cfg["pretrained"])
    return model


# ----------------------------------------------------------------------------- pretrained weights
_TV_WEIGHTS = {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights",
               "resnet50": "ResNet50_Weights", "resnet101": "ResNet101_Weights",
               "mobilenet_v2": "MobileNet_V2_Weights"}  # fmt: skip
_TV_HEADS = ("fc.", "classifier.")  # torchvision's 1000-class classifiers (ResNet, MobileNetV2)
_TV_VERSIONS = {"imagenet": "IMAGENET1K_V1", "imagenet_v2": "IMAGENET1K_V2"}


@dataclass
class LoadReport:
    """What a weight load did: tensors loaded, and those left at their init (inserted modules,
    the new classifier), by key."""

    source: str
    loaded: int
    not_initialised: list[str]
    ignored: list[str]

    def summary(self) -> str:
        return (
            f"{self.source}: loaded {self.loaded} tensors; not initialised ({len(self.not_initialised)}): "
            f"{', '.join(self.not_initialised) or 'none'}; ignored from the file: {', '.join(self.ignored) or 'none'}"
        )


def imagenet_state_dict(arch: str, version: str = "imagenet") -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for ``arch`` (``IMAGENET1K_V1``, the weights the TSM / TAM
    / ACTION-Net models start from, or ``_V2``), from torch.hub's cache or downloaded."""
    from torchvision.models import get_weight

    if version not in _TV_VERSIONS:
        raise ValueError(f"pretrained: {version!r} is not one of {sorted(_TV_VERSIONS)} or a file path")
    weights = get_weight(f"{_TV_WEIGHTS[arch]}.{_TV_VERSIONS[version]}")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        return weights.get_state_dict(progress=False)
    except Exception as err:  # URLError, socket errors, HTTP errors: all mean "no file"
        raise RuntimeError(
            f"could not get the ImageNet weights of {arch} ({weights.url}): {err}. "
            f"Without internet, download that file elsewhere and put it at {cached} "
            f"(or set TORCH_HOME), or set `pretrained:` to the path of a torchvision-format "
            f"{arch} state_dict."
        ) from err


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from a file: a bare state_dict or a checkpoint with ``state_dict`` / ``model``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights {path} not found (a torchvision-format state_dict .pth)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({err})") from err
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state_dict (name -> tensor)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _inserted_prefixes(backbone: nn.Module) -> list[str]:
    return [
        f"{name}."
        for name, m in backbone.named_modules()
        if isinstance(m, Inserts) or name.endswith(".dia")
    ]


def load_pretrained(model: VideoClassifier, pretrained: str | Path) -> LoadReport:
    """Load ImageNet weights (``imagenet`` / ``imagenet_v2``) or a local torchvision-format
    state_dict into ``model.backbone``. Only inserted modules may stay uninitialised (and the
    classifier, which is new): any other missing, unexpected or mis-shaped key is an error."""
    arch = getattr(model, "config", {}).get("arch", "resnet50")
    if str(pretrained) in _TV_VERSIONS:
        source = f"torchvision {arch} {_TV_VERSIONS[str(pretrained)]}"
        sd = imagenet_state_dict(arch, str(pretrained))
    else:
        source = str(pretrained)
        sd = read_state_dict(pretrained)
    ignored = sorted(k for k in sd if k.startswith(_TV_HEADS))  # the 1000-class classifier
    sd = {k: v for k, v in sd.items() if not k.startswith(_TV_HEADS)}
    own = model.backbone.state_dict()
    mismatched = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in sd.items() if k in own and v.shape != own[k].shape]
    unexpected = sorted(k for k in sd if k not in own)
    prefixes = _inserted_prefixes(model.backbone)
    missing = sorted(k for k in own if k not in sd)
    bad_missing = [k for k in missing if not k.startswith(tuple(prefixes))]
    if mismatched or unexpected or bad_missing:
        problems = "; ".join(
            f"{label} ({len(keys)}): {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
            for label, keys in (("shape mismatch", mismatched), ("unexpected", unexpected), ("missing", bad_missing))
            if keys
        )
        raise ValueError(f"{source} does not fit the {arch} backbone: {problems}. Is it a checkpoint of another architecture?")
    model.backbone.load_state_dict(sd, strict=False)
    report = LoadReport(source, len(sd), [f"backbone.{k}" for k in missing] + ["fc.weight", "fc.bias"], ignored)
    log.info(report.summary())
    return report
