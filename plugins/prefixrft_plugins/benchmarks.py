"""Built-in benchmarks: AIME24/25, AMC (LUFFY's 83), AMC23, MATH-500, Minerva, OlympiadBench, HumanEval+, MBPP+.

Thin entries over one table, prefixrft_cli/data/catalog.py, which says each benchmark's
domain, how the paper samples it (`default_samples`: avg@32 on AIME24/25 and AMC, pass@1
on the rest) and where its files come from. Each reads DATA_DIR/benchmarks/<name>.jsonl,
written by `prefixrft prepare --benchmark`, and otherwise the copy shipped in
prefixrft_cli/assets/benchmarks/ (provenance and licences in its README.md); nothing here
touches the network. Registered under the entry-point group `prefixrft.benchmarks`.
Test: tests/test_benchmarks.py.
"""

from __future__ import annotations

from pathlib import Path

from prefixrft_cli.data.benchmark_store import load_benchmark
from prefixrft_cli.data.catalog import CATALOG
from prefixrft_cli.records import Problem


class StoredBenchmark:
    """A benchmark imported into the data folder; `of` makes one per catalog entry."""

    name: str = ""
    domain: str = "math"
    default_samples: int = 1

    def load(self, data_dir: Path) -> list[Problem]:
        """The benchmark's problems: the prepared copy in `data_dir`, else the packaged one."""
        return load_benchmark(Path(data_dir), self.name)

    @classmethod
    def of(cls, name: str) -> type[StoredBenchmark]:
        """The benchmark class of catalog entry `name` (what its entry point names)."""
        spec = CATALOG[name]
        return type(f"StoredBenchmark[{name}]", (cls,), {
            "name": name, "domain": spec.domain, "default_samples": spec.default_samples,
            "__doc__": f"Benchmark `{name}`: {spec.title}, {spec.expected_count} problems, "
                       f"{'pass@1' if spec.default_samples == 1 else f'avg@{spec.default_samples}'}."})


# The entry points' names (pyproject.toml); everything else comes from the catalog.
AIME24 = StoredBenchmark.of("aime24")
AIME25 = StoredBenchmark.of("aime25")
AMC = StoredBenchmark.of("amc")
AMC23 = StoredBenchmark.of("amc23")
MATH500 = StoredBenchmark.of("math500")
Minerva = StoredBenchmark.of("minerva")
OlympiadBench = StoredBenchmark.of("olympiadbench")
HumanEvalPlus = StoredBenchmark.of("humaneval+")
MbppPlus = StoredBenchmark.of("mbpp+")
