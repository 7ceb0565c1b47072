"""The policy update's speed (the "update" phase of a step) against an earlier revision of it.

Samples one step of real rollouts per algorithm on the toy model (default shape: 16 prompts ×
8 rollouts, ≤ 64 tokens), then times what the loop's "update" phase runs (demo_nll on a
diagnostics step, then rl_update) for each contender, alternated round by round, one torch
thread, each round from the same weights and a fresh AdamW:
- before: train/step.py and train/packing.py as of `--before` (a git revision; loaded from
  `git show`). The default, 79cc904, packs the whole batch at once and computes demo_nll and
  every entropy every step; 85a329b is the length-bucketed update before the shared-prompt
  forward (each row's prompt forwarded with it);
- after: this tree's train/step.py and packing.py — and, with `--compile`, the same with
  train.compile.
A step.py that takes `diagnostics` runs the loop's default train.diagnostics_every (rounds 0,
10, 20, ... are diagnostics steps). It prints the token positions each bucket plan forwards
and their padding, then per contender the median and min-max wall and CPU seconds (CPU: the
process's own time, steadier on a shared machine), the ratios to before, and the largest
weight difference after one update from the same weights (the two must train alike).

Run: `python bench/update_speed.py --rounds 20` (at nice 0, alternated; see docs/performance.md
"Policy update"). `--bucket-rows 8,16,32` compares AUTO_BUCKET_ROWS values instead.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import inspect
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
    """(train/step.py, train/packing.py) as of `revision`, imported as their own modules next to this
    tree's; a step.py that imports packing gets the revision's packing (None when it had none)."""
    def source(name: str) -> str | None:
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:prefixrft_cli/train/{name}.py"],
                               capture_output=True, text=True)
        return shown.stdout if shown.returncode == 0 else None

    folder = Path(tempfile.mkdtemp())
    packing_source, step_source = source("packing"), source("step")
    before_packing = _module(folder, "packing_before", packing_source) if packing_source else None
    if before_packing is not None:
        step_source = step_source.replace("from prefixrft_cli.train.packing import", "from packing_before import")
    return _module(folder, "step_before", step_source), before_packing


def _module(folder: Path, name: str, source: str):
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module   # dataclasses look their module up there
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
    before, before_packing = load_before(args.before)
    for algo in args.algos.split(","):
        ctx, cfg, batch = one_step(algo, args.sets)
        weights = copy.deepcopy(ctx.policy.state_dict())
        rows = [r for r in batch.rollouts]
        real = sum(len(r.item.prompt_ids) + len(r.response_ids) for r in rows)
        print(f"{algo}: {len(rows)} rows, {real} real tokens", flush=True)
        for name, module in (("before", before_packing), ("after", packing)):
            if module is not None:
                print(f"  {name}: {forward_positions(module, batch, ctx.pad_id)}", flush=True)
        contenders = contenders_of(args, before, cfg)
        models = {name: copy.deepcopy(ctx.policy) for name in contenders}
        times = {name: [] for name in contenders}
        ends = {}
        for round_ in range(args.rounds + 1):           # round 0 warms up (and compiles) and is not counted
            every = cfg.train.diagnostics_every
            for name, (module, run_cfg, rows_cap) in contenders.items():
                for bucketing in (packing, before_packing):
                    if bucketing is not None:
                        bucketing.AUTO_BUCKET_ROWS = rows_cap
                takes = "diagnostics" in inspect.signature(module.rl_update).parameters
                diagnostics = (every > 0 and round_ % every == 0) if takes else None
                seconds, ends[name] = timed_update(module, models[name], ctx, run_cfg, batch, weights, diagnostics)
                if round_:
                    times[name].append(seconds)
                else:
                    print(f"  {name}: first call {seconds[0]:.2f} s", flush=True)
        report(times, ends)


def contenders_of(args, before, cfg):
    """name -> (step module, config, AUTO_BUCKET_ROWS)."""
    out = {"before": (before, cfg, packing.AUTO_BUCKET_ROWS)}
    if args.bucket_rows:
        for rows in args.bucket_rows.split(","):
            out[f"after rows={rows}"] = (after_step, cfg, int(rows))
        return out
    out["after"] = (after_step, cfg, packing.AUTO_BUCKET_ROWS)
    if args.compile:
        compiled_cfg = copy.deepcopy(cfg)
        compiled_cfg.train.compile = True
        out["after+compile"] = (after_step, compiled_cfg, packing.AUTO_BUCKET_ROWS)
    return out


def forward_positions(module, batch, pad_id: int) -> str:
    """The token positions the update's forwards run under `module`'s bucket plan (the hybrid rows
    bucketed last, as the single-update shortcut does for prefix-rft), and the padding among them.
    A bucket whose rows share prompts runs U·P + n·L positions where its TokenBatch has distinct
    prompts (this tree), n·(P+L) otherwise."""
    rollouts = batch.rollouts
    seqs = module.Sequences([r.item.prompt_ids for r in rollouts], [r.response_ids for r in rollouts],
                            [r.prefix_len for r in rollouts], pad_id)
    last = {i for i, r in enumerate(rollouts) if r.prefix_len > 0}
    buckets = seqs.buckets(list(range(len(rollouts))), module.AUTO_BUCKET_ROWS, torch.device("cpu"), last)
    positions = real = 0
    for bucket in buckets:
        tokens, rows = bucket.tokens, bucket.rows.tolist()
        prompts = [tuple(rollouts[i].item.prompt_ids) for i in rows]
        if hasattr(tokens, "prompt_of") and len(set(prompts)) < len(rows):   # the shared-prompt forward
            prompts = list(set(prompts))
        positions += len(prompts) * tokens.prompt_width + len(rows) * bucket.length
        real += sum(map(len, prompts)) + sum(len(rollouts[i].response_ids) for i in rows)
    return (f"{len(buckets)} buckets, {positions} token positions forwarded, {real} of them real "
            f"({1 - real / positions:.1%} padding)")


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
