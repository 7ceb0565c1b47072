"""The paper's comparisons at toy scale: Prefix-RFT, its baselines and its prefix ablations.

Trains every variant below on the toy math task with the same budget (`--steps` steps of
the default 16 prompts × 8 rollouts, no wall-clock limit), `--seeds` seeds each, `--jobs`
runs at a time, each run through the training library (`run_training`) in its own
process and its own folder `RESULTS/<variant>/seed-<s>/`. A run whose summary.json
exists is skipped, so the command resumes after an interruption (an unfinished run
folder is started again from scratch). Then it writes, to `--output-dir`:

- `toy_comparison.md`   the table: held-out accuracy after training, avg@k at the
  evaluation temperature and greedy, mean ± std over seeds, the base's accuracy, and
  each variant minus `prefix-rft` on the same seed;
- `toy_comparison.json` the same numbers per seed, with the budget and the command;
- `toy_comparison.png`  reward of hybrid (prefix) rollouts against the reward of all
  rollouts over training, one panel per Prefix-RFT variant (the paper's Fig. 4; the
  `uniform` panel is its Fig. 6b).

The numbers come from the run folders only; `--report-only` rebuilds the outputs from
them without training. Leaves out: the other baselines (`rft-sft-loss`, `luffy`) and
the `onpolicy-clip` / `static:W` modes, which the paper does not plot against Prefix-RFT.

Run (the committed docs/experiments.md numbers; 45 runs, about 50 minutes on 2 cores):
    nice -n 5 python experiments/toy_comparison.py --steps 50 --seeds 5 --jobs 2 --eval-problems 100 --eval-samples 4
Test: tests/test_experiments.py (aggregation, table and plot on fake run folders).
"""

from __future__ import annotations

import argparse
import io
import math
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

from prefixrft_cli.errors import UserError
from prefixrft_cli.jsonio import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json, read_jsonl

SCRIPT = "experiments/toy_comparison.py"
TAIL_STEPS = 10  # training reward is reported as the mean of the last this-many steps
REFERENCE = "prefix-rft"  # every variant's accuracy is also compared with this one's, seed by seed


@dataclass(frozen=True)
class Variant:
    name: str                  # run folder name and table label
    algo: str                  # --algo
    selection: str | None      # selection.mode (Prefix-RFT only)
    scheduler: str | None      # prefix.scheduler (Prefix-RFT only)
    note: str                  # what the variant changes, for the table


VARIANTS = (
    Variant("prefix-rft", "prefix-rft", "top", "cosine", "the method: top 20% entropy prefix tokens, cosine"),
    Variant("prefix-rft-random", "prefix-rft", "random", "cosine", "random 20% of prefix tokens"),
    Variant("prefix-rft-bottom", "prefix-rft", "bottom", "cosine", "lowest-entropy 20% of prefix tokens"),
    Variant("prefix-rft-all", "prefix-rft", "all", "cosine", "every prefix token updated"),
    Variant("prefix-rft-none", "prefix-rft", "none", "cosine", "prefix frozen (no gradient)"),
    Variant("prefix-rft-uniform", "prefix-rft", "top", "uniform", "L ~ U(0.05, 0.95) every step"),
    Variant("rft", "rft", None, None, "Dr. GRPO, 8 on-policy rollouts"),
    Variant("sft", "sft", None, None, "cross-entropy on demonstrations"),
    Variant("sft-then-rft", "sft-then-rft", None, None, "half the steps SFT, then RFT from it"),
)


@dataclass(frozen=True)
class Budget:
    steps: int
    seeds: int
    jobs: int
    eval_problems: int
    eval_samples: int
    model: str = "toy"
    sets: tuple[str, ...] = ()

    def command(self) -> str:
        sets = "".join(f" --set {s}" for s in self.sets)
        model = "" if self.model == "toy" else f" --model {self.model}"
        return (f"nice -n 5 python {SCRIPT} --steps {self.steps} --seeds {self.seeds} --jobs {self.jobs} "
                f"--eval-problems {self.eval_problems} --eval-samples {self.eval_samples}{model}{sets}")


def run_overrides(variant: Variant, seed: int, budget: Budget, run_dir: Path) -> list[str]:
    """The config overrides of one run: same budget for all; sft-then-rft splits its steps between stages."""
    out = [f"algo={variant.algo}", f"seed={seed}", f"model.name_or_path={budget.model}", f"train.run_dir={run_dir}",
           "train.max_wall_minutes=0", "train.threads=1", f"data.eval_problems={budget.eval_problems}",
           f"eval.samples={budget.eval_samples}"]
    if variant.algo == "sft-then-rft":
        out += [f"train.sft_steps={budget.steps // 2}", f"train.steps={budget.steps - budget.steps // 2}"]
    else:
        out.append(f"train.steps={budget.steps}")
    if variant.selection is not None:
        out += [f"selection.mode={variant.selection}", f"prefix.scheduler={variant.scheduler}"]
    return out + list(budget.sets)


def settings(budget: Budget) -> dict:
    """The shared config values the table header quotes, as every run resolves them."""
    from prefixrft_cli.config import load_config

    cfg = load_config(None, run_overrides(VARIANTS[0], 0, budget, Path("unused")))
    return {"prompts_per_step": cfg.train.prompts_per_step, "rollouts_per_prompt": cfg.rollout.rollouts_per_prompt,
            "max_response_tokens": cfg.rollout.max_response_tokens, "lr": cfg.optim.lr,
            "eval_temperature": cfg.eval.temperature}


def train_one(overrides: list[str]) -> dict:
    """One training run in a fresh worker process; returns its summary."""
    from prefixrft_cli.config import load_config
    from prefixrft_cli.train import run_training

    return run_training(load_config(None, overrides), show=False).to_json()


def pending_runs(results: Path, budget: Budget, variants: tuple[Variant, ...]) -> list[tuple[str, list[str]]]:
    """(name, overrides) of every run without a summary.json; an interrupted run's folder is removed first."""
    todo = []
    for seed in range(budget.seeds):  # seed-major, so a partial sweep still covers every variant
        for variant in variants:
            run_dir = results / variant.name / f"seed-{seed}"
            if (run_dir / "summary.json").is_file():
                continue
            if run_dir.exists():  # its metrics.jsonl would otherwise be appended to
                shutil.rmtree(run_dir)
            todo.append((f"{variant.name}/seed-{seed}", run_overrides(variant, seed, budget, run_dir)))
    return todo


def sweep(results: Path, budget: Budget, variants: tuple[Variant, ...]) -> list[str]:
    """Train every (variant, seed) without a summary.json, `budget.jobs` at a time; returns the failed runs."""
    from rich.console import Console

    console = Console()
    todo = pending_runs(results, budget, variants)
    console.print(f"{len(todo)} runs to train ({len(variants) * budget.seeds - len(todo)} already done), "
                  f"{budget.jobs} at a time")
    failed, started = [], time.time()
    with ProcessPoolExecutor(budget.jobs, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        futures = {pool.submit(train_one, overrides): name for name, overrides in todo}
        for done, future in enumerate(as_completed(futures), start=1):
            name = futures[future]
            try:
                s = future.result()
            except Exception as err:  # one failed run must not lose the others; it is reported below
                failed.append(name)
                console.print(f"[red]{name} failed: {type(err).__name__}: {err}[/red]")
                continue
            console.print(f"[{done}/{len(todo)}, {(time.time() - started) / 60:.1f} min] {name}: "
                          f"avg@{s['eval_samples']} {s['accuracy_before']:.1%} → {s['accuracy_after']:.1%}, "
                          f"greedy {s['greedy_accuracy_before']:.1%} → {s['greedy_accuracy_after']:.1%} "
                          f"({s['wall_seconds'] / 60:.1f} min)")
    return failed


# ----------------------------------------------------------------------------- aggregation

@dataclass
class RunResult:
    variant: str
    seed: int
    accuracy_before: float
    accuracy_after: float
    greedy_before: float
    greedy_after: float
    wall_seconds: float
    steps: int
    reward: list[float | None] = field(default_factory=list)         # per RL step, all rollouts
    reward_on_policy: list[float | None] = field(default_factory=list)  # per RL step, ordinary rollouts only
    reward_hybrid: list[float | None] = field(default_factory=list)  # per RL step, hybrid rollouts only
    prefix_fraction: list[float | None] = field(default_factory=list)  # per RL step, mean sampled L


def load_run(run_dir: Path, variant: str, seed: int) -> RunResult:
    """A finished run folder (summary.json + metrics.jsonl); RL steps only (an SFT stage has no reward)."""
    s = read_json(run_dir / "summary.json")
    rl = [r for _, r in read_jsonl(run_dir / "metrics.jsonl") if "reward" in r]
    return RunResult(variant, seed, s["accuracy_before"], s["accuracy_after"], s["greedy_accuracy_before"],
                     s["greedy_accuracy_after"], s["wall_seconds"], s["steps"],
                     [r["reward"] for r in rl], [r.get("reward_on_policy") for r in rl],
                     [r.get("reward_hybrid") for r in rl],
                     [r.get("prefix_fraction_mean") for r in rl])


def collect(results: Path, budget: Budget, variants: tuple[Variant, ...]) -> tuple[list[RunResult], list[str]]:
    """Every finished run under `results`, and the names of the expected runs that are missing."""
    runs, missing = [], []
    for variant in variants:
        for seed in range(budget.seeds):
            run_dir = results / variant.name / f"seed-{seed}"
            if (run_dir / "summary.json").is_file():
                runs.append(load_run(run_dir, variant.name, seed))
            else:
                missing.append(f"{variant.name}/seed-{seed}")
    return runs, missing


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1; 0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def tail_mean(values: list[float | None], count: int = TAIL_STEPS) -> float | None:
    """Mean of the last `count` defined values (None when there are none)."""
    tail = [v for v in values if v is not None][-count:]
    return statistics.fmean(tail) if tail else None


def aggregate(runs: list[RunResult], variants: tuple[Variant, ...], budget: Budget, missing: list[str]) -> dict:
    """The JSON report: per-seed numbers, mean ± std per variant, the base (accuracy before training), and
    each variant's accuracy minus the reference's on the same seed (same data order, same evaluation draws)."""
    base_by_seed: dict[int, list[tuple[float, float]]] = {}
    for r in runs:  # every run scores the same base on the same problems with its seed
        base_by_seed.setdefault(r.seed, []).append((r.accuracy_before, r.greedy_before))
    base_sampled = {s: statistics.fmean(v[0] for v in vals) for s, vals in base_by_seed.items()}
    base_greedy = {s: statistics.fmean(v[1] for v in vals) for s, vals in base_by_seed.items()}
    reference = {r.seed: r for r in runs if r.variant == REFERENCE}
    rows = []
    for variant in variants:
        mine = sorted((r for r in runs if r.variant == variant.name), key=lambda r: r.seed)
        if not mine:
            continue
        row = {**asdict(variant), "seeds": [r.seed for r in mine]}
        for key, values in (("accuracy_after", [r.accuracy_after for r in mine]),
                            ("greedy_after", [r.greedy_after for r in mine]),
                            ("gain", [r.accuracy_after - r.accuracy_before for r in mine]),
                            ("greedy_gain", [r.greedy_after - r.greedy_before for r in mine]),
                            ("wall_minutes", [r.wall_seconds / 60 for r in mine])):
            row[key] = _stat(values)
        paired = [(r, reference[r.seed]) for r in mine if r.seed in reference and variant.name != REFERENCE]
        row["vs_reference"] = _stat([r.accuracy_after - ref.accuracy_after for r, ref in paired]) if paired else None
        row["greedy_vs_reference"] = _stat([r.greedy_after - ref.greedy_after for r, ref in paired]) \
            if paired else None
        for key, attr in (("train_reward_tail", "reward"), ("on_policy_reward_tail", "reward_on_policy"),
                          ("hybrid_reward_tail", "reward_hybrid")):
            tails = [tail_mean(getattr(r, attr)) for r in mine]
            row[key] = _stat([t for t in tails if t is not None]) if all(t is not None for t in tails) else None
        rows.append(row)
    return {"budget": asdict(budget), "command": budget.command(), "settings": settings(budget),
            "tail_steps": TAIL_STEPS, "reference": REFERENCE,
            "base": {"accuracy": _stat(list(base_sampled.values())), "greedy": _stat(list(base_greedy.values())),
                     "seeds": sorted(base_sampled)},
            "variants": rows, "missing": missing}


def _stat(values: list[float]) -> dict:
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "values": values}


# ----------------------------------------------------------------------------- outputs

def _pct(stat: dict | None) -> str:
    return "—" if stat is None else f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}"


def _signed(stat: dict | None) -> str:
    return "" if stat is None else f"{100 * stat['mean']:+.1f} ± {100 * stat['std']:.1f}"


def table_markdown(report: dict) -> str:
    """The results table, with the budget and the exact command in its header."""
    b, c = report["budget"], report["settings"]
    k = b["eval_samples"]
    lines = [f"Toy math, {b['steps']} steps per run ({c['prompts_per_step']} prompts × {c['rollouts_per_prompt']} "
             f"rollouts a step, learning rate {c['lr']:g}), {b['seeds']} seeds, {b['eval_problems']} held-out "
             f"problems, avg@{k} at temperature {c['eval_temperature']:g} and greedy; "
             "accuracy in %, mean ± sample std over seeds. Gains are paired per seed: after − before, and "
             f"after − `{report['reference']}` after (same seed: same data order and evaluation draws). "
             f"Rewards in %: mean of the last {report['tail_steps']} training steps, ordinary (on-policy) "
             "rollouts and hybrid (prefix) ones.",
             "", f"Command: `{report['command']}`", "",
             f"| variant | what it changes | avg@{k} | greedy | avg@{k} gain | greedy gain "
             f"| avg@{k} vs {report['reference']} | greedy vs {report['reference']} | on-policy reward "
             "| hybrid reward | min/run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
             f"| base | toy base, before training | {_pct(report['base']['accuracy'])} "
             f"| {_pct(report['base']['greedy'])} | | | | | | | |"]
    for row in report["variants"]:
        lines.append(f"| `{row['name']}` | {row['note']} | {_pct(row['accuracy_after'])} | {_pct(row['greedy_after'])} "
                     f"| {_signed(row['gain'])} | {_signed(row['greedy_gain'])} | {_signed(row['vs_reference'])} "
                     f"| {_signed(row['greedy_vs_reference'])} | {_pct(row['on_policy_reward_tail'])} "
                     f"| {_pct(row['hybrid_reward_tail'])} | {row['wall_minutes']['mean']:.1f} |")
    if report["missing"]:
        lines += ["", f"Missing runs (not in the means): {', '.join(report['missing'])}"]
    return "\n".join(lines) + "\n"


def smooth(values: list[float | None], window: int) -> list[float]:
    """Trailing moving average over the last `window` defined values (NaN where none yet)."""
    out, seen = [], []
    for v in values:
        if v is not None:
            seen.append(v)
        out.append(statistics.fmean(seen[-window:]) if seen else math.nan)
    return out


def mean_curve(curves: list[list[float | None]]) -> list[float | None]:
    """Step-wise mean over seeds of the defined values (None where no seed has one)."""
    length = max((len(c) for c in curves), default=0)
    out = []
    for step in range(length):
        vals = [c[step] for c in curves if step < len(c) and c[step] is not None]
        out.append(statistics.fmean(vals) if vals else None)
    return out


def reward_plot(runs: list[RunResult], variants: tuple[Variant, ...], window: int) -> bytes:
    """PNG: per Prefix-RFT variant, reward with prefix vs overall reward over training (seed mean, smoothed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = [v for v in variants if v.algo == "prefix-rft" and any(r.variant == v.name for r in runs)]
    if not shown:
        raise UserError("no finished Prefix-RFT run to plot; train some first")
    cols = min(3, len(shown))
    rows = -(-len(shown) // cols)
    fig = Figure(figsize=(4.4 * cols, 3.3 * rows), dpi=110)
    FigureCanvasAgg(fig)
    for index, variant in enumerate(shown):
        mine = [r for r in runs if r.variant == variant.name]
        ax = fig.add_subplot(rows, cols, index + 1)
        overall = smooth(mean_curve([r.reward for r in mine]), window)
        hybrid = smooth(mean_curve([r.reward_hybrid for r in mine]), window)
        fraction = mean_curve([r.prefix_fraction for r in mine])
        steps = list(range(1, len(overall) + 1))
        ax.plot(steps, hybrid, color="tab:red", label="reward with prefix")
        ax.plot(steps, overall, color="tab:blue", label="overall reward")
        ax.fill_between(steps, overall, hybrid, color="tab:red", alpha=0.12)
        ax.plot(steps, [math.nan if f is None else f for f in fraction], color="grey", linestyle="--",
                linewidth=0.9, label="mean prefix fraction L (per step)")
        ax.set_title(f"{variant.name} ({variant.selection}, {variant.scheduler}), {len(mine)} seeds", fontsize="medium")
        ax.set_xlabel("step")
        ax.set_ylabel(f"reward (trailing mean, {window} steps)")
        ax.set_ylim(0, 1)
        ax.grid(True, alpha=0.3)
        if index == 0:
            ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_outputs(results: Path, output_dir: Path, budget: Budget, variants: tuple[Variant, ...]) -> dict:
    """Aggregate the run folders and write the table, the JSON and the plot to `output_dir`."""
    runs, missing = collect(results, budget, variants)
    if not runs:
        raise UserError(f"{results}: no finished run (no summary.json) to report")
    report = aggregate(runs, variants, budget, missing)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output_dir / "toy_comparison.json", report)
    atomic_write_text(output_dir / "toy_comparison.md", table_markdown(report))
    atomic_write_bytes(output_dir / "toy_comparison.png", reward_plot(runs, variants, window=max(1, budget.steps // 10)))
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="training steps of every run (sft-then-rft: half each)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1 for every variant")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at once (one thread each)")
    parser.add_argument("--eval-problems", type=int, default=100, help="held-out toy problems scored before/after")
    parser.add_argument("--eval-samples", type=int, default=4, help="k of avg@k at the evaluation temperature")
    parser.add_argument("--model", default="toy", help="starting policy (default: the bundled toy base)")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        help="extra config override for every run, repeatable (part of the command in the table)")
    parser.add_argument("--variants", default=",".join(v.name for v in VARIANTS),
                        help="comma-separated subset of: " + ", ".join(v.name for v in VARIANTS))
    parser.add_argument("--results-dir", type=Path, default=Path("runs/toy-comparison"))
    parser.add_argument("--output-dir", type=Path, default=Path("docs/experiments"))
    parser.add_argument("--report-only", action="store_true", help="rebuild the outputs from finished runs")
    return parser.parse_args(argv)


def pick(spec: str, options: tuple, flag: str) -> tuple:
    """The named `options` of a comma-separated `spec` (given as `flag`), in its order."""
    by_name = {o.name: o for o in options}
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in by_name]
    if unknown or not names:
        raise UserError(f"{flag} {spec!r}: unknown {', '.join(unknown) or '(empty)'}; valid: {', '.join(by_name)}")
    return tuple(by_name[n] for n in names)


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    try:
        args = parse_args(argv)
        variants = pick(args.variants, VARIANTS, "--variants")
        for option in ("steps", "seeds", "jobs", "eval_problems", "eval_samples"):
            if getattr(args, option) < 1:
                raise UserError(f"--{option.replace('_', '-')} must be at least 1")
        budget = Budget(args.steps, args.seeds, args.jobs, args.eval_problems, args.eval_samples, args.model,
                        tuple(args.sets))
        settings(budget)  # a bad --set fails here, before any training
        failed = [] if args.report_only else sweep(args.results_dir, budget, variants)
        report = write_outputs(args.results_dir, args.output_dir, budget, variants)
    except UserError as err:
        print(f"toy_comparison: error: {err}", file=sys.stderr)
        return 2
    print(table_markdown(report))
    console = Console()
    console.print(f"wrote {args.output_dir}/toy_comparison.{{md,json,png}}")
    if failed or report["missing"]:
        console.print(f"[red]missing runs: {', '.join(report['missing'])}[/red]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
