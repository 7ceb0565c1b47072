"""`prefixrft inspect-entropy`: per-token entropy of demonstrations under a model; the paper's Tables 9-10."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from prefixrft_cli.cli.common import ConfigOption, SetOption, resolve_config

HELP = ("Per-token entropy, top-1 probability and top-1 = demonstration of a model on demonstrations: "
        "slice and retained-ratio tables, coloured tokens, entropy.json and entropy.html.")
EXAMPLE = ("Example: [bold]prefixrft inspect-entropy --model toy --data toy --limit 32 --output-dir entropy[/bold]  "
           "(--data takes 'toy', a prepared dataset folder or a JSONL of Problem records)")


def command(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Hub id, model folder or 'toy' "
                                                 "(default: config model.name_or_path).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="'toy' (generated for --domain), a prepared "
                                                "dataset folder or a JSONL (default: config data.train).")] = None,
    domain: Annotated[Optional[str], typer.Option(help="Toy task domain when --data toy: math | code "
                                                  "(default: config domain).")] = None,
    split: Annotated[str, typer.Option(help="Split of a prepared dataset folder.")] = "train",
    limit: Annotated[int, typer.Option(min=1, help="Problems to inspect (the first N).")] = 32,
    max_demo_tokens: Annotated[int, typer.Option(min=1, help="Tokens analysed per demonstration.")] = 1024,
    template: Annotated[Optional[str], typer.Option(help="Prompt template: plain | chat | luffy "
                                                    "(default: config data.prompt_template).")] = None,
    show: Annotated[int, typer.Option(min=0, help="Demonstrations drawn in the terminal (the HTML draws "
                                      "up to 50).")] = 1,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where entropy.json and entropy.html "
                                             "go.")] = Path("entropy"),
    config: ConfigOption = None,
    sets: SetOption = None,
) -> None:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from prefixrft_cli.evaluate.entropy_view import colour_scale, run_inspect_entropy, terminal_view

    cfg = resolve_config(config, sets, **{"model.name_or_path": model, "data.train": data, "domain": domain,
                                          "data.prompt_template": template})
    console = Console()
    with Progress(console=console, transient=True) as bars:
        task = bars.add_task("teacher-forcing demonstrations", total=limit)
        report = run_inspect_entropy(cfg, split, limit, max_demo_tokens, output_dir,
                                     progress=lambda n: bars.advance(task, n))

    slices = Table(title=f"{report.token_count} demonstration tokens of {len(report.demonstrations)} "
                         f"demonstrations under {report.model}")
    for column in ("Prefix-token slice", "Tokens", "Mean entropy", "Mean top-1 prob.", "Top-1 = demo token"):
        slices.add_column(column, justify="left" if column.startswith("Prefix") else "right")
    for row in report.slices:
        slices.add_row(row.name, str(row.tokens), f"{row.mean_entropy:.4f}", f"{row.mean_top1_prob:.4f}",
                       f"{100 * row.top1_is_demo_share:.1f}%")
    retained = Table(title="Share of the prefix-side signal Σ(1 − p(y*)) kept by the highest-entropy tokens")
    for column in ("Retained ratio", "Tokens", "Normalized prefix-side contribution"):
        retained.add_column(column, justify="right")
    for row in report.retained:
        retained.add_row(f"{100 * row.ratio:.0f}%", str(row.tokens), f"{100 * row.signal_share:.1f}%")
    console.print(slices)
    console.print(retained)
    scale = colour_scale(report)
    for view in report.demonstrations[:show]:
        console.rule(f"{view.problem_id} (demonstration {view.demonstration}): green = certain, red = entropy "
                     f">= {scale:.2f}, underlined = top-1 is not the demonstration token")
        console.print(terminal_view(view, scale))
    console.print(f"wrote {output_dir / 'entropy.json'} and {output_dir / 'entropy.html'}")

