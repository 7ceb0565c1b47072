"""`prefixrft prepare`: import benchmarks into the data folder, or build a training dataset folder.

Three modes, chosen by the options given:
- `--benchmark NAMES (--input FILE | --input-dir DIR)`: benchmark files -> DATA_DIR/benchmarks/.
- `--input FILE... --output DIR`: a training set (map, validate, dedupe, filter, split, demonstrate).
- `--toy math|code --count N --output DIR`: the generated toy task as a dataset folder.
The library work is in prefixrft_cli/data (docs/data.md); this file parses and renders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prefixrft_cli.cli.common import ConfigOption, SetOption, resolve_config

HELP = "Import benchmark files into the data folder, or build a training set folder with a manifest."
EXAMPLE = (
    "Examples:\n\n"
    "  [bold]prefixrft prepare --benchmark all --input-dir ../shared/data[/bold]\n\n"
    "  [bold]prefixrft prepare --benchmark math500 --input math500.jsonl[/bold]\n\n"
    "  [bold]prefixrft prepare --benchmark all --input valid.all.parquet[/bold]  (LUFFY's file)\n\n"
    "  [bold]prefixrft prepare --input train.jsonl --map problem=question --map answer=gt "
    "--eval-fraction 0.05 --output data/mytrain[/bold]\n\n"
    "  [bold]prefixrft prepare --toy math --count 2000 --output data/toy-math[/bold]"
)


def command(
    ctx: typer.Context,
    benchmark: Annotated[Optional[list[str]], typer.Option(
        "--benchmark", "-b", help="Import these benchmarks (names, comma list, or 'all') into the data folder.",
        rich_help_panel="Benchmarks")] = None,
    input_dir: Annotated[Optional[Path], typer.Option(
        help="Folder holding benchmark files (../shared/data names or the originals).",
        rich_help_panel="Benchmarks")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(
        help="Data folder for benchmarks (default: $PREFIXRFT_DATA_DIR, else ~/.local/share/prefixrft).",
        rich_help_panel="Benchmarks")] = None,
    inputs: Annotated[Optional[list[str]], typer.Option(
        "--input", "-i", help="Input file or save_to_disk folder: .jsonl[.gz] / .json / .parquet / .arrow "
        "(repeatable for training sets).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Dataset folder to write.")] = None,
    toy: Annotated[Optional[str], typer.Option(help="Generate the toy task instead of reading files: math | code.")
                   ] = None,
    count: Annotated[int, typer.Option(help="Toy problems to generate (with --toy).")] = 2000,
    domain: Annotated[str, typer.Option(help="Task domain of the input: math (needs answers) | code (needs tests).")
                      ] = "math",
    maps: Annotated[Optional[list[str]], typer.Option(
        "--map", help="FIELD=COLUMN, repeatable: --map problem=question --map answer=reward_model.ground_truth.")
    ] = None,
    hf_split: Annotated[Optional[str], typer.Option(help="Split of a saved DatasetDict folder (default train).")
                        ] = None,
    model: Annotated[Optional[str], typer.Option(
        help="Tokenizer for the token limits: hub id, folder or 'toy' (default: the config's model).")] = None,
    max_prompt_tokens: Annotated[Optional[int], typer.Option(help="Drop problems longer than this.")] = None,
    max_demo_tokens: Annotated[Optional[int], typer.Option(help="Drop demonstrations longer than this.")] = None,
    eval_fraction: Annotated[float, typer.Option(help="Share of problems held out in eval.jsonl.")] = 0.0,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the split, the toy task and the teacher.")] = None,
    demonstrator: Annotated[Optional[str], typer.Option(
        help="Fills missing demonstrations: dataset | model | toy | a plugin (default: toy with --toy, else dataset).")
    ] = None,
    require_demonstration: Annotated[bool, typer.Option(
        "--require-demonstration", help="Drop training problems left without any demonstration.")] = False,
    teacher: Annotated[Optional[str], typer.Option(
        help="Teacher model for --demonstrator model (default: the config's model).", rich_help_panel="Teacher")
    ] = None,
    teacher_samples: Annotated[int, typer.Option(help="Samples per problem.", rich_help_panel="Teacher")] = 4,
    teacher_keep: Annotated[int, typer.Option(help="Verified demonstrations kept per problem.",
                                              rich_help_panel="Teacher")] = 1,
    teacher_max_new_tokens: Annotated[int, typer.Option(rich_help_panel="Teacher")] = 512,
    teacher_temperature: Annotated[float, typer.Option(rich_help_panel="Teacher")] = 0.7,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --output folder.")] = False,
    config: ConfigOption = None,
    sets: SetOption = None,
) -> None:
    import dataclasses

    from prefixrft_cli.data.prepare import PrepareRequest, prepare
    from prefixrft_cli.data.progress import RichProgress

    names = {f.name for f in dataclasses.fields(PrepareRequest)}
    request = PrepareRequest(command_line(ctx), **{k: v for k, v in ctx.params.items() if k in names})
    kind, result = prepare(request, resolve_config(config, sets), RichProgress())
    if kind == "benchmarks":
        _render_benchmarks(*result)
    else:
        _render_dataset(result)


def _render_benchmarks(folder: Path, results: list) -> None:
    from rich.console import Console
    from rich.table import Table

    from prefixrft_cli.data import paths

    table = Table(title=f"benchmarks in {paths.benchmark_dir(folder)}")
    table.add_column("benchmark")
    table.add_column("source")
    for column in ("rows", "dupes", "written", "expected"):
        table.add_column(column, justify="right")
    for r in results:
        if r.status != "imported":
            table.add_row(r.name, f"[yellow]{r.status}[/yellow] (looked for {', '.join(r.looked_for)})",
                          "", "", "", str(r.expected))
            continue
        written = str(r.written) if r.written == r.expected else f"[yellow]{r.written}[/yellow]"
        table.add_row(r.name, f"{Path(r.source).name} ({r.source_format})", str(r.rows_read),
                      str(r.duplicates_removed), written, str(r.expected))
    console = Console()
    console.print(table)
    for note in dict.fromkeys(note for r in results for note in r.notes):
        console.print(note)
    console.print(f"manifest: {paths.benchmark_dir(folder) / 'manifest.json'}")


def _render_dataset(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"dataset {report.output}")
    table.add_column("stage")
    table.add_column("count", justify="right")
    for stage, value in report.counts.items():
        table.add_row(stage.replace("_", " "), str(value))
    files = Table(title="files")
    for column in ("file", "records", "sha256"):
        files.add_column(column)
    for entry in report.manifest["files"].values():
        files.add_row(entry["name"], str(entry["records"]), entry["sha256"][:16] + "…")
    console = Console()
    console.print(table)
    console.print(files)
    for conflict in report.manifest["answer_conflicts"][:3]:
        console.print(f"[yellow]same problem, different answer:[/yellow] kept {conflict['kept']}, "
                      f"dropped {conflict['dropped']}")
    console.print(f"manifest: {report.output / 'manifest.json'}")


def command_line(ctx: typer.Context) -> str:
    """The command as a user would retype it: options that differ from their defaults, in order."""
    import shlex

    words = ["prefixrft", ctx.info_name or "prepare"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == param.default or value == [] or not param.opts:
            continue
        flag = param.opts[0]
        if isinstance(value, bool):
            words.append(flag if value else (param.secondary_opts or [f"--no-{flag[2:]}"])[0])
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            words += [flag, str(item)]
    return shlex.join(words)
