"""Typed records shared across the project (SPEC §6), and their JSON forms.

A `Problem` is one line of a prepared dataset or benchmark: the question, the gold
answer (math) or the tests (code), and zero or more demonstrations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from prefixrft_cli.errors import UserError


@dataclass
class Demonstration:
    """An expert solution for a problem; `correct` is None when it was never verified."""

    text: str
    correct: bool | None = None


@dataclass
class CodeTests:
    """How a code task is checked: evalplus fields, or plain assert-style `tests`."""

    entry_point: str | None = None
    prompt: str | None = None             # the function header the completion continues
    canonical_solution: str | None = None
    base_input: list | None = None
    plus_input: list | None = None
    atol: float = 0.0
    contract: str | None = None
    tests: list[str] | None = None        # assert statements (original MBPP / toy code)
    test_setup_code: str = ""


@dataclass
class Problem:
    """One task: `answer` for math, `code` for code; `demonstrations` may be empty."""

    id: str
    problem: str
    answer: str | None = None
    code: CodeTests | None = None
    demonstrations: list[Demonstration] = field(default_factory=list)
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        if self.code is None:
            del record["code"]
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any], where: str = "record") -> Problem:
        """Build from a JSON object; a missing or mistyped field is a UserError naming `where` and the field."""
        for name in ("id", "problem"):
            if not isinstance(record.get(name), str) or not record[name]:
                raise UserError(f"{where}: field {name!r} must be a non-empty string")
        demos = record.get("demonstrations") or []
        if not isinstance(demos, list):
            raise UserError(f"{where}: field 'demonstrations' must be a list")
        parsed = []
        for i, demo in enumerate(demos):
            if isinstance(demo, str):
                demo = {"text": demo}
            if not isinstance(demo, dict) or not isinstance(demo.get("text"), str):
                raise UserError(f"{where}: demonstrations[{i}] needs a string 'text'")
            parsed.append(Demonstration(demo["text"], demo.get("correct")))
        code = record.get("code")
        if code is not None:
            if not isinstance(code, dict):
                raise UserError(f"{where}: field 'code' must be an object")
            known = set(CodeTests.__dataclass_fields__)
            unknown = set(code) - known
            if unknown:
                raise UserError(f"{where}: unknown code field(s) {sorted(unknown)}; valid: {sorted(known)}")
            code = CodeTests(**code)
        answer = record.get("answer")
        if answer is not None and not isinstance(answer, str):
            answer = str(answer)
        return cls(record["id"], record["problem"], answer, code, parsed, record.get("source", ""))
