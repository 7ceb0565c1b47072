"""`prefixrft configs`: the configs shipped inside the package, by the name `--config` takes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

HELP = "List the configs shipped in the package (toy runs and the paper's settings), usable as --config NAME."
EXAMPLE = ("Example: [bold]prefixrft configs[/bold], then [bold]prefixrft train --config paper/prefix-rft "
           "--dry-run[/bold]; [bold]prefixrft configs --show paper/prefix-rft[/bold] prints one to copy")


def command(
    show: Annotated[Optional[str], typer.Option(help="Print this config's YAML (to copy and edit).")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Also write the listing as JSON here.")] = None,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from prefixrft_cli.config import resolve_config_path, shipped_configs
    from prefixrft_cli.jsonio import atomic_write_json

    if show is not None:
        typer.echo(resolve_config_path(show).read_text(encoding="utf-8"), nl=False)
        return
    rows = [{"name": name, "about": path.read_text(encoding="utf-8").splitlines()[0].lstrip("# "),
             "path": str(path)} for name, path in shipped_configs().items()]
    table = Table(title="shipped configs (prefixrft train --config NAME)")
    for column in ("name", "about"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["about"])
    Console().print(table)
    if output is not None:
        atomic_write_json(output, rows)
