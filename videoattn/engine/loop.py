"""The training epoch, read top to bottom, and the bookkeeping that keeps it off the host.

:func:`train_one_epoch` runs ``steps`` optimiser steps of the model (possibly wrapped by DDP or
``torch.compile``), which returns its own loss: ``net(clips, labels, label_smoothing=...) ->
(loss, logits)`` (:meth:`videoattn.models.classifier.VideoClassifier.forward`: cross-entropy plus
the inserted modules' losses). Each step is the gradient of ``accumulate`` batches, of their mean
loss: ``accumulate`` batches of B are one step of a batch of ``accumulate * B``, with BatchNorm
statistics per batch; DDP reduces the gradients once, at the last batch of a step. An epoch
holds whole steps: a loader that ends inside one drops it, so a run resumed at an epoch boundary
continues exactly.

A GPU runs a step's kernels while the host queues the next ones; reading a value the device
computed (``.item()``, ``bool(tensor)``, ``.cpu()``, ``.tolist()``) makes the host wait until the
device has drained everything queued before it. So the step reads nothing: the loss, accuracy
and non-finite guard accumulate in :class:`StepCounters` on the device and are read together
once every ``log_every`` steps and at the end of the epoch (``on_log(step, counters, timer)``
runs at each read: progress, TensorBoard); a non-finite loss skips its update on the device
(``found_inf``, the mechanism of PyTorch's fused optimisers and its grad scaler); compute time is
measured with CUDA events on CUDA.

``stop`` (:class:`~videoattn.engine.interrupt.StopRequests`): Ctrl-C / SIGTERM end the epoch with
:class:`~videoattn.engine.interrupt.Interrupted` after the update in progress (one process), or
at the next read, on every rank alike (``world`` distributed)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..data.transforms import ToDevice
from ..errors import DivergedError
from .distributed import World, all_reduce_max
from .evaluate import autocast
from .interrupt import StopRequests

log = logging.getLogger(__name__)


class StepCounters:
    """Sums over the steps of an epoch, kept in one float64 tensor on the device, read together
    (one host synchronisation) by :meth:`read`."""

    FIELDS = ("loss_sum", "correct", "clips", "skipped", "bad_in_a_row", "longest_bad_run", "last_bad_loss")

    def __init__(self, device: torch.device) -> None:
        self.values = torch.zeros(len(self.FIELDS), dtype=torch.float64, device=device)
        self._slot = {name: i for i, name in enumerate(self.FIELDS)}

    def __getitem__(self, name: str) -> Tensor:
        """The 0-d view of one sum (in-place updates write through)."""
        return self.values[self._slot[name]]

    def add_batch(self, loss: Tensor, logits: Tensor, labels: Tensor, skipped: Tensor) -> None:
        """Count a batch's clips, loss and correct top-1 unless its step was skipped (``skipped``: 0 / 1)."""
        kept = 1.0 - skipped.double()
        n = labels.shape[0]
        self["loss_sum"].add_(torch.where(skipped.bool(), 0.0, loss.detach().double() * n))  # a NaN times 0 is NaN
        self["correct"].add_((logits.detach().argmax(1) == labels).sum() * kept)
        self["clips"].add_(n * kept)

    def read(self) -> dict[str, float]:
        return dict(zip(self.FIELDS, self.values.tolist(), strict=True))  # the one read of the device


class NonFiniteGuard:
    """Decides on the device whether a step's loss may update the weights.

    :meth:`flag` gives ``found_inf`` (1.0 when the loss is NaN / inf on any rank: the ranks agree,
    their weights stay equal) without reading it on the host; the optimiser skips that update on
    the device (:func:`optimizer_step`), and :meth:`record` counts it. :meth:`check`, at each read of
    the counters, logs the skipped steps and raises :class:`~videoattn.errors.DivergedError` when
    ``limit`` or more came in a row: the weights are then those before the first of them.
    """

    def __init__(self, world: World, *, limit: int = 5) -> None:
        self.world, self.limit = world, limit
        self.skipped = 0  # over the run, as of the last check

    def flag(self, loss: Tensor) -> Tensor:
        """0-d float32 on the device: 1.0 when ``loss`` is not finite on any rank."""
        bad = (~torch.isfinite(loss.detach())).to(torch.float32).reshape(1)
        return all_reduce_max(bad, self.world)[0]  # any rank's: every rank skips

    def record(self, skip: Tensor, loss: Tensor, counters: StepCounters) -> None:
        """Count an optimiser step that ``skip`` (0 / 1) skipped, on the device."""
        b = skip.double()
        in_a_row, longest, last = counters["bad_in_a_row"], counters["longest_bad_run"], counters["last_bad_loss"]
        counters["skipped"].add_(b)
        in_a_row.copy_((in_a_row + b) * b)  # 0 again after an update
        longest.copy_(torch.maximum(longest, in_a_row))
        last.copy_(torch.where(skip.bool(), loss.detach().double(), last))

    def check(self, read: dict[str, float], *, epoch: int, step: int) -> None:
        new = int(read["skipped"]) - self.skipped_in_epoch
        self.skipped_in_epoch = int(read["skipped"])
        self.skipped += new
        if read["longest_bad_run"] >= self.limit:
            raise DivergedError(
                f"the loss was not finite ({read['last_bad_loss']}) in {int(read['longest_bad_run'])} steps in a row, "
                f"up to epoch {epoch + 1} step {step + 1}; the weights are those before the first of them. Lower "
                "optim.lr (or raise optim.warmup_epochs), or check the data; resume from the last checkpoint after "
                "changing it"
            )
        if new:
            log.warning(
                "epoch %d, up to step %d: the loss was not finite (%s) in %d step(s), which were skipped "
                "(%d in a row now; the run stops at %d in a row)",
                epoch + 1,
                step + 1,
                read["last_bad_loss"],
                new,
                int(read["bad_in_a_row"]),
                self.limit,
            )

    def start_epoch(self) -> None:
        self.skipped_in_epoch = 0


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, skip: Tensor) -> None:
    """The update, skipped on the device where ``skip`` is 1. Fused optimisers take the flag as
    ``found_inf`` (as the grad scaler passes its own); an optimiser without fused kernels for
    this device reads it on the host (one synchronisation per step)."""
    if scaler.is_enabled():  # fp16: the scaler's found_inf covers a non-finite loss (its gradients are too)
        scaler.step(optimizer)
        scaler.update()
    elif optimizer.param_groups[0].get("fused"):
        optimizer.found_inf = skip
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif not bool(skip):
        optimizer.step()


class StepTimer:
    """Seconds per step spent waiting for the loader (host wall time) and computing: CUDA events
    on CUDA (the host runs ahead of the GPU, so its clock would measure queueing), host wall time
    on the CPU (where a step is synchronous). Read at the log intervals."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.data_s = self.compute_s = 0.0
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._ready = time.perf_counter()

    def got_batch(self) -> None:
        now = time.perf_counter()
        self.data_s += now - self._ready
        self._got = now
        if self.cuda:
            start = torch.cuda.Event(enable_timing=True)
            start.record()
            self._events.append((start, torch.cuda.Event(enable_timing=True)))

    def step_done(self) -> None:
        if self.cuda:
            self._events[-1][1].record()
        else:
            self.compute_s += time.perf_counter() - self._got
        self._ready = time.perf_counter()

    def collect(self) -> None:
        """Add the finished steps' CUDA times (waits for the last step: call at a read)."""
        if self._events:
            self._events[-1][1].synchronize()
            self.compute_s += sum(a.elapsed_time(b) for a, b in self._events) / 1000.0
            self._events.clear()


@dataclass
class EpochStats:
    loss: float
    top1: float
    clips: int  # this rank's clips in the steps that updated the weights
    steps: int
    skipped: int
    seconds: float
    data_s_per_step: float
    compute_s_per_step: float

    @classmethod
    def of(cls, read: dict[str, float], *, steps: int, skipped: int, seconds: float, timer: StepTimer) -> EpochStats:
        """The epoch's figures from the last read of its counters (this rank's)."""
        clips = int(read["clips"])
        return cls(
            loss=read["loss_sum"] / clips if clips else float("nan"),
            top1=read["correct"] / clips if clips else float("nan"),
            clips=clips,
            steps=steps,
            skipped=skipped,
            seconds=seconds,
            data_s_per_step=timer.data_s / max(steps, 1),
            compute_s_per_step=timer.compute_s / max(steps, 1),
        )


def train_one_epoch(
    net: nn.Module,
    loader: Iterable,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    guard: NonFiniteGuard,
    to_device: ToDevice,
    params: Sequence[nn.Parameter],
    epoch: int,
    steps: int,
    accumulate: int = 1,
    precision: str = "fp32",
    label_smoothing: float = 0.0,
    clip_grad_norm: float | None = None,
    log_every: int = 10,
    on_log: Callable[[int, dict[str, float], StepTimer], None] | None = None,
    stop: StopRequests | None = None,
    world: World | None = None,
) -> EpochStats:
    """One epoch of ``steps`` optimiser steps of ``net`` (the model, possibly DDP / compiled:
    ``net(clips, labels, label_smoothing=...) -> (loss, logits)``) over ``loader``, each step the
    gradient of ``accumulate`` batches; ``on_log`` at every read of the counters (see the module
    docstring for accumulation, the reads and ``stop``)."""
    device = to_device.device
    counters, timer = StepCounters(device), StepTimer(device)
    guard.start_epoch()
    no_sync = getattr(net, "no_sync", None)  # DDP: no gradient all-reduce before the last batch of a step
    distributed = world is not None and world.distributed
    t0 = time.perf_counter()
    step, read, last, skip = -1, None, True, None
    for i, (clips, labels, _, _) in enumerate(loader):
        if i >= steps * accumulate:
            break
        step, micro = divmod(i, accumulate)
        last = micro == accumulate - 1
        timer.got_batch()
        clips = to_device(clips)  # (N, T, 3, H, W), normalised on the device
        labels = labels.to(device, non_blocking=True)
        if micro == 0:
            optimizer.zero_grad(set_to_none=True)
        with contextlib.nullcontext() if last or no_sync is None else no_sync():
            with autocast(device, precision):
                loss, logits = net(clips, labels, label_smoothing=label_smoothing)  # (), (N, K)
            bad = guard.flag(loss)  # NaN / inf on any rank: no update from this step, on any rank
            skip = bad if micro == 0 or skip is None else torch.maximum(skip, bad)
            scaler.scale(loss / accumulate if accumulate > 1 else loss).backward()
        counters.add_batch(loss, logits, labels, bad)
        if last:
            if clip_grad_norm:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(params, clip_grad_norm)
            optimizer_step(optimizer, scaler, skip)
            scheduler.step()
            guard.record(skip, loss, counters)
        timer.step_done()

        if last and ((step + 1) % log_every == 0 or step + 1 == steps):
            read = _read(counters, timer, guard, epoch=epoch, step=step)
            if on_log is not None:
                on_log(step, read, timer)
            if stop is not None and distributed:
                stop.agreed(world, f"in epoch {epoch + 1} at step {step + 1}")  # every rank at this step
        if last and stop is not None and not distributed:
            stop.check(f"in epoch {epoch + 1} at step {step + 1}")
    done = step + 1 if step < 0 or last else step  # whole steps (a loader that ended inside one drops it)
    if read is None or done < steps:  # a loader shorter than `steps`: read what it gave
        read = _read(counters, timer, guard, epoch=epoch, step=max(step, 0))
    return EpochStats.of(
        read, steps=done, skipped=guard.skipped_in_epoch, seconds=time.perf_counter() - t0, timer=timer
    )


def _read(counters: StepCounters, timer: StepTimer, guard: NonFiniteGuard, *, epoch: int, step: int) -> dict:
    """The one read of the device: the counters (checked by the guard) and the finished steps' times."""
    timer.collect()
    read = counters.read()
    guard.check(read, epoch=epoch, step=step)
    return read
