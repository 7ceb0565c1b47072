"""What a problem-source string means, worked out in one place.

    toy             the embedded toy task of the domain: generated training problems, or for a
                    held-out set the benchmark `toy-<domain>`
    a benchmark     a registered benchmark name (built-in or a plugin's) that is not also a path
    a dataset       a folder written by `prefixrft prepare`, or a JSONL of Problem records

`resolve_source` turns the string into a `ProblemSource` once; `read_problems` reads it.
Used by training (data.train / data.eval) and by `inspect-entropy` (--data).
Test: tests/test_sources.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefixrft_cli import registry
from prefixrft_cli.errors import UserError
from prefixrft_cli.records import Problem
from prefixrft_cli.toy_task import generate_problems

TOY_DOMAINS = ("math", "code")


@dataclass(frozen=True)
class ProblemSource:
    """A resolved source of problems."""

    kind: str   # toy | benchmark | dataset
    name: str   # the string as given: "toy", the benchmark name, or the folder / JSONL path


def resolve_source(text: str) -> ProblemSource:
    """The kind of source a data.train / data.eval / --data string names."""
    if text == "toy":
        return ProblemSource("toy", text)
    if text in registry.benchmarks.names() and not Path(text).exists():
        return ProblemSource("benchmark", text)
    return ProblemSource("dataset", text)


def read_problems(source: ProblemSource, domain: str, held_out: bool, toy_count: int, seed: int,
                  dataset_split: str) -> list[Problem]:
    """The problems of `source`: a held-out set (`held_out`) or training problems.

    `toy_count` toy problems are generated for training; a dataset folder is read at `dataset_split`.
    """
    if source.kind == "toy" and held_out:
        source = ProblemSource("benchmark", f"toy-{domain}")
    elif source.kind == "toy":
        if domain not in TOY_DOMAINS:
            raise UserError(f"--domain {domain!r}: the toy task has math and code; valid: {', '.join(TOY_DOMAINS)}")
        return generate_problems(domain, toy_count, seed=seed, split="train")
    if source.kind == "benchmark":
        from prefixrft_cli.data.paths import resolve_data_dir

        return registry.benchmarks.get(source.name)().load(resolve_data_dir(None))
    from prefixrft_cli.data import load_dataset

    return load_dataset(source.name, dataset_split)
