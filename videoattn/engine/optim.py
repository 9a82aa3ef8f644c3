"""Optimiser and learning-rate schedule from the ``optim`` config.

Parameter groups follow the TSN / TSM recipes: weight decay on conv / linear weights only
(never on norm layers, biases, or parameters a module declares in ``no_weight_decay()``, e.g.
GCT's ``beta``); an optional learning-rate multiplier for the classifier ``fc`` (TSM's 5x when
fine-tuning). The schedule is a per-iteration ``LambdaLR``: linear warm-up, then cosine or
multi-step decay, with the epoch boundaries of the papers' epoch-wise schedules.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..attention import no_weight_decay_names
from ..config import OptimConfig, validate
from ..errors import ConfigError

NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def normalize_optim_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check the config against :class:`~videoattn.config.OptimConfig` (keys, types, ranges),
    fill in the defaults, and refuse a setting the chosen optimiser / schedule would ignore."""
    out = validate(OptimConfig, cfg, section="optim")
    defaults = dataclasses.asdict(OptimConfig())
    for key, (setting, applies) in APPLIES_WITH.items():  # a value changed where it would be ignored
        if out[key] != defaults[key] and not applies(out):
            raise ConfigError(
                f"optim.{key}={out[key]!r} has no effect with {setting} (here name={out['name']}, "
                f"schedule={out['schedule']}, warmup_epochs={out['warmup_epochs']}); leave it at its "
                f"default {defaults[key]!r} or change the setting it belongs to"
            )
    return out


APPLIES_WITH = {  # keys that only some settings read
    "momentum": ("optim.name=sgd", lambda c: c["name"] == "sgd"),
    "nesterov": ("optim.name=sgd", lambda c: c["name"] == "sgd"),
    "betas": ("optim.name=adamw", lambda c: c["name"] == "adamw"),
    "milestones": ("optim.schedule=step", lambda c: c["schedule"] == "step"),
    "gamma": ("optim.schedule=step", lambda c: c["schedule"] == "step"),
    "min_lr_factor": ("optim.schedule=cosine", lambda c: c["schedule"] == "cosine"),
    "warmup_factor": ("optim.warmup_epochs > 0", lambda c: c["warmup_epochs"] > 0),
}


def param_groups(model: nn.Module, *, weight_decay: float, fc_lr_mult: float = 1.0) -> list[dict[str, Any]]:
    """Four groups: decayed / not decayed x backbone / classifier (``fc``); each carries its
    ``lr_mult`` for the scheduler."""
    skip = no_weight_decay_names(model)
    no_decay: set[str] = set(skip)
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            if isinstance(module, NORMS) or pname.endswith("bias") or p.ndim <= 1:
                no_decay.add(full)
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_fc = name == "fc.weight" or name == "fc.bias"
        groups.setdefault((name in no_decay, is_fc), []).append(p)
    return [
        {
            "params": ps,
            "weight_decay": 0.0 if nd else weight_decay,
            "lr_mult": fc_lr_mult if fc else 1.0,
            "name": f"{'fc' if fc else 'backbone'}{'_no_decay' if nd else ''}",
        }
        for (nd, fc), ps in sorted(groups.items())
    ]


FUSED_DEVICES = ("cpu", "cuda")  # where PyTorch has fused SGD / AdamW kernels (one launch for all parameters)


def build_optimizer(model: nn.Module, cfg: Mapping[str, Any], *, global_batch: int) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW with ``lr * global_batch / base_batch_size`` (linear scaling),
    fused where the parameters' device has the kernels: one launch per step, and an update that
    a non-finite loss skips on the device (``found_inf``, :func:`videoattn.engine.loop.optimizer_step`)."""
    lr = cfg["lr"] * global_batch / cfg["base_batch_size"]
    groups = param_groups(model, weight_decay=cfg["weight_decay"], fc_lr_mult=cfg["fc_lr_mult"])
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
        g["initial_lr"] = g["lr"]
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
