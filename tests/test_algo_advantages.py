"""Group-relative advantages: worked groups for both groupings, grpo, zero variance, a loop reference."""

from __future__ import annotations

import math
import random

import pytest
import torch

from prefixrft_cli.algo.advantages import compute_advantages

H, O = True, False  # hybrid / ordinary rollout


def adv(rewards: list[list[float]], hybrid: list[list[bool]], **kw):
    return compute_advantages(torch.tensor(rewards), torch.tensor(hybrid), **kw)


def test_grouping_all_worked_example() -> None:
    # rewards [1, 0, 0, 1], rollout 0 hybrid: mean 0.5 -> A = [0.5, -0.5, -0.5, 0.5], prefix the same
    a = adv([[1, 0, 0, 1]], [[H, O, O, O]])
    assert a.response.tolist() == [[0.5, -0.5, -0.5, 0.5]]
    assert a.prefix.tolist() == [[0.5, -0.5, -0.5, 0.5]]


def test_grouping_separate_one_hybrid() -> None:
    # rewards [1, 0, 0, 1], rollout 0 hybrid. Ordinary rollouts 1..3: rewards [0, 0, 1], mean 1/3
    #   ordinary:                 [0 − 1/3, 0 − 1/3, 1 − 1/3] = [-1/3, -1/3, 2/3]
    #   hybrid continuation:      lone hybrid -> raw reward 1
    #   hybrid prefix tokens:     1 − mean(ordinary) = 2/3
    a = adv([[1, 0, 0, 1]], [[H, O, O, O]], grouping="separate")
    assert a.response.tolist()[0] == pytest.approx([1.0, -1 / 3, -1 / 3, 2 / 3])
    assert a.prefix.tolist()[0] == pytest.approx([2 / 3, -1 / 3, -1 / 3, 2 / 3])  # ordinary rows: = response


def test_grouping_separate_two_hybrids() -> None:
    # rewards [1, 0 | 1, 1, 0, 1], rollouts 0, 1 hybrid.
    #   hybrid mean (1 + 0)/2 = 0.5 -> continuations [0.5, -0.5]
    #   ordinary mean (1 + 1 + 0 + 1)/4 = 0.75 -> ordinary [0.25, 0.25, -0.75, 0.25]
    #   prefix tokens: r − 0.75 -> [0.25, -0.75]
    a = adv([[1, 0, 1, 1, 0, 1]], [[H, H, O, O, O, O]], grouping="separate")
    assert a.response.tolist()[0] == pytest.approx([0.5, -0.5, 0.25, 0.25, -0.75, 0.25])
    assert a.prefix.tolist()[0] == pytest.approx([0.25, -0.75, 0.25, 0.25, -0.75, 0.25])


@pytest.mark.parametrize("grouping", ["all", "separate"])
@pytest.mark.parametrize("estimator", ["dr-grpo", "grpo"])
def test_zero_variance_group_gets_zero_everywhere(estimator: str, grouping: str) -> None:
    # all-correct and all-wrong groups: no signal. Under separate a lone hybrid would otherwise keep
    # its raw reward 1, and grpo would divide 0 by eps.
    a = adv([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]], [[H, O, O, O]] * 3, estimator=estimator, grouping=grouping)
    assert a.response[:2].abs().sum() == 0 and a.prefix[:2].abs().sum() == 0
    assert a.response[2].abs().sum() > 0   # the third group is untouched


def test_grpo_divides_by_unbiased_std() -> None:
    # rewards [1, 0, 0, 1]: mean 0.5, unbiased std sqrt((4·0.25)/3) = 0.5773503
    # A = ±0.5 / (0.5773503 + 1e-6) = ±0.8660239
    a = adv([[1, 0, 0, 1]], [[H, O, O, O]], estimator="grpo")
    assert a.response.tolist()[0] == pytest.approx([0.8660239, -0.8660239, -0.8660239, 0.8660239], abs=1e-6)
    # separate + grpo: the separate numbers [1, -1/3, -1/3, 2/3] over the same std of all G rewards
    #   -> [1.7320478, -0.5773493, -0.5773493, 1.1546986], prefix of the hybrid 2/3 / std = 1.1546986
    s = adv([[1, 0, 0, 1]], [[H, O, O, O]], estimator="grpo", grouping="separate")
    assert s.response.tolist()[0] == pytest.approx([1.7320478, -0.5773493, -0.5773493, 1.1546986], abs=1e-6)
    assert s.prefix[0, 0].item() == pytest.approx(1.1546986, abs=1e-6)


def test_plain_rft_rows_and_partial_credit() -> None:
    # no hybrid: rewards [1, 0, 0, 0], mean 0.25 -> [0.75, -0.25, -0.25, -0.25] under both groupings
    # partial credit [0.5, 1, 0, 0.5], mean 0.5 -> [0, 0.5, -0.5, 0]
    rewards, hybrid = [[1, 0, 0, 0], [0.5, 1, 0, 0.5]], [[O, O, O, O]] * 2
    for grouping in ("all", "separate"):
        a = adv(rewards, hybrid, grouping=grouping)
        assert a.response.tolist() == [[0.75, -0.25, -0.25, -0.25], [0.0, 0.5, -0.5, 0.0]]
        assert torch.equal(a.prefix, a.response)


def test_single_rollout_groups_are_zero_not_nan() -> None:
    for estimator in ("dr-grpo", "grpo"):
        a = adv([[1.0], [0.0]], [[O], [O]], estimator=estimator)
        assert a.response.tolist() == [[0.0], [0.0]]


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="dr-grpo, grpo"):
        adv([[1, 0]], [[O, O]], estimator="ppo")
    with pytest.raises(ValueError, match="all, separate"):
        adv([[1, 0]], [[O, O]], grouping="mixed")
    with pytest.raises(ValueError, match="only hybrid"):
        adv([[1, 0]], [[H, H]], grouping="separate")
    with pytest.raises(ValueError):
        compute_advantages(torch.zeros(4), torch.zeros(4, dtype=torch.bool))


def reference(rewards: list[list[float]], hybrid: list[list[bool]], estimator: str, grouping: str):
    """The obvious per-group loop."""
    response, prefix = [], []
    for r, h in zip(rewards, hybrid):
        g = len(r)
        mean = sum(r) / g
        std = math.sqrt(sum((x - mean) ** 2 for x in r) / (g - 1))
        ords = [x for x, hh in zip(r, h) if not hh]
        hybs = [x for x, hh in zip(r, h) if hh]
        row_r, row_p = [], []
        for x, hh in zip(r, h):
            if grouping == "all":
                a_r = a_p = x - mean
            elif hh:
                a_r = x if len(hybs) == 1 else x - sum(hybs) / len(hybs)
                a_p = x - sum(ords) / len(ords)
            else:
                a_r = a_p = x - sum(ords) / len(ords)
            if estimator == "grpo":
                a_r, a_p = a_r / (std + 1e-6), a_p / (std + 1e-6)
            if max(r) == min(r):
                a_r = a_p = 0.0
            row_r.append(a_r)
            row_p.append(a_p)
        response.append(row_r)
        prefix.append(row_p)
    return response, prefix


@pytest.mark.parametrize("grouping", ["all", "separate"])
@pytest.mark.parametrize("estimator", ["dr-grpo", "grpo"])
def test_matches_a_python_loop_on_random_groups(estimator: str, grouping: str) -> None:
    rng = random.Random(f"{estimator}-{grouping}")
    for _ in range(20):
        b, g = rng.randint(1, 6), rng.randint(2, 8)
        rewards = [[rng.choice([0.0, 0.5, 1.0]) for _ in range(g)] for _ in range(b)]
        hybrid = [[j < rng.randint(0, g - 1) for j in range(g)] for _ in range(b)]   # 0..g-1 hybrids
        for row in hybrid:
            rng.shuffle(row)
        got = compute_advantages(torch.tensor(rewards), torch.tensor(hybrid), estimator, grouping)
        want_r, want_p = reference(rewards, hybrid, estimator, grouping)
        assert torch.allclose(got.response, torch.tensor(want_r), atol=1e-5)
        assert torch.allclose(got.prefix, torch.tensor(want_p), atol=1e-5)
