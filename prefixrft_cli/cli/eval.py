"""`prefixrft eval`: a model on benchmarks, the paper's protocol by default; resumable samples and a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from prefixrft_cli.cli.common import ConfigOption, SetOption, resolve_config

HELP = ("Evaluate a model on benchmarks (avg@32 AIME/AMC, pass@1 MATH-500/Minerva/OlympiadBench, base+plus tests "
        "for code): resumable samples.jsonl, summary.json, a table per benchmark.")
EXAMPLE = ("Example: [bold]prefixrft eval --model Qwen/Qwen2.5-Math-7B --benchmarks aime24,mbpp+[/bold]  "
           "(the nine built-in benchmarks ship with the package; rerun the same command to resume; "
           "[bold]--model toy --benchmarks toy-math --limit 50[/bold] is a quick check on the tiny test model)")


def command(
    benchmarks: Annotated[str, typer.Option("--benchmarks", "-b", help="Comma-separated benchmark names.",
                                            show_default=False)],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Hub id, model folder or 'toy' "
                                                 "(default: config model.name_or_path).")] = None,
    samples: Annotated[Optional[int], typer.Option("--samples", "-k", min=1, help="k for avg@k on every "
                                                   "benchmark (eval.samples; default: each benchmark's own).")] = None,
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="Eval folder "
                                                       "(default: evals/<model>).")] = None,
    temperature: Annotated[Optional[float], typer.Option(min=0.0, help="Sampling temperature (0 = greedy; "
                                                         "eval.temperature, default the paper's 0.6).")] = None,
    top_p: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="Nucleus sampling (eval.top_p; "
                                                   "1 = off).")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(min=1, help="Token budget of a completion "
                                                          "(default: config eval.max_response_tokens).")] = None,
    template: Annotated[Optional[str], typer.Option(help="Prompt template: plain | chat | luffy "
                                                    "(default: config data.prompt_template).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Completions generated together "
                                                      "(eval.batch_size, default 64).")] = None,
    limit: Annotated[int, typer.Option(min=0, help="Only the first N problems of each benchmark (0 = all).")] = 0,
    data_dir: Annotated[Optional[Path], typer.Option(help="Prepared data folder (default: $PREFIXRFT_DATA_DIR "
                                                     "or ~/.local/share/prefixrft).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Sampling seed (default: config seed).")] = None,
    threads: Annotated[int, typer.Option(min=0, help="Torch threads (0 = torch's default; 1 is fastest for the "
                                         "toy model on a busy CPU).")] = 0,
    config: ConfigOption = None,
    sets: SetOption = None,
) -> None:
    from rich.console import Console

    from prefixrft_cli.config import EVAL_COMMAND_DEFAULTS
    from prefixrft_cli.evaluate.runner import eval_request, run_eval

    cfg = resolve_config(config, sets, EVAL_COMMAND_DEFAULTS, **{
        "model.name_or_path": model, "data.prompt_template": template, "eval.max_response_tokens": max_new_tokens,
        "seed": seed, "eval.samples": samples, "eval.temperature": temperature, "eval.top_p": top_p,
        "eval.batch_size": batch_size})
    request = eval_request(cfg, benchmarks.split(","), output_dir or default_output_dir(cfg.model.name_or_path),
                           data_dir, limit, threads)
    console = Console()
    if cfg.model.name_or_path == "toy":  # said first: scores of the tiny test model mean nothing on real sets
        console.print("model: the bundled toy test model (give --model M for a real one)")
    with (_RichProgress(console) if console.is_terminal else _PlainProgress()) as progress:
        summary = run_eval(request, progress)
    render_summary(console, summary, request.output_dir)


def default_output_dir(model: str) -> Path:
    """evals/<the model's last path parts joined by '-'>, e.g. evals/runs-rft-checkpoints-final."""
    parts = [p for p in Path(model).parts if p not in ("/", ".", "..")][-4:]
    return Path("evals") / ("-".join(parts) or "model")


class _RichProgress:
    """One rich progress bar per benchmark."""

    def __init__(self, console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeRemainingColumn(), console=console, transient=False)
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> _RichProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def start(self, benchmark: str, total: int, done: int) -> None:
        self.tasks[benchmark] = self.bars.add_task(benchmark, total=total, completed=done)

    def advance(self, benchmark: str, count: int) -> None:
        self.bars.advance(self.tasks[benchmark], count)


class _PlainProgress:
    """Without a terminal: a plain progress line per benchmark at a sensible interval (progress_line.py)."""

    def __init__(self) -> None:
        self.lines: dict = {}

    def __enter__(self) -> _PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        for line in self.lines.values():
            line.finish()

    def start(self, benchmark: str, total: int, done: int) -> None:
        from prefixrft_cli.progress_line import ProgressLine

        self.lines[benchmark] = ProgressLine(f"eval {benchmark}", total, done, unit="samples")
        self.lines[benchmark].update(done)

    def advance(self, benchmark: str, count: int) -> None:
        line = self.lines[benchmark]
        line.update(line.completed + count)


def render_summary(console, summary, output_dir: Path) -> None:
    from rich.table import Table

    table = Table(title=f"{summary.settings.model} (temperature {summary.settings.temperature}, "
                        f"template {summary.settings.template})")
    for column in ("benchmark", "metric", "problems", "score %", "full credit", "cut %", "reasons"):
        table.add_column(column, justify="left" if column in ("benchmark", "metric", "reasons") else "right")
    for row in summary.benchmarks:
        reasons = ", ".join(f"{k} {v}" for k, v in row.reasons.items())
        table.add_row(row.name, row.metric, str(row.problems), f"{100 * row.accuracy:.2f}",
                      f"{row.full_credit_samples}/{row.problems * row.samples_per_problem}",
                      f"{100 * row.truncated_share:.1f}", reasons)
    if summary.math_average is not None and len(summary.math_benchmarks) > 1:
        table.add_row("[bold]math average[/bold]", "", "", f"[bold]{100 * summary.math_average:.2f}[/bold]",
                      "", "", ", ".join(summary.math_benchmarks))
    console.print(table)
    console.print("score = mean over problems of the mean score of its samples; full credit = samples scored 1; "
                  "cut = samples that hit --max-new-tokens")
    rate = f", {summary.samples_per_second:.1f} samples/s" if summary.generated_now else ""
    console.print(f"{summary.generated_now} samples generated now, {summary.resumed} already there{rate}; "
                  f"wrote {output_dir / 'samples.jsonl'} and {output_dir / 'summary.json'}")
