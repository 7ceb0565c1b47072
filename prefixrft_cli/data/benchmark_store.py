"""Import benchmark files into the data folder, and load them back.

`prefixrft prepare --benchmark NAME` reads the formats of ../shared/data (math JSONL with
`problem` / `answer` [/ `solution`], evalplus JSONL or .jsonl.gz) and the originals (LUFFY's
`valid.all.parquet`, which repeats AIME and AMC 32 times, and evalplus `HumanEvalPlus.jsonl.gz`
/ `MbppPlus.jsonl.gz`), de-duplicates on normalised problem text, and writes
DATA_DIR/benchmarks/<name>.jsonl (Problem records) plus DATA_DIR/benchmarks/manifest.json
(count, sha256 of input and output, command). Ids from LUFFY's parquet are `<name>-<index>`
in LUFFY's order, the same ids ../shared/data uses. Nothing here needs the network.
Test: tests/test_prepare_benchmarks.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prefixrft_cli.data import paths
from prefixrft_cli.data.catalog import (CATALOG, LUFFY_PARQUETS, BenchmarkSpec, benchmark_for_luffy_source,
                                        prepare_hint, spec)
from prefixrft_cli.data.dataset import sha256_file
from prefixrft_cli.data.mapping import ColumnMap
from prefixrft_cli.data.progress import NO_PROGRESS, Progress
from prefixrft_cli.data.readers import input_format, iter_rows
from prefixrft_cli.data.stages import dedupe
from prefixrft_cli.errors import UserError
from prefixrft_cli.jsonio import atomic_write_json, atomic_write_jsonl, read_json, read_jsonl
from prefixrft_cli.records import Problem

MANIFEST = "manifest.json"


@dataclass
class BenchmarkImport:
    """The outcome for one benchmark: where it came from and what was written."""

    name: str
    status: str                 # "imported" | "not found" (only with --benchmark all)
    source: str = ""            # the input file
    source_format: str = ""     # math-jsonl | evalplus | luffy-parquet
    source_sha256: str = ""
    rows_read: int = 0
    duplicates_removed: int = 0
    written: int = 0
    expected: int = 0
    file: str = ""
    sha256: str = ""
    prepared_at: str = ""
    command: str = ""
    looked_for: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def expand_names(names: list[str]) -> list[str]:
    """Benchmark names from the --benchmark option: a comma list, or 'all'; unknown names are a UserError."""
    out: list[str] = []
    for item in names:
        for name in (n.strip() for n in item.split(",")):
            if not name:
                continue
            chosen = list(CATALOG) if name == "all" else [spec(name).name]
            out.extend(n for n in chosen if n not in out)
    if not out:
        raise UserError(f"--benchmark: give one or more of {', '.join(CATALOG)}, or all")
    return out


def import_benchmarks(benchmarks: list[str], data_dir: Path, input_file: Path | None = None,
                      input_dir: Path | None = None, mapping: dict[str, str] | None = None,
                      command: str = "", progress: Progress = NO_PROGRESS) -> list[BenchmarkImport]:
    """Import benchmarks (names, comma lists or 'all') from one file or a folder of files into `data_dir`.

    With 'all', benchmarks whose file is absent are reported as "not found"; a benchmark
    named explicitly must be found.
    """
    if (input_file is None) == (input_dir is None):
        raise UserError("--benchmark needs exactly one of --input FILE or --input-dir DIR")
    names = expand_names(benchmarks)
    requested_all = any(n.strip() == "all" for item in benchmarks for n in item.split(","))
    plan: list[tuple[str, Path | None, list[str]]] = []
    parquet_cache: dict[Path, dict] = {}
    if input_file is not None:
        kind = input_format(input_file)
        if kind != "parquet" and len(names) > 1:
            raise UserError(f"--input {input_file}: one file holds one benchmark; name it with --benchmark NAME, "
                            "or use --input-dir DIR for several")
        if kind == "parquet" and requested_all:  # 'all' from LUFFY's file: the benchmarks it holds
            parquet_cache[input_file] = _read_luffy_parquet(input_file, mapping or {})
            plan = [(name, input_file if name in parquet_cache[input_file] else None, [input_file.name])
                    for name in names]
        else:
            plan = [(name, input_file, [input_file.name]) for name in names]
    else:
        if not Path(input_dir).is_dir():
            raise UserError(f"--input-dir {input_dir}: no such folder")
        for name in names:
            found, looked = _find_input(spec(name), Path(input_dir))
            if found is None and not requested_all:
                raise UserError(f"--input-dir {input_dir}: no file for benchmark {name!r}; "
                                f"looked for {', '.join(looked)}")
            plan.append((name, found, looked))
    if all(found is None for _, found, _ in plan):
        raise UserError(f"--input-dir {input_dir}: no benchmark files found; looked for "
                        + ", ".join(sorted({f for _, _, looked in plan for f in looked})))
    results = []
    for name, found, looked in plan:
        if found is None:
            results.append(BenchmarkImport(name, "not found", expected=spec(name).expected_count, looked_for=looked))
            continue
        with progress.stage(f"importing {name}", None):
            results.append(_import_one(spec(name), found, data_dir, mapping or {}, command, parquet_cache))
    return results


def _find_input(entry: BenchmarkSpec, folder: Path) -> tuple[Path | None, list[str]]:
    looked = list(entry.files) + (list(LUFFY_PARQUETS) if entry.luffy_sources else [])
    for name in looked:
        if (folder / name).is_file():
            return folder / name, looked
    return None, looked


def _import_one(entry: BenchmarkSpec, source: Path, data_dir: Path, mapping: dict[str, str], command: str,
                parquet_cache: dict) -> BenchmarkImport:
    if input_format(source) == "parquet":
        if entry.domain != "math":
            raise UserError(f"--input {source}: a Parquet file can hold LUFFY's math benchmarks, not {entry.name!r}; "
                            f"give {entry.files[0]}")
        if source not in parquet_cache:
            parquet_cache[source] = _read_luffy_parquet(source, mapping)
        by_name = parquet_cache[source]
        if entry.name not in by_name:
            present = ", ".join(n for n in by_name if n) or "none"
            raise UserError(f"--input {source}: no rows for benchmark {entry.name!r} (data_source "
                            f"{' / '.join(entry.luffy_sources) or 'none'}); benchmarks in it: {present}")
        problems, wheres, rows_read = by_name[entry.name]
        fmt = "luffy-parquet"
        others = by_name[""]
        notes = [f"rows of other data_source values left out: {others}"] if others else []
    else:
        problems, wheres = _read_benchmark_file(entry, source, mapping)
        rows_read, fmt, notes = len(problems), entry.format, []
    result = dedupe(problems, wheres)
    if result.answer_conflicts:
        kept, other = result.answer_conflicts[0]
        raise UserError(f"{other}: same problem as {kept} but a different answer; fix the file before importing")
    kept = result.kept
    if fmt == "luffy-parquet":
        kept = [Problem(f"{entry.name}-{i}", p.problem, p.answer, p.code, p.demonstrations, p.source)
                for i, p in enumerate(kept)]
    _check_unique_ids(kept, result.kept_where)
    out = paths.benchmark_file(data_dir, entry.name)
    atomic_write_jsonl(out, (p.to_json() for p in kept))
    record = BenchmarkImport(entry.name, "imported", str(source), fmt, sha256_file(source), rows_read,
                             result.duplicates, len(kept), entry.expected_count, out.name, sha256_file(out),
                             dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), command, notes=notes)
    _update_manifest(data_dir, record)
    return record


def _read_benchmark_file(entry: BenchmarkSpec, source: Path,
                         mapping: dict[str, str]) -> tuple[list[Problem], list[str]]:
    rows = list(iter_rows(source))
    if not rows:
        raise UserError(f"--input {source}: no records")
    if entry.format == "evalplus":
        if mapping:
            raise UserError(f"--map: {entry.name} is read in the evalplus format; --map applies to math files")
        from prefixrft_cli.data.evalplus import problem_from_evalplus

        problems = [problem_from_evalplus(row.record, row.where) for row in rows]
        return problems, [row.where for row in rows]
    columns = ColumnMap.resolve(mapping, rows[0])
    origin = f"{entry.name}:{source.name}"
    problems = [columns.to_problem(row, "math", f"{entry.name}-{i}", origin) for i, row in enumerate(rows)]
    return problems, [row.where for row in rows]


def _read_luffy_parquet(source: Path, mapping: dict[str, str]) -> dict:
    """Problems of every known benchmark in LUFFY's parquet, grouped by `data_source`, in file order.

    Key "" holds a description of the rows whose data_source is no built-in benchmark (e.g. gpqa).
    """
    rows = list(iter_rows(source))
    if not rows:
        raise UserError(f"--input {source}: no rows")
    if "data_source" not in rows[0].record:
        raise UserError(f"{rows[0].where}: no column 'data_source'; a benchmark Parquet file must be in LUFFY's "
                        "layout (data_source, prompt, reward_model.ground_truth)")
    columns = ColumnMap.resolve(mapping, rows[0])
    grouped: dict[str, tuple[list[Problem], list[str], int]] = {}
    others: dict[str, int] = {}
    for row in rows:
        data_source = str(row.record.get("data_source", ""))
        name = benchmark_for_luffy_source(data_source)
        if name is None:
            others[data_source] = others.get(data_source, 0) + 1
            continue
        problems, wheres, _ = grouped.setdefault(name, ([], [], 0))
        problems.append(columns.to_problem(row, "math", f"{name}-{len(problems)}", f"{name}:{source.name}"))
        wheres.append(row.where)
    by_name: dict = {name: (p, w, len(p)) for name, (p, w, _) in grouped.items()}
    by_name[""] = ", ".join(f"{name} ({count})" for name, count in sorted(others.items()))
    return by_name


def _check_unique_ids(problems: list[Problem], wheres: list[str]) -> None:
    seen: dict[str, str] = {}
    for problem, where in zip(problems, wheres):
        if problem.id in seen:
            raise UserError(f"{where}: id {problem.id!r} is used twice (first at {seen[problem.id]})")
        seen[problem.id] = where


def _update_manifest(data_dir: Path, record: BenchmarkImport) -> None:
    path = paths.benchmark_dir(data_dir) / MANIFEST
    manifest = read_json(path) if path.is_file() else {"format": "prefixrft-benchmarks", "version": 1,
                                                       "benchmarks": {}}
    entry = asdict(record)
    entry.pop("looked_for")
    entry.pop("status")
    manifest["benchmarks"][record.name] = entry
    atomic_write_json(path, manifest)


def load_benchmark(data_dir: Path, name: str) -> list[Problem]:
    """The problems of benchmark `name`: prepared into `data_dir` if it is there, else the packaged copy.

    A name with neither is a UserError naming the prepare command that brings it in.
    """
    path = paths.benchmark_file(data_dir, name)
    if not path.is_file():
        path = paths.packaged_benchmark_file(name)
    if not path.is_file():
        raise UserError(f"benchmark {name!r} is not prepared in {paths.benchmark_dir(data_dir)}; "
                        f"bring it in with: {prepare_hint(name, data_dir)}")
    return [Problem.from_json(record, f"{path}:{line}") for line, record in read_jsonl(path)]


def stored_benchmarks(data_dir: Path) -> dict[str, dict]:
    """The manifest entries of every benchmark prepared in `data_dir` (empty when none)."""
    path = paths.benchmark_dir(data_dir) / MANIFEST
    return dict(read_json(path).get("benchmarks", {})) if path.is_file() else {}
