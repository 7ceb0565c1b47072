"""The benchmark plugins: registered through entry points, the paper's sampling, agreement with the catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefixrft_cli import registry
from prefixrft_cli.data.catalog import CATALOG, benchmark_for_luffy_source
from prefixrft_cli.protocols import Benchmark
from prefixrft_cli.records import Problem

# SPEC §2 / LUFFY: avg@32 on AIME24, AIME25 and AMC (both AMC sets), pass@1 on the rest; code pass@1.
PAPER_SAMPLES = {"aime24": 32, "aime25": 32, "amc": 32, "amc23": 32, "math500": 1, "minerva": 1,
                 "olympiadbench": 1, "humaneval+": 1, "mbpp+": 1}


@pytest.mark.parametrize("name", sorted(PAPER_SAMPLES))
def test_registered_plugin_follows_the_protocol_and_the_paper(name: str) -> None:
    benchmark = registry.benchmarks.get(name)()
    assert isinstance(benchmark, Benchmark)
    assert benchmark.default_samples == PAPER_SAMPLES[name]
    assert benchmark.domain == ("code" if name.endswith("+") else "math")
    entry = registry.benchmarks.entries[name]
    assert entry.target.startswith("prefixrft_plugins.benchmarks:") and entry.distribution == "prefixrft"
    spec = CATALOG[name]
    assert (spec.domain, spec.default_samples) == (benchmark.domain, benchmark.default_samples)


def test_catalog_holds_exactly_the_builtin_benchmarks() -> None:
    assert set(CATALOG) == set(PAPER_SAMPLES)


def test_luffy_data_sources_map_to_one_benchmark_each() -> None:
    # the data_source values of LUFFY's valid.all.parquet
    assert [benchmark_for_luffy_source(s) for s in ("aime", "aime25", "amc", "math", "minerva", "olympiad_bench")] \
        == ["aime24", "aime25", "amc", "math500", "minerva", "olympiadbench"]
    assert benchmark_for_luffy_source("gpqa") is None
    sources = [s for spec in CATALOG.values() for s in spec.luffy_sources]
    assert len(sources) == len(set(sources))


def test_loads_a_prepared_file_from_the_env_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefixrft_cli.data import resolve_data_dir

    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "minerva.jsonl").write_text('{"id": "m-0", "problem": "2+2?", "answer": "4"}\n')
    monkeypatch.setenv("PREFIXRFT_DATA_DIR", str(tmp_path))
    problems = registry.benchmarks.get("minerva")().load(resolve_data_dir(None))
    assert problems == [Problem("m-0", "2+2?", "4")]
