"""`prefixrft plugins`: every plugin found through the entry points, and the ones that failed to load."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

HELP = "List verifiers, demonstrators and benchmarks found through entry points, with their distribution."
EXAMPLE = "Example: [bold]prefixrft plugins --output plugins.json[/bold]"


def command(
    output: Annotated[Optional[Path], typer.Option(help="Also write the listing as JSON here.")] = None,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from prefixrft_cli import registry
    from prefixrft_cli.jsonio import atomic_write_json

    rows = []
    for group, reg in registry.PUBLIC.items():
        reg.load_all()
        for name in reg.names():
            entry = reg.entries[name]
            rows.append({"group": group, "name": name, "target": entry.target,
                         "distribution": entry.distribution, "version": entry.version, "status": "ok"})
        for name, reason in sorted(reg.broken.items()):
            rows.append({"group": group, "name": name, "target": "", "distribution": "", "version": "",
                         "status": f"failed: {reason}"})
    table = Table(title="prefixrft plugins")
    for column in ("group", "name", "distribution", "version", "target", "status"):
        table.add_column(column)
    for row in rows:
        style = "red" if row["status"] != "ok" else None
        table.add_row(row["group"], row["name"], row["distribution"], row["version"], row["target"],
                      row["status"], style=style)
    Console().print(table)
    if output is not None:
        atomic_write_json(output, rows)
