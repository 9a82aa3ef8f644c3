"""What a training run adds to its checkpoints: the RNG states that make a resumed run continue
exactly where it stopped, as tensors and plain data (no pickled numpy objects). The checkpoint format
itself (writing, reading, checking) is :mod:`videoattn.checkpoint`, shared by every tool."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (the legacy global state is what users seed)
    state = {
        "python": random.getstate(),
        # plain data, not an ndarray: the checkpoint then loads with torch.load(weights_only=True)
        "numpy": (kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def restore_rng(states: Sequence[Mapping[str, Any]], *, rank: int, world_size: int, seed: int, epoch: int) -> bool:
    """Continue this rank's RNG stream from ``states`` (one per rank of the saved run) and
    return True, when the run resumes with the world size it was saved with. With another
    size the saved streams cannot be dealt out one per rank; every rank is then seeded anew
    from ``(seed, epoch, rank)``, so that the ranks still draw differently (dropout masks), and
    False is returned: the continuation is not the one an uninterrupted run would have had."""
    if len(states) == world_size:
        set_rng_state(states[rank])
        return True
    fresh = int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])
    random.seed(fresh)
    np.random.seed(fresh)  # noqa: NPY002
    torch.manual_seed(fresh)  # CPU and every CUDA device
    return False


def restore_scaler(scaler: torch.amp.GradScaler, state: Mapping[str, Any] | None) -> None:
    """Load a saved grad-scaler state where it applies. The resume rules allow another precision:
    a run saved in fp32 / bf16 saved a disabled scaler's empty state, which an enabled scaler
    cannot load (it then starts from its initial scale, as a new fp16 run does); a run saved in
    fp16 resumed in fp32 / bf16 has no scaler to load it into."""
    if scaler.is_enabled() and state:
        scaler.load_state_dict(dict(state))
