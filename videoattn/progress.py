"""Progress of a long loop for a person: tqdm's bar on a terminal; anywhere else (a log file, a
pipe, a batch job) one line per ``every`` percent with the elapsed time and an estimate of what is
left, instead of thousands of carriage-return redraws. ``tools/test.py`` and
``tools/prepare_data.py`` use it; training's epoch lines are its progress (``videoattn.engine.fit``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


class Progress:
    """``update(n)`` after each ``n`` items of ``total``; a context manager. ``file`` (stderr by
    default) is where it writes: a terminal gets a bar, anything else a line at every ``every``
    percent (and at the end). ``enabled=False`` writes nothing (ranks other than 0)."""

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        unit: str = "item",
        every: int = 10,
        file: IO[str] | None = None,
        enabled: bool = True,
    ) -> None:
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.file = sys.stderr if file is None else file
        self.enabled = enabled and total > 0
        self.done, self.start, self._next = 0, time.perf_counter(), every
        tty = self.enabled and hasattr(self.file, "isatty") and self.file.isatty()
        self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.file, dynamic_ncols=True) if tty else None

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        if not self.enabled:
            return
        percent = 100 * self.done // self.total
        if percent >= self._next or self.done >= self.total:
            self._next = (percent // self.every + 1) * self.every
            self.file.write(self.line() + "\n")
            self.file.flush()

    def line(self) -> str:
        """``desc: 40% (48/120 videos), 12s, ~18s left``."""
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        unit = (
            self.unit if self.total == 1 else self.unit + ("es" if self.unit.endswith(("s", "x", "ch", "sh")) else "s")
        )
        end = "" if self.done >= self.total else f", ~{left:.0f}s left"
        return f"{self.desc}: {100 * self.done // self.total}% ({self.done}/{self.total} {unit}), {elapsed:.0f}s{end}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def track(iterable: Iterable[T], *, total: int, desc: str, **kw: Any) -> Iterator[T]:
    """Iterate ``iterable`` (``total`` items) reporting progress as :class:`Progress` does."""
    with Progress(total, desc=desc, **kw) as progress:
        for item in iterable:
            yield item
            progress.update()
