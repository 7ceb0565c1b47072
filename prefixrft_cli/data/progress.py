"""Progress reporting for long data work, without tying the library to a terminal.

Library functions take a `Progress` and call `progress.stage("reading", total)`, a
context manager yielding `advance(n)`. `NO_PROGRESS` does nothing (tests, library use);
`RichProgress` draws rich progress bars on stderr (the CLI) when it is a terminal.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol


class Progress(Protocol):
    def stage(self, description: str, total: int | None = None) -> contextlib.AbstractContextManager[
            Callable[[int], None]]:
        """A context in which `advance(n)` moves this stage's bar by n."""
        ...


class _NoProgress:
    @contextlib.contextmanager
    def stage(self, description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        yield lambda n=1: None


NO_PROGRESS: Progress = _NoProgress()


class RichProgress:
    """Rich progress bars, one per stage, on the given console (stderr by default)."""

    def __init__(self, console=None):
        from rich.console import Console

        self.console = console or Console(stderr=True)

    @contextlib.contextmanager
    def stage(self, description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        if not self.console.is_terminal:  # a log file or a pipe gets the summary, not bar redraws
            yield lambda n=1: None
            return
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=self.console, transient=True) as bars:
            task = bars.add_task(description, total=total)
            yield lambda n=1: bars.advance(task, n)
