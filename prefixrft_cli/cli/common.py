"""Options every command shares: --config FILE.yaml and repeatable --set key=value overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from prefixrft_cli.config import Config, load_config

ConfigOption = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML file overriding the defaults.")]
SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", "-s", help="Dotted override, repeatable: --set train.steps=50 --set rollout.temperature=0.8.")]


def resolve_config(config: Path | None, sets: list[str] | None, base: tuple[str, ...] = (),
                   **direct: object) -> Config:
    """Defaults < the command's own defaults (`base`) < YAML file < named options (those not None) < --set."""
    named = [f"{key}={_yaml_scalar(value)}" for key, value in direct.items() if value is not None]
    return load_config(config, list(sets or []), base, options=named)


def _yaml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)
