"""Demonstrator `answer-template`: a one-line demonstration `Answer: <gold answer>`."""

from __future__ import annotations

from collections.abc import Sequence

from prefixrft_cli.records import Demonstration, Problem


class AnswerTemplateDemonstrator:
    """Writes `Answer: <gold>` for each problem that has an answer (nothing for the others)."""

    def demonstrate(self, problems: Sequence[Problem]) -> list[list[Demonstration]]:
        """Demonstrations for each problem, in input order (an empty list where none could be made)."""
        return [[Demonstration(f"Answer: {p.answer}", correct=True)] if p.answer else [] for p in problems]
