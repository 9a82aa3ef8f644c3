"""Non-finite losses: the step is skipped before it can change the weights, and the run stops
with one clear line when they keep coming."""

from __future__ import annotations

import logging
import math

import torch

from ..errors import DivergedError
from .distributed import World, all_reduce_sum

log = logging.getLogger(__name__)


class NonFiniteGuard:
    """Decides, before the backward pass, whether a step's loss may update the weights.

    A non-finite loss (NaN, inf) skips the step on every rank (the ranks agree: DDP's backward
    is collective) and is counted in :attr:`skipped`; ``limit`` such steps in a row raise
    :class:`~videoattn.errors.DivergedError` naming the epoch, the step and what to change.
    """

    def __init__(self, world: World, *, limit: int = 5) -> None:
        self.world, self.limit = world, limit
        self.skipped = 0  # over the run
        self.in_a_row = 0

    def __call__(self, loss: torch.Tensor, *, epoch: int, step: int) -> bool:
        """True when the step may go on; False to skip it (the caller drops its gradients)."""
        value = loss.item()  # one device sync; the loop reads the same value for its statistics
        bad = torch.tensor([0.0 if math.isfinite(value) else 1.0])
        bad = bool(all_reduce_sum(bad.to(self.world.device), self.world).item())  # any rank: all skip
        if not bad:
            self.in_a_row = 0
            return True
        self.skipped += 1
        self.in_a_row += 1
        if self.in_a_row >= self.limit:
            raise DivergedError(
                f"the loss was not finite ({value}) in {self.in_a_row} steps in a row, up to epoch {epoch + 1} "
                f"step {step + 1}; the weights are those before the first of them. Lower optim.lr (or raise "
                "optim.warmup_epochs), or check the data; resume from the last checkpoint after changing it"
            )
        log.warning(
            "epoch %d step %d: the loss is %s; the step is skipped (%d in a row; the run stops at %d)",
            epoch + 1,
            step + 1,
            value,
            self.in_a_row,
            self.limit,
        )
        return False
