"""ReLIFT-style interleaving (Ma et al., 2025): RL, with SFT on the questions RL cannot solve.

Each step is an ordinary on-policy RL step (loop.rl_step_batch). Every prompt of the step
that has a demonstration and none of whose n rollouts earned full reward is one of the
"hardest questions": it joins the stage's buffer. When the buffer holds a step's worth of
prompts (train.prompts_per_step), the oldest of them get one SFT step on their
demonstrations, with the same optimizer, right after the RL update. Under several processes
each rank scores its share of the prompts; the unsolved ones are gathered, so every rank holds
the same buffer and takes the SFT step together (each on its share, as `sft_step` does).

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


def unsolved_prompts(batch: RolloutBatch, local: list[int], items: list[PromptItem]) -> list[int]:
    """Indices into `items` of this rank's demonstrated prompts none of whose rollouts earned full reward.

    `local[b]` is the global index of the batch's group b (the backend's local_groups)."""
    best = batch.rewards().amax(dim=1)  # [B]
    return [k for k, score in zip(local, best.tolist()) if score < 1.0 and items[k].demo_ids]


def relift_step(ctx: TrainContext, cfg: Config, stage: Stage, items: list[PromptItem], step: int,
                rollout_log) -> StepRecord:
    """One RL step, then an SFT step on the buffered hardest questions once there are a step's worth."""
    record, batch = rl_step_batch(ctx, cfg, stage, items, step, rollout_log)
    local = ctx.backend.local_groups(len(items), cfg.train.mini_batches)
    unsolved = sorted(k for share in ctx.backend.all_gather(unsolved_prompts(batch, local, items)) for k in share)
    stage.hard_prompts.extend(items[k] for k in unsolved)
    count = cfg.train.prompts_per_step
    if len(stage.hard_prompts) >= count:
        chosen, stage.hard_prompts[:] = stage.hard_prompts[:count], stage.hard_prompts[count:]
        demos = [ctx.rng.choice(item.demo_ids) for item in chosen]  # drawn for the whole step on every rank
        mine = ctx.backend.local_groups(len(chosen), 1)
        stats = sft_update(ctx.model, stage.optimizer, stage.scheduler, [chosen[k].prompt_ids for k in mine],
                           [demos[k] for k in mine], ctx.pad_id, cfg, ctx.backend)
        ctx.sampler.sync_weights(ctx.policy)
        record.sft_interleaved_loss, record.sft_interleaved_prompts = stats.loss, len(chosen)
    return record
