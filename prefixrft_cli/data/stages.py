"""The pure steps of `prepare`: de-duplicate, filter by token length, split.

Each takes Problems and plain options and returns Problems plus the counts it removed, so
the manifest can say how many records every stage kept. No files, no printing here.
Test: tests/test_prepare_training.py.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prefixrft_cli.records import Demonstration, Problem

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """The text two copies of one problem share: NFKC, whitespace runs collapsed, case folded."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


@dataclass
class DedupeResult:
    """What de-duplication kept and removed."""

    kept: list[Problem]
    kept_where: list[str]
    duplicates: int = 0                                  # records removed as copies of an earlier one
    demonstrations_merged: int = 0                       # distinct demonstrations moved onto the kept copy
    answer_conflicts: list[tuple[str, str]] = field(default_factory=list)  # (kept row, conflicting row)


def dedupe(problems: Sequence[Problem], wheres: Sequence[str]) -> DedupeResult:
    """Keep the first record of each normalised problem text; later copies give it their new demonstrations.

    A copy whose gold answer differs from the kept one is counted in `answer_conflicts`
    (the first answer is kept); the caller decides whether that is an error.
    """
    first: dict[str, int] = {}
    result = DedupeResult([], [])
    for problem, where in zip(problems, wheres):
        key = normalise(problem.problem)
        if key not in first:
            first[key] = len(result.kept)
            result.kept.append(Problem(problem.id, problem.problem, problem.answer, problem.code,
                                       list(problem.demonstrations), problem.source))
            result.kept_where.append(where)
            continue
        result.duplicates += 1
        kept = result.kept[first[key]]
        if kept.answer is not None and problem.answer is not None \
                and normalise(kept.answer) != normalise(problem.answer):
            result.answer_conflicts.append((result.kept_where[first[key]], where))
        texts = {d.text for d in kept.demonstrations}
        for demo in problem.demonstrations:
            if demo.text not in texts:
                kept.demonstrations.append(Demonstration(demo.text, demo.correct))
                texts.add(demo.text)
                result.demonstrations_merged += 1
    return result


@dataclass
class LengthFilterResult:
    """What the token-length filter kept and removed."""

    kept: list[Problem]
    prompts_too_long: int = 0          # problems dropped: problem text over max_prompt_tokens
    demonstrations_too_long: int = 0   # demonstrations dropped: over max_demo_tokens
    longest_prompt_tokens: int = 0     # among the kept problems
    longest_demo_tokens: int = 0       # among the kept demonstrations


def filter_by_length(problems: Sequence[Problem], count_tokens: Callable[[list[str]], list[int]],
                     max_prompt_tokens: int | None, max_demo_tokens: int | None) -> LengthFilterResult:
    """Drop problems whose text is over `max_prompt_tokens`, and demonstrations over `max_demo_tokens`.

    `count_tokens` maps texts to token counts (the policy's tokenizer, no special tokens).
    A limit of None leaves that side unfiltered.
    """
    result = LengthFilterResult([])
    prompt_lengths = count_tokens([p.problem for p in problems]) if max_prompt_tokens is not None else None
    demo_texts = [d.text for p in problems for d in p.demonstrations]
    demo_lengths = iter(count_tokens(demo_texts)) if max_demo_tokens is not None else None
    for index, problem in enumerate(problems):
        demos = list(problem.demonstrations)
        if demo_lengths is not None:
            lengths = [next(demo_lengths) for _ in demos]
            keep = [n <= max_demo_tokens for n in lengths]
            result.demonstrations_too_long += keep.count(False)
            demos = [d for d, ok in zip(demos, keep) if ok]
            kept_lengths = [n for n, ok in zip(lengths, keep) if ok]
        if prompt_lengths is not None and prompt_lengths[index] > max_prompt_tokens:
            result.prompts_too_long += 1
            continue
        if prompt_lengths is not None:
            result.longest_prompt_tokens = max(result.longest_prompt_tokens, prompt_lengths[index])
        if demo_lengths is not None and kept_lengths:
            result.longest_demo_tokens = max(result.longest_demo_tokens, max(kept_lengths))
        result.kept.append(Problem(problem.id, problem.problem, problem.answer, problem.code, demos, problem.source))
    return result


def split(problems: Sequence[Problem], eval_fraction: float, seed: int) -> tuple[list[Problem], list[Problem]]:
    """(train, eval): round(eval_fraction * n) problems drawn with `seed` go to eval; both keep input order."""
    count = round(eval_fraction * len(problems))
    chosen = set(random.Random(seed).sample(range(len(problems)), count))
    train = [p for i, p in enumerate(problems) if i not in chosen]
    held_out = [p for i, p in enumerate(problems) if i in chosen]
    return train, held_out
