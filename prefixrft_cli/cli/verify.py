"""`prefixrft verify`: score generations made anywhere with the math, code or a plugin verifier."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from prefixrft_cli.cli.common import ConfigOption, SetOption, resolve_config

HELP = "Score generations made anywhere (math answers or code) with the verifiers used in training."
EXAMPLE = ("Example: [bold]prefixrft verify --domain math samples.jsonl --output scored.jsonl[/bold]  "
           "(records: completion + answer; code: completion + the task inline, or task_id with "
           "[bold]--benchmark humaneval+[/bold]); writes scored.jsonl and scored.summary.json")


def command(
    input: Annotated[Path, typer.Argument(help="JSONL of records with a 'completion' field.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Scored JSONL to write (input records + score, "
                                         "reason, extracted).", show_default=False)],
    domain: Annotated[Optional[str], typer.Option(help="Verifier: math, code, or a plugin's name "
                                                  "(default: the config's domain).")] = None,
    benchmark: Annotated[Optional[str], typer.Option(help="Resolve task_id through this benchmark "
                                                     "(e.g. humaneval+, mbpp+).")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Data folder holding prepared benchmarks "
                                                     "(default: $PREFIXRFT_DATA_DIR or the per-user folder).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Parallel checks (default: one per CPU core).")] = None,
    answer_format: Annotated[Optional[str], typer.Option(help="Math: any (a box, else math-verify finds the "
                                                         "answer) or strict-boxed (no box, no answer).")] = None,
    config: ConfigOption = None,
    sets: SetOption = None,
) -> None:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from prefixrft_cli.errors import UserError
    from prefixrft_cli.verify import verify_file

    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1, not {workers}")
    cfg = resolve_config(config, sets, domain=domain)
    console = Console()
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(f"verifying ({cfg.domain})", total=None)
        summary = verify_file(cfg.domain, input, output, benchmark=benchmark, data_dir=data_dir, workers=workers,
                              answer_after_think=cfg.eval.answer_after_think, answer_format=answer_format,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
    table = Table(title=f"prefixrft verify: {summary.total} records, domain {summary.domain}")
    table.add_column("reason")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for reason, count in summary.by_reason.items():
        table.add_row(reason, str(count), f"{100 * count / summary.total:.1f}%")
    console.print(table)
    console.print(f"accuracy (mean score) [bold]{summary.accuracy:.4f}[/bold] in {summary.seconds:.1f} s; "
                  f"wrote {summary.output} and {summary.summary_file}")
