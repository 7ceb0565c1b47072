"""The toy task: deterministic, disjoint splits, demonstrations the verifiers accept, wrong answers rejected."""

from __future__ import annotations

import pytest

from prefixrft_cli import registry
from prefixrft_cli.records import Problem
from prefixrft_cli.toy_task import generate_problems, solve_math, split_of
from prefixrft_plugins.toy import ToyDemonstrator


def test_math_steps_follow_precedence():
    # 12 + 7 * 3 - 5: 7 * 3 = 21 first, then 12 + 21 = 33, then 33 - 5 = 28
    steps, value = solve_math("12 + 7 * 3 - 5".split())
    assert steps == ["7 * 3 = 21.", "12 + 21 = 33.", "33 - 5 = 28."] and value == 28
    assert value == eval("12 + 7 * 3 - 5")


@pytest.mark.parametrize("domain", ["math", "code"])
def test_generation_is_deterministic_and_splits_are_disjoint(domain: str):
    train = generate_problems(domain, 300, seed=0, split="train")
    assert [p.problem for p in train] == [p.problem for p in generate_problems(domain, 300, seed=0, split="train")]
    test = generate_problems(domain, 100, seed=1, split="test")
    assert not {p.problem for p in train} & {p.problem for p in test}
    assert all(split_of(p.problem) == "test" for p in test) and len({p.problem for p in train}) == 300


def test_math_answers_are_the_python_value():
    for problem in generate_problems("math", 200, seed=3):
        expression = problem.problem.removeprefix("Compute ").removesuffix(".")
        assert problem.answer == str(eval(expression))
        assert problem.demonstrations[0].text.endswith(f"\\boxed{{{problem.answer}}}.")


def test_demonstrator_reproduces_the_solutions_and_skips_foreign_problems():
    problems = generate_problems("math", 20, seed=5) + generate_problems("code", 20, seed=5)
    demos = ToyDemonstrator().demonstrate(problems + [Problem("x", "What is love?")])
    assert [d[0].text for d in demos[:-1]] == [p.demonstrations[0].text for p in problems]
    assert demos[-1] == []


@pytest.mark.parametrize("domain", ["math", "code"])
def test_verifier_accepts_demonstrations_and_rejects_wrong_answers(domain: str):
    problems = generate_problems(domain, 40, seed=7)
    verifier = registry.verifiers.get(domain)()
    good = verifier.verify_batch([p.demonstrations[0].text for p in problems], problems)
    assert [r.score for r in good] == [1.0] * len(problems)
    # each problem against the next one's demonstration: a different answer or function
    shifted = [problems[(i + 1) % len(problems)].demonstrations[0].text for i in range(len(problems))]
    bad = verifier.verify_batch(shifted, problems)
    assert sum(r.score for r in bad) == 0.0
