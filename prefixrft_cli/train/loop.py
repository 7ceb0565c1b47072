"""The training loop, top to bottom: rollout → verify → advantages → loss → step → log → checkpoint.

`run_training(cfg)` loads the policy, the training problems and the held-out set,
scores the held-out set (avg@k at the evaluation temperature, and greedy), trains with
the configured algorithm, scores again, and leaves a run folder: config.yaml,
metrics.jsonl, rollouts.jsonl, checkpoints/final (a from_pretrained folder) and
summary.json. `sft-then-rft` is two stages in one call, the second starting from the
first's checkpoint.

The folder is locked (runlock) once everything has loaded; between steps the run session
(resume.py) writes resumable checkpoints (checkpoint.py), answers SIGINT / SIGTERM and
the wall-time limit; `resume=True` continues from the newest checkpoint exactly.

Leaves out (for now): multi-process training.
Test: tests/test_train.py (end to end on the toy model, through the CLI), tests/test_resume.py.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prefixrft_cli.algorithms import Algorithm, TokenWeighting, get_algorithm
from prefixrft_cli.config import Config, selection_of
from prefixrft_cli.interrupts import StopRequests
from prefixrft_cli.jsonio import JsonlAppender, atomic_write_json
from prefixrft_cli.runlock import FolderLock
from prefixrft_cli.train.records import RunSummary, StepRecord
from prefixrft_cli.train.resume import RunSession, open_session, resume_command
from prefixrft_cli.train.rollouts import (PromptItem, RolloutBatch, RolloutPlan, plan_rollouts, sample_continuations,
                                          score_rollouts)
from prefixrft_cli.train.setup import EvalResult, TrainContext, evaluate, make_context, save_checkpoint, start_reporter
from prefixrft_cli.train.step import demo_nll, rl_update, sft_update
from prefixrft_cli.train.view import LiveView


def run_training(cfg: Config, show: bool = True, resume: bool = False) -> RunSummary:
    """Train as `cfg` says (`resume`: continue the run in cfg.train.run_dir); returns the summary also written."""
    started = time.time()
    ctx = make_context(cfg)   # inputs, model, engine: a failed start writes nothing
    cfg = ctx.cfg
    stages = get_algorithm(cfg.algo).stage_plan(cfg)  # the one look-up of cfg.algo
    total = sum(steps for _, steps in stages)
    with FolderLock(ctx.run_dir).acquire(), StopRequests() as stop:
        session = open_session(ctx, stop, resume, started, total)
        start_reporter(ctx)
        stop.deferring, stop.on_immediate = False, f"stopped before training; rerun with: {resume_command(ctx.run_dir)}"
        before = session.before = session.before or evaluate(ctx, "before", show)
        stop.deferring = True
        with JsonlAppender(ctx.run_dir / "metrics.jsonl") as metrics, \
                JsonlAppender(ctx.run_dir / "rollouts.jsonl") as rollout_log, LiveView(cfg, show) as view:
            offset = 0
            for number, (algorithm, steps) in enumerate(stages):
                last = number == len(stages) - 1
                if not session.is_past(number):   # (a resume into a later stage skips this one)
                    if not train_stage(ctx, cfg, algorithm, number, steps, offset, last, session,
                                       (metrics, rollout_log, view)):
                        break   # the wall-time limit
                    if not last:
                        save_checkpoint(ctx, f"{algorithm.name}-stage")
                offset += steps
        stop.deferring, stop.on_immediate = False, f"stopped; resume with: {resume_command(ctx.run_dir)}"
        checkpoint = save_checkpoint(ctx, "final")
        summary = run_summary(ctx, session, before, evaluate(ctx, "after", show), checkpoint)
        atomic_write_json(ctx.run_dir / "summary.json", summary.to_json())
    return summary


def run_summary(ctx: TrainContext, session: RunSession, before: EvalResult, after: EvalResult,
                checkpoint: Path) -> RunSummary:
    cfg, stopped = ctx.cfg, session.stopped_by_time_limit
    return RunSummary(
        algo=cfg.algo, domain=cfg.domain, model=cfg.model.name_or_path,
        accuracy_before=before.sampled, accuracy_after=after.sampled,
        greedy_accuracy_before=before.greedy, greedy_accuracy_after=after.greedy,
        eval_samples=cfg.eval.samples, eval_temperature=cfg.eval.temperature, eval_problems=before.problems,
        steps=session.last_saved if stopped else session.total_steps, steps_planned=session.total_steps,
        stopped_early_by_time_limit=stopped, wall_seconds=round(session.elapsed(), 1), checkpoint=str(checkpoint),
        run_dir=str(ctx.run_dir), resume_command=resume_command(ctx.run_dir) if stopped else None)


@dataclass
class Stage:
    """One stage of a run: its algorithm and what follows from it, chosen once."""

    algorithm: Algorithm
    steps: int
    plan: RolloutPlan
    weighting: TokenWeighting
    optimizer: Any
    scheduler: Any


def train_stage(ctx: TrainContext, cfg: Config, algorithm: Algorithm, number: int, steps: int, offset: int,
                last: bool, session: RunSession, logs) -> bool:
    """Run stage `number` (`steps` steps of `algorithm`, from where a resume left it); False at the time limit.

    `offset` is the steps of the stages before; between steps the session checkpoints when due.
    """
    metrics, rollout_log, view = logs
    step_fn = algorithm.step_fn()
    optimizer, scheduler = ctx.new_optimizer(cfg)
    stage = Stage(algorithm, steps, rollout_plan(cfg, algorithm), algorithm.weighting(selection_of(cfg)),
                  optimizer, scheduler)
    first = session.first_step(number, optimizer, scheduler)
    view.start_stage(algorithm.name, steps)
    for step in range(first, steps):
        if session.boundary(number, step, offset, optimizer, scheduler):
            return False
        items = ctx.next_prompts(cfg.train.prompts_per_step, with_demos=algorithm.rollouts == "none")
        record = step_fn(ctx, cfg, stage, items, step, rollout_log)
        record.stage, record.step, record.lr = algorithm.name, step, scheduler.get_last_lr()[0]
        record.elapsed_seconds = round(session.elapsed(), 2)
        metrics.write(record.to_json())
        ctx.report(record)
        view.update(record)
    if last:
        session.boundary(number, steps, offset, optimizer, scheduler, end=True)
    return True


def rollout_plan(cfg: Config, algorithm: Algorithm) -> RolloutPlan:
    r, p = cfg.rollout, cfg.prefix
    return RolloutPlan(group_size=r.rollouts_per_prompt,
                       hybrid_per_group=r.hybrid_rollouts_per_prompt if algorithm.rollouts == "hybrid" else 0,
                       whole_demo_per_group=1 if algorithm.rollouts == "whole-demo" else 0,
                       max_response_tokens=r.max_response_tokens, scheduler=p.scheduler,
                       prefix_len_high=p.prefix_len_high, prefix_len_low_end=p.prefix_len_low_end,
                       prefix_len_fixed=p.prefix_len_fixed)


def rl_step(ctx: TrainContext, cfg: Config, stage: Stage, items: list[PromptItem], step: int,
            rollout_log) -> StepRecord:
    """One RL step; returns its metrics record."""
    plan, seconds = stage.plan, {}
    tick = time.perf_counter()
    # the schedule runs over steps 0 .. steps-1, so its last step draws from [low_end, high]
    rollouts, contexts, low_t = plan_rollouts(items, plan, step, stage.steps - 1, ctx.generator, ctx.rng)
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
    return rl_record(batch, stats, sft_loss, seconds)


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

