"""Read raw rows from JSONL / JSON / Parquet / Arrow files and local Hugging Face dataset folders.

Every row comes with `where`, the place a user can open: `file:line` for JSONL,
`file: item N` for a JSON list, `file: row N` (0-based, as pandas and `datasets` count)
for Parquet and Arrow. A folder written by `datasets.Dataset.save_to_disk` (arrow files +
dataset_info.json + state.json) or `DatasetDict.save_to_disk` (dataset_dict.json + one
such folder per split) is read with pyarrow alone: the `datasets` package is not needed.
Leaves out: remote files and hub ids (nothing here touches the network).
Test: tests/test_prepare_readers.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefixrft_cli.errors import UserError
from prefixrft_cli.jsonio import read_jsonl, read_text


@dataclass(frozen=True)
class Row:
    """One raw input record and where it came from."""

    where: str
    record: dict[str, Any]


def input_format(path: Path) -> str:
    """'jsonl', 'json', 'parquet', 'arrow' or 'hf-folder'; an unknown kind is a UserError."""
    if path.is_dir():
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            return "hf-folder"
        raise UserError(f"{path}: a folder must be a Hugging Face dataset saved with save_to_disk "
                        "(state.json or dataset_dict.json inside)")
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    name = path.name.lower()
    for suffix, kind in ((".jsonl", "jsonl"), (".jsonl.gz", "jsonl"), (".ndjson", "jsonl"), (".json", "json"),
                         (".parquet", "parquet"), (".arrow", "arrow")):
        if name.endswith(suffix):
            return kind
    raise UserError(f"{path}: unknown file type; valid: .jsonl, .jsonl.gz, .json, .parquet, .arrow, "
                    "or a save_to_disk folder")


def iter_rows(path: str | Path, hf_split: str | None = None) -> Iterator[Row]:
    """Every record of one input, in file order."""
    path = Path(path).expanduser()
    kind = input_format(path)
    if kind == "jsonl":
        for line, record in read_jsonl(path):
            yield Row(f"{path}:{line}", record)
    elif kind == "json":
        yield from _json_rows(path)
    elif kind == "parquet":
        yield from _parquet_rows(path)
    elif kind == "arrow":
        yield from _table_rows(_read_arrow(path), str(path))
    else:
        for arrow_file in hf_arrow_files(path, hf_split):
            yield from _table_rows(_read_arrow(arrow_file), str(arrow_file))


def _json_rows(path: Path) -> Iterator[Row]:
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":  # JSON Lines under a .json name (what Dataset.to_json writes)
            for line, record in read_jsonl(path):
                yield Row(f"{path}:{line}", record)
            return
        raise UserError(f"{path}:{err.lineno}: malformed JSON ({err.msg})") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply") from None
    if isinstance(data, dict):
        lists = [key for key, value in data.items() if isinstance(value, list)]
        if len(lists) != 1:
            raise UserError(f"{path}: expected a JSON list of objects (or an object holding exactly one list)")
        data = data[lists[0]]
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise UserError(f"{path}: item {index}: expected a JSON object, got {type(record).__name__}")
        yield Row(f"{path}: item {index}", record)


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    offset = 0
    try:
        handle = pq.ParquetFile(path)
        batches = handle.iter_batches(batch_size=1024)
        for batch in batches:
            for index, record in enumerate(batch.to_pylist()):
                yield Row(f"{path}: row {offset + index}", record)
            offset += batch.num_rows
    except (pa.ArrowException, OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not a readable Parquet file ({_first_line(err)})") from None


def _read_arrow(path: Path):
    """An Arrow IPC file in stream format (what `datasets` writes) or file format."""
    import pyarrow as pa

    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_stream(source).read_all()
    except (pa.ArrowException, OSError):
        try:
            with pa.memory_map(str(path)) as source:
                return pa.ipc.open_file(source).read_all()
        except (pa.ArrowException, OSError) as err:
            raise UserError(f"{path}: not a readable Arrow file ({_first_line(err)})") from None


def _table_rows(table, where: str) -> Iterator[Row]:
    offset = 0
    for batch in table.to_batches(max_chunksize=1024):
        for index, record in enumerate(batch.to_pylist()):
            yield Row(f"{where}: row {offset + index}", record)
        offset += batch.num_rows


def hf_arrow_files(folder: Path, hf_split: str | None) -> list[Path]:
    """The arrow files of a save_to_disk folder, in order; a DatasetDict needs a split (default 'train')."""
    dict_file = folder / "dataset_dict.json"
    if dict_file.is_file():
        splits = _json_object(dict_file).get("splits")
        if not isinstance(splits, list) or not splits:
            raise UserError(f"{dict_file}: expected a non-empty 'splits' list")
        split = hf_split or ("train" if "train" in splits else None)
        if split is None:
            raise UserError(f"{folder}: holds splits {', '.join(splits)}; choose one with --hf-split")
        if split not in splits:
            raise UserError(f"--hf-split {split}: not in {folder}; valid: {', '.join(splits)}")
        folder = folder / split
    elif hf_split is not None:
        raise UserError(f"--hf-split {hf_split}: {folder} holds a single dataset, not a DatasetDict")
    state_file = folder / "state.json"
    files = _json_object(state_file).get("_data_files")
    if not isinstance(files, list) or not files:
        raise UserError(f"{state_file}: expected a non-empty '_data_files' list")
    paths = []
    for entry in files:
        name = entry.get("filename") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise UserError(f"{state_file}: each '_data_files' entry needs a 'filename'")
        paths.append(folder / name)
    return paths


def _json_object(path: Path) -> dict[str, Any]:
    from prefixrft_cli.jsonio import read_json

    data = read_json(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
