"""Verifier `exact-match`: the text after the last `Answer:` must equal the gold answer.

Case, surrounding spaces and a final period are ignored; a completion without `Answer:`
has reason `no_answer`. Cheap and pure Python, so `verify_batch` is a plain loop.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from prefixrft_cli.protocols import VerifyResult
from prefixrft_cli.records import Problem

_ANSWER = re.compile(r"answer\s*:\s*(.*)", re.IGNORECASE)


def _canonical(text: str) -> str:
    return " ".join(text.strip().rstrip(".").split()).casefold()


class ExactMatchVerifier:
    """Scores 1 when the stated answer equals the gold one, else 0."""

    def verify(self, completion: str, problem: Problem) -> VerifyResult:
        """Score one completion against one problem."""
        found = _ANSWER.findall(completion)
        if not found:
            return VerifyResult(0.0, "no_answer", None)
        answer = found[-1].strip().splitlines()[0] if found[-1].strip() else ""
        if problem.answer is None:
            return VerifyResult(0.0, "error", answer)
        correct = _canonical(answer) == _canonical(problem.answer)
        return VerifyResult(1.0 if correct else 0.0, "correct" if correct else "wrong", answer)

    def verify_batch(self, completions: Sequence[str], problems: Sequence[Problem]) -> list[VerifyResult]:
        """Score many completions, in parallel where that helps; results keep the input order."""
        return [self.verify(c, p) for c, p in zip(completions, problems, strict=True)]
