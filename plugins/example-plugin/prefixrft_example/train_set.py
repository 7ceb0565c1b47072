"""Train set `exact-match`: capital-city questions with demonstrations, for `prefixrft train --domain exact-match`.

An entry of the group `prefixrft.train_sets` named like the verifier: with it, training on
this plugin's domain needs no data.train (its default, `toy`, means "the domain's own
training problems"). None of these cities is in the `capitals` benchmark.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from prefixrft_cli.records import Problem


class CapitalsTrainSet:
    """Capital-city questions, each with the demonstration 'Answer: <city>'."""

    domain = "exact-match"

    def load(self, data_dir: Path) -> list[Problem]:
        """The training problems (bundled: `data_dir` is not needed)."""
        text = resources.files("prefixrft_example").joinpath("data/capitals_train.jsonl").read_text(encoding="utf-8")
        return [Problem.from_json(json.loads(line), f"capitals_train.jsonl:{n}")
                for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
