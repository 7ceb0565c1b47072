"""The toy settings of the paper's claims (toy_task.ToyOptions, data.toy_* in the config)."""

from __future__ import annotations

import random

import pytest

from prefixrft_cli import registry
from prefixrft_cli.config import load_config
from prefixrft_cli.data.sources import read_problems, resolve_source
from prefixrft_cli.errors import UserError
from prefixrft_cli.toy_task import (ToyOptions, generate_problems, solve_math, toy_test_problems,
                                    wrong_math_demonstration)
from prefixrft_cli.train.setup import toy_options


def test_a_mistake_at_a_step_is_carried_to_the_end():
    # 2 * 3 = 6 (+1 -> 7), then 4 + 7 = 11 instead of 10
    steps, value = solve_math(["4", "+", "2", "*", "3"], mistake=(0, 1))
    assert steps == ["2 * 3 = 7.", "4 + 7 = 11."] and value == 11
    assert solve_math(["4", "+", "2", "*", "3"]) == (["2 * 3 = 6.", "4 + 6 = 10."], 10)


def test_every_wrong_demonstration_ends_in_a_wrong_answer():
    rng = random.Random(0)
    verifier = registry.verifiers.get("math")()
    problems = generate_problems("math", 60, seed=3)
    texts = [wrong_math_demonstration(p.problem[len("Compute "):-1].split(" "), rng) for p in problems]
    assert [r.score for r in verifier.verify_batch(texts, problems)] == [0.0] * 60
    # both kinds occur: right steps with a wrong box, and a wrong step carried on
    right_steps = sum(t.rsplit(" The answer", 1)[0] == p.demonstrations[0].text.rsplit(" The answer", 1)[0]
                      for t, p in zip(texts, problems))
    assert 0 < right_steps < 60


def test_demo_shares_keep_the_problems_and_count_exactly():
    plain = generate_problems("math", 200, seed=0)
    thinned = generate_problems("math", 200, seed=0, options=ToyOptions(demo_share=0.25, wrong_demo_share=0.4))
    assert [p.problem for p in thinned] == [p.problem for p in plain]      # the problems do not move
    kept = [p for p in thinned if p.demonstrations]
    wrong = [p for p in kept if p.demonstrations[0].correct is False]
    assert (len(kept), len(wrong)) == (50, 20)                             # 0.25 · 200, then 0.4 · 50
    assert all(p.demonstrations[0].correct is True and p.demonstrations == q.demonstrations
               for p, q in zip(thinned, plain) if p.demonstrations and p not in wrong)


def test_hard_split_is_longer_larger_and_held_out():
    easy, hard = toy_test_problems("math"), toy_test_problems("math", "hard")
    assert len(hard) == 500 and not {p.problem for p in hard} & {p.problem for p in easy}
    steps = [len(solve_math(p.problem[8:-1].split(" "))[0]) for p in hard]
    assert set(steps) == {4, 5} and max(int(t) for p in hard for t in p.problem[8:-1].split(" ")[::2]) > 20
    train = generate_problems("math", 300, seed=0, options=ToyOptions("hard"))
    assert not {p.problem for p in train} & {p.problem for p in hard}       # the hash split holds at any difficulty


def test_config_knobs_reach_the_sources():
    cfg = load_config("toy-hard")
    assert toy_options(cfg, held_out=True) == ToyOptions("hard") and toy_options(cfg) == ToyOptions()
    held_out = read_problems(resolve_source("toy"), "math", True, 0, 0, "eval", toy_options(cfg, True))
    assert [p.problem for p in held_out] == [p.problem for p in toy_test_problems("math", "hard")]
    cfg = load_config("toy-quantity")
    train = read_problems(resolve_source("toy"), "math", False, 2000, 0, "train", toy_options(cfg))
    assert sum(bool(p.demonstrations) for p in train) == 20
    assert load_config("toy-quality").data.use_incorrect_demos is True


@pytest.mark.parametrize("override, message", [
    ("data.toy_demo_share=1.5", r"data.toy_demo_share=1.5 is out of range; valid: \[0.0, 1.0\]"),
    ("data.toy_difficulty=medium", "data.toy_difficulty='medium' is not valid"),
    ("data.toy_eval_difficulty=hrd", "did you mean 'hard'"),
])
def test_bad_toy_knobs_are_one_line_errors(override: str, message: str):
    with pytest.raises(UserError, match=message):
        load_config(None, [override])


def test_toy_knobs_for_code_are_refused():
    with pytest.raises(UserError, match="math toy task only"):
        load_config(None, ["domain=code", "data.toy_wrong_demo_share=0.5"])
