"""The training loop, top to bottom: rollout → verify → advantages → loss → step → log → checkpoint.

`run_training(cfg)` loads the policy, the training problems and the held-out set,
scores the held-out set (avg@k at the evaluation temperature, and greedy), trains with
the configured algorithm, scores again, and leaves a run folder: config.yaml,
metrics.jsonl, rollouts.jsonl, checkpoints/final (a from_pretrained folder) and
summary.json. `sft-then-rft` is two stages in one call, the second starting from the
first's checkpoint.

Leaves out (for now): exact resume of optimizer/RNG state, multi-process training.
Test: tests/test_train.py (end to end on the toy model, through the CLI).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from prefixrft_cli.algorithms import Algorithm, TokenWeighting, get_algorithm
from prefixrft_cli.config import Config, dump_yaml, selection_of
from prefixrft_cli.jsonio import JsonlAppender, atomic_write_json, atomic_write_text
from prefixrft_cli.train.rollouts import (PromptItem, RolloutBatch, RolloutPlan, plan_rollouts, sample_continuations,
                                          score_rollouts)
from prefixrft_cli.train.records import RunSummary, StepRecord
from prefixrft_cli.train.setup import TrainContext, evaluate, make_context, save_checkpoint
from prefixrft_cli.train.step import demo_nll, rl_update, sft_update
from prefixrft_cli.train.view import LiveView


def run_training(cfg: Config, show: bool = True) -> RunSummary:
    """Train as `cfg` says; returns the summary also written to summary.json."""
    started = time.time()
    ctx = make_context(cfg)
    atomic_write_text(ctx.run_dir / "config.yaml", dump_yaml(cfg))
    before = evaluate(ctx, "before", show)
    stages = get_algorithm(cfg.algo).stage_plan(cfg)  # the one look-up of cfg.algo
    steps_done, stopped_early = 0, False
    with JsonlAppender(ctx.run_dir / "metrics.jsonl") as metrics, \
            JsonlAppender(ctx.run_dir / "rollouts.jsonl") as rollout_log, LiveView(cfg, show) as view:
        for number, (algorithm, steps) in enumerate(stages):
            done, stopped_early = train_stage(ctx, cfg, algorithm, steps, started, metrics, rollout_log, view)
            steps_done += done
            if number < len(stages) - 1:
                save_checkpoint(ctx, f"{algorithm.name}-stage")
    checkpoint = save_checkpoint(ctx, "final")
    after = evaluate(ctx, "after", show)
    summary = RunSummary(
        algo=cfg.algo, domain=cfg.domain, model=cfg.model.name_or_path,
        accuracy_before=before.sampled, accuracy_after=after.sampled,
        greedy_accuracy_before=before.greedy, greedy_accuracy_after=after.greedy,
        eval_samples=cfg.eval.samples, eval_temperature=cfg.eval.temperature,
        eval_problems=before.problems, steps=steps_done, stopped_early_by_time_limit=stopped_early,
        wall_seconds=round(time.time() - started, 1), checkpoint=str(checkpoint), run_dir=str(ctx.run_dir))
    atomic_write_json(ctx.run_dir / "summary.json", summary.to_json())
    return summary


@dataclass
class Stage:
    """One stage of a run: its algorithm and what follows from it, chosen once."""

    algorithm: Algorithm
    steps: int
    plan: RolloutPlan
    weighting: TokenWeighting
    optimizer: Any
    scheduler: Any
    hard_prompts: list[PromptItem] = field(default_factory=list)  # relift: unsolved prompts awaiting an SFT step


def train_stage(ctx: TrainContext, cfg: Config, algorithm: Algorithm, steps: int, started: float, metrics,
                rollout_log, view) -> tuple[int, bool]:
    """Run `steps` steps of `algorithm`; returns (steps done, whether the wall-time limit stopped it)."""
    step_fn = algorithm.step_fn()
    optimizer, scheduler = ctx.new_optimizer(cfg)
    stage = Stage(algorithm, steps, rollout_plan(cfg, algorithm), algorithm.weighting(selection_of(cfg)),
                  optimizer, scheduler)
    view.start_stage(algorithm.name, steps)
    limit = cfg.train.max_wall_minutes * 60
    for step in range(steps):
        if limit and time.time() - started > limit:
            return step, True
        items = ctx.next_prompts(cfg.train.prompts_per_step, with_demos=algorithm.rollouts == "none")
        record = step_fn(ctx, cfg, stage, items, step, rollout_log)
        record.stage, record.step, record.lr = algorithm.name, step, scheduler.get_last_lr()[0]
        record.elapsed_seconds = round(time.time() - started, 2)
        metrics.write(record.to_json())
        ctx.report(record)
        view.update(record)
        every = cfg.train.checkpoint_every
        if every and (step + 1) % every == 0 and step + 1 < steps:
            save_checkpoint(ctx, f"{algorithm.name}-step-{step + 1}")
    return steps, False


def rollout_plan(cfg: Config, algorithm: Algorithm) -> RolloutPlan:
    r, p = cfg.rollout, cfg.prefix
    hybrid = {"hybrid": r.hybrid_rollouts_per_prompt, "shared-prefix": r.rollouts_per_prompt}
    return RolloutPlan(group_size=r.rollouts_per_prompt, hybrid_per_group=hybrid.get(algorithm.rollouts, 0),
                       whole_demo_per_group=1 if algorithm.rollouts == "whole-demo" else 0,
                       max_response_tokens=r.max_response_tokens, scheduler=p.scheduler,
                       prefix_len_high=p.prefix_len_high, prefix_len_low_end=p.prefix_len_low_end,
                       prefix_len_fixed=p.prefix_len_fixed, shared_prefix=algorithm.rollouts == "shared-prefix")


def rl_step(ctx: TrainContext, cfg: Config, stage: Stage, items: list[PromptItem], step: int,
            rollout_log) -> StepRecord:
    """One RL step; returns its metrics record."""
    return rl_step_batch(ctx, cfg, stage, items, step, rollout_log)[0]


def rl_step_batch(ctx: TrainContext, cfg: Config, stage: Stage, items: list[PromptItem], step: int,
                  rollout_log) -> tuple[StepRecord, RolloutBatch]:
    """One RL step; returns its metrics record and its scored rollouts (for steps built on it, e.g. relift)."""
    plan, seconds = stage.plan, {}
    tick = time.perf_counter()
    rollouts, contexts, low_t = plan_rollouts(items, plan, step, stage.steps, ctx.generator, ctx.rng)
    sample_continuations(rollouts, contexts, ctx.sampler, plan, cfg.rollout.temperature, cfg.rollout.top_p,
                         seed=ctx.next_seed())
    seconds["rollout"], tick = time.perf_counter() - tick, time.perf_counter()
    score_rollouts(rollouts, ctx.tokenizer, ctx.verifier)
    seconds["verify"], tick = time.perf_counter() - tick, time.perf_counter()
    batch = RolloutBatch(rollouts, len(items), plan.group_size, low_t)
    with_demo = [item for item in items if item.demo_ids]
    sft_loss = demo_nll(ctx.model, [i.prompt_ids for i in with_demo], [i.demo_ids[0] for i in with_demo],
                        ctx.pad_id, cfg.train.micro_batch_responses)
    stats = rl_update(ctx.model, ctx.ref_model, stage.optimizer, stage.scheduler, batch, cfg, ctx.pad_id,
                      ctx.generator, stage.weighting)
    ctx.sampler.sync_weights(ctx.model)
    seconds["update"] = time.perf_counter() - tick
    if step % cfg.train.log_rollouts_every == 0:
        log_rollouts(rollout_log, batch, step, ctx.rng)
    return rl_record(batch, stats, sft_loss, seconds), batch


def rl_record(batch: RolloutBatch, stats, sft_loss: float, seconds: dict) -> StepRecord:
    rewards, hybrid = batch.rewards(), batch.hybrid_mask()          # [B, G] each
    lengths = torch.tensor([len(r.response_ids) for r in batch.rollouts], dtype=torch.float)
    fractions = [r.prefix_fraction for r in batch.rollouts if r.hybrid and not r.whole_demo]
    reasons: dict[str, int] = {}
    for r in batch.rollouts:
        reasons[r.result.reason] = reasons.get(r.result.reason, 0) + 1
    return StepRecord(
        has_rollouts=True, loss=stats.loss, grad_norm=stats.grad_norm,
        phase_seconds={k: round(v, 3) for k, v in seconds.items()}, sft_loss_demos=_finite(sft_loss),
        reward_mean=float(rewards.mean()),
        reward_hybrid_mean=float(rewards[hybrid].mean()) if hybrid.any() else None,
        reward_on_policy_mean=float(rewards[~hybrid].mean()) if (~hybrid).any() else None,
        prefix_len_low=round(batch.prefix_len_low, 4) if fractions else None,
        prefix_fraction_mean=sum(fractions) / len(fractions) if fractions else None,
        prefix_fractions=[round(f, 4) for f in fractions],
        prefix_tokens_kept=stats.prefix_tokens_kept, prefix_tokens_total=stats.prefix_tokens_total,
        entropy_kept_nats=_finite(stats.entropy_kept), entropy_dropped_nats=_finite(stats.entropy_dropped),
        entropy_on_policy_nats=_finite(stats.entropy_response), kl=stats.kl,
        response_length_tokens=float(lengths.mean()),
        truncation_rate=sum(r.truncated for r in batch.rollouts) / len(batch.rollouts),
        clip_fraction=stats.clip_fraction, reasons=reasons)


def sft_step(ctx: TrainContext, cfg: Config, stage: Stage, items: list[PromptItem], step: int,
             rollout_log) -> StepRecord:
    """One SFT step on full demonstrations (no rollouts); returns its metrics record."""
    tick = time.perf_counter()
    demos = [ctx.rng.choice(item.demo_ids) for item in items]
    stats = sft_update(ctx.model, stage.optimizer, stage.scheduler, [i.prompt_ids for i in items], demos, ctx.pad_id,
                       cfg)
    ctx.sampler.sync_weights(ctx.model)
    return StepRecord(has_rollouts=False, loss=stats.loss, grad_norm=stats.grad_norm, sft_loss_demos=stats.loss,
                      phase_seconds={"update": round(time.perf_counter() - tick, 3)})


def log_rollouts(log, batch: RolloutBatch, step: int, rng: random.Random, per_step: int = 4) -> None:
    """A few rollouts of this step, always including a hybrid one when there is one."""
    hybrid = [r for r in batch.rollouts if r.hybrid]
    chosen = (hybrid[:1] + rng.sample(batch.rollouts, min(per_step, len(batch.rollouts))))[:per_step]
    for r in chosen:
        log.write({"step": step, "problem_id": r.item.problem.id, "text": r.text, "reward": r.result.score,
                   "reason": r.result.reason, "hybrid": r.hybrid, "prefix_tokens": r.prefix_len,
                   "prefix_fraction": round(r.prefix_fraction, 4), "response_tokens": len(r.response_ids),
                   "truncated": r.truncated})


def _finite(value: float) -> float | None:
    return None if value != value else value

