"""The paper's claims at toy scale: demonstration quality, demonstration quantity, hard problems.

For each setting (a shipped config: toy-quality, toy-quantity, toy-hard; docs/experiments.md,
"The paper's claims") trains prefix-rft, prefix-rft without entropy clipping, rft, sft,
sft-then-rft and luffy, `--seeds` seeds each, with the same budget, `--jobs` runs at a time
(one process each), into `RESULTS/<setting>/<variant>/seed-<s>/`. After training, every final
checkpoint (and the toy base, once per seed, in `RESULTS/base/seed-<s>/`) is scored on two
held-out toy math splits, the training difficulty (easy) and the harder one (hard: longer
chains, larger numbers), avg@k and greedy, reported separately; in the `hard` setting the
base, prefix-rft, rft and sft (the paper's Fig. 2) also get pass@k up to k = `--passk-samples`
on the hard split. Those numbers go to `heldout.json` in the
run folder. The training run's own before/after check is cut to one problem (the numbers above
replace it).

Resumable: a run with summary.json and heldout.json is skipped; one with summary.json only is
scored again; any other run folder is removed and trained again. Then it writes, to
`--output-dir`, toy_claims.md (tables), toy_claims.json and four plots (toy_claims_report.py).

Run (the whole sweep: 3 settings x 6 variants x 3 seeds = 54 runs; run on 2026-12-02 in
125 minutes of wall time; the results and the verdict on each claim are in docs/experiments.md):
    nice -n 5 python experiments/toy_claims.py --steps 40 --seeds 3 --jobs 2 --eval-problems 50 --eval-samples 4 --passk-problems 16 --passk-samples 256
Test: tests/test_toy_claims.py (a smoke sweep of seconds; the report on fake run folders).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling report module, also when loaded by path

from toy_claims_report import write_outputs  # noqa: E402
from toy_comparison import pick  # noqa: E402

from prefixrft_cli.errors import UserError  # noqa: E402
from prefixrft_cli.jsonio import atomic_write_json  # noqa: E402

SCRIPT = "experiments/toy_claims.py"
SPLITS = ("easy", "hard")   # the held-out toy math splits every checkpoint is scored on
EVAL_TOKENS = 128           # generation budget of the held-out scoring (a hard demonstration is up to 80 tokens)


@dataclass(frozen=True)
class Setting:
    name: str          # results folder and table label
    config: str        # the shipped config it starts from
    claim: str         # what the paper says should happen, for the table
    passk: bool = False  # also pass@k on the hard split


@dataclass(frozen=True)
class Variant:
    name: str
    algo: str
    sets: tuple[str, ...]
    note: str
    passk: bool = False  # scored for pass@k in a passk setting (the paper's Fig. 2: base, SFT, RFT, Prefix-RFT)


SETTINGS = (
    Setting("quality", "toy-quality", "half the demonstrations wrong: SFT copies them, the reward filters them"),
    Setting("quantity", "toy-quantity", "1% of prompts demonstrated: Prefix-RFT loses little (40.8 -> 37.6)"),
    Setting("hard", "toy-hard", "train easy, score hard: Prefix-RFT generalizes and raises pass@large-k", True),
)
VARIANTS = (
    Variant("prefix-rft", "prefix-rft", (), "the method: top 20% entropy prefix tokens, cosine", True),
    Variant("prefix-rft-all", "prefix-rft", ("selection.mode=all",), "no entropy clipping: every prefix token"),
    Variant("rft", "rft", (), "Dr. GRPO, 8 on-policy rollouts", True),
    Variant("sft", "sft", (), "cross-entropy on the demonstrations there are", True),
    Variant("sft-then-rft", "sft-then-rft", (), "half the steps SFT, then RFT"),
    Variant("luffy", "luffy", (), "one whole demonstration among the 8 rollouts"),
)


@dataclass(frozen=True)
class Budget:
    steps: int
    seeds: int
    jobs: int
    eval_problems: int
    eval_samples: int
    passk_problems: int
    passk_samples: int
    sets: tuple[str, ...] = ()

    def command(self) -> str:
        sets = "".join(f" --set {s}" for s in self.sets)
        return (f"nice -n 5 python {SCRIPT} --steps {self.steps} --seeds {self.seeds} --jobs {self.jobs} "
                f"--eval-problems {self.eval_problems} --eval-samples {self.eval_samples} "
                f"--passk-problems {self.passk_problems} --passk-samples {self.passk_samples}{sets}")


def run_overrides(variant: Variant, seed: int, budget: Budget, run_dir: Path) -> list[str]:
    """The overrides on top of the setting's config: the same budget for every variant."""
    out = [f"algo={variant.algo}", f"seed={seed}", f"train.run_dir={run_dir}", "train.max_wall_minutes=0",
           "train.threads=1", "data.eval_problems=1", "eval.samples=1", "eval.greedy=false",
           "train.diagnostics_every=1"]   # the SFT-loss curve needs sft_loss_demos at every step
    if variant.algo == "sft-then-rft":
        out += [f"train.sft_steps={budget.steps // 2}", f"train.steps={budget.steps - budget.steps // 2}"]
    else:
        out.append(f"train.steps={budget.steps}")
    return out + list(variant.sets) + list(budget.sets)


@dataclass(frozen=True)
class Job:
    """One unit of work: train (unless `score_only`) and score a checkpoint; `config` None = the toy base."""

    name: str
    run_dir: Path
    config: str | None
    overrides: tuple[str, ...]
    seed: int
    passk: bool
    score_only: bool = False


def score_heldout(model_path: str, budget: Budget, seed: int, passk: bool) -> dict:
    """avg@k and greedy on each held-out split; pass@k counts (n, c) per hard problem when `passk`."""
    from prefixrft_cli import registry
    from prefixrft_cli.evaluate import score_problems
    from prefixrft_cli.models import load_policy
    from prefixrft_cli.toy_task import toy_test_problems

    model, tokenizer = load_policy(model_path)
    model.eval()
    verifier = registry.verifiers.get("math")()
    common = dict(verifier=verifier, max_new_tokens=EVAL_TOKENS, template="plain", seed=seed, batch_size=256)
    out: dict = {}
    for split in SPLITS:
        problems = toy_test_problems("math", split)[:budget.eval_problems]
        sampled = score_problems(model, tokenizer, problems, samples=budget.eval_samples, temperature=1.0, **common)
        greedy = score_problems(model, tokenizer, problems, samples=1, temperature=0.0, **common)
        out[split] = {"accuracy": sampled.accuracy, "greedy": greedy.accuracy}
    if passk:
        problems = toy_test_problems("math", "hard")[:budget.passk_problems]
        report = score_problems(model, tokenizer, problems, samples=budget.passk_samples, temperature=1.0, **common)
        out["passk_counts"] = [[budget.passk_samples, c] for c in report.correct]
    return out


def run_job(job: Job, budget: Budget) -> dict:
    """Train (unless score-only or the base) and score; writes heldout.json last, so it marks a finished run."""
    import torch

    torch.set_num_threads(1)
    model_path = "toy"
    if job.config is not None:
        if not job.score_only:
            from prefixrft_cli.config import load_config
            from prefixrft_cli.train import run_training

            run_training(load_config(job.config, list(job.overrides)), show=False)
        model_path = str(job.run_dir / "checkpoints" / "final")
    heldout = score_heldout(model_path, budget, job.seed, job.passk)
    job.run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(job.run_dir / "heldout.json", heldout)
    return heldout


def pending_jobs(results: Path, budget: Budget, settings: tuple[Setting, ...],
                 variants: tuple[Variant, ...]) -> list[Job]:
    """Every job not finished yet, seed-major (a partial sweep still covers every setting)."""
    todo = []
    for seed in range(budget.seeds):
        base = results / "base" / f"seed-{seed}"
        if not (base / "heldout.json").is_file():
            todo.append(Job(f"base/seed-{seed}", base, None, (), seed, any(s.passk for s in settings)))
        for setting in settings:
            for variant in variants:
                run_dir = results / setting.name / variant.name / f"seed-{seed}"
                if (run_dir / "heldout.json").is_file():
                    continue
                trained = (run_dir / "summary.json").is_file()
                if run_dir.exists() and not trained:  # interrupted: its metrics.jsonl would be appended to
                    shutil.rmtree(run_dir)
                overrides = tuple(run_overrides(variant, seed, budget, run_dir))
                todo.append(Job(f"{setting.name}/{variant.name}/seed-{seed}", run_dir, setting.config, overrides,
                                seed, setting.passk and variant.passk, trained))
    return todo


def sweep(results: Path, budget: Budget, settings: tuple[Setting, ...], variants: tuple[Variant, ...]) -> list[str]:
    """Run every pending job, `budget.jobs` at a time (in this process when 1); returns the failed ones."""
    from rich.console import Console

    console = Console()
    todo = pending_jobs(results, budget, settings, variants)
    console.print(f"{len(todo)} jobs to run, {budget.jobs} at a time")
    failed, started = [], time.time()

    def report(done: int, job: Job, heldout: dict) -> None:
        scores = ", ".join(f"{s} {heldout[s]['accuracy']:.1%}" for s in SPLITS)
        console.print(f"[{done}/{len(todo)}, {(time.time() - started) / 60:.1f} min] {job.name}: avg@k {scores}")

    if budget.jobs == 1:
        for done, job in enumerate(todo, start=1):
            report(done, job, run_job(job, budget))
        return failed
    with ProcessPoolExecutor(budget.jobs, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        futures = {pool.submit(run_job, job, budget): job for job in todo}
        for done, future in enumerate(as_completed(futures), start=1):
            job = futures[future]
            try:
                report(done, job, future.result())
            except Exception as err:  # one failed run must not lose the others; it is reported below
                failed.append(job.name)
                console.print(f"[red]{job.name} failed: {type(err).__name__}: {err}[/red]")
    return failed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps of every run (sft-then-rft: half each)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 for every variant")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one thread each (1: in this process)")
    parser.add_argument("--eval-problems", type=int, default=50, help="held-out problems of each split")
    parser.add_argument("--eval-samples", type=int, default=4, help="k of avg@k at temperature 1")
    parser.add_argument("--passk-problems", type=int, default=16, help="hard held-out problems for pass@k")
    parser.add_argument("--passk-samples", type=int, default=256, help="samples per problem: pass@k up to this k")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        help="extra config override for every run, repeatable (part of the command in the table)")
    parser.add_argument("--settings", default=",".join(s.name for s in SETTINGS))
    parser.add_argument("--variants", default=",".join(v.name for v in VARIANTS))
    parser.add_argument("--results-dir", type=Path, default=Path("runs/toy-claims"))
    parser.add_argument("--output-dir", type=Path, default=Path("docs/experiments"))
    parser.add_argument("--report-only", action="store_true", help="rebuild the outputs from finished runs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from prefixrft_cli.config import load_config

    try:
        args = parse_args(argv)
        settings, variants = pick(args.settings, SETTINGS, "--settings"), pick(args.variants, VARIANTS, "--variants")
        for option in ("steps", "seeds", "jobs", "eval_problems", "eval_samples", "passk_problems", "passk_samples"):
            if getattr(args, option) < 1:
                raise UserError(f"--{option.replace('_', '-')} must be at least 1")
        budget = Budget(args.steps, args.seeds, args.jobs, args.eval_problems, args.eval_samples,
                        args.passk_problems, args.passk_samples, tuple(args.sets))
        for setting in settings:  # a bad --set fails here, before any training
            load_config(setting.config, run_overrides(variants[0], 0, budget, Path("unused")))
        failed = [] if args.report_only else sweep(args.results_dir, budget, settings, variants)
        report = write_outputs(args.results_dir, args.output_dir, budget, settings, variants)
    except UserError as err:
        print(f"toy_claims: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.output_dir}/toy_claims.{{md,json}} and toy_claims_*.png")
    if failed or report["missing"]:
        print(f"missing runs: {', '.join(failed or report['missing'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
