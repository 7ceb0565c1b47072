"""The built-in `math` verifier: the final answer against the gold answer, via math-verify.

Reading the answer, as the field's graders do: the final part is the text after the last
`</think>` when there is one (and `answer_after_think` is on), else the whole response.
The answer is the content of its last `\\boxed{...}` (also `\\fbox`, `\\framebox`, and the
brace-less `\\boxed 5`), trailing periods and a `\\textbf{}` / `\\mathbf{}` around the whole
answer dropped; when the gold is a set, tuple or interval, several boxes are also
compared joined as one list. A "final answer" statement after the last box (`Final Answer:
The final answer is $10,455$`) is the answer instead, read by math-verify. With no box (answer_format `any`, the default) math-verify's
own LaTeX and expression extraction reads the final part, as `math_verify.parse` on a
whole response does (the authors' reward); with `strict-boxed` (for training rewards that
require the format) no box means no answer. Reason `no_answer` when there is none.

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

ANSWER_FORMATS = ("any", "strict-boxed")

_BOX = re.compile(r"\\(?:boxed|fbox|framebox)\s*(\{)|\\boxed\s+([^\s${}]+)")
_WRAPPER = re.compile(r"^\\(?:textbf|mathbf)\{(.*)\}$", re.S)
_INTEGER = re.compile(r"[+-]?\d+")
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_TRAILING_PERIOD = re.compile(r"(?<![.\\])\.\s*$")
_FINAL_STATEMENT = re.compile(r"final answer", re.I)


def all_boxed(text: str) -> list[str]:
    """The contents of every \\boxed{...} (balanced braces) in `text`, in order."""
    found = []
    for match in _BOX.finditer(text):
        if match.group(2) is not None:
            found.append(match.group(2))
            continue
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            found.append(text[match.end():i - 1])
    return found


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} in `text`, or None."""
    boxes = all_boxed(text)
    return boxes[-1] if boxes else None


def final_part(completion: str, answer_after_think: bool = True) -> str:
    """The text after the last `</think>` (when asked and present), else the whole completion."""
    return completion.rsplit("</think>", 1)[1] if answer_after_think and "</think>" in completion else completion


def final_boxes(completion: str, answer_after_think: bool = True) -> list[str]:
    """The normalized, non-empty boxed answers of the final part."""
    return [box for box in map(normalize, all_boxed(final_part(completion, answer_after_think))) if box]


def _final_statement(completion: str, answer_after_think: bool) -> str | None:
    """The final part from its last "final answer" on, when no box follows that, else None."""
    part = final_part(completion, answer_after_think)
    starts = [m.start() for m in _FINAL_STATEMENT.finditer(part)]
    if not starts or all_boxed(part[starts[-1]:]) or not part[starts[-1]:].strip():
        return None
    return part[starts[-1]:]


def extract_answer(completion: str, answer_after_think: bool = True) -> str | None:
    """The last boxed answer of the final part (see the module docstring), or None."""
    boxes = final_boxes(completion, answer_after_think)
    return boxes[-1] if boxes else None


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

    def __init__(self, answer_after_think: bool = True, timeout_seconds: float = 5.0, workers: int | None = None,
                 answer_format: str = "any"):
        if answer_format not in ANSWER_FORMATS:
            raise UserError(f"math answer_format {answer_format!r} is not one of {', '.join(ANSWER_FORMATS)}")
        self.answer_after_think, self.strict_boxed = answer_after_think, answer_format == "strict-boxed"
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
        slow: list[tuple[int, dict]] = []
        for i, (completion, problem) in enumerate(zip(completions, problems)):
            if problem.answer is None:
                raise UserError(f"problem {problem.id!r} has no 'answer'; the math verifier needs one")
            gold, boxes = normalize(problem.answer), final_boxes(completion, self.answer_after_think)
            statement = None if self.strict_boxed else _final_statement(completion, self.answer_after_think)
            verdict = quick_verdict(gold, boxes[-1]) if boxes and statement is None else None
            if verdict is True or verdict is False and len(boxes) == 1:
                results[i] = _result(verdict, boxes[-1])
            elif statement is not None:   # a "final answer" statement after the last box: that is the answer
                slow.append((i, {"gold": problem.answer, "text": statement, "boxes": boxes}))
            elif boxes:
                slow.append((i, {"gold": problem.answer, "boxes": boxes}))
            elif self.strict_boxed or not final_part(completion, self.answer_after_think).strip():
                results[i] = VerifyResult(0.0, "no_answer", None)
            else:
                slow.append((i, {"gold": problem.answer, "text": final_part(completion, self.answer_after_think)}))
        answers = self.workers.map([task for _, task in slow])
        for (i, task), answer in zip(slow, answers):
            results[i] = _slow_result(answer, task)
        return [r for r in results if r is not None]

    def close(self) -> None:
        """Stop the helper processes now (they also stop when this process exits)."""
        self.workers.close()


def _slow_result(answer: dict | None, task: dict) -> VerifyResult:
    """The verdict from a worker's answer (None: it ran out of time)."""
    shown = task["boxes"][-1] if task.get("boxes") else None
    if answer is None:
        return VerifyResult(0.0, "timeout", shown)
    if "error" in answer:
        return VerifyResult(0.0, "error", shown)
    if answer.get("none"):
        return VerifyResult(0.0, "no_answer", None)
    return _result(bool(answer.get("ok")), str(answer.get("extracted", shown)))


def _result(correct: bool, extracted: str) -> VerifyResult:
    return VerifyResult(1.0 if correct else 0.0, "correct" if correct else "wrong", extracted)
