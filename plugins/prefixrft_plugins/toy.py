"""The toy task's plugins, thin entries over the core's generator (prefixrft_cli/toy_task.py).

Benchmarks `toy-math` / `toy-code` (the held-out test split, generated: no data folder
needed) and the demonstrator `toy` (the programmatic solution of any toy problem),
registered through the same entry points as a third party's. Test: tests/test_toy_task.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefixrft_cli.records import Demonstration, Problem
from prefixrft_cli.toy_task import demonstration_for, toy_test_problems


class ToyDemonstrator:
    """Demonstrator `toy`: solves toy problems programmatically; non-toy problems get none."""

    def demonstrate(self, problems: Sequence[Problem]) -> list[list[Demonstration]]:
        """Demonstrations for each problem, in input order (an empty list where none could be made)."""
        out = []
        for problem in problems:
            try:
                out.append([demonstration_for(problem)])
            except ValueError:
                out.append([])
        return out


class ToyMathBenchmark:
    """Benchmark `toy-math`: 500 held-out arithmetic problems, generated (no data folder needed)."""

    domain = "math"
    default_samples = 8

    def load(self, data_dir: Path) -> list[Problem]:
        """The benchmark's problems; generated, so `data_dir` is not read."""
        return toy_test_problems("math")


class ToyCodeBenchmark:
    """Benchmark `toy-code`: 300 held-out small-function tasks, generated (no data folder needed)."""

    domain = "code"
    default_samples = 8

    def load(self, data_dir: Path) -> list[Problem]:
        """The benchmark's problems; generated, so `data_dir` is not read."""
        return toy_test_problems("code")
