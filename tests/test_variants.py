"""The paper's remaining variants as algorithm records: drpo (Table 8), relift, grouping separate-released."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from prefixrft_cli.algo.advantages import compute_advantages
from prefixrft_cli.algo.selection import Selection
from prefixrft_cli.algorithms import FROZEN_PREFIX, get_algorithm
from prefixrft_cli.config import load_config
from prefixrft_cli.errors import UserError
from prefixrft_cli.protocols import VerifyResult
from prefixrft_cli.records import Problem
from prefixrft_cli.train import relift
from prefixrft_cli.train.backend import single_process
from prefixrft_cli.train.loop import Stage, rollout_plan
from prefixrft_cli.train.records import StepRecord
from prefixrft_cli.train.rollouts import PromptItem, RolloutBatch, plan_rollouts
from prefixrft_cli.train.step import UpdateStats
from test_train import QUICK, run


def item(name: str, demos: list[list[int]]) -> PromptItem:
    return PromptItem(Problem(id=name, problem=name, answer="1"), [1, 2], demos)


def test_drpo_starts_all_n_rollouts_from_one_prefix_and_freezes_it():
    cfg = load_config(None, ["algo=drpo", "rollout.rollouts_per_prompt=4", "prefix.scheduler=uniform"])
    algorithm = get_algorithm("drpo")
    plan = rollout_plan(cfg, algorithm)
    assert (plan.hybrid_per_group, plan.shared_prefix) == (4, True)
    items = [item("a", [list(range(100, 120))]), item("b", [])]
    rollouts, _, _ = plan_rollouts(items, plan, 0, 10, torch.Generator().manual_seed(0), random.Random(0))
    first = rollouts[:4]
    assert all(r.hybrid for r in first) and len({tuple(r.response_ids) for r in first}) == 1
    assert len({r.prefix_fraction for r in first}) == 1                  # one L drawn for the prompt
    assert not any(r.hybrid for r in rollouts[4:])                        # no demonstration: all on-policy
    # the selection is fixed to "none" (no prefix token keeps its advantage), whatever selection.mode says
    assert algorithm.weighting(Selection("prefix", "top")).selection == FROZEN_PREFIX == Selection("prefix", "none")
    with pytest.raises(UserError, match="advantage.grouping=separate needs ordinary rollouts; algo drpo"):
        load_config(None, ["algo=drpo", "advantage.grouping=separate"])


def test_prefix_rft_draws_are_unchanged_by_the_shared_prefix_option():
    cfg = load_config(None, ["rollout.rollouts_per_prompt=4", "rollout.hybrid_rollouts_per_prompt=2",
                             "prefix.scheduler=uniform"])
    plan = rollout_plan(cfg, get_algorithm("prefix-rft"))
    items = [item("a", [list(range(100, 140))])]
    rollouts, _, _ = plan_rollouts(items, plan, 0, 10, torch.Generator().manual_seed(0), random.Random(0))
    assert [r.hybrid for r in rollouts] == [False, False, True, True]
    assert rollouts[2].prefix_fraction != rollouts[3].prefix_fraction   # each hybrid draws its own L
    assert not replace(plan).shared_prefix


def test_separate_released_grouping_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 1.0, 1.0],    # two hybrids (slots 2, 3)
                            [1.0, 1.0, 1.0, 1.0],    # all equal, one hybrid
                            [0.0, 1.0, 0.0, 1.0]])   # one hybrid
    hybrid = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 1]], dtype=torch.bool)
    adv = compute_advantages(rewards, hybrid, "dr-grpo", "separate-released")
    # row 0: ordinary mean 0.5 -> ±0.5; each hybrid its own subgroup of one -> raw 1; prefix 1 − 0.5
    # row 1: not zeroed: the hybrid keeps its raw 1, its prefix 1 − 1 = 0
    # row 2: ordinary mean 1/3; hybrid raw 1; prefix 1 − 1/3
    assert adv.response.flatten().tolist() == pytest.approx([0.5, -0.5, 1.0, 1.0, 0, 0, 0, 1.0,
                                                             -1 / 3, 2 / 3, -1 / 3, 1.0])
    assert adv.prefix.flatten().tolist() == pytest.approx([0.5, -0.5, 0.5, 0.5, 0, 0, 0, 0,
                                                           -1 / 3, 2 / 3, -1 / 3, 2 / 3])
    spec = compute_advantages(rewards, hybrid, "dr-grpo", "separate")  # the spec's reading differs on rows 0 and 1
    assert spec.response[0].tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0]) and spec.response[1].abs().sum() == 0
    lone = compute_advantages(torch.tensor([[1.0, 0.0]]), torch.tensor([[False, True]]), grouping="separate-released")
    assert lone.response.tolist() == [[1.0, 0.0]]                        # a lone ordinary rollout: baseline 0


def fake_batch(items: list[PromptItem], best: list[float]) -> RolloutBatch:
    from prefixrft_cli.train.rollouts import Rollout

    rollouts = [Rollout(it, [5], 0, 0.0, False, result=VerifyResult(score if g == 0 else 0.0, "x", None))
                for it, score in zip(items, best) for g in range(2)]
    return RolloutBatch(rollouts, len(items), 2)


def test_relift_buffers_unsolved_prompts_and_interleaves_one_sft_step(monkeypatch):
    items = [item("a", [[7, 8]]), item("b", [[9, 9]]), item("c", [])]
    calls = []
    monkeypatch.setattr(relift, "rl_step_batch",
                        lambda ctx, cfg, stage, its, step, log: (StepRecord(True, 0.0, 0.0),
                                                                 fake_batch(its, [0.0, 1.0, 0.0])))
    monkeypatch.setattr(relift, "sft_update", lambda model, opt, sched, prompts, demos, pad, cfg, backend:
                        calls.append(demos) or UpdateStats(loss=2.5))
    ctx = SimpleNamespace(rng=random.Random(0), model=None, policy=None, pad_id=0, backend=single_process(),
                          sampler=SimpleNamespace(sync_weights=lambda model: None))
    cfg = SimpleNamespace(train=SimpleNamespace(prompts_per_step=2, mini_batches=1))
    stage = Stage(get_algorithm("relift"), 3, None, None, None, None)
    # only "a" is unsolved and demonstrated ("b" solved, "c" has no demonstration): buffer 1 < 2, no SFT
    record = relift.relift_step(ctx, cfg, stage, items, 0, None)
    assert [i.problem.id for i in stage.hard_prompts] == ["a"] and calls == [] and record.sft_interleaved_prompts == 0
    record = relift.relift_step(ctx, cfg, stage, items, 1, None)       # "a" again: 2 buffered -> one SFT step
    assert calls == [[[7, 8], [7, 8]]] and stage.hard_prompts == []
    assert (record.sft_interleaved_loss, record.sft_interleaved_prompts) == (2.5, 2)


@pytest.mark.parametrize("algo", ["drpo", "relift"])
def test_variant_runs_end_to_end(tmp_path: Path, algo: str):
    assert run(["train", "--algo", algo, "--run-dir", str(tmp_path)] + QUICK
               + ["--set", "train.steps=3", "--set", "train.prompts_per_step=2"]) == 0
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["stage"] for m in metrics] == [algo] * 3
    if algo == "drpo":  # every rollout of a demonstrated prompt is hybrid, one L per prompt repeated n times
        assert metrics[0]["reward_on_policy"] is None and len(metrics[0]["prefix_fractions"]) == 2 * 8
        assert metrics[0]["prefix_tokens_kept"] == 0
    else:
        assert metrics[0]["prefix_fractions"] == [] and all("sft_interleaved_prompts" in m for m in metrics)
