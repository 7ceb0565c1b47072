"""The data layer: read, map, validate, de-duplicate, filter, split, demonstrate, and store problems.

Public entry points (imported lazily by the commands):
- `load_dataset(path, split="train")`: a prepared dataset folder or a JSONL of Problem records.
- `resolve_data_dir(explicit)`: where benchmarks live (--data-dir, $PREFIXRFT_DATA_DIR, per-user default).
- `load_benchmark(data_dir, name)`: one imported benchmark (what the benchmark plugins call).
Modules: readers (file formats), mapping (columns -> Problem), stages (dedupe / length / split),
pipeline (training sets), benchmark_store + catalog (benchmarks), dataset (folders + manifest),
evalplus (HumanEval+ / MBPP+ records). Documentation: docs/data.md.
"""

from __future__ import annotations

from prefixrft_cli.data.benchmark_store import load_benchmark
from prefixrft_cli.data.dataset import load_dataset
from prefixrft_cli.data.paths import resolve_data_dir

__all__ = ["load_benchmark", "load_dataset", "resolve_data_dir"]
