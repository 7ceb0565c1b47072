"""The math verifier: answer extraction, the exact fast path, math-verify in timed workers."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from prefixrft_cli.errors import UserError
from prefixrft_cli.records import Problem
from prefixrft_plugins.verifiers.math import MathVerifier, extract_answer, last_boxed, normalize, quick_verdict
from prefixrft_plugins.verifiers.math_worker import boxed, check_answers

SLOW_GOLD = "\\sum_{k=1}^{10^{12}} k^{k}"   # sympy spends minutes on this one


def problem(answer: str, pid: str = "p") -> Problem:
    return Problem(pid, "?", answer=answer)


@pytest.fixture(scope="module")
def verifier():
    v = MathVerifier(timeout_seconds=2.0, workers=2)
    yield v
    v.close()


def test_last_boxed_handles_nesting_variants_and_absence() -> None:
    assert last_boxed("a \\boxed{1} then \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert last_boxed("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.") == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert last_boxed("so $\\boxed 5$") == "5"
    assert last_boxed("AoPS style \\framebox{204} and \\fbox{7}") == "7"
    assert last_boxed("unclosed \\boxed{12") is None
    assert last_boxed("no box at all: 12") is None


def test_extract_reads_after_think_when_asked() -> None:
    text = "<think>maybe \\boxed{3}</think> final: \\boxed{4}"
    assert extract_answer(text) == "4"
    assert extract_answer("<think>only \\boxed{3}</think> no box after") is None
    assert extract_answer("<think>only \\boxed{3}</think> no box after", answer_after_think=False) == "3"
    assert extract_answer("\\boxed{}") is None


def test_normalize_strips_decoration_only() -> None:
    assert normalize("$\\textbf{104}$.") == "104"
    assert normalize("  x  =   5 ") == "x = 5"
    assert normalize("1, 2, \\ldots") == "1, 2, \\ldots"
    assert normalize("\\$5") == "\\$5"     # an escaped dollar is part of the answer


def test_quick_verdict_decides_integers_and_identical_text_only() -> None:
    assert quick_verdict("28", "28") is True
    assert quick_verdict("28", "028") is True      # same integer
    assert quick_verdict("-3", "3") is False
    assert quick_verdict("\\frac{1}{2}", "\\frac{1}{2}") is True
    assert quick_verdict("\\frac{1}{2}", "0.5") is None    # needs math-verify
    assert quick_verdict("28", "28.0") is None


def test_gold_is_wrapped_as_math_verify_expects() -> None:
    assert boxed("$\\frac{1}{3}$") == "$\\boxed{\\frac{1}{3}}$"
    assert boxed("5") == "$\\boxed{5}$"
    assert check_answers("$\\frac{1}{3}$", "\\frac{2}{6}")["ok"] is True
    assert check_answers("x^2", "x^{2}")["ok"] is True
    assert check_answers("\\frac{1}{2}", "0.6") == {"ok": False, "extracted": "0.6"}


def test_toy_batch_takes_the_fast_path(verifier) -> None:
    # 128 toy answers against integer golds: no worker involved, well under 50 ms
    problems = [problem(str(i - 64), f"p{i}") for i in range(128)]
    completions = [f"... so the answer is \\boxed{{{i - 64 if i % 3 else i}}}" for i in range(128)]
    started = time.perf_counter()
    results = verifier.verify_batch(completions, problems)
    elapsed = time.perf_counter() - started
    # i % 3 == 0 answers i instead of i - 64: wrong for the 43 values 0, 3, ..., 126
    assert sum(r.reason == "correct" for r in results) == 128 - 43
    assert {r.reason for r in results} == {"correct", "wrong"}
    assert elapsed < 0.05


def test_results_and_reasons(verifier) -> None:
    completions = ["\\boxed{\\frac{1}{2}}", "\\boxed{0.6}", "no box", "\\boxed{\\left(3, \\frac{\\pi}{2}\\right)}"]
    golds = ["0.5", "0.5", "1", "\\left( 3, \\frac{\\pi}{2} \\right)"]
    results = verifier.verify_batch(completions, [problem(g) for g in golds])
    assert [r.reason for r in results] == ["correct", "wrong", "no_answer", "correct"]
    assert [r.score for r in results] == [1.0, 0.0, 0.0, 1.0]
    assert results[0].extracted == "\\frac{1}{2}" and results[2].extracted is None


def test_a_slow_check_times_out_and_the_rest_still_work(verifier) -> None:
    started = time.perf_counter()
    results = verifier.verify_batch(["\\boxed{5}", "\\boxed{0.25}"], [problem(SLOW_GOLD), problem("\\frac14")])
    elapsed = time.perf_counter() - started
    assert [r.reason for r in results] == ["timeout", "correct"]
    assert elapsed < 2.0 + 5.0   # one 2 s deadline plus at most a worker start-up
    # the killed worker was replaced: the pool still answers
    assert verifier.verify("\\boxed{2/4}", problem("\\frac{1}{2}")).reason == "correct"


def test_works_from_a_thread(verifier) -> None:
    # math-verify's own timeout (signal.alarm) fails off the main thread; ours does not
    out = []
    thread = threading.Thread(target=lambda: out.append(verifier.verify("\\boxed{\\frac{3}{6}}", problem("0.5"))))
    thread.start()
    thread.join(60)
    assert out and out[0].reason == "correct"


def _verify_in_child(queue) -> None:
    v = MathVerifier(timeout_seconds=5.0, workers=1)
    queue.put(v.verify("\\boxed{\\sqrt{4}}", problem("2")).reason)
    v.close()


def test_works_inside_a_daemon_worker_process() -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_verify_in_child, args=(queue,), daemon=True)
    child.start()
    assert queue.get(timeout=60) == "correct"
    child.join(10)


def test_without_a_box_math_verify_reads_the_final_part(verifier) -> None:
    # the authors' reward and LUFFY's evaluation accept answers written without \boxed{}
    completions = ["so the answer is $-5$", "Therefore $x=3$.", "<think>\\boxed{7}</think> The answer is 8",
                   "I cannot tell.", "<think>\\boxed{7}</think>"]
    results = verifier.verify_batch(completions, [problem(g) for g in ("-5", "3", "8", "1", "7")])
    assert [r.reason for r in results] == ["correct", "correct", "correct", "no_answer", "no_answer"]
    assert results[0].extracted == "-5" and results[3].extracted is None


def test_strict_boxed_requires_the_box() -> None:
    strict = MathVerifier(timeout_seconds=5.0, workers=1, answer_format="strict-boxed")
    results = strict.verify_batch(["so the answer is $-5$", "so \\boxed{-5}"], [problem("-5"), problem("-5")])
    strict.close()
    assert [r.reason for r in results] == ["no_answer", "correct"]
    with pytest.raises(UserError, match="answer_format 'boxed' is not one of any, strict-boxed"):
        MathVerifier(answer_format="boxed")


def test_several_boxes_count_as_one_set_when_the_gold_is_a_set(verifier) -> None:
    completions = ["The solutions are $\\boxed{1}$ and $\\boxed{2}$.", "pairs \\boxed{(1, 2)}, \\boxed{(3, 4)}",
                   "first \\boxed{5} then \\boxed{6}", "guess \\boxed{1}, \\boxed{3}"]
    golds = ["\\{1, 2\\}", "(1,2),(3,4)", "6", "\\{1, 2\\}"]
    results = verifier.verify_batch(completions, [problem(g) for g in golds])
    assert [r.reason for r in results] == ["correct", "correct", "correct", "wrong"]
    assert results[0].extracted == "1, 2" and results[2].extracted == "6"   # a single gold: the last box


def test_a_problem_without_answer_is_a_user_error(verifier) -> None:
    with pytest.raises(UserError, match="no 'answer'"):
        verifier.verify("\\boxed{1}", Problem("x", "?"))


def test_start_makes_every_worker_ready_before_the_first_task() -> None:
    v = MathVerifier(timeout_seconds=5.0, workers=2)
    v.workers.start()
    pids = v.workers.pids
    assert len(pids) == 2 and all(w.ready for w in v.workers._workers)
    assert v.workers.map([{"gold": "\\frac12", "boxes": ["0.5"]}])[0]["ok"] is True
    assert v.workers.pids == pids   # the same processes: start() did not start them twice
    v.close()
