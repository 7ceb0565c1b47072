"""The policy update's speed (the "update" phase of a step) before and after length-bucketed packing.

Samples one step of real rollouts per algorithm on the toy model (default shape: 16 prompts ×
8 rollouts, ≤ 64 tokens), then times what the loop's "update" phase runs (demo_nll on a
diagnostics step, then rl_update) for each contender, alternated round by round, one torch
thread, each round from the same weights and a fresh AdamW:
- before: train/step.py as of `--before` (a git revision; loaded from `git show`), which packs
  the whole batch at once and computes demo_nll and every entropy every step;
- after: this tree's train/step.py with the loop's default train.diagnostics_every (rounds
  0, 10, 20, ... are diagnostics steps) — and, with `--compile`, the same with train.compile.
It prints per contender the median and min-max wall and CPU seconds (CPU: the process's own
time, steadier on a shared machine), the ratios to before, and the largest
weight difference after one update from the same weights (the two must train alike).

Run: `python bench/update_speed.py --rounds 20` (at nice 0, alternated; see docs/performance.md
"Policy update"). `--bucket-rows 8,16,32` compares AUTO_BUCKET_ROWS values instead.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from prefixrft_cli.algorithms import get_algorithm
from prefixrft_cli.config import load_config, selection_of
from prefixrft_cli.rollout.sampler import row_seed
from prefixrft_cli.train import packing
from prefixrft_cli.train import step as after_step
from prefixrft_cli.train.backend import make_backend, new_optimizer
from prefixrft_cli.train.loop import rollout_plan
from prefixrft_cli.train.rollouts import RolloutBatch, plan_rollouts, sample_continuations, score_rollouts
from prefixrft_cli.train.setup import make_context

ROOT = Path(__file__).resolve().parents[1]


def load_before(revision: str):
    """train/step.py as of `revision`, imported as its own module next to this tree's."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:prefixrft_cli/train/step.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "step_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("step_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["step_before"] = module   # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def one_step(algo: str, overrides: list[str]):
    """(context, config, rollout batch) of step 0 of `algo` on the toy model, rollouts sampled and scored."""
    cfg = load_config(None, [f"algo={algo}", f"train.run_dir={tempfile.mkdtemp()}/run", *overrides])
    ctx = make_context(cfg, make_backend(cfg))
    algorithm = get_algorithm(algo)
    plan = rollout_plan(cfg, algorithm)
    items = ctx.next_prompts(cfg.train.prompts_per_step)
    rollouts, contexts, low_t = plan_rollouts(items, plan, 0, cfg.train.steps - 1, ctx.generator, ctx.rng)
    sample_continuations(rollouts, contexts, ctx.sampler, plan, cfg.rollout.temperature, cfg.rollout.top_p,
                         seeds=[row_seed(1, k) for k in range(len(rollouts))])
    score_rollouts(rollouts, ctx.tokenizer, ctx.verifier)
    return ctx, cfg, RolloutBatch(rollouts, len(items), plan.group_size, low_t)


def timed_update(module, model, ctx, cfg, batch, weights, diagnostics: bool | None):
    """((wall, CPU) seconds, weights after) of demo_nll (when a diagnostics step) + rl_update from `weights`.

    `model` is the contender's own copy of the policy, reset to `weights` in place (a compiled
    handle stays valid across rounds)."""
    model.load_state_dict(weights)
    optimizer, scheduler = new_optimizer(model.parameters(), cfg)
    weighting = get_algorithm(cfg.algo).weighting(selection_of(cfg))
    group = batch.group_size
    with_demo = [r.item for r in batch.rollouts[::group] if r.item.demo_ids]
    extra = {} if diagnostics is None else {"diagnostics": diagnostics}
    tick, cpu = time.perf_counter(), time.process_time()
    if diagnostics is not False:
        module.demo_nll(model, [i.prompt_ids for i in with_demo], [i.demo_ids[0] for i in with_demo], ctx.pad_id,
                        cfg.train.micro_batch_responses)
    module.rl_update(model, None, optimizer, scheduler, batch, cfg, ctx.pad_id, torch.Generator().manual_seed(0),
                     weighting, **extra)
    return (time.perf_counter() - tick, time.process_time() - cpu), copy.deepcopy(model.state_dict())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--algos", default="prefix-rft,rft")
    parser.add_argument("--before", default="79cc904", help="git revision of the 'before' train/step.py")
    parser.add_argument("--compile", action="store_true", help="also time train.compile=true")
    parser.add_argument("--bucket-rows", default="", help="compare AUTO_BUCKET_ROWS values, e.g. 8,16,32")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="config overrides (key=value)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    before = load_before(args.before)
    for algo in args.algos.split(","):
        ctx, cfg, batch = one_step(algo, args.sets)
        weights = copy.deepcopy(ctx.policy.state_dict())
        rows = [r for r in batch.rollouts]
        real = sum(len(r.item.prompt_ids) + len(r.response_ids) for r in rows)
        print(f"{algo}: {len(rows)} rows, {real} real tokens", flush=True)
        contenders = contenders_of(args, before, cfg)
        models = {name: copy.deepcopy(ctx.policy) for name in contenders}
        times = {name: [] for name in contenders}
        ends = {}
        for round_ in range(args.rounds + 1):           # round 0 warms up (and compiles) and is not counted
            every = cfg.train.diagnostics_every
            for name, (module, run_cfg, rows_cap, after) in contenders.items():
                packing.AUTO_BUCKET_ROWS = rows_cap
                diagnostics = (every > 0 and round_ % every == 0) if after else None
                seconds, ends[name] = timed_update(module, models[name], ctx, run_cfg, batch, weights, diagnostics)
                if round_:
                    times[name].append(seconds)
                else:
                    print(f"  {name}: first call {seconds[0]:.2f} s", flush=True)
        report(times, ends)


def contenders_of(args, before, cfg):
    """name -> (step module, config, AUTO_BUCKET_ROWS, whether it is this tree's step)."""
    out = {"before": (before, cfg, packing.AUTO_BUCKET_ROWS, False)}
    if args.bucket_rows:
        for rows in args.bucket_rows.split(","):
            out[f"after rows={rows}"] = (after_step, cfg, int(rows), True)
        return out
    out["after"] = (after_step, cfg, packing.AUTO_BUCKET_ROWS, True)
    if args.compile:
        compiled_cfg = copy.deepcopy(cfg)
        compiled_cfg.train.compile = True
        out["after+compile"] = (after_step, compiled_cfg, packing.AUTO_BUCKET_ROWS, True)
    return out


def report(times: dict[str, list[tuple[float, float]]], ends: dict[str, dict]) -> None:
    """Per contender: wall and CPU seconds (median, min-max) and their ratio to before."""
    base = [statistics.median(t[k] for t in times["before"]) for k in (0, 1)]
    for name, values in times.items():
        diff = max(float((ends[name][k] - ends["before"][k]).abs().max()) for k in ends["before"])
        parts = []
        for k, label in ((0, "wall"), (1, "CPU")):
            column = [v[k] for v in values]
            median = statistics.median(column)
            parts.append(f"{label} {median:.3f} s [{min(column):.3f}-{max(column):.3f}] {median / base[k]:.2f}x")
        print(f"  {name:>16}: {'; '.join(parts)}; max |Δw| vs before {diff:.1e}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
