"""Optimiser and learning-rate schedule from the ``optim`` config.

Parameter groups, by the policy ``optim.groups``:

- ``official``: the groups of the official TSN / TSM / TAM / ACTION-Net code
  (``get_optim_policies()``), each with its ``lr_mult`` and ``decay_mult`` (the group's lr is
  ``lr * lr_mult``, its weight decay ``weight_decay * decay_mult``). The rule, by module type:
  the model's first convolution (in module order) gives ``first_conv_weight`` (x1, decay) and
  ``first_conv_bias`` (x2, no decay); every other convolution ``normal_weight`` (x1, decay) and
  ``normal_bias`` (x2, no decay); every norm layer ``bn`` (x1, no decay); every ``nn.Linear``
  is treated like the classifier: with ``fc_lr5`` its weight goes to ``lr5_weight`` (x5, decay)
  and its bias to ``lr10_bias`` (x10, no decay), without it to ``normal_weight`` /
  ``normal_bias``. So TAM's global-branch Linears get x5 with the new classifier. ACTION-Net's
  module keeps its layers apart with the same multipliers: conv weights ``custom_weight`` (x1,
  decay), norms ``custom_bn`` (x1, no decay); biases, which it has none of, would follow the
  rule above. ``fc_lr5`` is the official flag "the classifier is new": true when it starts
  untrained (ImageNet weights, or a checkpoint of another dataset), false only when fine-tuning
  a checkpoint of the same dataset with its classifier kept (``optim.fc_lr5: auto`` follows
  ``build_optimizer(classifier_is_new=...)``). TDN's official groups are this rule with
  ``fc_lr5`` false. A module's own ``nn.Parameter`` (GCT's gates, SRM's ``cfc``, EncNet's
  codewords) has no official rule: refused, use ``uniform`` for such models.
- ``uniform``: weight decay on conv / linear weights only (never on norm layers, biases, or
  parameters a module's registry row lists in ``no_weight_decay``, e.g. GCT's ``beta``), lr x1
  everywhere but the classifier ``fc``, which gets ``fc_lr_mult``. This is also the rule of
  TAda2D's official code (all lr x1, no decay on BN and biases).

Under both, the parameters the model freezes are in no group: those with ``requires_grad``
false, and the layers that partial BN freezes (every BatchNorm2d of the backbone but the
first), whether or not ``model.train()``, which freezes them, has run yet.

The schedule is a per-iteration ``LambdaLR``: linear warm-up, then cosine or multi-step decay,
with the epoch boundaries of the papers' epoch-wise schedules.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..attention import no_weight_decay_names
from ..attention.action import Action
from ..config import choice, require, validate
from ..errors import ConfigError

log = logging.getLogger(__name__)

NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)
CONVS = (nn.modules.conv._ConvNd,)
GROUP_POLICIES = ("official", "uniform")
OFFICIAL_GROUPS = {  # name: (lr_mult, decay_mult), in the official code's order
    "first_conv_weight": (1.0, 1.0),
    "first_conv_bias": (2.0, 0.0),
    "normal_weight": (1.0, 1.0),
    "normal_bias": (2.0, 0.0),
    "bn": (1.0, 0.0),
    "custom_weight": (1.0, 1.0),
    "custom_bn": (1.0, 0.0),
    "lr5_weight": (5.0, 1.0),
    "lr10_bias": (10.0, 0.0),
}
# modules whose official code keeps their layers in groups of their own (``custom_*``): ACTION-Net's
CUSTOM_OPS: tuple[type[nn.Module], ...] = (Action,)


@dataclass
class OptimConfig:
    """``optim``: the optimiser and schedule (see :mod:`videoattn.engine.optim`)."""

    name: str = "sgd"  # sgd | adamw
    lr: float = 0.01  # for base_batch_size clips per step; scaled linearly to the global batch
    base_batch_size: int = 64
    # gradient accumulation: each update is the mean gradient of `accumulate` batches (the global batch,
    # for the lr scaling, is batch_size x processes x accumulate); BatchNorm statistics per batch
    accumulate: int = 1
    momentum: float = 0.9
    nesterov: bool = False
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 5e-4  # per group: weight_decay * the group's decay_mult
    # parameter groups (videoattn.engine.optim): official = the official TSN / TSM / TAM / ACTION-Net
    # groups (first conv; other conv weights; biases lr x2, no decay; norms no decay; every Linear x5,
    # its bias x10, when fc_lr5); uniform = decay on conv / linear weights only, lr x1 (fc: fc_lr_mult)
    groups: str = "uniform"  # official | uniform
    # official only: the official flag for a NEW classifier (ImageNet -> SSv2, Kinetics -> UCF101: true);
    # auto = true unless the classifier is kept from a checkpoint of the same dataset
    fc_lr5: Any = "auto"  # true | false | auto
    fc_lr_mult: float = 1.0  # uniform only: lr multiplier of the classifier fc (official: fc_lr5 instead)
    epochs: int = 50
    schedule: str = "step"  # step | cosine | constant
    milestones: list[int] = field(default_factory=lambda: [20, 40])  # epochs (step schedule)
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    warmup_factor: float = 0.1  # lr at the start of warm-up, relative to lr
    min_lr_factor: float = 0.0  # cosine floor, relative to lr
    clip_grad_norm: float | None = 20.0  # TSM / TAM --gd 20; null disables
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        choice("optim.name", self.name, ("sgd", "adamw"))
        choice("optim.schedule", self.schedule, ("step", "cosine", "constant"))
        require(self.lr > 0, "optim.lr", self.lr, "a positive number")
        require(self.epochs >= 1, "optim.epochs", self.epochs, "a positive integer")
        require(self.base_batch_size >= 1, "optim.base_batch_size", self.base_batch_size, "a positive integer")
        require(self.accumulate >= 1, "optim.accumulate", self.accumulate, "a positive integer")
        require(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, "a number >= 0")
        require(self.fc_lr_mult > 0, "optim.fc_lr_mult", self.fc_lr_mult, "a positive number")
        choice("optim.groups", self.groups, ("official", "uniform"))
        require(
            isinstance(self.fc_lr5, bool) or self.fc_lr5 == "auto", "optim.fc_lr5", self.fc_lr5, "true, false or auto"
        )
        require(self.warmup_epochs >= 0, "optim.warmup_epochs", self.warmup_epochs, "a number >= 0")
        require(0.0 <= self.label_smoothing < 1.0, "optim.label_smoothing", self.label_smoothing, "a number in [0, 1)")
        require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "optim.betas",
            self.betas,
            "two numbers in [0, 1)",
        )
        require(
            self.clip_grad_norm is None or self.clip_grad_norm > 0,
            "optim.clip_grad_norm",
            self.clip_grad_norm,
            "a positive number or null",
        )
        # a value changed where it would be ignored (APPLIES_WITH: keys that only some settings read)
        defaults = {
            f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            for f in dataclasses.fields(self)
        }
        current = dataclasses.asdict(self)
        for key, (setting, applies) in APPLIES_WITH.items():
            if current[key] != defaults[key] and not applies(current):
                raise ConfigError(
                    f"optim.{key}={current[key]!r} has no effect with {setting} (here name={self.name}, "
                    f"schedule={self.schedule}, warmup_epochs={self.warmup_epochs}, groups={self.groups}); "
                    f"leave it at its default {defaults[key]!r} or change the setting it belongs to"
                )


def normalize_optim_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` checked against :class:`OptimConfig` (keys, types, ranges, and no setting that the
    chosen optimiser / schedule / group policy would ignore), with the defaults filled in; a
    config composed against the schema (the tools') was checked there and is taken as it is."""
    return validate(OptimConfig, cfg, section="optim")


APPLIES_WITH = {  # keys that only some settings read
    "momentum": ("optim.name=sgd", lambda c: c["name"] == "sgd"),
    "nesterov": ("optim.name=sgd", lambda c: c["name"] == "sgd"),
    "betas": ("optim.name=adamw", lambda c: c["name"] == "adamw"),
    "milestones": ("optim.schedule=step", lambda c: c["schedule"] == "step"),
    "gamma": ("optim.schedule=step", lambda c: c["schedule"] == "step"),
    "min_lr_factor": ("optim.schedule=cosine", lambda c: c["schedule"] == "cosine"),
    "warmup_factor": ("optim.warmup_epochs > 0", lambda c: c["warmup_epochs"] > 0),
    "fc_lr_mult": ("optim.groups=official (its classifier rule is fc_lr5)", lambda c: c["groups"] == "uniform"),
    "fc_lr5": ("optim.groups=uniform (its classifier rule is fc_lr_mult)", lambda c: c["groups"] == "official"),
}


def frozen_parameter_names(model: nn.Module) -> set[str]:
    """Full names of the parameters ``model`` does not train: ``requires_grad`` false now, or in a
    layer that partial BN freezes (``VideoClassifier``'s frozen BatchNorm layers, frozen by its
    ``train()``, which may run after the optimiser is built)."""
    names = {n for n, p in model.named_parameters() if not p.requires_grad}
    for prefix, module in model.named_modules():
        for bn in getattr(module, "_frozen_bn", ()):  # names inside the classifier's backbone
            layer = ".".join(part for part in (prefix, "backbone", bn) if part)
            names.update(f"{layer}.{p}" for p in ("weight", "bias"))
    return names


def _own_parameters(model: nn.Module, skip: set[str]) -> Iterator[tuple[str, str, nn.Module, nn.Parameter]]:
    """``(module name, local name, module, parameter)`` of every trained parameter, once each,
    in module order."""
    seen: set[int] = set()
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            if full in skip or id(p) in seen:
                continue
            seen.add(id(p))
            yield mname, pname, module, p


def _group(name: str, params: list[nn.Parameter], lr_mult: float, decay_mult: float, wd: float) -> dict[str, Any]:
    return {
        "params": params,
        "name": name,
        "lr_mult": lr_mult,
        "decay_mult": decay_mult,
        "weight_decay": wd * decay_mult,
    }


def uniform_param_groups(model: nn.Module, *, weight_decay: float, fc_lr_mult: float = 1.0) -> list[dict[str, Any]]:
    """Up to four groups: decayed / not decayed x backbone / classifier (``fc``): decay on conv /
    linear weights only, never on norm layers, biases (any 1-D parameter) or the ``no_weight_decay``
    parameters of the registry rows; ``lr_mult`` 1, ``fc_lr_mult`` for ``fc.weight`` / ``fc.bias``."""
    no_decay: set[str] = set(no_weight_decay_names(model))
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for mname, pname, module, p in _own_parameters(model, frozen_parameter_names(model)):
        full = f"{mname}.{pname}" if mname else pname
        nd = full in no_decay or isinstance(module, NORMS) or pname.endswith("bias") or p.ndim <= 1
        groups.setdefault((nd, full in ("fc.weight", "fc.bias")), []).append(p)
    return [
        _group(
            f"{'fc' if fc else 'backbone'}{'_no_decay' if nd else ''}",
            ps,
            fc_lr_mult if fc else 1.0,
            0.0 if nd else 1.0,
            weight_decay,
        )
        for (nd, fc), ps in sorted(groups.items())
    ]


def official_group_of(module: nn.Module, pname: str, *, first_conv: bool, custom: bool, fc_lr5: bool) -> str | None:
    """The official group of parameter ``pname`` of ``module`` (see the module docstring), or
    None where the official code has no rule for it."""
    if isinstance(module, NORMS) and pname in ("weight", "bias"):
        return "custom_bn" if custom else "bn"
    if isinstance(module, (*CONVS, nn.Linear)) and pname in ("weight", "bias"):
        weight = pname == "weight"
        if custom and weight:
            return "custom_weight"
        if isinstance(module, nn.Linear):  # every Linear is treated like the classifier
            return (
                ("lr5_weight" if weight else "lr10_bias") if fc_lr5 else ("normal_weight" if weight else "normal_bias")
            )
        if first_conv:
            return "first_conv_weight" if weight else "first_conv_bias"
        return "normal_weight" if weight else "normal_bias"
    return None


def official_param_groups(model: nn.Module, *, weight_decay: float, fc_lr5: bool = True) -> list[dict[str, Any]]:
    """The groups of the official code's ``get_optim_policies()`` (the rule is in the module
    docstring), the non-empty ones in its order, each with ``lr_mult``, ``decay_mult`` and
    ``weight_decay = weight_decay * decay_mult``. A parameter the rule does not cover (a
    module's own ``nn.Parameter``) is a :class:`~videoattn.errors.ConfigError`."""
    custom = [name for name, m in model.named_modules() if isinstance(m, CUSTOM_OPS)]
    first = next((name for name, m in model.named_modules() if isinstance(m, CONVS)), None)
    buckets: dict[str, list[nn.Parameter]] = {g: [] for g in OFFICIAL_GROUPS}
    for mname, pname, module, p in _own_parameters(model, frozen_parameter_names(model)):
        in_custom = any(mname == c or mname.startswith(c + ".") for c in custom)
        group = official_group_of(module, pname, first_conv=mname == first, custom=in_custom, fc_lr5=fc_lr5)
        if group is None:
            full = f"{mname}.{pname}" if mname else pname
            raise ConfigError(
                f"optim.groups=official: {full} is a parameter of a {type(module).__name__}, and the official "
                "rule covers convolutions, linear layers and norm layers only (the official code refuses other "
                "modules too); use optim.groups=uniform for this model"
            )
        buckets[group].append(p)
    return [_group(g, ps, *OFFICIAL_GROUPS[g], weight_decay) for g, ps in buckets.items() if ps]


def param_groups(
    model: nn.Module,
    *,
    weight_decay: float,
    policy: str = "uniform",
    fc_lr_mult: float = 1.0,
    fc_lr5: bool = True,
) -> list[dict[str, Any]]:
    """The parameter groups of ``policy`` (``official`` | ``uniform``, see the module docstring),
    each a dict with ``params``, ``name``, ``lr_mult``, ``decay_mult`` and ``weight_decay``
    (``weight_decay * decay_mult``); the frozen parameters are in none. ``fc_lr_mult`` is
    ``uniform``'s classifier multiplier, ``fc_lr5`` ``official``'s flag."""
    if policy == "uniform":
        return uniform_param_groups(model, weight_decay=weight_decay, fc_lr_mult=fc_lr_mult)
    if policy != "official":
        raise ConfigError(f"optim.groups={policy!r}: expected one of {', '.join(GROUP_POLICIES)}")
    if fc_lr_mult != 1.0:
        raise ConfigError(f"optim.fc_lr_mult={fc_lr_mult!r} has no effect with optim.groups=official (use fc_lr5)")
    return official_param_groups(model, weight_decay=weight_decay, fc_lr5=fc_lr5)


def resolve_fc_lr5(setting: bool | str, *, classifier_is_new: bool) -> bool:
    """``optim.fc_lr5``: ``true`` / ``false`` as given, ``auto`` = ``classifier_is_new``."""
    return classifier_is_new if setting == "auto" else bool(setting)


FUSED_DEVICES = ("cpu", "cuda")  # where PyTorch has fused SGD / AdamW kernels (one launch for all parameters)


def build_optimizer(
    model: nn.Module, cfg: Mapping[str, Any], *, global_batch: int, classifier_is_new: bool = True
) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW over the groups of ``cfg["groups"]`` (:func:`param_groups`), with
    ``lr * global_batch / base_batch_size`` (linear scaling) times each group's ``lr_mult``,
    fused where the parameters' device has the kernels: one launch per step, and an update that
    a non-finite loss skips on the device (``found_inf``, :func:`videoattn.engine.loop.optimizer_step`).

    ``classifier_is_new``: whether ``model.fc`` starts untrained (ImageNet weights, or a
    checkpoint of another dataset) rather than kept from a checkpoint of this dataset; it is
    what ``optim.fc_lr5: auto`` follows (the official x5 / x10 for a new classifier)."""
    lr = cfg["lr"] * global_batch / cfg["base_batch_size"]
    fc_lr5 = resolve_fc_lr5(cfg["fc_lr5"], classifier_is_new=classifier_is_new)
    groups = param_groups(
        model,
        weight_decay=cfg["weight_decay"],
        policy=cfg["groups"],
        fc_lr_mult=cfg["fc_lr_mult"],
        fc_lr5=fc_lr5,
    )
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
        g["initial_lr"] = g["lr"]
    log.info(
        "parameter groups (%s%s): %s",
        cfg["groups"],
        f", fc_lr5={fc_lr5}" if cfg["groups"] == "official" else "",
        "; ".join(f"{g['name']} {len(g['params'])} (lr x{g['lr_mult']:g}, wd x{g['decay_mult']:g})" for g in groups),
    )
    params = [p for g in groups for p in g["params"]]
    fused = all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in params) or None
    if cfg["name"] == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=cfg["momentum"], nesterov=cfg["nesterov"], fused=fused)
        if cfg["momentum"] and fused:
            # a skipped first step must not leave the fused kernel uninitialised buffers; zeros give the
            # first update exactly (0 * momentum + grad = grad)
            for p in params:
                opt.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return opt
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg["betas"]), fused=fused)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """``optimizer.load_state_dict(state)`` keeping this optimiser's kernel choice (``fused``): a
    checkpoint saved on another device, or by an unfused optimiser, resumes with the kernels here."""
    fused = [g.get("fused") for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for g, f in zip(optimizer.param_groups, fused, strict=True):
        g["fused"] = f
        g["foreach"] = None


def lr_factor(epoch: float, cfg: Mapping[str, Any]) -> float:
    """Learning-rate factor at fractional ``epoch`` (``step / steps_per_epoch``)."""
    warm = cfg["warmup_epochs"]
    if warm > 0 and epoch < warm:
        return cfg["warmup_factor"] + (1.0 - cfg["warmup_factor"]) * epoch / warm
    if cfg["schedule"] == "cosine":
        span = max(cfg["epochs"] - warm, 1e-8)
        progress = min(max((epoch - warm) / span, 0.0), 1.0)
        floor = cfg["min_lr_factor"]
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg["schedule"] == "step":
        return cfg["gamma"] ** sum(epoch >= m for m in cfg["milestones"])
    return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any], *, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration schedule; ``scheduler.step()`` after every optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step / steps_per_epoch, cfg))
