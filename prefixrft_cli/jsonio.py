"""JSON / JSONL / text reading with file:line errors, and atomic writes (temp file + rename).

Every reader and writer here turns what a user can hand it (a missing, unreadable, non-UTF-8,
truncated or non-gzip file; a read-only or misplaced output path) into one UserError line.
Test: tests/test_robust_inputs.py (fuzzed).
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prefixrft_cli.errors import UserError


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, record) for each non-blank line; a bad line is a UserError naming file:line.

    `.gz` files are decompressed on the fly; a file that is not gzip, a truncated one and
    bytes that are not UTF-8 are UserErrors naming the file (and the line, where known).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        with _open_binary(path) as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as err:
                    raise UserError(f"{path}:{number}: not UTF-8 text ({err.reason} at column {err.start + 1})") \
                        from None
                if not line.strip():
                    continue
                yield number, _parse_line(line, path, number)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise UserError(f"{path}: not a complete gzip file ({err})") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _parse_line(line: str, path: Path, number: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{number}: malformed JSON ({err.msg})") from None
    except RecursionError:
        raise UserError(f"{path}:{number}: JSON nested too deeply") from None
    if not isinstance(record, dict):
        raise UserError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
    return record


def read_text(path: str | Path) -> str:
    """A UTF-8 text file (a BOM is dropped); missing, unreadable or not UTF-8 is a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def read_json(path: str | Path) -> Any:
    """Load one JSON document; a missing, unreadable or malformed file is a UserError naming it."""
    path = Path(path)
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}: malformed JSON ({err.msg})") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply") from None


def writable_dir(path: str | Path, what: str) -> Path:
    """Create folder `path` (and parents) or say in one line why it cannot be; `what` names the option."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{what} {path}: cannot create the folder ({err.strerror or err})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: the folder is not writable")
    return path


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text so that readers see either the old file or the whole new one (atomic_write_bytes)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes so that readers see either the old file or the whole new one.

    A path that cannot be written (a read-only folder, a file where a folder should be,
    a folder where the file should be) is a UserError naming it; nothing is left behind.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give a file name")
    for parent in (path.parent, *path.parent.parents):
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{path}: {parent} exists and is not a folder")
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise UserError(f"{path}: cannot write ({err.strerror or err})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the mode a plain open() would
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise UserError(f"{path}: cannot write ({err.strerror or err})") from None
        raise


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


class JsonlAppender:
    """Append records one line at a time, flushed, for logs that grow while a run works."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(self.path, "a", encoding="utf-8")
        except OSError as err:
            raise UserError(f"{self.path}: cannot write ({err.strerror or err})") from None

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
