"""Ctrl-C and SIGTERM: the run stops at its next safe point, says so in one line, and exits 130 / 143.

A KeyboardInterrupt raised wherever the signal lands can be swallowed (inside logging's fork
handlers when DataLoader workers start, inside a library's ``except Exception``) or leave a
checkpoint half-written. So the handlers only record the request (:class:`StopRequests`); the
training loop looks at it at its safe points (between steps, between epochs after the checkpoint,
between validation batches) and raises :class:`Interrupted` there. Under ``torchrun`` the ranks
agree on the step to stop at (one collective, at the log intervals), so that none waits in a
collective for one that has left. A second signal of the same kind stops at once. DataLoader
workers ignore both signals (the terminal sends Ctrl-C to the whole process group): the main
process stops them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import torch

from .distributed import World, all_reduce_max

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """The run was asked to stop (``signum``) and stopped at ``where``."""

    def __init__(self, signum: int, where: str) -> None:
        self.signum, self.where = signum, where
        super().__init__(f"interrupted ({signal.Signals(signum).name}) {where}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class StopRequests:
    """Signal handlers that record a stop request; :meth:`check` / :meth:`agreed` act on it."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.where: str | None = None  # what the caller is doing, for checks that do not say (evaluation)
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum == signum:  # the second one: now, wherever the program is
            raise Interrupted(signum, "at once (a second signal)")
        self.signum = signum

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequests]:
        """Handle SIGINT / SIGTERM in the block (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, previous in self._previous.items():
                signal.signal(sig, previous)

    def check(self, where: str) -> None:
        """Raise :class:`Interrupted` here if a stop was requested (one process)."""
        if self.signum is not None:
            raise Interrupted(self.signum, self.where or where)

    def agreed(self, world: World, where: str) -> None:
        """:meth:`check` on every rank at once: a collective (call it at the same point on every rank)."""
        if not world.distributed:
            return self.check(where)
        flag = torch.tensor([float(self.signum or 0)], device=world.device)
        signum = int(all_reduce_max(flag, world).item())
        if signum:
            raise Interrupted(signum, where)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """``DataLoader(worker_init_fn=...)``: workers leave Ctrl-C / SIGTERM to the main process,
    which stops at a safe point and shuts them down."""
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
