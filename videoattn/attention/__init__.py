"""Excitation / attention modules, built by name from one registry.

Temporal modules (``tsm``, ``tsm_online``, ``action*``, ``tam*``) map ``(N*T, C, H, W) -> (N*T, C, H, W)`` and
mix frames of the same clip only; static modules act on every frame alone.
"""

from .encnet import se_loss
from .protocols import FusesConv
from .registry import (
    FIXED_SLOTS,
    SLOTS,
    AttentionSpec,
    accepted_hparams,
    build_attention,
    get_spec,
    list_attention,
    no_weight_decay_names,
    stream_modules,
    streaming_blockers,
)
from .shift import causal_temporal_shift, temporal_shift

__all__ = [
    "FIXED_SLOTS",
    "FusesConv",
    "SLOTS",
    "AttentionSpec",
    "accepted_hparams",
    "build_attention",
    "causal_temporal_shift",
    "get_spec",
    "list_attention",
    "no_weight_decay_names",
    "se_loss",
    "stream_modules",
    "streaming_blockers",
    "temporal_shift",
]
