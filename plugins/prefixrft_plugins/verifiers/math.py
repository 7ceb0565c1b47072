"""The built-in `math` verifier: the final boxed answer against the gold answer, via math-verify.

Reading the answer: the text after the last `</think>` when there is one (and
`answer_after_think` is on), then the content of the last `\\boxed{...}` (also `\\fbox`,
`\\framebox`, and the brace-less `\\boxed 5`). Trailing periods and a `\\textbf{}` /
`\\mathbf{}` wrapped around the whole answer are dropped. No box: reason `no_answer`.

Comparing: two plain integers (`28`, `-3`, `028`) are compared as integers, and two answers
that are the same text up to spacing are equal; both decide at once with no false
positive. Everything else goes to math-verify in helper processes (math_worker.py), each
comparison with its own wall-clock bound: a comparison that overruns kills its worker and
scores 0 with reason `timeout`. This works from threads and worker processes alike,
unlike math-verify's own signal-based timeout, which is disabled. A worker failure or a
gold answer math-verify cannot read gives reason `error`.

Test: tests/test_verify_math.py; real data: tests/test_verify_real_data.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from prefixrft_cli.errors import UserError
from prefixrft_cli.protocols import VerifyResult
from prefixrft_cli.records import Problem
from prefixrft_plugins.verifiers.workers import TimedWorkers

_BOX = re.compile(r"\\(?:boxed|fbox|framebox)\s*(\{)|\\boxed\s+([^\s${}]+)")
_WRAPPER = re.compile(r"^\\(?:textbf|mathbf)\{(.*)\}$", re.S)
_INTEGER = re.compile(r"[+-]?\d+")
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_TRAILING_PERIOD = re.compile(r"(?<![.\\])\.\s*$")


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (balanced braces) in `text`, or None."""
    found = None
    for match in _BOX.finditer(text):
        if match.group(2) is not None:
            found = match.group(2)
            continue
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            found = text[match.end():i - 1]
    return found


def extract_answer(completion: str, answer_after_think: bool = True) -> str | None:
    """The final answer a completion gives (see the module docstring), or None."""
    text = completion.rsplit("</think>", 1)[1] if answer_after_think and "</think>" in completion else completion
    answer = last_boxed(text)
    return None if answer is None else normalize(answer) or None


def normalize(answer: str) -> str:
    """Strip `$`, outer spacing, trailing periods and a whole-answer bold wrapper; collapse spaces."""
    text = _UNESCAPED_DOLLAR.sub("", answer).strip()
    previous = None
    while text != previous:
        previous = text
        text = _TRAILING_PERIOD.sub("", text).strip()
        match = _WRAPPER.match(text)
        text = match.group(1).strip() if match else text
    return " ".join(text.split())


def quick_verdict(gold: str, pred: str) -> bool | None:
    """True / False when the answers decide without math-verify (integers, identical text), else None."""
    if _INTEGER.fullmatch(gold) and _INTEGER.fullmatch(pred):
        return int(gold) == int(pred)
    if gold == pred:
        return True
    return None


class MathVerifier:
    """Scores math completions; math-verify runs in `workers` helper processes started on first need."""

    def __init__(self, answer_after_think: bool = True, timeout_seconds: float = 5.0, workers: int | None = None):
        self.answer_after_think = answer_after_think
        self.timeout_seconds = timeout_seconds
        self.workers = TimedWorkers("prefixrft_plugins.verifiers.math_worker", workers or os.cpu_count() or 1,
                                    timeout_seconds)

    def verify(self, completion: str, problem: Problem) -> VerifyResult:
        """Score one completion against one problem."""
        return self.verify_batch([completion], [problem])[0]

    def verify_batch(self, completions: Sequence[str], problems: Sequence[Problem]) -> list[VerifyResult]:
        """Score many completions, in parallel where that helps; results keep the input order."""
        if len(completions) != len(problems):
            raise ValueError(f"{len(completions)} completions for {len(problems)} problems")
        results: list[VerifyResult | None] = [None] * len(completions)
        slow: list[tuple[int, str, str]] = []
        for i, (completion, problem) in enumerate(zip(completions, problems)):
            if problem.answer is None:
                raise UserError(f"problem {problem.id!r} has no 'answer'; the math verifier needs one")
            pred = extract_answer(completion, self.answer_after_think)
            if pred is None:
                results[i] = VerifyResult(0.0, "no_answer", None)
                continue
            gold = normalize(problem.answer)
            verdict = quick_verdict(gold, pred)
            if verdict is None:
                slow.append((i, gold, pred))
            else:
                results[i] = _result(verdict, pred)
        answers = self.workers.map([{"gold": gold, "pred": pred} for _, gold, pred in slow])
        for (i, _, pred), answer in zip(slow, answers):
            if answer is None:
                results[i] = VerifyResult(0.0, "timeout", pred)
            elif "error" in answer:
                results[i] = VerifyResult(0.0, "error", pred)
            else:
                results[i] = _result(bool(answer.get("ok")), pred)
        return [r for r in results if r is not None]

    def close(self) -> None:
        """Stop the helper processes now (they also stop when this process exits)."""
        self.workers.close()


def _result(correct: bool, extracted: str) -> VerifyResult:
    return VerifyResult(1.0 if correct else 0.0, "correct" if correct else "wrong", extracted)
