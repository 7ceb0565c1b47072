"""What a problem-source string means, worked out in one place.

    toy             the embedded toy task of the domain (math, code): generated training problems,
                    or for a held-out set the benchmark `toy-<domain>` (at another difficulty than
                    easy, the held-out split generated at that difficulty); `toy` options
                    (data.toy_* in the config) shape it. For a plugin's domain: the training
                    problems its `prefixrft.train_sets` entry of that name provides, and for a
                    held-out set the first benchmark of that domain
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
from prefixrft_cli.toy_task import ToyOptions, generate_problems, toy_test_problems

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
                  dataset_split: str, toy: ToyOptions = ToyOptions()) -> list[Problem]:
    """The problems of `source`: a held-out set (`held_out`) or training problems.

    `toy_count` toy problems are generated for training, shaped by `toy` (for a held-out set only
    its difficulty counts); a dataset folder is read at `dataset_split`.
    """
    from prefixrft_cli.data.paths import resolve_data_dir

    if source.kind == "toy" and held_out and domain in TOY_DOMAINS and toy.difficulty != "easy":
        return toy_test_problems(domain, toy.difficulty)
    if source.kind == "toy" and held_out:
        source = ProblemSource("benchmark", f"toy-{domain}" if domain in TOY_DOMAINS else held_out_benchmark(domain))
    elif source.kind == "toy":
        if domain in TOY_DOMAINS:
            return generate_problems(domain, toy_count, seed=seed, split="train", options=toy)
        if domain not in registry.train_sets.names():
            raise UserError(f"--domain {domain}: data.train=toy is the toy task of math and code, and no plugin "
                            f"provides training problems for {domain!r} (entry-point group prefixrft.train_sets); "
                            f"give data.train=DIR or FILE.jsonl of {domain} problems "
                            f"(prefixrft prepare --input FILE --domain {domain} --output DIR)")
        return registry.load_problems(registry.train_sets, domain, resolve_data_dir(None))[1]
    if source.kind == "benchmark":
        return registry.load_problems(registry.benchmarks, source.name, resolve_data_dir(None))[1]
    from prefixrft_cli.data import load_dataset

    return load_dataset(source.name, dataset_split)


def held_out_benchmark(domain: str) -> str:
    """The first registered benchmark scored by `domain` (what data.eval=toy means for a plugin's domain)."""
    for name in registry.benchmarks.names():
        try:
            if getattr(registry.benchmarks.get(name), "domain", None) == domain:
                return name
        except UserError:
            continue  # a broken plugin is listed by `prefixrft plugins`; it is no candidate here
    raise UserError(f"--domain {domain}: data.eval=toy has held-out toy problems for math and code only, and no "
                    f"benchmark is scored by {domain!r}; give data.eval=a benchmark name or a JSONL of problems")
