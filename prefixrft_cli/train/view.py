"""The live training view: a rich progress bar with the numbers of the latest step.

Shows step, reward of all rollouts and of hybrid ones, low_t and the mean sampled L,
prefix tokens kept / total, loss, response length, clip fraction, grad norm and the
seconds spent rolling out / verifying / updating. Silent when `show` is False. Without a
terminal (a log file, a pipe), a plain progress line at a sensible interval instead.
Test: tests/test_progress.py.
"""

from __future__ import annotations

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from prefixrft_cli.config import Config
from prefixrft_cli.progress_line import ProgressLine
from prefixrft_cli.train.records import StepRecord


class LiveView:
    """On a terminal: the progress bar (step k/total, elapsed, ETA) on its own line, the step's numbers
    wrapped below it, so nothing is lost at 80 columns. Without one: plain progress lines (progress_line.py)."""

    def __init__(self, cfg: Config, show: bool, console: Console | None = None):
        self.console = console or Console()
        self.show = show
        self.live_view = show and self.console.is_terminal
        self.progress = Progress(TextColumn("[bold]{task.fields[stage]}"), BarColumn(bar_width=None),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                                 console=self.console, expand=True)
        self.numbers = Text("", overflow="fold")
        self.live = Live(Group(self.progress, self.numbers), console=self.console, refresh_per_second=4,
                         transient=False) if self.live_view else None
        self.task = None
        self.line: ProgressLine | None = None

    def __enter__(self) -> LiveView:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
        if self.line is not None:
            self.line.finish()

    def start_stage(self, algo: str, steps: int) -> None:
        if self.task is not None:
            self.progress.stop_task(self.task)
        if self.line is not None:
            self.line.finish()
        self.task = self.progress.add_task("train", total=steps, stage=algo)
        if self.show and not self.live_view:
            self.line = ProgressLine(f"train {algo}", steps, unit="step")

    def update(self, record: StepRecord) -> None:
        numbers = describe(record)
        self.progress.update(self.task, completed=record.step + 1)
        self.numbers.plain = numbers
        if self.line is not None:
            self.line.update(record.step + 1, numbers)


def describe(record: StepRecord) -> str:
    """One line of the latest step's numbers."""
    parts = []
    if record.reward_mean is not None:
        parts.append(f"reward {record.reward_mean:.3f}")
    if record.reward_hybrid_mean is not None:
        parts.append(f"w/ prefix {record.reward_hybrid_mean:.3f}")
    if record.prefix_len_low is not None:
        parts.append(f"low_t {record.prefix_len_low:.2f} L {record.prefix_fraction_mean:.2f}")
    if record.prefix_tokens_total:
        parts.append(f"kept {record.prefix_tokens_kept}/{record.prefix_tokens_total}")
    parts.append("loss -" if record.loss is None else f"loss {record.loss:.4f}")
    if record.response_length_tokens is not None:
        parts.append(f"len {record.response_length_tokens:.0f} clip {record.clip_fraction:.3f}")
    parts.append("|g| -" if record.grad_norm is None else f"|g| {record.grad_norm:.2f}")
    if record.skipped_updates:
        parts.append(f"[red]skipped {record.skipped_updates}[/red]")
    parts.append(" ".join(f"{k[0]}{v:.2f}s" for k, v in record.phase_seconds.items()))
    return "  ".join(parts)
