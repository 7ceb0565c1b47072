"""Where prepared data lives: one function that every command uses to find the data folder.

Order: an explicit `--data-dir`, else the environment variable PREFIXRFT_DATA_DIR, else
a per-user default ($XDG_DATA_HOME/prefixrft, or ~/.local/share/prefixrft). Nothing is
created here; writers create what they write. Test: tests/test_prepare_benchmarks.py.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "PREFIXRFT_DATA_DIR"
PACKAGED = Path(__file__).resolve().parent.parent / "assets" / "benchmarks"  # the nine sets, shipped (README.md there)
BENCHMARKS = "benchmarks"  # sub-folder of the data folder holding <name>.jsonl + manifest.json


def resolve_data_dir(explicit: Path | str | None = None) -> Path:
    """The data folder: `explicit`, else $PREFIXRFT_DATA_DIR, else the per-user default."""
    if explicit is not None and str(explicit):
        return Path(explicit).expanduser()
    from_env = os.environ.get(ENV_VAR, "")
    if from_env:
        return Path(from_env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "prefixrft"


def benchmark_dir(data_dir: Path) -> Path:
    """The folder holding one JSONL of Problem records per benchmark, and their manifest."""
    return Path(data_dir) / BENCHMARKS


def benchmark_file(data_dir: Path, name: str) -> Path:
    """The stored JSONL of benchmark `name`."""
    return benchmark_dir(data_dir) / f"{name}.jsonl"


def packaged_benchmark_file(name: str) -> Path:
    """The copy of built-in benchmark `name` shipped inside the package (used when none is prepared)."""
    return PACKAGED / f"{name}.jsonl.gz"
