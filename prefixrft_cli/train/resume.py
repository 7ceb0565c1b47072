"""The run folder's life across processes: a fresh start or a resume, and when to checkpoint.

`open_session` runs once the policy, data and engine have loaded and the folder lock is
held: a fresh run refuses a folder that already holds one and writes config.yaml; a
resume (`prefixrft train --resume RUN_DIR`) loads the newest checkpoint into the live
policy, optimizer, RNGs and data order, and cuts metrics.jsonl and rollouts.jsonl back
to their length at that step, so the steps it redoes are written once, as before.

`RunSession.boundary` is called between steps. It saves a checkpoint every
`train.checkpoint_every` steps (step 0 included: it holds the before-training accuracy)
and every `train.checkpoint_every_minutes`; on SIGINT / SIGTERM it saves and raises
`Stopped`; past `train.max_wall_minutes` (counted per process) it saves and tells the
loop to stop. `resume_config` is the run's own config.yaml with only harmless overrides.

Test: tests/test_resume.py.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from prefixrft_cli.config import Config, dump_yaml, load_config, to_dict
from prefixrft_cli.errors import UserError
from prefixrft_cli.interrupts import StopRequests, Stopped
from prefixrft_cli.jsonio import atomic_write_text, read_json
from prefixrft_cli.train.checkpoint import CheckpointStore, LocalBackend, Position, restore_rng, rng_state
from prefixrft_cli.train.setup import EvalResult, TrainContext

# Keys a resume may change: they decide how the run is kept and watched, not what it computes.
HARMLESS = ("train.max_wall_minutes", "train.checkpoint_every", "train.checkpoint_every_minutes",
            "train.keep_checkpoints", "train.report_to", "train.run_dir", "rollout.vllm_gpu_memory_utilization")
LOGS = ("metrics.jsonl", "rollouts.jsonl")


def resume_command(run_dir: Path) -> str:
    return f"prefixrft train --resume {run_dir}"


def resume_config(run_dir: Path, overrides: list[str], options: list[str] | None = None) -> Config:
    """The run's config.yaml with `options` (named flags) and `overrides` (--set) applied, refusing any
    that would change the run."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise UserError(f"--resume {run_dir}: not a run folder (no config.yaml)")
    saved, cfg = load_config(path), load_config(path, overrides, options=options)
    old, new = _flat(to_dict(saved)), _flat(to_dict(cfg))
    for key, value in new.items():
        if value != old[key] and key not in HARMLESS:
            raise UserError(f"--resume {run_dir}: {key}={value!r} would change the run ({path} has {old[key]!r}); "
                            f"a resume may change only {', '.join(HARMLESS)}")
    cfg.train.run_dir = str(run_dir)
    return cfg


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


@dataclass
class RunSession:
    """One process's part of a run: where it starts, and the checkpoints it leaves."""

    ctx: TrainContext
    store: CheckpointStore
    stop: StopRequests
    started: float                          # time.time() when this process began
    total_steps: int                        # over all stages
    position: Position | None = None        # where a resume starts; None for a fresh run
    before: EvalResult | None = None        # the held-out accuracy before training (kept in every checkpoint)
    optimizer_state: dict | None = None
    hard_prompts: list[int] = field(default_factory=list)  # a resume's relift buffer, as indices into ctx.items
    buffer: list | None = None              # the running stage's relift buffer (Stage.hard_prompts)
    wall_before: float = 0.0                # wall seconds of the run's earlier processes
    resumable: bool = True                  # distributed.backend none: checkpoints that resume exactly
    stopped_by_time_limit: bool = False
    steps_done: int = 0                     # over all stages, as of the last boundary
    last_saved: int = -1
    last_save_time: float = field(default_factory=time.time)

    def elapsed(self) -> float:
        return self.wall_before + time.time() - self.started

    def is_past(self, stage: int) -> bool:
        """Whether a resume starts after `stage`."""
        return self.position is not None and stage < self.position.stage

    def first_step(self, stage: int, optimizer, scheduler, buffer: list) -> int:
        """The first step to run in `stage`, restoring its optimizer and relift buffer when a resume starts inside it."""
        self.buffer, p = buffer, self.position
        if p is None or stage != p.stage:
            return 0
        self.store.backend.load_optimizer_state(optimizer, scheduler, self.optimizer_state)
        buffer[:] = [self.ctx.items[k] for k in self.hard_prompts]
        return p.stage_step

    def boundary(self, stage: int, stage_step: int, offset: int, optimizer, scheduler, end: bool = False) -> bool:
        """Between steps (`end`: after the last one): checkpoint when due; True when the wall-time limit is hit."""
        cfg, global_step = self.ctx.cfg.train, offset + stage_step
        self.steps_done = global_step
        limit = cfg.max_wall_minutes * 60
        # rank 0's signal and clock decide, so that every rank stops at the same step
        requested, past_limit = self.ctx.backend.broadcast(
            (self.stop.requested, bool(limit and not end and time.time() - self.started > limit)))
        position = Position(stage, stage_step, global_step, dataclasses.asdict(self.before) if self.before else {},
                            *self._log_sizes(), round(self.elapsed(), 1))
        if requested:
            self.stop.requested = requested
            self.save(position, optimizer, scheduler)
            how = (f"with a checkpoint; resume with: {resume_command(self.ctx.run_dir)}" if self.resumable
                   else "(a distributed run leaves no resumable checkpoint)")
            raise Stopped(f"{self.stop.name}: stopped at step {global_step}/{self.total_steps} {how}",
                          self.stop.exit_code)
        if past_limit:
            self.save(position, optimizer, scheduler)
            self.stopped_by_time_limit = True
            return True
        every, minutes = cfg.checkpoint_every, cfg.checkpoint_every_minutes
        due = end or (every and global_step % every == 0) or (minutes and time.time() - self.last_save_time >= minutes * 60)
        if due:
            self.save(position, optimizer, scheduler)
        return False

    def save(self, position: Position, optimizer, scheduler) -> None:
        if position.global_step == self.last_saved or not self.resumable:
            return
        ctx = self.ctx
        index = {id(item): k for k, item in enumerate(ctx.items)}
        hard = [index[id(item)] for item in self.buffer or []]
        self.store.save(position, optimizer, scheduler, {"rng": rng_state(ctx.generator, ctx.rng),
                                                         "data": ctx.data_state(), "hard_prompts": hard})
        self.last_saved, self.last_save_time = position.global_step, time.time()

    def _log_sizes(self) -> tuple[int, int]:
        return tuple(os.path.getsize(p) if p.exists() else 0 for p in (self.ctx.run_dir / n for n in LOGS))


def open_session(ctx: TrainContext, stop: StopRequests, resume: bool, started: float, total_steps: int) -> RunSession:
    """A fresh run (the folder must not hold one) or the newest checkpoint restored; call with the lock held."""
    run_dir, cfg, backend = ctx.run_dir, ctx.cfg, ctx.backend
    store = CheckpointStore(run_dir / "checkpoints", LocalBackend(ctx.policy, ctx.tokenizer), cfg.train.keep_checkpoints)
    session = RunSession(ctx, store, stop, started, total_steps, resumable=backend.name == "none")
    if not resume:
        problem = backend.broadcast(_start_fresh(run_dir, cfg) if backend.is_main else None)
        if problem:
            raise UserError(problem)
        return session
    summary = run_dir / "summary.json"
    if summary.exists() and not read_json(summary).get("stopped_early_by_time_limit"):
        raise UserError(f"--resume {run_dir}: the run is complete ({summary}); nothing to resume")
    store.clean_partial()
    latest = store.latest()
    if latest is None:   # killed before its first checkpoint: start over in the same folder
        _cut_logs(run_dir, (0, 0))
        return session
    position, session.optimizer_state, rank_state = store.load(latest)
    store.backend.load_model(latest / "model")
    ctx.sampler.sync_weights(ctx.policy)
    restore_rng(rank_state["rng"], ctx.generator, ctx.rng)
    ctx.restore_data_state(rank_state["data"])
    session.hard_prompts = list(rank_state.get("hard_prompts", []))
    _cut_logs(run_dir, (position.metrics_bytes, position.rollouts_bytes))
    session.position, session.wall_before = position, position.wall_seconds
    session.before = EvalResult(**position.accuracy_before)
    session.last_saved = position.global_step
    return session


def _start_fresh(run_dir: Path, cfg: Config) -> str | None:
    """Rank 0: write config.yaml into a folder that holds no run; else the message every rank raises."""
    if any((run_dir / name).exists() for name in ("config.yaml", *LOGS)):
        return (f"--run-dir {run_dir}: already holds a run; continue it with "
                f"`{resume_command(run_dir)}` or choose another folder")
    atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg))
    return None


def _cut_logs(run_dir: Path, sizes: tuple[int, int]) -> None:
    """Cut each log back to its length at the checkpoint: the lines of later steps are written again."""
    for name, size in zip(LOGS, sizes):
        path = run_dir / name
        length = path.stat().st_size if path.exists() else 0
        if length < size:
            raise UserError(f"{path}: shorter ({length} bytes) than at the checkpoint ({size}); cannot resume exactly")
        if path.exists():
            os.truncate(path, size)
