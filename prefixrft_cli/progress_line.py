"""Plain progress lines for runs without a terminal (a log file, `| tee`, nohup, a batch scheduler).

    train prefix-rft  step 30/300 (10%)  elapsed 0:01:02  eta 0:09:18  reward 0.412 ...

A line is printed at the first update, whenever another tenth of the total is done or
`every_seconds` have passed since the last line (default 30; $PREFIXRFT_PROGRESS_SECONDS
overrides it), and at the end, so a log shows the run moving without one line per step.
Used by the training view (train/view.py) and `prefixrft eval` (cli/eval.py).
Test: tests/test_progress.py.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

ENV_VAR = "PREFIXRFT_PROGRESS_SECONDS"


def default_interval() -> float:
    """Seconds between plain progress lines: $PREFIXRFT_PROGRESS_SECONDS, else 30."""
    try:
        return max(0.0, float(os.environ.get(ENV_VAR, "30")))
    except ValueError:
        return 30.0


def clock_text(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressLine:
    """Prints `<label> <unit> k/total (p%)  elapsed  eta  <extra>` lines at a sensible interval."""

    def __init__(self, label: str, total: int, done: int = 0, unit: str = "", every_seconds: float | None = None,
                 write: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.unit = label, max(total, 0), unit
        self.start_done = self.completed = done
        self.every = default_interval() if every_seconds is None else every_seconds
        self.write = write or _print
        self.clock = clock
        self.started = clock()
        self.last_time: float | None = None
        self.last_tenth = -1
        self.last_written = -1
        self.extra = ""

    def update(self, completed: int, extra: str = "") -> None:
        """Record progress; print a line when one is due."""
        self.completed, self.extra = completed, extra
        now = self.clock()
        tenth = 10 * completed // self.total if self.total else 10
        due = (self.last_time is None or completed >= self.total or tenth > self.last_tenth
               or now - self.last_time >= self.every)
        if due:
            self.last_time, self.last_tenth, self.last_written = now, tenth, completed
            self.write(self.line(now, extra))

    def finish(self) -> None:
        """The closing line, when the last update did not print one (a run stopped early)."""
        if self.last_written != self.completed:
            self.last_written = self.completed
            self.write(self.line(self.clock(), self.extra))

    def line(self, now: float, extra: str = "") -> str:
        elapsed = now - self.started
        share = f" ({100 * self.completed // self.total}%)" if self.total else ""
        made = self.completed - self.start_done
        left = self.total - self.completed
        eta = clock_text(elapsed / made * left) if made > 0 else "?"
        unit = f"{self.unit} " if self.unit else ""
        text = f"{self.label}  {unit}{self.completed}/{self.total}{share}  elapsed {clock_text(elapsed)}  eta {eta}"
        return f"{text}  {extra}" if extra else text


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
