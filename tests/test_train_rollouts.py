"""The rollout phase (train/rollouts.py) against SPEC §2 "Rollouts (per prompt)".

Checks, with hand-derived numbers: which of the n rollouts of a group are hybrid, the prefix
cut in the demonstration's token ids (>= 1 prefix token, >= 1 left to write, capped below
max_response_tokens), seeded random choice among several demonstrations, prompts without
demonstrations, LUFFY's whole-demonstration rollout, what the sampler is asked to continue
(`prompt ⊕ prefix` ids, budget max_response_tokens − prefix_len), and low_t.
No model: a recording fake sampler stands in for the engine.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch

from prefixrft_cli.algo.schedule import prefix_len_low, sample_prefix_fractions
from prefixrft_cli.protocols import VerifyResult
from prefixrft_cli.records import Problem
from prefixrft_cli.rollout.sampler import Generation
from prefixrft_cli.train.rollouts import (
    PromptItem,
    RolloutBatch,
    RolloutPlan,
    plan_rollouts,
    sample_continuations,
    score_rollouts,
)

PROMPT_A, PROMPT_B, PROMPT_C = [1, 2, 3], [4, 5], [6]
DEMO_10 = list(range(100, 110))     # 10 tokens
DEMO_7 = list(range(200, 207))      # 7 tokens


def item(prompt: list[int], demos: list[list[int]], name: str = "p") -> PromptItem:
    return PromptItem(Problem(id=name, problem=name, answer="1"), prompt, demos)


def make_plan(**changes) -> RolloutPlan:
    plan = RolloutPlan(group_size=4, hybrid_per_group=1, whole_demo_per_group=0, max_response_tokens=32,
                       scheduler="fixed", prefix_len_high=0.95, prefix_len_low_end=0.05, prefix_len_fixed=0.5)
    return replace(plan, **changes)


def run_plan(items, plan, step=0, total=10, seed=0):
    return plan_rollouts(items, plan, step, total, torch.Generator().manual_seed(seed), random.Random(seed))


class RecordingSampler:
    """Answers every context with `reply` cut to its budget, and remembers what it was asked."""

    def __init__(self, reply=(50, 51, 52)):
        self.reply = list(reply)
        self.calls: list[tuple[list[list[int]], list[int]]] = []
        self.settings: list[tuple[float, float, int]] = []

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, seed=0, seeds=None) -> Generation:
        prompts, budgets = [list(p) for p in prompts], list(max_new_tokens)
        self.calls.append((prompts, budgets))
        self.settings.append((temperature, top_p, seeds))
        tokens = [self.reply[:b] for b in budgets]
        return Generation(tokens, [[0.0] * len(t) for t in tokens], [len(self.reply) > b for b in budgets])


def test_one_hybrid_per_group_is_the_last_slot_and_prompts_without_demos_get_none():
    # G = 4, m = 1, fixed L = 0.5: prompt A (demo of 10) -> slot 3 hybrid with floor(0.5·10) = 5
    # prefix tokens; prompt B has no demonstration -> 4 ordinary rollouts; prompt C (demo of 7)
    # -> slot 3 hybrid with floor(0.5·7) = 3.
    items = [item(PROMPT_A, [DEMO_10]), item(PROMPT_B, []), item(PROMPT_C, [DEMO_7])]
    rollouts, contexts, low_t = run_plan(items, make_plan())
    assert [r.prefix_len for r in rollouts] == [0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 3]
    assert [r.hybrid for r in rollouts] == [False] * 3 + [True] + [False] * 7 + [True]
    assert rollouts[3].response_ids == DEMO_10[:5] and rollouts[11].response_ids == DEMO_7[:3]
    assert rollouts[3].prefix_fraction == 0.5 and rollouts[0].prefix_fraction == 0.0
    assert contexts[3] == PROMPT_A + DEMO_10[:5] and contexts[0] == PROMPT_A
    assert contexts[4:8] == [PROMPT_B] * 4 and contexts[11] == PROMPT_C + DEMO_7[:3]
    assert low_t == 0.5  # fixed scheduler: low_t is the fixed L


def test_m_hybrid_rollouts_take_the_last_m_slots():
    # G = 5, m = 3, fixed L = 0.3 on a 10-token demo: floor(3) = 3 prefix tokens, slots 2, 3, 4.
    rollouts, _, _ = run_plan([item(PROMPT_A, [DEMO_10])], make_plan(group_size=5, hybrid_per_group=3,
                                                                     prefix_len_fixed=0.3))
    assert [r.prefix_len for r in rollouts] == [0, 0, 3, 3, 3]


@pytest.mark.parametrize("fraction, expected", [
    (0.0, 1),     # floor(0) = 0 -> at least one prefix token
    (0.05, 1),    # floor(0.5) = 0 -> 1
    (0.7, 7),     # float32(0.7)·10 = 6.9999999 counts as 7
    (0.95, 9),    # floor(9.5) = 9 = |y*| − 1
    (1.0, 9),     # floor(10) = 10 -> at most |y*| − 1 = 9: one token left to write
])
def test_prefix_cut_bounds(fraction, expected):
    rollouts, _, _ = run_plan([item(PROMPT_A, [DEMO_10])], make_plan(prefix_len_fixed=fraction))
    assert rollouts[3].prefix_len == expected and rollouts[3].response_ids == DEMO_10[:expected]


def test_prefix_is_capped_below_max_response_tokens_and_the_sampler_gets_the_rest():
    # 10-token demo, L = 0.9 -> floor(9) = 9 prefix tokens, but max_response_tokens = 6 caps it
    # at 5, leaving a budget of 6 − 5 = 1 token for the continuation.
    plan = make_plan(prefix_len_fixed=0.9, max_response_tokens=6)
    rollouts, contexts, _ = run_plan([item(PROMPT_A, [DEMO_10])], plan)
    assert rollouts[3].prefix_len == 5 and rollouts[3].response_ids == DEMO_10[:5]
    sampler = RecordingSampler()
    sample_continuations(rollouts, contexts, sampler, plan, 1.0, 1.0, seeds=list(range(len(rollouts))))
    (prompts, budgets), = sampler.calls
    assert budgets == [6, 6, 6, 1]
    assert prompts[3] == PROMPT_A + DEMO_10[:5]
    assert rollouts[3].response_ids == DEMO_10[:5] + [50] and rollouts[3].truncated is True
    assert len(rollouts[3].response_ids) == 6   # prefix + continuation within max_response_tokens


def test_sampler_continues_prompt_plus_prefix_ids_with_the_remaining_budget():
    # L = 0.5 on DEMO_10 -> 5 prefix tokens; budget 32 − 5 = 27; ordinary rollouts get 32.
    items = [item(PROMPT_A, [DEMO_10]), item(PROMPT_B, [])]
    plan = make_plan()
    rollouts, contexts, _ = run_plan(items, plan)
    sampler = RecordingSampler()
    sample_continuations(rollouts, contexts, sampler, plan, 0.7, 0.9, seeds=list(range(100, 108)))
    assert len(sampler.calls) == 1      # hybrid and ordinary rollouts in one generate call
    assert sampler.settings == [(0.7, 0.9, list(range(100, 108)))]  # each rollout with its own seed
    prompts, budgets = sampler.calls[0]
    assert prompts == [PROMPT_A] * 3 + [PROMPT_A + DEMO_10[:5]] + [PROMPT_B] * 4
    assert budgets == [32, 32, 32, 27, 32, 32, 32, 32]
    assert rollouts[3].response_ids == DEMO_10[:5] + [50, 51, 52] and rollouts[3].prefix_len == 5
    assert rollouts[0].response_ids == [50, 51, 52] and rollouts[0].prefix_len == 0
    assert not any(r.truncated for r in rollouts)


def test_a_hybrid_rollout_with_L_equal_to_one_is_still_continued():
    # L = 1.0 cuts |y*| − 1 = 9 tokens; the policy must still write the rest (budget 32 − 9 = 23).
    plan = make_plan(prefix_len_fixed=1.0)
    rollouts, contexts, _ = run_plan([item(PROMPT_A, [DEMO_10])], plan)
    sampler = RecordingSampler()
    sample_continuations(rollouts, contexts, sampler, plan, 1.0, 1.0, seeds=list(range(len(rollouts))))
    prompts, budgets = sampler.calls[0]
    assert prompts[3] == PROMPT_A + DEMO_10[:9] and budgets[3] == 23
    assert rollouts[3].response_ids == DEMO_10[:9] + [50, 51, 52]


def test_several_demonstrations_are_picked_at_random_with_the_seeded_rng():
    demos = [DEMO_10, DEMO_7, list(range(300, 304))]
    items = [item(PROMPT_A, demos, f"p{i}") for i in range(30)]
    plan = make_plan(group_size=3, hybrid_per_group=2)
    rollouts, _, _ = run_plan(items, plan, seed=7)
    # Reference: the rng draws one demonstration per hybrid slot, in slot order.
    rng = random.Random(7)
    expected = [rng.choice(demos) for _ in range(60)]
    got = [r for r in rollouts if r.hybrid]
    assert len(got) == 60
    for rollout, demo in zip(got, expected):
        assert rollout.response_ids == demo[:len(demo) // 2]     # L = 0.5: floor(|y*|/2)
    firsts = {r.response_ids[0] for r in got}
    assert firsts == {100, 200, 300}                             # every demonstration is used
    again, _, _ = run_plan(items, plan, seed=7)
    assert [r.response_ids for r in again] == [r.response_ids for r in rollouts]


def test_cosine_scheduler_low_t_and_sampled_fractions():
    # cosine at t = 5 of T = 10: low_t = 0.05 + ½·0.9·(1 + cos(π/2)) = 0.5; L ~ U(0.5, 0.95).
    items = [item(PROMPT_A, [DEMO_10], f"p{i}") for i in range(6)]
    plan = make_plan(scheduler="cosine")
    rollouts, _, low_t = run_plan(items, plan, step=5, total=10, seed=11)
    assert low_t == pytest.approx(0.5, abs=1e-12)
    assert low_t == prefix_len_low("cosine", 5, 10, 0.95, 0.05, 0.5)
    fractions, _ = sample_prefix_fractions("cosine", 5, 10, 6, torch.Generator().manual_seed(11), 0.95, 0.05, 0.5)
    hybrid = [r for r in rollouts if r.hybrid]
    assert [r.prefix_fraction for r in hybrid] == pytest.approx(fractions.tolist())
    assert all(0.5 <= r.prefix_fraction < 0.95 for r in hybrid)
    for r, frac in zip(hybrid, fractions.tolist()):
        assert r.prefix_len == max(1, min(9, int(frac * 10 + 1e-6)))
    # t = 0 -> 0.95, t = T -> 0.05
    assert run_plan(items, plan, step=0, total=10)[2] == pytest.approx(0.95)
    assert run_plan(items, plan, step=10, total=10)[2] == pytest.approx(0.05)


def test_luffy_whole_demonstration_rollout():
    # LUFFY: slot 0 is the whole demonstration (off-policy, nothing sampled); slots 1..3 ordinary.
    items = [item(PROMPT_A, [DEMO_7]), item(PROMPT_B, [])]
    plan = make_plan(hybrid_per_group=0, whole_demo_per_group=1, max_response_tokens=7)
    rollouts, contexts, _ = run_plan(items, plan)
    assert rollouts[0].response_ids == DEMO_7 and rollouts[0].prefix_len == 7
    assert rollouts[0].prefix_fraction == 1.0
    assert rollouts[0].truncated is False          # exactly max_response_tokens long, not cut
    assert [r.prefix_len for r in rollouts[1:]] == [0] * 7   # B has no demo: 4 ordinary rollouts
    sampler = RecordingSampler()
    sample_continuations(rollouts, contexts, sampler, plan, 1.0, 1.0, seeds=list(range(len(rollouts))))
    prompts, budgets = sampler.calls[0]
    assert prompts == [PROMPT_A] * 3 + [PROMPT_B] * 4 and budgets == [7] * 7
    assert rollouts[0].response_ids == DEMO_7      # untouched by the sampler
    # A demonstration longer than max_response_tokens is cut there and flagged truncated.
    short_plan = replace(plan, max_response_tokens=5)
    cut, _, _ = run_plan(items, short_plan)
    assert cut[0].response_ids == DEMO_7[:5] and cut[0].truncated is True


def test_luffy_with_nothing_to_sample_does_not_call_the_sampler():
    plan = make_plan(group_size=1, hybrid_per_group=0, whole_demo_per_group=1)
    rollouts, contexts, _ = run_plan([item(PROMPT_A, [DEMO_7])], plan)
    sampler = RecordingSampler()
    sample_continuations(rollouts, contexts, sampler, plan, 1.0, 1.0, seeds=list(range(len(rollouts))))
    assert sampler.calls == [] and rollouts[0].response_ids == DEMO_7


class EchoTokenizer:
    def batch_decode(self, ids, skip_special_tokens=True):
        return [" ".join(map(str, row)) for row in ids]


class LastTokenVerifier:
    """Correct when the response's last token is 52."""

    def verify_batch(self, texts, problems):
        return [VerifyResult(1.0 if t.endswith("52") else 0.0, "correct" if t.endswith("52") else "wrong", t)
                for t in texts]


def test_scoring_sees_prefix_plus_continuation_and_the_batch_tensors():
    items = [item(PROMPT_A, [DEMO_10]), item(PROMPT_B, [])]
    plan = make_plan(group_size=2, max_response_tokens=8)
    rollouts, contexts, low_t = run_plan(items, plan)
    sample_continuations(rollouts, contexts, RecordingSampler(), plan, 1.0, 1.0, seeds=[0] * len(rollouts))
    # prompt A: slot 0 ordinary "50 51 52", slot 1 hybrid DEMO_10[:5] + continuation of budget 3.
    rollouts[2].response_ids = [50]   # make one prompt-B rollout wrong
    score_rollouts(rollouts, EchoTokenizer(), LastTokenVerifier())
    assert rollouts[1].text == "100 101 102 103 104 50 51 52"
    batch = RolloutBatch(rollouts, 2, 2, low_t)
    assert batch.rewards().tolist() == [[1.0, 1.0], [0.0, 1.0]]
    assert batch.hybrid_mask().tolist() == [[False, True], [False, False]]
