"""The eval folder's `samples.jsonl` (SPEC §6): one line a sample, read back with file:line errors.

A line holds `benchmark`, `problem_id`, `sample_index`, `completion`, `score`, `reason`
(the stable fields that `passk` reads) plus `extracted`, `completion_tokens` and
`finished` (the model stopped by itself rather than at the token budget).
A sample counts as correct for pass@k when its score is full credit (1.0).

Test: tests/test_passk_report.py (malformed lines, duplicates), tests/test_eval_runner.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefixrft_cli.errors import UserError
from prefixrft_cli.jsonio import read_jsonl

SAMPLES_FILE = "samples.jsonl"


@dataclass(frozen=True)
class EvalSample:
    """One scored completion of one problem."""

    benchmark: str
    problem_id: str
    sample_index: int
    completion: str
    score: float
    reason: str
    extracted: str | None = None
    completion_tokens: int = 0
    finished: bool = True

    @property
    def key(self) -> tuple[str, str, int]:
        return self.benchmark, self.problem_id, self.sample_index

    @property
    def correct(self) -> bool:
        """Full credit: what pass@k counts."""
        return self.score >= 1.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_REQUIRED: dict[str, tuple[type, ...]] = {
    "benchmark": (str,), "problem_id": (str,), "sample_index": (int,), "completion": (str,),
    "score": (int, float), "reason": (str,),
}


def parse_sample(record: dict[str, Any], where: str) -> EvalSample:
    """An EvalSample from one JSON line; a missing or mistyped field is a UserError naming `where`."""
    for name, types in _REQUIRED.items():
        value = record.get(name)
        if not isinstance(value, types) or isinstance(value, bool):
            expected = " or ".join(t.__name__ for t in types)
            raise UserError(f"{where}: field {name!r} must be {expected}, got {value!r:.40}")
    if record["sample_index"] < 0:
        raise UserError(f"{where}: field 'sample_index' must be >= 0, got {record['sample_index']}")
    if not 0.0 <= record["score"] <= 1.0:
        raise UserError(f"{where}: field 'score' must be in [0, 1], got {record['score']}")
    extracted = record.get("extracted")
    return EvalSample(
        benchmark=record["benchmark"], problem_id=record["problem_id"], sample_index=record["sample_index"],
        completion=record["completion"], score=float(record["score"]), reason=record["reason"],
        extracted=None if extracted is None else str(extracted),
        completion_tokens=int(record.get("completion_tokens") or 0), finished=bool(record.get("finished", True)),
    )


def read_samples(path: str | Path) -> list[EvalSample]:
    """Every sample of a samples file; a malformed line or a repeated sample is a UserError (file:line)."""
    path = Path(path)
    seen: dict[tuple[str, str, int], int] = {}
    samples = []
    for number, record in read_jsonl(path):
        sample = parse_sample(record, f"{path}:{number}")
        if sample.key in seen:
            raise UserError(f"{path}:{number}: sample {sample.key} repeats line {seen[sample.key]}")
        seen[sample.key] = number
        samples.append(sample)
    return samples


def resolve_samples_path(path: str | Path) -> Path:
    """A samples file given directly, or an eval folder holding samples.jsonl."""
    path = Path(path)
    if path.is_dir():
        path = path / SAMPLES_FILE
    if not path.is_file():
        raise UserError(f"{path}: no such samples file (give an eval folder or a samples .jsonl)")
    return path


def group_counts(samples: Iterable[EvalSample]) -> dict[str, dict[str, tuple[int, int]]]:
    """benchmark -> problem_id -> (n samples, c correct)."""
    counts: dict[str, dict[str, list[int]]] = {}
    for sample in samples:
        entry = counts.setdefault(sample.benchmark, {}).setdefault(sample.problem_id, [0, 0])
        entry[0] += 1
        entry[1] += sample.correct
    return {bench: {pid: (n, c) for pid, (n, c) in problems.items()} for bench, problems in counts.items()}
