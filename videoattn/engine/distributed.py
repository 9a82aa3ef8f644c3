"""torchrun / DistributedDataParallel helpers; a single process is the world of size 1."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from ..errors import UserError
from ..processes import die_with_parent
from .device import select_device

R = TypeVar("R")


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Rank 0: the only process that prints, logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_distributed(device: str = "auto", *, timeout_s: float = 600.0) -> World:
    """Join the process group that ``torchrun`` describes in the environment (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``): NCCL on CUDA, gloo on CPU. Without torchrun: one process.
    The device follows :func:`~videoattn.engine.device.select_device` (``auto`` says why when a
    CUDA build falls back to the CPU). A collective that waits more than ``timeout_s`` for a
    stuck or dead rank fails (:func:`collective_failure` words it), and every rank dies with
    ``torchrun`` (a killed launcher leaves no rank behind)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = select_device(device, local_rank=local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if size > 1 and not dist.is_initialized():
        die_with_parent()  # the launcher's death ends this rank
        # NCCL takes tensors on the rank's GPU only: every collective of the toolkit puts them on world.device
        dist.init_process_group(
            backend="nccl" if dev.type == "cuda" else "gloo",
            device_id=dev if dev.type == "cuda" else None,
            timeout=timedelta(seconds=timeout_s),
        )
    return World(rank=rank, local_rank=local, size=size, device=dev)


_PEER_GONE = ("timed out", "timeout", "connection closed", "connection reset", "broken pipe", "aborted")


def collective_failure(err: BaseException, world: World, *, timeout_s: float) -> UserError | None:
    """The one line for a collective that failed because another rank is stuck or dead (a gloo /
    NCCL timeout, a closed connection), or None for another error."""
    if not world.distributed or not isinstance(err, RuntimeError):
        return None
    if not any(k in " ".join(str(err).split()).lower() for k in _PEER_GONE):
        return None
    return UserError(
        f"rank {world.rank}: a collective with the other ranks failed ({' '.join(str(err).split())[:160]}): another "
        f"rank is stuck or has died (its own log says why); the job stops. Resume with the same command; "
        f"dist_timeout={timeout_s:g} s is how long a rank waits"
    )


def all_reduce_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    """Sum a tensor over the ranks (in place; identity for one process). ``t`` must be on
    ``world.device``: NCCL refuses CPU tensors (gloo takes them, so a CPU run cannot tell)."""
    if world.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor, world: World) -> torch.Tensor:
    """The element-wise maximum over the ranks, in place, ``t`` on ``world.device``."""
    if world.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def broadcast_buffers(model: torch.nn.Module, world: World) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank. DDP broadcasts them at the
    start of each training forward, after which each rank updates its own from its own batch:
    without this, each rank would validate its shard with other statistics than the ones that
    rank 0 saves in the checkpoint."""
    if world.distributed:
        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def on_main(world: World, fn: Callable[[], R]) -> R:
    """Run ``fn`` on rank 0 only and return its result on every rank (it must pickle); a user
    error (or an operating-system error) raised by ``fn`` is raised on every rank, so that all of
    them stop with its message instead of waiting for rank 0 in the next collective."""
    result, error = None, None
    if world.main:
        try:
            result = fn()
        except (UserError, OSError) as err:  # what the tools report in one line: every rank stops with it
            if not world.distributed:
                raise
            error = err
    if world.distributed:
        box = [(result, error)]
        dist.broadcast_object_list(box, src=0)
        result, error = box[0]
    if error is not None:
        raise error
    return result
