"""``build_model(cfg)``: a VideoClassifier from plain config data (a dict, or Hydra's resolved
``cfg.model``), and the loading of pretrained / checkpoint weights into it: the one place that
fits weights into a model (:mod:`videoattn.checkpoint` reads and writes the files only)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..attention import get_spec
from ..checkpoint import as_checkpoint, describe, load_checkpoint, read_torch_file
from ..errors import CheckpointError, ConfigError, MissingFileError
from ..schema import validate
from .backbones import BACKBONES, build_backbone, get_backbone
from .classifier import VideoClassifier
from .config import ModelConfig
from .inserts import parse_inserts
from .placement import check_inserts, inserted_prefixes, pretrained_inits, pretrained_renames, unique_names

log = logging.getLogger(__name__)

REQUIRED = ("arch", "num_classes", "num_segments")


def _takes(backbone: Any, inserts: Sequence[Any]) -> bool:
    """Whether the backbone row offers every site the inserts ask for."""
    try:
        check_inserts(inserts, backbone=backbone.name, slots=backbone.slots, shared_stages=backbone.shared_stages)
    except ConfigError:
        return False
    return True


def normalize_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check the config against :class:`~videoattn.models.config.ModelConfig` (keys, types, ranges) and
    fill in the defaults; the result is what checkpoints store."""
    out = validate(ModelConfig, cfg, section="model")
    missing = [k for k in REQUIRED if out.get(k) is None]
    if missing:
        raise ConfigError(f"model config: missing required key(s) {missing}")
    spec = get_backbone(out["arch"])
    inserts = parse_inserts(out["inserts"])
    try:
        check_inserts(inserts, backbone=spec.name, slots=spec.slots, shared_stages=spec.shared_stages)
    except ConfigError as err:  # say which backbones would take the inserts
        fits = [b.name for b in BACKBONES.values() if _takes(b, inserts)]
        hint = f"; set model.arch to one that offers them: {', '.join(fits)}" if fits else ""
        raise ConfigError(f"model.arch={spec.name}: {err}{hint}") from None
    out["inserts"] = [i.as_dict() for i in inserts]
    return out


def frames_per_segment(cfg: Mapping[str, Any]) -> int:
    """The frames of each segment the model of ``cfg`` takes (``F``): the largest
    ``frames_per_segment`` of its inserts' registry rows (TDN's stem: 5), 1 without such a module.
    The data side samples ``F`` frames per segment and stacks them on the channels."""
    inserts = parse_inserts(list(cfg.get("inserts") or []))
    return max((get_spec(ins.name).frames_per_segment for ins in inserts), default=1)


def build_model(cfg: Mapping[str, Any], *, classes: Sequence[str] | None = None) -> VideoClassifier:
    """Build the classifier described by ``cfg`` (see :class:`~videoattn.models.config.ModelConfig`), and load
    ``cfg["pretrained"]`` into it (:func:`load_pretrained`; ``classes``, the dataset's class
    names, decide whether a pretrained checkpoint's classifier is kept). The normalised config
    is kept as ``model.config``.

    >>> build_model({"arch": "resnet50", "num_classes": 174, "num_segments": 8,
    ...              "inserts": [{"name": "action"}, {"name": "se", "stages": [3, 4]}]})
    """
    cfg = normalize_config(cfg)
    inserts = parse_inserts(cfg["inserts"])
    t = cfg["num_segments"]
    backbone = build_backbone(
        cfg["arch"], num_segments=t, inserts=inserts, model=cfg, layers=cfg["layers"], widths=cfg["widths"]
    )
    head_inserts = [ins for ins in inserts if ins.slot == "head"]
    head_names = unique_names([ins.name for ins in head_inserts])  # a second insert of a name gets "<name>_1"
    model = VideoClassifier(
        backbone,
        num_classes=cfg["num_classes"],
        num_segments=t,
        num_features=backbone.num_features,
        dropout=cfg["dropout"],
        partial_bn=cfg["partial_bn"],
        head=[
            (n, ins.build(backbone.num_features, num_segments=t, model=cfg))
            for n, ins in zip(head_names, head_inserts, strict=True)
        ],
        aux_heads=[n for n, ins in zip(head_names, head_inserts, strict=True) if get_spec(ins.name).aux_loss],
        # frames of each segment the data must give (a stem module's need: TDN's 5), on the channels
        frames_per_segment=frames_per_segment(cfg),
    )
    model.config = cfg
    # what the weights load left new (the optimiser's official groups give a new classifier lr x5 / x10)
    model.pretrained_report = load_pretrained(model, cfg["pretrained"], classes=classes) if cfg["pretrained"] else None
    return model


def model_from_checkpoint(ckpt: Mapping[str, Any], *, path: str | Path = "checkpoint") -> VideoClassifier:
    """The model a checkpoint (:func:`videoattn.checkpoint.load_checkpoint`) describes, with its
    weights loaded strictly, in eval mode."""
    try:
        model = build_model({**ckpt["model_config"], "pretrained": None})
    except ConfigError as err:
        raise CheckpointError(f"{path}: its model config cannot be built here ({err})") from err
    load_model_state(model, ckpt, path=path)
    return model.eval()


def load_model_state(model: torch.nn.Module, ckpt: Mapping[str, Any], *, path: str | Path = "checkpoint") -> None:
    """Load ``ckpt["model"]`` strictly into ``model``, with an error naming what differs when
    the checkpoint was made with another model config."""
    own = getattr(model, "config", None)
    theirs = ckpt.get("model_config")
    if own is not None and theirs is not None:
        diff = {
            k: (theirs.get(k), own.get(k))
            for k in set(own) | set(theirs)
            if k != "pretrained" and own.get(k) != theirs.get(k)
        }
        if diff:
            text = "; ".join(f"{k}: checkpoint {a!r} vs model {b!r}" for k, (a, b) in sorted(diff.items()))
            raise CheckpointError(
                f"{path} was made with another model config ({text}); build the model from the "
                "checkpoint's model_config"
            )
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit this model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )


def load_model(path: str | Path, *, trust: bool | None = None) -> tuple[VideoClassifier, dict[str, Any]]:
    """The model of the checkpoint ``path`` (a training run's or a converted one; a ``.pth`` file
    or a model folder) in eval mode, and the checkpoint (its classes, clip settings, origin): what
    test / infer / benchmark load. ``trust``: :func:`videoattn.checkpoint.read_torch_file` (default:
    the enclosing :func:`videoattn.checkpoint.trust_checkpoints`'s setting, off)."""
    ckpt = load_checkpoint(path, trust=trust)
    return model_from_checkpoint(ckpt, path=path), ckpt


# ----------------------------------------------------------------------------- pretrained weights
_TV_HEADS = ("fc.", "classifier.")  # torchvision's 1000-class classifiers (ResNet, MobileNetV2)
_TV_VERSIONS = {"imagenet": "IMAGENET1K_V1", "imagenet_v2": "IMAGENET1K_V2"}


@dataclass
class LoadReport:
    """What a weight load did: tensors loaded, those left at their init (inserted modules, a new
    classifier) and those of the file not used, by key, with the reasons."""

    source: str
    loaded: int
    not_initialised: list[str]
    ignored: list[str]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.source}: loaded {self.loaded} tensors; not initialised ({len(self.not_initialised)}): "
            f"{', '.join(self.not_initialised) or 'none'}; ignored from the file: {', '.join(self.ignored) or 'none'}"
            + "".join(f"; {n}" for n in self.notes)
        )


def imagenet_state_dict(arch: str, version: str = "imagenet") -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for ``arch`` (``IMAGENET1K_V1``, the weights the TSM / TAM
    / ACTION-Net models start from, or ``_V2``), from torch.hub's cache or downloaded."""
    from torchvision.models import get_weight

    if version not in _TV_VERSIONS:
        raise ConfigError(f"pretrained: {version!r} is not one of {sorted(_TV_VERSIONS)} or a file path")
    enum = get_backbone(arch).weights
    if enum is None:
        raise ConfigError(f"pretrained={version}: the {arch} backbone has no ImageNet weights; set a file path or null")
    weights = get_weight(f"{enum}.{_TV_VERSIONS[version]}")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        return weights.get_state_dict(progress=False)
    except Exception as err:  # URLError, socket errors, HTTP errors: all mean "no file"
        raise MissingFileError(
            f"could not get the ImageNet weights of {arch} ({weights.url}): {err}. "
            f"Without internet, download that file elsewhere and put it at {cached} "
            f"(or set TORCH_HOME), or set `pretrained:` to the path of a torchvision-format "
            f"{arch} state_dict."
        ) from err


def read_state_dict(path: str | Path, *, obj: Any = None) -> dict[str, torch.Tensor]:
    """A state_dict from a file (or ``obj``, the file already loaded): a bare state_dict or a
    checkpoint with ``state_dict`` / ``model``."""
    obj = read_torch_file(path, what="pretrained weights") if obj is None else obj
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"pretrained weights {path}: expected a state_dict (name -> tensor)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_pretrained(
    model: VideoClassifier, pretrained: str | Path, *, classes: Sequence[str] | None = None
) -> LoadReport:
    """Initialise ``model`` from ``pretrained``:

    - ``imagenet`` / ``imagenet_v2``, or a local torchvision-format state_dict (a ``.pth`` or
      ``.safetensors`` file): the backbone.
      Only inserted modules (and the new classifier) stay uninitialised.
    - a videoattn checkpoint (a training run's or a converted official one; a ``.pth`` file or a
      model folder): fine-tuning. The
      backbone and every inserted module the checkpoint has, and the classifier when the
      checkpoint predicts exactly ``classes`` (same names, same order); inserted modules the
      checkpoint lacks stay at their init, those the model lacks are ignored.

    Any other missing, unexpected or mis-shaped tensor is an error ("another architecture?");
    the report lists what was not initialised and why, and is logged."""
    arch = getattr(model, "config", {}).get("arch", "resnet50")
    if str(pretrained) in _TV_VERSIONS:
        source = f"torchvision {arch} {_TV_VERSIONS[str(pretrained)]}"
        sd = imagenet_state_dict(arch, str(pretrained))
    else:
        source = str(pretrained)
        obj = read_torch_file(pretrained, what="pretrained weights")
        ckpt = as_checkpoint(obj, pretrained)
        if ckpt is not None:
            report = _load_checkpoint_weights(model, ckpt, source=source, classes=classes)
            log.info(report.summary())
            return report
        if isinstance(obj, dict) and any(
            k.startswith(("module.base_model.", "base_model.")) for k in obj.get("state_dict", obj)
        ):
            raise CheckpointError(f"pretrained weights {pretrained}: {describe(obj, pretrained)}")
        sd = read_state_dict(pretrained, obj=obj)
    ignored = sorted(k for k in sd if k.startswith(_TV_HEADS))  # the 1000-class classifier
    plain = {k: v for k, v in sd.items() if not k.startswith(_TV_HEADS)}  # the plain backbone's, torchvision's names
    sd, moved = _rename(plain, pretrained_renames(model.backbone))  # replaced layers -> the conv modules
    own = model.backbone.state_dict()
    prefixes = tuple(inserted_prefixes(model.backbone))
    _check_fit(own, sd, lambda k: k.startswith(prefixes), source=source, arch=arch)
    model.backbone.load_state_dict(sd, strict=False)
    derived = []  # tensors of stem / conv modules their rows set from the plain weights
    with torch.no_grad():
        for prefix, module, init in pretrained_inits(model.backbone):
            derived += [prefix + n for n in init(module, plain)]
    missing = sorted(k for k in own if k not in sd and k not in derived)
    notes = [f"{moved} tensors of the layers that conv modules replace loaded into them"] if moved else []
    notes += [f"{len(derived)} tensors of stem / conv modules set from these weights by their rows"] if derived else []
    report = LoadReport(source, len(sd), [f"backbone.{k}" for k in missing] + ["fc.weight", "fc.bias"], ignored, notes)
    log.info(report.summary())
    return report


def _rename(sd: Mapping[str, torch.Tensor], renames: Sequence[tuple[str, str]]) -> tuple[dict[str, torch.Tensor], int]:
    """``sd`` with each key under a ``theirs`` prefix moved under ``ours``, and how many moved."""
    out, moved = {}, 0
    for key, value in sd.items():
        for theirs, ours in renames:
            if key.startswith(theirs):
                key, moved = ours + key.removeprefix(theirs), moved + 1
                break
        out[key] = value
    return out, moved


def _check_fit(
    own: Mapping[str, torch.Tensor], theirs: Mapping[str, torch.Tensor], inserted, *, source: str, arch: str
) -> None:
    """Fail unless ``theirs`` has every non-inserted tensor of ``own`` with its shape and nothing else."""
    mismatched = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in theirs.items()
        if k in own and v.shape != own[k].shape
    ]
    unexpected = sorted(k for k in theirs if k not in own)
    bad_missing = sorted(k for k in own if k not in theirs and not inserted(k))
    if mismatched or unexpected or bad_missing:
        problems = "; ".join(
            f"{label} ({len(keys)}): {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
            for label, keys in (("shape mismatch", mismatched), ("unexpected", unexpected), ("missing", bad_missing))
            if keys
        )
        raise CheckpointError(
            f"{source} does not fit the {arch} model: {problems}. Is it a checkpoint of another architecture?"
        )


def _yaml(value: Any) -> str:
    return "null" if value is None else str(value).replace(" ", "")


def _inserted_keys(model: VideoClassifier) -> set[str]:
    """The state_dict keys of the modules inserted into ``model`` (slots, stage-shared, head)."""
    prefixes = tuple(f"backbone.{p}" for p in inserted_prefixes(model.backbone)) + ("head.",)
    return {k for k in model.state_dict() if k.startswith(prefixes)}


def _load_checkpoint_weights(
    model: VideoClassifier, ckpt: Mapping[str, Any], *, source: str, classes: Sequence[str] | None
) -> LoadReport:
    own, theirs = model.state_dict(), ckpt["model"]
    cfg, their_cfg = model.config, ckpt["model_config"]
    with torch.device("meta"):  # its structure only: which of its tensors belong to inserted modules
        their_model = build_model({**their_cfg, "pretrained": None})
    inserted = _inserted_keys(model) | _inserted_keys(their_model)
    fc = {"fc.weight", "fc.bias"}
    notes: list[str] = []
    keep_fc = classes is not None and ckpt["classes"] is not None and list(ckpt["classes"]) == list(classes)
    if not keep_fc:
        k_theirs, k_own = their_cfg["num_classes"], cfg["num_classes"]
        why = (
            "the checkpoint has no class names"
            if ckpt["classes"] is None
            else f"the checkpoint predicts {k_theirs} classes, this model {k_own}"
            if k_theirs != k_own
            else "the checkpoint's classes are not this dataset's"
            if classes is not None
            else "the dataset's classes were not given"
        )
        notes.append(f"new classifier: {why}")
    core = {k: v for k, v in theirs.items() if k not in inserted and k not in fc}
    try:
        _check_fit(
            {k: v for k, v in own.items() if k not in inserted and k not in fc},
            core,
            lambda k: False,
            source=source,
            arch=cfg["arch"],
        )
    except CheckpointError as err:
        backbone = ("arch", "layers", "widths")
        if all(their_cfg.get(k) == cfg.get(k) for k in backbone):
            raise
        theirs = ", ".join(f"{k} {_yaml(their_cfg.get(k))}" for k in backbone)
        ours = ", ".join(f"{k} {_yaml(cfg.get(k))}" for k in backbone)
        raise CheckpointError(
            f"{source} holds another backbone than this model's ({theirs} vs {ours}); build the same one: "
            + " ".join(f"model.{k}={_yaml(their_cfg.get(k))}" for k in backbone)
            + " (the official ResNet-50 models: --config-name ssv2 model=NAME)"
        ) from err
    load, ignored = dict(core), []
    for k in sorted(inserted | (fc if keep_fc else set())):
        if k not in theirs:
            continue
        if k not in own:
            ignored.append(k)
        elif theirs[k].shape != own[k].shape:
            t = (
                f"the checkpoint was made with num_segments={their_cfg['num_segments']}, this model has "
                f"{cfg['num_segments']}, and this module's weights depend on T"
                if their_cfg["num_segments"] != cfg["num_segments"]
                else "its module was built with other settings"
            )
            raise CheckpointError(
                f"{source} does not fit this model: {k} has shape {tuple(theirs[k].shape)} in the "
                f"checkpoint and {tuple(own[k].shape)} here ({t})"
            )
        else:
            load[k] = theirs[k]
    if ignored:
        notes.append(f"{len(ignored)} tensors of inserted modules this model does not have were ignored")
    model.load_state_dict(load, strict=False)
    return LoadReport(source, len(load), sorted(k for k in own if k not in load), ignored, notes)
