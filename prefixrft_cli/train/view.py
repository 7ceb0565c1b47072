"""The live training view: a rich progress bar with the numbers of the latest step.

Shows step, reward of all rollouts and of hybrid ones, low_t and the mean sampled L,
prefix tokens kept / total, loss, response length, clip fraction, grad norm and the
seconds spent rolling out / verifying / updating. Silent when `show` is False.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from prefixrft_cli.config import Config
from prefixrft_cli.train.records import StepRecord


class LiveView:
    def __init__(self, cfg: Config, show: bool):
        self.show = show
        self.progress = Progress(TextColumn("[bold]{task.fields[stage]}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[numbers]}"),
                                 console=Console(), disable=not show, refresh_per_second=4)
        self.task = None

    def __enter__(self) -> LiveView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def start_stage(self, algo: str, steps: int) -> None:
        if self.task is not None:
            self.progress.stop_task(self.task)
        self.task = self.progress.add_task("train", total=steps, stage=algo, numbers="")

    def update(self, record: StepRecord) -> None:
        self.progress.update(self.task, completed=record.step + 1, numbers=describe(record))


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
