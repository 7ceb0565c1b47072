"""The training loop, top to bottom: rollout → verify → advantages → loss → step → log → checkpoint.

`run_training(cfg)` loads the policy, the training problems and the held-out set,
scores the held-out set (avg@k at the evaluation temperature, and greedy), trains with
the configured algorithm, scores again, and leaves a run folder: config.yaml,
metrics.jsonl, rollouts.jsonl, checkpoints/final (a from_pretrained folder) and
summary.json. `sft-then-rft` is two stages in one call, the second starting from the
first's checkpoint.

Distributed (`distributed.backend`, train/backend.py): the same loop on every rank; every rank
draws the step's whole plan and keeps its share of the prompts, statistics are gathered or
summed over ranks, and only rank 0 writes the run folder, the live view and the sinks and
scores the held-out set. A step whose updates were all skipped (non-finite gradient) is
counted; `train.max_skipped_steps` of them in a row stop the run with one line, the weights
of the last good step saved as checkpoints/last-good.

The folder is locked (runlock, rank 0) once everything has loaded; between steps the run
session (resume.py) writes resumable checkpoints (checkpoint.py), answers SIGINT / SIGTERM
and the wall-time limit, decided on rank 0 for every rank; `resume=True` continues from the
newest checkpoint exactly (distributed.backend none only).

Test: tests/test_train.py (end to end on the toy model, through the CLI), tests/test_resume.py,
tests/test_distributed.py.
"""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefixrft_cli.algorithms import Algorithm, TokenWeighting, get_algorithm
from prefixrft_cli.config import Config, selection_of
from prefixrft_cli.errors import UserError
from prefixrft_cli.interrupts import StopRequests
from prefixrft_cli.jsonio import JsonlAppender, atomic_write_json
from prefixrft_cli.rollout.sampler import row_seed
from prefixrft_cli.runlock import FolderLock
from prefixrft_cli.train.backend import Backend, make_backend
from prefixrft_cli.train.records import RunSummary, StepRecord
from prefixrft_cli.train.resume import RunSession, open_session, resume_command
from prefixrft_cli.train.rollouts import (PromptItem, RolloutBatch, RolloutPlan, plan_rollouts, sample_continuations,
                                          score_rollouts)
from prefixrft_cli.train.setup import (EvalResult, TrainContext, evaluate, make_context, save_checkpoint,
                                      start_reporter, trim_heap)
from prefixrft_cli.train.step import demo_nll, rl_update, sft_update
from prefixrft_cli.train.view import LiveView


def run_training(cfg: Config, show: bool = True, resume: bool = False) -> RunSummary | None:
    """Train as `cfg` says (`resume`: continue the run in cfg.train.run_dir); returns the summary also
    written to summary.json (None on ranks other than 0)."""
    started = time.time()
    if resume and cfg.distributed.backend != "none":
        raise UserError(f"--resume {cfg.train.run_dir}: distributed.backend={cfg.distributed.backend} runs cannot be "
                        "resumed yet (only distributed.backend=none resumes exactly; docs/reliability.md)")
    backend = make_backend(cfg)
    try:
        return _run(cfg, backend, show and backend.is_main, started, resume)
    finally:
        backend.close()


def _run(cfg: Config, backend: Backend, show: bool, started: float, resume: bool) -> RunSummary | None:
    ctx = make_context(cfg, backend)   # inputs, model, engine: a failed start writes nothing
    cfg, main = ctx.cfg, backend.is_main
    stages = get_algorithm(cfg.algo).stage_plan(cfg)  # the one look-up of cfg.algo
    total = sum(steps for _, steps in stages)
    with _run_lock(ctx), StopRequests() as stop:
        session = open_session(ctx, stop, resume, started, total)
        start_reporter(ctx)
        stop.deferring, stop.on_immediate = False, f"stopped before training; rerun with: {resume_command(ctx.run_dir)}"
        before = session.before = session.before or (evaluate(ctx, "before", show) if main else None)
        backend.barrier()
        stop.deferring = True
        with _appender(ctx.run_dir / "metrics.jsonl", main) as metrics, \
                _appender(ctx.run_dir / "rollouts.jsonl", main) as rollout_log, LiveView(cfg, show) as view:
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
        if not main:
            return None
        sharded = backend.lockstep is not None  # rank 0 holds no full module: score the saved checkpoint
        after = evaluate(ctx, "after", show, policy=_load_checkpoint(checkpoint, backend) if sharded else None)
        summary = run_summary(ctx, session, before, after, checkpoint)
        atomic_write_json(ctx.run_dir / "summary.json", summary.to_json())
    return summary


@contextmanager
def _run_lock(ctx: TrainContext):
    """Rank 0 holds the run folder's lock (the other ranks write nothing); a refusal is raised on every rank."""
    lock, problem = FolderLock(ctx.run_dir), None
    if ctx.backend.is_main:
        try:
            lock.acquire()
        except UserError as err:
            problem = str(err)
    problem = ctx.backend.broadcast(problem)
    if problem:
        raise UserError(problem)
    try:
        yield
    finally:
        if ctx.backend.is_main:
            lock.release()


def run_summary(ctx: TrainContext, session: RunSession, before: EvalResult, after: EvalResult,
                checkpoint: Path) -> RunSummary:
    cfg, stopped, backend = ctx.cfg, session.stopped_by_time_limit, ctx.backend
    return RunSummary(
        algo=cfg.algo, domain=cfg.domain, model=cfg.model.name_or_path,
        accuracy_before=before.sampled, accuracy_after=after.sampled,
        greedy_accuracy_before=before.greedy, greedy_accuracy_after=after.greedy,
        eval_samples=cfg.eval.samples, eval_temperature=cfg.eval.temperature, eval_problems=before.problems,
        steps=session.steps_done if stopped else session.total_steps, steps_planned=session.total_steps,
        stopped_early_by_time_limit=stopped, wall_seconds=round(session.elapsed(), 1), checkpoint=str(checkpoint),
        run_dir=str(ctx.run_dir),
        resume_command=resume_command(ctx.run_dir) if stopped and session.resumable else None,
        backend=backend.name, world_size=backend.world_size, device=str(backend.device),
        precision=backend.precision.name)


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


def new_stage(ctx: TrainContext, cfg: Config, algorithm: Algorithm, steps: int) -> Stage:
    """A stage of `steps` steps of `algorithm`: its rollout plan, token weighting and a fresh optimizer."""
    optimizer, scheduler = ctx.prepare_stage(cfg)
    return Stage(algorithm, steps, rollout_plan(cfg, algorithm), algorithm.weighting(selection_of(cfg)),
                 optimizer, scheduler)


def train_stage(ctx: TrainContext, cfg: Config, algorithm: Algorithm, number: int, steps: int, offset: int,
                last: bool, session: RunSession, logs) -> bool:
    """Run stage `number` (`steps` steps of `algorithm`, from where a resume left it); False at the time limit.

    `offset` is the steps of the stages before; between steps the session checkpoints when due.
    """
    metrics, rollout_log, view = logs
    step_fn = algorithm.step_fn()
    stage = new_stage(ctx, cfg, algorithm, steps)
    optimizer, scheduler = stage.optimizer, stage.scheduler
    first = session.first_step(number, optimizer, scheduler, stage.hard_prompts)
    view.start_stage(algorithm.name, steps)
    skipped_in_a_row = 0
    for step in range(first, steps):
        if session.boundary(number, step, offset, optimizer, scheduler):
            return False
        items = ctx.next_prompts(cfg.train.prompts_per_step, with_demos=algorithm.rollouts == "none")
        with ctx.backend.precision.autocast():
            record = step_fn(ctx, cfg, stage, items, step, rollout_log)
        record.stage, record.step, record.lr = algorithm.name, step, scheduler.get_last_lr()[0]
        record.elapsed_seconds = round(session.elapsed(), 2)
        metrics.write(record.to_json())
        ctx.report(record)
        view.update(record)
        skipped_in_a_row = skipped_in_a_row + 1 if record.skipped_updates == record.updates else 0
        if cfg.train.max_skipped_steps and skipped_in_a_row >= cfg.train.max_skipped_steps:
            kept = save_checkpoint(ctx, "last-good")
            raise UserError(f"training stopped at {algorithm.name} step {step}: {skipped_in_a_row} steps in a row "
                            f"had a non-finite loss or gradient and were skipped; the last good weights are in {kept} "
                            "(try a lower optim.lr, or model.dtype=bfloat16 instead of float16)")
    if last:
        session.boundary(number, steps, offset, optimizer, scheduler, end=True)
    return True


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
    """One RL step; returns its metrics record (over all ranks)."""
    return rl_step_batch(ctx, cfg, stage, items, step, rollout_log)[0]


def rl_step_batch(ctx: TrainContext, cfg: Config, stage: Stage, items: list[PromptItem], step: int,
                  rollout_log) -> tuple[StepRecord, RolloutBatch]:
    """One RL step; returns its metrics record (over all ranks) and this rank's scored rollouts (relift)."""
    plan, seconds = stage.plan, {}
    tick = time.perf_counter()
    # the schedule runs over steps 0 .. steps-1, so its last step draws from [low_end, high]
    rollouts, contexts, low_t = plan_rollouts(items, plan, step, stage.steps - 1, ctx.generator, ctx.rng)  # whole step
    seed, group = ctx.next_seed(), plan.group_size
    mine = [b * group + j for b in ctx.backend.local_groups(len(items), cfg.train.mini_batches) for j in range(group)]
    rollouts, contexts = [rollouts[k] for k in mine], [contexts[k] for k in mine]
    sample_continuations(rollouts, contexts, ctx.sampler, plan, cfg.rollout.temperature, cfg.rollout.top_p,
                         seeds=[row_seed(seed, k) for k in mine])
    seconds["rollout"], tick = time.perf_counter() - tick, time.perf_counter()
    score_rollouts(rollouts, ctx.tokenizer, ctx.verifier)
    seconds["verify"], tick = time.perf_counter() - tick, time.perf_counter()
    batch = RolloutBatch(rollouts, len(mine) // group, group, low_t)
    every = cfg.train.diagnostics_every
    diagnostics = every > 0 and step % every == 0   # sft_loss_demos and entropy_on_policy (null between)
    sft_loss = float("nan")
    if diagnostics:
        with_demo = [r.item for r in rollouts[::group] if r.item.demo_ids]
        sft_loss = demo_nll(ctx.model, [i.prompt_ids for i in with_demo], [i.demo_ids[0] for i in with_demo],
                            ctx.pad_id, cfg.train.micro_batch_responses, ctx.backend)
    stats = rl_update(ctx.model, ctx.ref_model, stage.optimizer, stage.scheduler, batch, cfg, ctx.pad_id,
                      ctx.generator, stage.weighting, ctx.backend, diagnostics=diagnostics)
    trim_heap()   # the update's freed activations go back to the system
    ctx.sampler.sync_weights(ctx.policy)
    seconds["update"] = time.perf_counter() - tick
    if step % cfg.train.log_rollouts_every == 0:
        log_rollouts(rollout_log, batch, step, random.Random(row_seed(cfg.seed, step)))
    facts = [fact for share in ctx.backend.all_gather(rollout_facts(batch)) for fact in share]
    return rl_record(facts, low_t, stats, sft_loss, seconds), batch


def rollout_facts(batch: RolloutBatch) -> list[tuple]:
    """What the metrics need of each rollout: (reward, hybrid, length, prefix fraction or None, truncated, reason)."""
    return [(r.result.score, r.hybrid, len(r.response_ids), r.prefix_fraction if r.hybrid and not r.whole_demo
             else None, r.truncated, r.result.reason) for r in batch.rollouts]


def rl_record(facts: list[tuple], low_t: float, stats, sft_loss: float, seconds: dict) -> StepRecord:
    """The metrics record of an RL step from every rollout's facts (all ranks) and the update's statistics."""
    rewards = [f[0] for f in facts]
    hybrid = [f[0] for f in facts if f[1]]
    on_policy = [f[0] for f in facts if not f[1]]
    fractions = [f[3] for f in facts if f[3] is not None]
    reasons: dict[str, int] = {}
    for f in facts:
        reasons[f[5]] = reasons.get(f[5], 0) + 1
    return StepRecord(
        has_rollouts=True, loss=_finite(stats.loss), grad_norm=_finite(stats.grad_norm),
        updates=stats.updates, skipped_updates=stats.skipped_updates,
        phase_seconds={k: round(v, 3) for k, v in seconds.items()}, sft_loss_demos=_finite(sft_loss),
        reward_mean=sum(rewards) / len(rewards),
        reward_hybrid_mean=sum(hybrid) / len(hybrid) if hybrid else None,
        reward_on_policy_mean=sum(on_policy) / len(on_policy) if on_policy else None,
        prefix_len_low=round(low_t, 4) if fractions else None,
        prefix_fraction_mean=sum(fractions) / len(fractions) if fractions else None,
        prefix_fractions=[round(f, 4) for f in fractions],
        prefix_tokens_kept=stats.prefix_tokens_kept, prefix_tokens_total=stats.prefix_tokens_total,
        entropy_kept_nats=_finite(stats.entropy_kept), entropy_dropped_nats=_finite(stats.entropy_dropped),
        entropy_on_policy_nats=_finite(stats.entropy_response), kl=_finite(stats.kl),
        response_length_tokens=sum(f[2] for f in facts) / len(facts),
        truncation_rate=sum(f[4] for f in facts) / len(facts),
        clip_fraction=stats.clip_fraction, reasons=reasons)


def sft_step(ctx: TrainContext, cfg: Config, stage: Stage, items: list[PromptItem], step: int,
             rollout_log) -> StepRecord:
    """One SFT step on full demonstrations (no rollouts); returns its metrics record."""
    tick = time.perf_counter()
    demos = [ctx.rng.choice(item.demo_ids) for item in items]       # drawn for the whole step on every rank
    mine = ctx.backend.local_groups(len(items), 1)
    stats = sft_update(ctx.model, stage.optimizer, stage.scheduler, [items[k].prompt_ids for k in mine],
                       [demos[k] for k in mine], ctx.pad_id, cfg, ctx.backend)
    ctx.sampler.sync_weights(ctx.policy)
    return StepRecord(has_rollouts=False, loss=_finite(stats.loss), grad_norm=_finite(stats.grad_norm),
                      updates=1, skipped_updates=stats.skipped_updates, sft_loss_demos=_finite(stats.loss),
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


class _Discard:
    """The metrics and rollout logs of ranks other than 0: they write nothing."""

    def __enter__(self) -> _Discard:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def write(self, record: dict) -> None:
        pass


def _appender(path, main: bool):
    return JsonlAppender(path) if main else _Discard()


def _load_checkpoint(folder, backend: Backend):
    from prefixrft_cli.models import load_policy

    return load_policy(str(folder))[0].to(backend.device).eval()

