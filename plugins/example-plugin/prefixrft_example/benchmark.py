"""Benchmark `capitals`: twelve capital-city questions bundled with the package.

Its problems ship inside the package, so `load` ignores the data folder. Its domain is the
name of this package's verifier, `exact-match`: `prefixrft eval` scores it with that.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from prefixrft_cli.records import Problem


class CapitalsBenchmark:
    """Twelve 'What is the capital of X?' questions, pass@1, scored by exact-match."""

    domain = "exact-match"
    default_samples = 1

    def load(self, data_dir: Path) -> list[Problem]:
        """The benchmark's problems (bundled: `data_dir` is not needed)."""
        text = resources.files("prefixrft_example").joinpath("data/capitals.jsonl").read_text(encoding="utf-8")
        return [Problem.from_json(json.loads(line), f"capitals.jsonl:{n}")
                for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
