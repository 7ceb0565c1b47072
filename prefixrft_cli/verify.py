"""Score generations made anywhere: `verify_file` reads records, verifies them, writes scores.

Each input line is a JSON object with a `completion` and what the verifier needs:
- math: `answer` (the gold answer);
- code: the task inline, as a `code` object (CodeTests fields), as evalplus fields
  (`prompt`, `entry_point`, `canonical_solution`, `base_input`, `plus_input`, `atol`), or
  as assert lines (`tests` / `test_list`, optional `test_setup_code`, `entry_point`); or a
  `task_id` looked up in the benchmark named by `benchmark` (e.g. humaneval+, mbpp+),
  loaded from the data folder;
- any other domain (a plugin verifier): the same fields, whichever it needs.
With a benchmark, a record lacking its answer or tests takes them from the benchmark
problem whose id equals its `task_id` (or `problem_id`, or `id`).

The output file holds every input record plus `score`, `reason` and `extracted` (and any
field a verifier's result adds: the code verifier's `protocol`, the rule that assembled
the program, `as-is` or `prompt+completion`); a summary
(counts by reason, accuracy = mean score) goes beside it as `<output stem>.summary.json`.
Both are written atomically. The CLI (`prefixrft verify`) is a thin wrapper around this.
Test: tests/test_verify_cli.py.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from prefixrft_cli import registry
from prefixrft_cli.errors import UserError
from prefixrft_cli.jsonio import atomic_write_json, atomic_write_jsonl, read_jsonl
from prefixrft_cli.protocols import REASONS, VerifyResult
from prefixrft_cli.records import CodeTests, Problem

BATCH = 256   # completions per verify_batch call: enough to keep every worker busy


@dataclass
class VerifySummary:
    """What `verify_file` did; also written as JSON beside the output."""

    domain: str
    input: str
    output: str
    summary_file: str
    total: int
    correct: int
    accuracy: float                     # mean score over all records
    by_reason: dict[str, int] = field(default_factory=dict)
    benchmark: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summary_path(output: Path) -> Path:
    """`scored.jsonl` -> `scored.summary.json`, in the same folder."""
    return output.with_name(output.name.removesuffix(".jsonl") + ".summary.json")


def verify_file(domain: str, in_path: str | Path, out_path: str | Path, benchmark: str | None = None,
                data_dir: str | Path | None = None, workers: int | None = None, answer_after_think: bool = True,
                progress: Callable[[int, int], None] | None = None, answer_format: str | None = None) -> VerifySummary:
    """Verify every record of `in_path` with the `domain` verifier; write `out_path` and its summary."""
    started = time.perf_counter()
    in_path, out_path = Path(in_path), Path(out_path)
    if out_path.resolve() == in_path.resolve() or summary_path(out_path).resolve() == in_path.resolve():
        raise UserError(f"--output {out_path}: is the input file (or its summary would be); give another file")
    verifier = make_verifier(domain, workers=workers, answer_after_think=answer_after_think,
                             answer_format=answer_format)
    tasks = _benchmark_index(benchmark, data_dir, domain) if benchmark else None
    records, problems = [], []
    for line, record in read_jsonl(in_path):
        problems.append(problem_from_record(record, f"{in_path}:{line}", domain, tasks, benchmark))
        records.append(record)
    if not records:
        raise UserError(f"{in_path}: no records to verify")
    results: list[VerifyResult] = []
    try:
        for lo in range(0, len(records), BATCH):
            batch = slice(lo, lo + BATCH)
            results += _checked(verifier.verify_batch([r["completion"] for r in records[batch]], problems[batch]),
                                domain, len(records[batch]))
            if progress:
                progress(len(results), len(records))
    finally:
        if callable(getattr(verifier, "close", None)):
            verifier.close()   # stop helper processes now rather than at exit
    atomic_write_jsonl(out_path, ({**record, "score": r.score, "reason": r.reason, "extracted": r.extracted,
                                   **_details(r)} for record, r in zip(records, results)))
    by_reason = {reason: sum(r.reason == reason for r in results) for reason in REASONS}
    summary = VerifySummary(domain, str(in_path), str(out_path), str(summary_path(out_path)), len(results),
                            by_reason["correct"], sum(r.score for r in results) / len(results), by_reason,
                            benchmark, round(time.perf_counter() - started, 3))
    atomic_write_json(summary_path(out_path), summary.to_json())
    return summary


def make_verifier(domain: str, **options: Any) -> Any:
    """The `domain` verifier from the registry, given those `options` its constructor accepts."""
    factory = registry.verifiers.get(domain)
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepted = {}
    with registry.verifiers.guard(domain, "its constructor"):
        return factory(**{k: v for k, v in options.items() if k in accepted and v is not None})


def problem_from_record(record: dict[str, Any], where: str, domain: str, tasks: dict[str, Problem] | None = None,
                        benchmark: str | None = None) -> Problem:
    """The Problem a verify record describes (see the module docstring); UserError names `where` and the field."""
    if not isinstance(record.get("completion"), str):
        raise UserError(f"{where}: field 'completion' must be a string")
    key = next((str(record[k]) for k in ("task_id", "problem_id", "id") if record.get(k) is not None), None)
    answer = record.get("answer")
    answer = None if answer is None else str(answer)
    code = _inline_code(record, where)
    if tasks is not None and (answer is None and domain != "code" or code is None and domain == "code"):
        if key not in tasks:
            example = next(iter(tasks), "")
            raise UserError(f"{where}: task_id {key!r} is not in benchmark {benchmark!r} "
                            f"({len(tasks)} tasks, e.g. {example!r})")
        found = tasks[key]
        answer, code = answer if answer is not None else found.answer, code or found.code
    if domain == "math" and answer is None:
        raise UserError(f"{where}: field 'answer' is missing (the math verifier needs the gold answer)")
    if domain == "code" and code is None:
        raise UserError(f"{where}: no code task: give 'code', evalplus fields (base_input, plus_input, ...), "
                        f"'tests', or a 'task_id' with --benchmark humaneval+|mbpp+")
    problem_id = key or where
    return Problem(problem_id, str(record.get("problem") or record.get("prompt") or ""), answer, code, [],
                   str(record.get("source", "")))


def _inline_code(record: dict[str, Any], where: str) -> CodeTests | None:
    from prefixrft_cli.data.evalplus import called_function, problem_from_evalplus

    if isinstance(record.get("code"), dict):
        known = set(CodeTests.__dataclass_fields__)
        unknown = set(record["code"]) - known
        if unknown:
            raise UserError(f"{where}: unknown code field(s) {sorted(unknown)}; valid: {sorted(known)}")
        return CodeTests(**record["code"])
    if "base_input" in record or "plus_input" in record:
        task_id = record.get("task_id") or record.get("id") or "task"
        return problem_from_evalplus({**record, "task_id": str(task_id)}, where).code
    tests = record.get("tests", record.get("test_list"))
    if tests is None:
        return None
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise UserError(f"{where}: field 'tests' must be a non-empty list of assert lines")
    setup = record.get("test_setup_code") or ""
    if not isinstance(setup, str):
        raise UserError(f"{where}: field 'test_setup_code' must be a string")
    entry_point = record.get("entry_point") or called_function(tests, None)
    return CodeTests(entry_point=entry_point, tests=list(tests), test_setup_code=setup)


def _benchmark_index(name: str, data_dir: str | Path | None, domain: str) -> dict[str, Problem]:
    from prefixrft_cli.data.paths import resolve_data_dir

    bench = registry.benchmarks.create(name)
    bench_domain = getattr(bench, "domain", domain)
    if bench_domain != domain:
        raise UserError(f"--benchmark {name} is a {bench_domain} benchmark; use --domain {bench_domain}")
    _, problems = registry.load_problems(registry.benchmarks, name, resolve_data_dir(data_dir))
    return {problem.id: problem for problem in problems}


def _details(result: VerifyResult) -> dict[str, Any]:
    """Fields a verifier's result adds to VerifyResult's (the code verifier's `protocol`)."""
    if not is_dataclass(result):
        return {}
    return {f.name: getattr(result, f.name) for f in fields(result) if f.name not in _BASE_FIELDS}


_BASE_FIELDS = {f.name for f in fields(VerifyResult)}


def _checked(results: list[Any], domain: str, expected: int) -> list[VerifyResult]:
    """A plugin's results, validated: right count, reasons from REASONS, scores in [0, 1]."""
    if len(results) != expected:
        raise UserError(f"verifier {domain!r} returned {len(results)} results for {expected} completions")
    for result in results:
        if getattr(result, "reason", None) not in REASONS or not 0.0 <= float(getattr(result, "score", -1)) <= 1.0:
            raise UserError(f"verifier {domain!r} returned {result!r}; a result needs a score in [0, 1] and a reason "
                            f"among {', '.join(REASONS)}")
    return results
