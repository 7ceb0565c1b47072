"""Progress everywhere: the live view at 80 columns, and plain lines when there is no terminal."""

from __future__ import annotations

import io

from rich.console import Console

from prefixrft_cli.config import Config
from prefixrft_cli.progress_line import ProgressLine
from prefixrft_cli.train.records import StepRecord
from prefixrft_cli.train.view import LiveView


def record(step: int) -> StepRecord:
    return StepRecord(True, loss=0.1234, grad_norm=0.5, phase_seconds={"rollout": 1.0, "verify": 0.1, "update": 0.2},
                      reward_mean=0.5, reward_hybrid_mean=0.75, prefix_len_low=0.5, prefix_fraction_mean=0.6,
                      prefix_tokens_kept=10, prefix_tokens_total=50, response_length_tokens=40.0, clip_fraction=0.01,
                      stage="prefix-rft", step=step)


def test_plain_lines_come_at_tenths_at_the_interval_and_at_the_end() -> None:
    now = [0.0]
    lines: list[str] = []
    line = ProgressLine("train prefix-rft", 300, unit="step", every_seconds=30, write=lines.append,
                        clock=lambda: now[0])
    for step in range(1, 301):
        now[0] += 0.5                       # 150 s in all: tenths every 30 steps come first
        line.update(step, "reward 0.5")
    assert len(lines) == 11                  # the first step, then every tenth (the last is the end)
    assert lines[0].startswith("train prefix-rft  step 1/300 (0%)  elapsed 0:00:00  eta 0:02:29")
    assert lines[-1].startswith("train prefix-rft  step 300/300 (100%)  elapsed 0:02:30  eta 0:00:00")
    slow: list[str] = []
    line = ProgressLine("eval aime24", 10_000, write=slow.append, every_seconds=30, clock=lambda: now[0])
    for done in range(1, 200):
        now[0] += 1.0                        # one sample a second: the interval rules, not the tenths
        line.update(done)
    assert len(slow) == 1 + 199 // 30
    line.finish()                            # a run that stops early still closes with a line
    assert slow[-1].startswith("eval aime24  199/10000 (1%)")


def test_the_live_view_keeps_step_total_and_eta_at_80_columns() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    with LiveView(Config(), True, console=console) as view:
        view.start_stage("prefix-rft", 300)
        for step in range(3):
            view.update(record(step))
    text = out.getvalue()
    last = text[text.rfind("prefix-rft"):]
    assert "3/300" in last and "eta" in last and "0:00:0" in last
    assert "reward 0.500" in last and "kept 10/50" in last   # the numbers wrap below the bar, not cut
    assert max(len(line) for line in last.splitlines()) <= 80


def test_without_a_terminal_the_view_prints_plain_lines(capsys) -> None:
    console = Console(file=io.StringIO(), width=80)
    assert not console.is_terminal
    with LiveView(Config(), True, console=console) as view:
        view.start_stage("rft", 4)
        for step in range(4):
            view.update(record(step))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[1] for line in lines] == ["step 1/4 (25%)", "step 2/4 (50%)", "step 3/4 (75%)",
                                                       "step 4/4 (100%)"]
    assert all("reward 0.500" in line for line in lines)
