"""The built-in benchmarks: name, domain, how the paper samples them, and where their files come from.

The one table: the benchmark plugins (plugins/prefixrft_plugins/benchmarks.py) are thin
entries over it, and `prefixrft prepare --benchmark` reads it. `files` are the names looked for in `--input-dir`, first
found wins: the names in ../shared/data and the upstream originals (evalplus `.jsonl.gz`);
`luffy_sources` are the `data_source` values of LUFFY's `valid.all.parquet` that hold it.
Test: tests/test_benchmarks.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefixrft_cli.errors import unknown_choice

LUFFY_PARQUETS = ("valid.all.parquet", "test.id.parquet")


@dataclass(frozen=True)
class BenchmarkSpec:
    """One built-in benchmark."""

    name: str
    domain: str                    # "math" or "code"
    default_samples: int           # k of avg@k; 1 = pass@1 (LUFFY's protocol, SPEC §2)
    expected_count: int            # problems in the standard release
    files: tuple[str, ...]         # file names to look for in --input-dir
    luffy_sources: tuple[str, ...] = ()
    title: str = ""

    @property
    def format(self) -> str:
        """'math-jsonl' (id, problem, answer[, solution]) or 'evalplus' (HumanEval+ / MBPP+ records)."""
        return "evalplus" if self.domain == "code" else "math-jsonl"


CATALOG: dict[str, BenchmarkSpec] = {spec.name: spec for spec in (
    BenchmarkSpec("aime24", "math", 32, 30, ("aime24.jsonl",), ("aime", "aime24", "aime2024"), "AIME 2024"),
    BenchmarkSpec("aime25", "math", 32, 30, ("aime25.jsonl",), ("aime25", "aime2025"), "AIME 2025"),
    BenchmarkSpec("amc", "math", 32, 83, ("amc.jsonl",), ("amc",), "AMC 2022+2023 (LUFFY's 83)"),
    BenchmarkSpec("amc23", "math", 32, 40, ("amc23.jsonl",), ("amc23",), "AMC 2023 (40)"),
    BenchmarkSpec("math500", "math", 1, 500, ("math500.jsonl",), ("math", "math500", "math_500"), "MATH-500"),
    BenchmarkSpec("minerva", "math", 1, 272, ("minerva.jsonl",), ("minerva", "minerva_math"), "Minerva Math"),
    BenchmarkSpec("olympiadbench", "math", 1, 675, ("olympiadbench.jsonl",), ("olympiad_bench", "olympiadbench"),
                  "OlympiadBench"),
    BenchmarkSpec("humaneval+", "code", 1, 164, ("humanevalplus.jsonl.gz", "HumanEvalPlus.jsonl.gz",
                                                 "humanevalplus.jsonl", "HumanEvalPlus.jsonl"), (), "HumanEval+"),
    BenchmarkSpec("mbpp+", "code", 1, 378, ("mbppplus.jsonl", "MbppPlus.jsonl.gz", "mbppplus.jsonl.gz",
                                            "MbppPlus.jsonl"), (), "MBPP+"),
)}


def spec(name: str) -> BenchmarkSpec:
    """The spec of a built-in benchmark; an unknown name is a UserError listing the valid ones."""
    if name not in CATALOG:
        raise unknown_choice("benchmark", name, CATALOG)
    return CATALOG[name]


def benchmark_for_luffy_source(data_source: str) -> str | None:
    """The benchmark a LUFFY `data_source` value belongs to, or None for one we do not ship (e.g. gpqa)."""
    key = data_source.strip().lower()
    for entry in CATALOG.values():
        if key in entry.luffy_sources:
            return entry.name
    return None


def prepare_hint(name: str, data_dir: object) -> str:
    """The command that brings benchmark `name` into `data_dir`."""
    entry = CATALOG.get(name)
    example = entry.files[0] if entry else f"{name}.jsonl"
    alternative = " (or LUFFY's valid.all.parquet)" if entry and entry.luffy_sources else ""
    return f"prefixrft prepare --benchmark {name} --input {example}{alternative} --data-dir {data_dir}"
