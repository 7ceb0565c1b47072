"""`prefixrft plugins`: every plugin found through the entry points, loaded and tried, with its true status."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

HELP = ("List verifiers, demonstrators, benchmarks and train sets found through entry points: each is imported "
        "and instantiated (benchmarks and train sets also loaded) to report its true status.")
EXAMPLE = "Example: [bold]prefixrft plugins --output plugins.json[/bold]"


def command(
    output: Annotated[Optional[Path], typer.Option(help="Also write the listing as JSON here.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="Data folder the benchmarks are loaded from "
                                                     "(default: $PREFIXRFT_DATA_DIR or ~/.local/share/prefixrft).")]
    = None,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from prefixrft_cli import registry
    from prefixrft_cli.data.paths import resolve_data_dir
    from prefixrft_cli.jsonio import atomic_write_json

    rows = plugin_rows(registry, resolve_data_dir(data_dir))
    console = Console()
    for group in registry.PUBLIC:
        if not any(r["group"] == group for r in rows):
            console.print(f"{group}: none installed")
            continue
        table = Table(title=group, title_justify="left", expand=False)
        table.add_column("name", no_wrap=True)
        table.add_column("from", overflow="fold")
        table.add_column("status", overflow="fold")
        for row in (r for r in rows if r["group"] == group):
            table.add_row(row["name"], f"{row['distribution']} {row['version']}".strip(), row["status"],
                          style=None if row["status"].startswith("ok") else "red")
        console.print(table)
    failed = sum(not r["status"].startswith("ok") for r in rows)
    console.print(f"{len(rows)} entries, {failed} failed; failed ones are skipped, the others work")
    if output is not None:
        atomic_write_json(output, rows)


def plugin_rows(registry, data_dir: Path) -> list[dict[str, str]]:
    """One row per entry of each public group: imported, instantiated and (benchmarks) loaded now."""
    rows = []
    for group, reg in registry.PUBLIC.items():
        for name in reg.names():
            entry = reg.entries[name]
            rows.append({"group": group, "name": name, "target": entry.target, "distribution": entry.distribution,
                         "version": entry.version, "status": _try(registry, reg, name, data_dir)})
        for name, entry in sorted(reg.broken.items()):
            rows.append({"group": group, "name": name, "target": entry.target, "distribution": entry.distribution,
                         "version": entry.version, "status": f"failed ({entry.target}): {entry.error}"})
        for name, qualified in sorted(reg.ambiguous.items()):
            rows.append({"group": group, "name": name, "target": "", "distribution": "", "version": "",
                         "status": f"ambiguous: pick one of {', '.join(qualified)}"})
    return rows


def _try(registry, reg, name: str, data_dir: Path) -> str:
    """'ok' (with what was found), or 'failed ...' naming the entry point and the reason."""
    from prefixrft_cli.errors import UserError

    entry = reg.entries[name]
    note = f"; {entry.note}" if entry.note else ""
    try:
        if reg in (registry.benchmarks, registry.train_sets):
            _, problems = registry.load_problems(reg, name, data_dir)
            return f"ok: {len(problems)} problems{note}"
        reg.create(name)
        return f"ok{note}"
    except UserError as err:
        if name in reg.broken:
            return f"failed ({entry.target}): {reg.broken[name].error}"
        return f"failed ({entry.target}): {str(err).split(': ', 1)[-1]}"
