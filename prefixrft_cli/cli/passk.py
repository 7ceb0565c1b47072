"""`prefixrft passk`: unbiased pass@k curves of one or more eval runs, as tables, JSON and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

HELP = "Unbiased pass@k (k = 1, 2, 4 ... n) from eval samples of one or more runs: table, passk.json, passk.png."
EXAMPLE = ("Example: [bold]prefixrft passk evals/base evals/trained --output-dir passk[/bold]  "
           "(each argument is an eval folder or a samples .jsonl; runs are drawn side by side)")


def command(
    inputs: Annotated[list[Path], typer.Argument(help="Eval folders or samples .jsonl files, one per run.",
                                                 show_default=False)],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where passk.json and passk.png go.")]
    = Path("passk"),
    labels: Annotated[Optional[str], typer.Option(help="Comma-separated run names (default: folder names).")]
    = None,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from prefixrft_cli.evaluate.passk_report import build_report, write_outputs

    report = build_report(inputs, labels.split(",") if labels else None)
    json_path, png_path = write_outputs(report, output_dir)
    console = Console()
    for name in report.benchmark_names():
        runs = [run for run in report.runs if name in run.benchmarks]
        table = Table(title=f"{name}: pass@k (%)")
        table.add_column("k", justify="right")
        for run in runs:
            c = run.benchmarks[name]
            spread = f"n={c.samples_min}" if c.samples_min == c.samples_max else f"n={c.samples_min}..{c.samples_max}"
            table.add_column(f"{run.label}\n{c.problems} problems, {spread}", justify="right")
        ks = sorted({k for run in runs for k in run.benchmarks[name].k})
        for k in ks:
            cells = []
            for run in runs:
                c = run.benchmarks[name]
                cells.append(f"{100 * c.pass_at_k[c.k.index(k)]:.2f}" if k in c.k else "")
            table.add_row(str(k), *cells)
        console.print(table)
    console.print(f"wrote {json_path} and {png_path}")
