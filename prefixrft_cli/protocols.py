"""The plugin contracts: what a verifier, a demonstrator and a benchmark must provide.

Each `Protocol` is mirrored method by method in docs/plugins.md (a test checks that).
Register an implementation under the entry-point groups `prefixrft.verifiers`,
`prefixrft.demonstrators` or `prefixrft.benchmarks`; the registered object is a class
(or factory) called with no arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from prefixrft_cli.records import Demonstration, Problem

REASONS = ("correct", "wrong", "no_answer", "timeout", "error")


@dataclass(frozen=True)
class VerifyResult:
    """A verifier's verdict on one completion."""

    score: float             # 0..1; 1 is fully correct
    reason: str              # one of REASONS
    extracted: str | None    # the answer or code the verifier actually checked


@runtime_checkable
class Verifier(Protocol):
    """Scores completions against problems."""

    def verify(self, completion: str, problem: Problem) -> VerifyResult:
        """Score one completion against one problem."""
        ...

    def verify_batch(self, completions: Sequence[str], problems: Sequence[Problem]) -> list[VerifyResult]:
        """Score many completions, in parallel where that helps; results keep the input order."""
        ...


@runtime_checkable
class Demonstrator(Protocol):
    """Fills in demonstrations for problems that lack them."""

    def demonstrate(self, problems: Sequence[Problem]) -> list[list[Demonstration]]:
        """Demonstrations for each problem, in input order (an empty list where none could be made)."""
        ...


@runtime_checkable
class Benchmark(Protocol):
    """A fixed evaluation set and how the paper scores it."""

    domain: str            # "math" or "code": picks the verifier
    default_samples: int   # k for avg@k (1 means pass@1)

    def load(self, data_dir: Path) -> list[Problem]:
        """The benchmark's problems; a missing file raises a UserError naming the prepare command."""
        ...


@runtime_checkable
class TrainSet(Protocol):
    """Training problems a plugin provides for its domain (entry-point group prefixrft.train_sets)."""

    domain: str            # the verifier that scores it; the entry is named like it

    def load(self, data_dir: Path) -> list[Problem]:
        """The training problems, with demonstrations where the algorithm needs them."""
        ...
