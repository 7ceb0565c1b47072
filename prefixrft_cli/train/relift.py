"""ReLIFT-style interleaving (Ma et al., 2025): RL, with SFT on the questions RL cannot solve.

Each step is an ordinary on-policy RL step (loop.rl_step_batch). Every prompt of the step
that has a demonstration and none of whose n rollouts earned full reward is one of the
"hardest questions": it joins the stage's buffer. When the buffer holds a step's worth of
prompts (train.prompts_per_step), the oldest of them get one SFT step on their
demonstrations, with the same optimizer, right after the RL update.

Departs from ReLIFT: its schedule and its fresh high-quality solutions for the hard
questions are not reproduced; the training set's own demonstrations are used.
Test: tests/test_variants.py.
"""

from __future__ import annotations

from prefixrft_cli.config import Config
from prefixrft_cli.train.loop import Stage, rl_step_batch
from prefixrft_cli.train.records import StepRecord
from prefixrft_cli.train.rollouts import PromptItem, RolloutBatch
from prefixrft_cli.train.setup import TrainContext
from prefixrft_cli.train.step import sft_update


def unsolved_prompts(batch: RolloutBatch, items: list[PromptItem]) -> list[PromptItem]:
    """The demonstrated prompts of a step none of whose rollouts earned full reward."""
    best = batch.rewards().amax(dim=1)  # [B]
    return [item for item, score in zip(items, best.tolist()) if score < 1.0 and item.demo_ids]


def relift_step(ctx: TrainContext, cfg: Config, stage: Stage, items: list[PromptItem], step: int,
                rollout_log) -> StepRecord:
    """One RL step, then an SFT step on the buffered hardest questions once there are a step's worth."""
    record, batch = rl_step_batch(ctx, cfg, stage, items, step, rollout_log)
    stage.hard_prompts.extend(unsolved_prompts(batch, items))
    count = cfg.train.prompts_per_step
    if len(stage.hard_prompts) >= count:
        chosen, stage.hard_prompts[:] = stage.hard_prompts[:count], stage.hard_prompts[count:]
        demos = [ctx.rng.choice(item.demo_ids) for item in chosen]
        stats = sft_update(ctx.model, stage.optimizer, stage.scheduler, [i.prompt_ids for i in chosen], demos,
                           ctx.pad_id, cfg)
        ctx.sampler.sync_weights(ctx.model)
        record.sft_interleaved_loss, record.sft_interleaved_prompts = stats.loss, len(chosen)
    return record

