"""Progress off a terminal: one line per 10% with an estimate, no carriage-return redraws."""

from __future__ import annotations

import io

import pytest

from videoattn.progress import Progress, track


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("total", [1, 7, 25, 120])
def test_off_a_terminal_one_line_per_ten_percent_and_the_last_one(total):
    out = io.StringIO()
    assert list(track(range(total), total=total, desc="test", unit="batch", file=out)) == list(range(total))
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and 1 <= len(lines) <= 10
    percents = [int(line.split(": ")[1].split("%")[0]) for line in lines]
    assert percents == sorted(set(percents)) and percents[-1] == 100
    assert lines[-1].startswith(f"test: 100% ({total}/{total} {'batch' if total == 1 else 'batches'})")
    assert "left" not in lines[-1]
    assert all("s left" in line for line in lines[:-1])


def test_a_terminal_gets_the_bar_and_a_disabled_one_writes_nothing():
    tty, quiet = Terminal(), io.StringIO()
    with (
        Progress(50, desc="prep", unit="video", file=tty) as bar,
        Progress(50, desc="x", file=quiet, enabled=False) as q,
    ):
        for _ in range(50):
            bar.update()
            q.update()
    assert "\r" in tty.getvalue() and "50/50" in tty.getvalue()
    assert quiet.getvalue() == ""
