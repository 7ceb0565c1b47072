"""One resolver for problem-source strings: toy | a benchmark | a dataset folder | a JSONL."""

from __future__ import annotations

import pytest

from prefixrft_cli.data.sources import ProblemSource, read_problems, resolve_source
from prefixrft_cli.errors import UserError


def test_each_kind_of_string_resolves_once(tmp_path):
    assert resolve_source("toy") == ProblemSource("toy", "toy")
    assert resolve_source("toy-math") == ProblemSource("benchmark", "toy-math")
    assert resolve_source("aime24").kind == "benchmark"
    assert resolve_source(str(tmp_path / "set.jsonl")).kind == "dataset"
    (tmp_path / "aime24").mkdir()  # a folder that shadows a benchmark name is the folder
    assert resolve_source(str(tmp_path / "aime24")).kind == "dataset"


def test_toy_gives_training_problems_and_its_held_out_benchmark():
    train = read_problems(resolve_source("toy"), "math", False, 5, 0, "train")
    held_out = read_problems(resolve_source("toy"), "math", True, 5, 0, "eval")
    assert len(train) == 5 and all(p.id.startswith("toy-math-train-") for p in train)
    assert len(held_out) == 500 and held_out[0].id == "toy-math-test-0"


def test_toy_for_a_domain_without_training_problems_says_what_data_train_needs():
    with pytest.raises(UserError, match=r"--domain chess: data.train=toy is the toy task of math and code, and no "
                                        r"plugin provides training problems for 'chess'.*give data.train=DIR"):
        read_problems(resolve_source("toy"), "chess", False, 5, 0, "train")
    with pytest.raises(UserError, match="no benchmark is scored by 'chess'"):
        read_problems(resolve_source("toy"), "chess", True, 5, 0, "eval")
