"""`prefixrft prepare --benchmark`: shared-data files and LUFFY's parquet into the data folder, and back."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefixrft_cli import registry
from prefixrft_cli.cli.app import main
from prefixrft_cli.data import paths
from prefixrft_cli.data.benchmark_store import import_benchmarks, load_benchmark, stored_benchmarks
from prefixrft_cli.data.catalog import CATALOG
from prefixrft_cli.errors import UserError

# The sizes the standard releases have (../shared/data/README.md).
EXPECTED = {"aime24": 30, "aime25": 30, "amc": 83, "amc23": 40, "math500": 500, "minerva": 272,
            "olympiadbench": 675, "humaneval+": 164, "mbpp+": 378}
MATH = ["aime24", "aime25", "amc", "amc23", "math500", "minerva", "olympiadbench"]


@pytest.fixture(scope="module")
def imported(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("data")
    results = import_benchmarks(["all"], data_dir, input_dir=shared_data, command="test")
    assert [r.status for r in results] == ["imported"] * 9
    return data_dir


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_benchmark_imports_with_its_exact_count_and_loads_back(imported: Path, shared_data: Path,
                                                                     name: str) -> None:
    benchmark = registry.benchmarks.get(name)()
    problems = benchmark.load(imported)
    assert len(problems) == EXPECTED[name]
    assert len({p.id for p in problems}) == EXPECTED[name]
    entry = stored_benchmarks(imported)[name]
    assert entry["written"] == EXPECTED[name] and entry["duplicates_removed"] == 0
    assert len(entry["sha256"]) == 64 and len(entry["source_sha256"]) == 64
    if benchmark.domain == "math":
        first = json.loads((shared_data / f"{name}.jsonl").read_text().splitlines()[0])
        assert (problems[0].id, problems[0].problem, problems[0].answer) == \
            (first["id"], first["problem"], first["answer"])
    else:
        assert all(p.code is not None and p.code.entry_point for p in problems)


def test_math_solutions_become_demonstrations(imported: Path) -> None:
    math500 = load_benchmark(imported, "math500")
    assert all(len(p.demonstrations) == 1 for p in math500)  # every MATH-500 record has a solution
    assert all(p.demonstrations == [] for p in load_benchmark(imported, "aime25"))  # aime25 has none


def _luffy_rows(shared_data: Path) -> list[dict]:
    """LUFFY's valid.all.parquet layout: AIME24/25 and AMC 32 times, the others once, plus an OOD row."""
    system = (shared_data / "luffy_system_prompt.txt").read_text()
    rows = []
    for name, source, repeats in (("aime24", "aime", 32), ("aime25", "aime25", 32), ("amc", "amc", 32),
                                  ("math500", "math", 1), ("minerva", "minerva", 1),
                                  ("olympiadbench", "olympiad_bench", 1)):
        records = [json.loads(line) for line in (shared_data / f"{name}.jsonl").read_text().splitlines()]
        for _ in range(repeats):
            for index, record in enumerate(records):
                rows.append({"data_source": source, "ability": "math",
                             "prompt": [{"role": "system", "content": system},
                                        {"role": "user", "content": record["problem"]}],
                             "reward_model": {"style": "rule", "ground_truth": record["answer"]},
                             "extra_info": {"index": index, "split": "test"}})
    rows.append({"data_source": "gpqa", "ability": "mc", "prompt": [{"role": "user", "content": "Which? A or B"}],
                 "reward_model": {"style": "rule", "ground_truth": "A"}, "extra_info": {"index": 0, "split": "test"}})
    return rows


def test_luffy_parquet_round_trip_removes_the_32x_repeats(shared_data: Path, tmp_path: Path) -> None:
    parquet = tmp_path / "valid.all.parquet"
    rows = _luffy_rows(shared_data)
    assert len(rows) == 6024  # 30*32 + 30*32 + 83*32 + 500 + 272 + 675 = 6023 (LUFFY's size), + 1 gpqa row
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    results = {r.name: r for r in import_benchmarks(["all"], tmp_path / "data", input_file=parquet)}
    assert results["aime24"].rows_read == 960 and results["aime24"].duplicates_removed == 930
    assert results["amc"].rows_read == 2656 and results["amc"].duplicates_removed == 2573
    assert results["math500"].duplicates_removed == 0
    assert {n for n, r in results.items() if r.status == "not found"} == {"amc23", "humaneval+", "mbpp+"}
    assert results["aime24"].notes == ["rows of other data_source values left out: gpqa (1)"]
    for name in ("aime24", "aime25", "amc", "math500", "minerva", "olympiadbench"):
        from_parquet = load_benchmark(tmp_path / "data", name)
        shared = [json.loads(line) for line in (shared_data / f"{name}.jsonl").read_text().splitlines()]
        assert [(p.id, p.problem, p.answer) for p in from_parquet] == \
            [(r["id"], r["problem"], r["answer"]) for r in shared]


def test_one_benchmark_from_a_parquet_and_a_missing_one(shared_data: Path, tmp_path: Path) -> None:
    parquet = tmp_path / "test.parquet"
    pq.write_table(pa.Table.from_pylist(_luffy_rows(shared_data)[:960]), parquet)  # AIME24 only
    [result] = import_benchmarks(["aime24"], tmp_path, input_file=parquet)
    assert result.written == 30
    with pytest.raises(UserError, match=r"no rows for benchmark 'minerva'.*benchmarks in it: aime24"):
        import_benchmarks(["minerva"], tmp_path, input_file=parquet)


def test_the_packaged_benchmarks_load_on_a_fresh_install(tmp_path: Path) -> None:
    """An empty data folder falls back to the shipped copy: every set, its count, the bytes `prepare` wrote."""
    import gzip
    import hashlib

    manifest = json.loads((paths.PACKAGED / "manifest.json").read_text())["benchmarks"]
    assert set(manifest) == set(CATALOG)
    for name, entry in manifest.items():
        problems = registry.benchmarks.get(name)().load(tmp_path / "empty")
        assert len(problems) == entry["problems"] == CATALOG[name].expected_count, name
        raw = gzip.decompress((paths.PACKAGED / entry["file"]).read_bytes())
        assert hashlib.sha256(raw).hexdigest() == entry["sha256_uncompressed"], name
        assert entry["licence"] and entry["origin"]


def test_a_prepared_benchmark_wins_over_the_packaged_copy(tmp_path: Path) -> None:
    packaged = registry.benchmarks.get("aime25")().load(tmp_path)
    stored = paths.benchmark_file(tmp_path, "aime25")
    stored.parent.mkdir(parents=True)
    stored.write_text(json.dumps(packaged[0].to_json()) + "\n")
    assert [p.id for p in registry.benchmarks.get("aime25")().load(tmp_path)] == [packaged[0].id]


def test_a_missing_benchmark_names_the_prepare_command(tmp_path: Path, monkeypatch) -> None:
    from prefixrft_cli.data import paths

    monkeypatch.setattr(paths, "PACKAGED", tmp_path / "none")
    with pytest.raises(UserError) as err:
        registry.benchmarks.get("aime25")().load(tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert f"prefixrft prepare --benchmark aime25 --input aime25.jsonl (or LUFFY's valid.all.parquet) " \
           f"--data-dir {tmp_path}" in message


def test_unknown_benchmark_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"unknown benchmark 'aime2' \(did you mean 'aime25'\?\); valid: aime24, "):
        import_benchmarks(["aime2"], tmp_path, input_dir=tmp_path)


def test_a_named_benchmark_must_be_found_in_the_input_dir(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no file for benchmark 'minerva'; looked for minerva.jsonl, valid.all"):
        import_benchmarks(["minerva"], tmp_path / "data", input_dir=tmp_path)


def test_a_jsonl_input_holds_one_benchmark(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"problem": "1+1?", "answer": "2"}\n')
    with pytest.raises(UserError, match="one file holds one benchmark"):
        import_benchmarks(["aime24,aime25"], tmp_path, input_file=path)


def test_malformed_benchmark_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "aime24.jsonl"
    path.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?", "answer": \n')
    with pytest.raises(UserError, match=rf"{path}:2: malformed JSON"):
        import_benchmarks(["aime24"], tmp_path / "data", input_file=path)
    path.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?"}\n')
    with pytest.raises(UserError, match=rf"{path}:2: field 'answer' \(column 'answer'\) is missing"):
        import_benchmarks(["aime24"], tmp_path / "data", input_file=path)


def test_map_renames_columns_of_a_benchmark_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('{"question": "1+1?", "gt": 2}\n{"question": "2+3?", "gt": 5}\n')
    import_benchmarks(["aime25"], tmp_path / "data", input_file=path, mapping={"problem": "question", "answer": "gt"})
    problems = load_benchmark(tmp_path / "data", "aime25")
    assert [(p.id, p.problem, p.answer) for p in problems] == [("aime25-0", "1+1?", "2"), ("aime25-1", "2+3?", "5")]


def test_resolve_data_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFIXRFT_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert paths.resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("PREFIXRFT_DATA_DIR")
    assert paths.resolve_data_dir(None) == tmp_path / "xdg" / "prefixrft"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.resolve_data_dir(None) == tmp_path / "home" / ".local" / "share" / "prefixrft"


def run_cli(args: list[str]) -> int:
    """Exit code of `prefixrft ARGS` run in this process."""
    try:
        main(args)
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    return 0


def test_cli_imports_from_a_folder_and_rejects_bad_input(shared_data: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    assert run_cli(["prepare", "--benchmark", "aime25,amc23", "--input-dir", str(shared_data),
                    "--data-dir", str(tmp_path)]) == 0
    assert set(stored_benchmarks(tmp_path)) == {"aime25", "amc23"}
    manifest = json.loads((tmp_path / "benchmarks" / "manifest.json").read_text())
    assert manifest["benchmarks"]["amc23"]["command"] == \
        f"prefixrft prepare --benchmark aime25,amc23 --input-dir {shared_data} --data-dir {tmp_path}"
    capsys.readouterr()
    assert run_cli(["prepare", "--benchmark", "aime26", "--input-dir", str(shared_data),
                    "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("prefixrft: error: unknown benchmark 'aime26'") and err.count("\n") == 1
