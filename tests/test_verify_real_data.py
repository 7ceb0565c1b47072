"""The verifiers on real benchmark data (../shared/data): references pass, deranged pairs and `pass` bodies fail.

Unmarked tests run a fast subset; the full runs are slow tests:
    pytest --runslow tests/test_verify_real_data.py
Math: every MATH-500, Minerva, OlympiadBench and AIME24 reference solution must verify
against its own answer (at least 99% per benchmark), and solution i against answer i+1
must score correct at most 1% of the time. OlympiadBench solutions carry no boxed answer,
so each is followed by "The final answer is $\\boxed{...}$" built from the source's
`final_answer` list, which checks LUFFY's `answer` against it. Code: every HumanEval+ and
MBPP+ canonical solution passes on base and plus inputs; with its body replaced by `pass`
it fails (evalplus' oracle for Mbpp/164 accepts any output, but that task is not in v0.2.0).
"""

from __future__ import annotations

import ast
import gzip
import json
import warnings
from pathlib import Path

import pytest

from prefixrft_cli.data.evalplus import problem_from_evalplus, problem_from_mbpp_asserts
from prefixrft_cli.records import Problem
from prefixrft_plugins.verifiers.code import CodeVerifier
from prefixrft_plugins.verifiers.math import MathVerifier

MATH_BENCHMARKS = ("math500", "minerva", "olympiadbench", "aime24")
ANY_OUTPUT_PASSES: set[str] = set()   # evalplus accepts any output of Mbpp/164, which v0.2.0 does not have


def read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def reference_completion(record: dict) -> str:
    if "final_answer" in record:   # OlympiadBench: the solution has no box
        answer = ", ".join(a.strip().strip("$") for a in record["final_answer"])
        return record["solution"] + f"\n\nThe final answer is $\\boxed{{{answer}}}$."
    return record["solution"]


def math_rates(data: Path, name: str, limit: int | None, verifier: MathVerifier) -> tuple[float, float, list, list]:
    records = read_jsonl(data / f"{name}.jsonl")[:limit]
    problems = [Problem(r["id"], r["problem"], answer=r["answer"]) for r in records]
    completions = [reference_completion(r) for r in records]
    own = verifier.verify_batch(completions, problems)
    shifted = [Problem(p.id, p.problem, answer=problems[(i + 1) % len(problems)].answer) for i, p in enumerate(problems)]
    deranged = verifier.verify_batch(completions, shifted)
    misses = [(p.id, p.answer, r.reason, r.extracted) for p, r in zip(problems, own) if r.reason != "correct"]
    false_hits = [(p.id, p.answer, r.extracted) for p, r in zip(shifted, deranged) if r.reason == "correct"]
    n = len(records)
    return (n - len(misses)) / n, len(false_hits) / n, misses, false_hits


def pass_body(program: str, entry_point: str) -> str:
    """`program` with the body of its top-level `entry_point` replaced by `pass`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # old MBPP code has invalid escapes like '\w'
        tree = ast.parse(program)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == entry_point:
            node.body = [ast.Pass()]
            return ast.unparse(tree) + "\n"
    raise AssertionError(f"no top-level def {entry_point}")


def code_failures(records: list[dict], where: str, verifier: CodeVerifier) -> tuple[dict, dict]:
    """Tasks whose canonical solution does not pass, and tasks whose `pass` body does."""
    problems = [problem_from_evalplus(r, f"{where}:{i}") for i, r in enumerate(records)]
    canonical = verifier.verify_batch([r["canonical_solution"] for r in records], problems)
    hollow = verifier.verify_batch([pass_body(r["prompt"] + r["canonical_solution"], r["entry_point"]) for r in records],
                                   problems)
    not_passing = {p.id: r.reason for p, r in zip(problems, canonical) if r.reason != "correct"}
    hollow_passing = {p.id for p, r in zip(problems, hollow) if r.reason == "correct"}
    return not_passing, hollow_passing


@pytest.fixture(scope="module")
def math_verifier():
    v = MathVerifier(timeout_seconds=10.0)
    yield v
    v.close()


@pytest.fixture(scope="module")
def code_verifier():
    v = CodeVerifier()
    yield v
    v.close()


@pytest.mark.parametrize("name", MATH_BENCHMARKS)
def test_math_reference_solutions_subset(shared_data, math_verifier, name: str) -> None:
    correct, false_rate, misses, _ = math_rates(shared_data, name, 12, math_verifier)
    assert misses == [] and correct == 1.0
    assert false_rate == 0.0   # no two neighbours among the first 12 share an answer


@pytest.mark.slow
@pytest.mark.parametrize("name", MATH_BENCHMARKS)
def test_math_reference_solutions_full(shared_data, math_verifier, name: str) -> None:
    correct, false_rate, misses, false_hits = math_rates(shared_data, name, None, math_verifier)
    assert correct >= 0.99, misses
    assert false_rate <= 0.01, false_hits


def test_humaneval_plus_subset(shared_data, code_verifier) -> None:
    records = read_jsonl(shared_data / "humanevalplus_mini.jsonl")[:12]
    not_passing, hollow_passing = code_failures(records, "humanevalplus_mini.jsonl", code_verifier)
    assert not_passing == {} and hollow_passing == set()


def test_mbpp_plus_subset(shared_data, code_verifier) -> None:
    records = [r for r in read_jsonl(shared_data / "mbppplus.jsonl") if r["task_id"] in
               {"Mbpp/2", "Mbpp/3", "Mbpp/4", "Mbpp/6", "Mbpp/82", "Mbpp/124", "Mbpp/558", "Mbpp/581", "Mbpp/722",
                "Mbpp/737", "Mbpp/793"}]   # typed inputs, atol, special oracles, not-None outputs, no plus_input
    assert len(records) == 11
    not_passing, hollow_passing = code_failures(records, "mbppplus.jsonl", code_verifier)
    assert not_passing == {} and hollow_passing == set()


def test_mbpp_train_demonstrations_subset(shared_data, code_verifier) -> None:
    records = read_jsonl(shared_data / "mbpp_train_demos.jsonl")[:30]
    problems = [problem_from_mbpp_asserts(r, f"mbpp_train_demos.jsonl:{i}") for i, r in enumerate(records)]
    results = code_verifier.verify_batch([p.demonstrations[0].text for p in problems], problems)
    assert [p.id for p, r in zip(problems, results) if r.reason != "correct"] == []
    hollow = [pass_body(p.demonstrations[0].text, p.code.entry_point) for p in problems]
    assert sum(r.reason == "correct" for r in code_verifier.verify_batch(hollow, problems)) == 0


@pytest.mark.slow
def test_humaneval_plus_full(shared_data, code_verifier) -> None:
    records = read_jsonl(shared_data / "humanevalplus.jsonl.gz")
    assert len(records) == 164
    not_passing, hollow_passing = code_failures(records, "humanevalplus.jsonl.gz", code_verifier)
    assert not_passing == {} and hollow_passing == set()


@pytest.mark.slow
def test_mbpp_plus_full(shared_data, code_verifier) -> None:
    records = read_jsonl(shared_data / "mbppplus.jsonl")
    assert len(records) == 378
    not_passing, hollow_passing = code_failures(records, "mbppplus.jsonl", code_verifier)
    assert not_passing == {} and hollow_passing == ANY_OUTPUT_PASSES


@pytest.mark.slow
def test_mbpp_train_demonstrations_full(shared_data, code_verifier) -> None:
    records = read_jsonl(shared_data / "mbpp_train_demos.jsonl")
    problems = [problem_from_mbpp_asserts(r, f"mbpp_train_demos.jsonl:{i}") for i, r in enumerate(records)]
    results = code_verifier.verify_batch([p.demonstrations[0].text for p in problems], problems)
    assert [p.id for p, r in zip(problems, results) if r.reason != "correct"] == []
