"""Prepared dataset folders: write one atomically, and load one back (what `train` reads).

A dataset folder holds `train.jsonl` (and `eval.jsonl` when a split was asked for), one
Problem record a line (SPEC §6), and `manifest.json`: counts at every stage, sha256 of
every input and output file, the record schema, the options and the command. It is
written into a temporary sibling folder and renamed into place, so a failure never
leaves a half-written folder. `load_dataset` also reads a bare JSONL of Problem records.
Test: tests/test_prepare_training.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefixrft_cli.errors import UserError
from prefixrft_cli.jsonio import atomic_write_json, atomic_write_jsonl, read_json, read_jsonl
from prefixrft_cli.records import Problem

MANIFEST = "manifest.json"
FORMAT = "prefixrft-dataset"
SPLITS = ("train", "eval")
SCHEMA: dict[str, str] = {
    "id": "string, unique in the file",
    "problem": "string: the question (math) or the task description (code)",
    "answer": "string or null: the gold final answer (math)",
    "code": "object, code tasks only: entry_point, prompt, canonical_solution, base_input, plus_input, atol, "
            "contract (evalplus) and/or tests (assert statements), test_setup_code",
    "demonstrations": "list of {text: string, correct: true | false | null (never verified)}",
    "source": "string: where the record came from",
}


@dataclass(frozen=True)
class WrittenFile:
    """One split file of a dataset folder."""

    name: str
    records: int
    sha256: str


def load_dataset(path: str | Path, split: str = "train") -> list[Problem]:
    """Problems of a prepared dataset folder (its `split`) or of a JSONL of Problem records.

    A malformed line is a UserError naming file:line; a folder without manifest.json is rejected.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / MANIFEST).is_file():
            raise UserError(f"{path}: not a prepared dataset folder (no {MANIFEST}); make one with prefixrft prepare")
        manifest = read_json(path / MANIFEST)
        files = manifest.get("files", {}) if isinstance(manifest, dict) else {}
        if split not in files:
            raise UserError(f"{path}: no split {split!r}; splits: {', '.join(files) or 'none'}")
        path = path / files[split]["name"]
    elif not path.is_file():
        raise UserError(f"{path}: no such dataset folder or JSONL file")
    problems = [Problem.from_json(record, f"{path}:{line}") for line, record in read_jsonl(path)]
    seen: dict[str, int] = {}
    for number, problem in enumerate(problems, start=1):
        if problem.id in seen:
            raise UserError(f"{path}: id {problem.id!r} appears twice (records {seen[problem.id]} and {number})")
        seen[problem.id] = number
    return problems


def write_dataset_folder(output: Path, splits: dict[str, list[Problem]], manifest: dict[str, Any],
                         overwrite: bool = False) -> dict[str, WrittenFile]:
    """Write the split files and manifest.json into a temp folder, then rename it to `output`.

    `manifest` gets a "files" entry (records and sha256 per split). An existing `output` is
    replaced only with `overwrite`; on any failure the temp folder is removed.
    """
    output = Path(output)
    if output.exists() and not overwrite:
        raise UserError(f"--output {output}: already exists; pass --overwrite to replace it")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    try:
        written = {}
        for split, problems in splits.items():
            file = staging / f"{split}.jsonl"
            atomic_write_jsonl(file, (p.to_json() for p in problems))
            written[split] = WrittenFile(file.name, len(problems), sha256_file(file))
        manifest = dict(manifest, files={k: vars(v) for k, v in written.items()})
        atomic_write_json(staging / MANIFEST, manifest)
        honour_umask(staging)  # the files inside already have open()'s mode (jsonio)
        _swap_into_place(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, or of every file under a folder (sorted by relative path)."""
    digest = hashlib.sha256()
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
    for file in files:
        if Path(path).is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def honour_umask(path: Path) -> None:
    """Give a folder made by mkdtemp (mode 0700) the mode a plain mkdir() would have."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)


def _swap_into_place(staging: Path, output: Path) -> None:
    if not output.exists():
        os.replace(staging, output)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".old", dir=output.parent))
    os.replace(output, retired / output.name)
    try:
        os.replace(staging, output)
    except BaseException:
        os.replace(retired / output.name, output)
        raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)
