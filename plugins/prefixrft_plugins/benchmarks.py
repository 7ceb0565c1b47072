"""Built-in benchmarks: AIME24/25, AMC (LUFFY's 83), AMC23, MATH-500, Minerva, OlympiadBench, HumanEval+, MBPP+.

Each reads DATA_DIR/benchmarks/<name>.jsonl, written by `prefixrft prepare --benchmark`,
and says how the paper samples it (`default_samples`: avg@32 on AIME24/25 and AMC, pass@1
on the rest). Nothing here touches the network; a benchmark that was never prepared
raises a one-line UserError naming the `prefixrft prepare` command that brings it in.
Where their files come from is in prefixrft_cli/data/catalog.py (a test checks the
two agree). Registered under the entry-point group `prefixrft.benchmarks`.
Test: tests/test_benchmarks.py.
"""

from __future__ import annotations

from pathlib import Path

from prefixrft_cli.data.benchmark_store import load_benchmark
from prefixrft_cli.records import Problem


class StoredBenchmark:
    """A benchmark imported into the data folder; subclasses name it."""

    name: str = ""
    domain: str = "math"
    default_samples: int = 1

    def load(self, data_dir: Path) -> list[Problem]:
        """The benchmark's problems; a missing file raises a UserError naming the prepare command."""
        return load_benchmark(Path(data_dir), self.name)


class AIME24(StoredBenchmark):
    """Benchmark `aime24`: AIME 2024, 30 problems, avg@32."""

    name = "aime24"
    domain = "math"
    default_samples = 32


class AIME25(StoredBenchmark):
    """Benchmark `aime25`: AIME 2025, 30 problems, avg@32."""

    name = "aime25"
    domain = "math"
    default_samples = 32


class AMC(StoredBenchmark):
    """Benchmark `amc`: AMC12 2022+2023 as LUFFY evaluates it, 83 problems, avg@32."""

    name = "amc"
    domain = "math"
    default_samples = 32


class AMC23(StoredBenchmark):
    """Benchmark `amc23`: the 40-problem AMC 2023 set, avg@32."""

    name = "amc23"
    domain = "math"
    default_samples = 32


class MATH500(StoredBenchmark):
    """Benchmark `math500`: MATH-500, pass@1."""

    name = "math500"
    domain = "math"
    default_samples = 1


class Minerva(StoredBenchmark):
    """Benchmark `minerva`: Minerva Math, 272 problems, pass@1."""

    name = "minerva"
    domain = "math"
    default_samples = 1


class OlympiadBench(StoredBenchmark):
    """Benchmark `olympiadbench`: OlympiadBench (LUFFY's 675), pass@1."""

    name = "olympiadbench"
    domain = "math"
    default_samples = 1


class HumanEvalPlus(StoredBenchmark):
    """Benchmark `humaneval+`: HumanEval+ (evalplus v0.1.10), 164 tasks, pass@1 on base + plus tests."""

    name = "humaneval+"
    domain = "code"
    default_samples = 1


class MbppPlus(StoredBenchmark):
    """Benchmark `mbpp+`: MBPP+ (evalplus v0.2.0), 378 tasks, pass@1 on base + plus tests."""

    name = "mbpp+"
    domain = "code"
    default_samples = 1
