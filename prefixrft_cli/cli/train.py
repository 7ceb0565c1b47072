"""`prefixrft train`: run one algorithm on one domain and leave a run folder (or continue one: --resume)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from prefixrft_cli.algorithms import ALGORITHM_NAMES
from prefixrft_cli.cli.common import ConfigOption, SetOption, named_overrides, resolve_config

if TYPE_CHECKING:
    from prefixrft_cli.train.records import RunSummary

HELP = "Train with Prefix-RFT (or a baseline) and report held-out accuracy before and after."
EXAMPLE = ("Examples: [bold]prefixrft train[/bold] (the embedded default: toy math, tiny model, CPU, minutes)   "
           "[bold]prefixrft train --domain code --algo rft --set train.steps=50[/bold]   "
           "[bold]prefixrft train --resume runs/prefix-rft-math-20260101-120000[/bold] (continue a stopped run)   "
           "[bold]prefixrft train --config paper/prefix-rft --dry-run --world-size 8 --gpu-memory-gb 80[/bold] "
           "(shipped configs: prefixrft configs)")


def command(
    config: ConfigOption = None,
    algo: Annotated[Optional[str], typer.Option(help=" | ".join(ALGORITHM_NAMES))] = None,
    domain: Annotated[Optional[str], typer.Option(help="math | code | a plugin verifier's name")] = None,
    model: Annotated[Optional[str], typer.Option(help="Hub id, local model folder, or 'toy'.")] = None,
    run_dir: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/<algo>-<domain>-<time>).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps (train.steps).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of every random choice.")] = None,
    max_wall_minutes: Annotated[Optional[float], typer.Option(
        help="Stop after this many minutes with a checkpoint that --resume continues (train.max_wall_minutes; "
             "default: no limit).")] = None,
    resume: Annotated[Optional[Path], typer.Option(
        help="Continue the run in this folder from its newest checkpoint, with its own config.yaml.")] = None,
    sets: SetOption = None,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved, validated config as "
                                               "YAML and exit (nothing is trained or written).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the memory plan per device and exit.")] = False,
    gpu_memory_gb: Annotated[Optional[float], typer.Option(help="--dry-run: GPU memory to fit in, GiB.")] = None,
    world_size: Annotated[Optional[int], typer.Option(help="--dry-run: devices (default $WORLD_SIZE or 1).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="--dry-run: print the plan as JSON.")] = False,
) -> None:
    from rich.console import Console

    from prefixrft_cli.errors import UserError
    from prefixrft_cli.train import run_training
    from prefixrft_cli.train.resume import resume_config

    direct = {"algo": algo, "domain": domain, "model.name_or_path": model,
              "train.run_dir": None if run_dir is None else str(run_dir), "train.steps": steps, "seed": seed,
              "train.max_wall_minutes": max_wall_minutes}
    if resume is None:
        cfg = resolve_config(config, sets, **direct)
    elif config is not None:
        raise UserError(f"--resume {resume}: a resumed run uses its own config.yaml; drop --config {config}")
    else:
        cfg = resume_config(resume, list(sets or []), named_overrides(direct))
    if print_config:
        from prefixrft_cli.config import dump_yaml

        typer.echo(dump_yaml(cfg), nl=False)
        return
    if dry_run:
        from prefixrft_cli.cli.dry_run import show_plan

        show_plan(cfg, gpu_memory_gb, world_size, as_json)
        return
    summary = run_training(cfg, resume=resume is not None)
    if summary is None:  # a rank other than 0 of a distributed run: rank 0 reports
        return
    render_summary(Console(), summary)


def render_summary(console, summary: RunSummary) -> None:
    from rich.table import Table

    table = Table(title=f"{summary.algo} on {summary.domain}: held-out accuracy")
    for column in ("", "before", "after", "change"):
        table.add_column(column)
    rows = [(f"avg@{summary.eval_samples} (T={summary.eval_temperature})", summary.accuracy_before,
             summary.accuracy_after)]
    if summary.greedy_accuracy_before is not None:
        rows.append(("greedy", summary.greedy_accuracy_before, summary.greedy_accuracy_after))
    for name, before, after in rows:
        table.add_row(name, f"{before:.1%}", f"{after:.1%}", f"{(after - before) * 100:+.1f} pts")
    console.print(table)
    console.print(f"{summary.steps} steps in {summary.wall_seconds:.0f} s; run folder {summary.run_dir} "
                  f"(summary.json, metrics.jsonl, rollouts.jsonl, checkpoints/final)")
    if summary.stopped_early_by_time_limit:
        console.print(f"[bold yellow]stopped by the wall-clock limit (train.max_wall_minutes) after {summary.steps} "
                      f"of {summary.steps_planned} steps[/bold yellow]; "
                      + (f"continue with: {summary.resume_command}" if summary.resume_command
                         else "a distributed run cannot be resumed yet"))
