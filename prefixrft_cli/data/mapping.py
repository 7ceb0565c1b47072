"""Map input columns onto Problem fields, and validate each record as it is mapped.

`--map FIELD=COLUMN` names the input column a Problem field comes from; a COLUMN may be a
path into nested values: `reward_model.ground_truth`, `prompt[-1].content`. Fields not
mapped come from their default columns (below). Rows in the verl / LUFFY layout
(`prompt` = a chat list, `reward_model.ground_truth`, `target` = the demonstration as a chat
list) are recognised when no `problem` column exists: the problem is the last user turn.
Every error names the row (`file:line` / `file: row N`) and the field or option at fault.
Test: tests/test_prepare_training.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prefixrft_cli.data.readers import Row
from prefixrft_cli.errors import UserError, did_you_mean
from prefixrft_cli.records import CodeTests, Demonstration, Problem

CODE_FIELDS = ("entry_point", "prompt", "canonical_solution", "base_input", "plus_input", "atol", "contract",
               "tests", "test_setup_code")
# field -> default columns, first present wins
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id", "task_id"),
    "problem": ("problem",),
    "answer": ("answer",),
    "demonstration": ("demonstrations", "demonstration", "solution"),
    "source": ("source",),
    **{name: (name, f"code.{name}") for name in CODE_FIELDS},  # code.X: a Problem record prepared before
    "tests": ("tests", "test_list", "code.tests"),
}
FIELDS = tuple(DEFAULT_COLUMNS)
DOMAINS = ("math", "code")
_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[-?\d+\])*)")
_MISSING = object()


def parse_map_options(items: Iterable[str]) -> dict[str, str]:
    """{'problem': 'question', ...} from ['problem=question', ...]; a bad item is a UserError."""
    mapping: dict[str, str] = {}
    for item in items:
        target, sep, column = item.partition("=")
        target, column = target.strip(), column.strip()
        if not sep or not target or not column:
            raise UserError(f"--map {item}: expected FIELD=COLUMN, e.g. --map problem=question")
        if target == "demonstrations":
            target = "demonstration"
        if target not in FIELDS:
            raise UserError(f"--map {item}: unknown field {target!r}{did_you_mean(target, FIELDS)}; "
                            f"valid: {', '.join(FIELDS)}")
        if target in mapping:
            raise UserError(f"--map {item}: field {target!r} is mapped twice")
        _parse_path(column, f"--map {item}")
        mapping[target] = column
    return mapping


def _parse_path(path: str, where: str) -> list[str | int]:
    """'prompt[-1].content' -> ['prompt', -1, 'content']."""
    steps: list[str | int] = []
    for part in path.split("."):
        match = _SEGMENT.fullmatch(part)
        if not match:
            raise UserError(f"{where}: cannot read column path {path!r}; write e.g. prompt[-1].content")
        steps.append(match[1])
        steps.extend(int(index) for index in re.findall(r"-?\d+", match[2]))
    return steps


def lookup(record: dict[str, Any], path: str) -> Any:
    """The value at `path` in `record`, or _MISSING; a literal key with dots wins over a path."""
    if path in record:
        return record[path]
    value: Any = record
    for step in _parse_path(path, "column"):
        if isinstance(step, int):
            if not isinstance(value, (list, tuple)) or not -len(value) <= step < len(value):
                return _MISSING
            value = value[step]
        elif isinstance(value, dict) and step in value:
            value = value[step]
        else:
            return _MISSING
    return value


def _is_chat(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "content" in m for m in value)


@dataclass
class ColumnMap:
    """Which column each Problem field reads, resolved against an input's first row."""

    explicit: dict[str, str] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)   # field -> column path actually used
    verl_layout: bool = False                               # prompt / target chat lists, reward_model

    @classmethod
    def resolve(cls, explicit: dict[str, str], first: Row, domain: str = "math") -> ColumnMap:
        """Check every mapped column exists in the first row and pick the default columns for `domain`."""
        record = first.record
        names = sorted(record)
        if domain == "math":
            for target in explicit:
                if target in CODE_FIELDS:
                    raise UserError(f"--map {target}={explicit[target]}: field {target!r} belongs to code tasks; "
                                    "add --domain code")
        for target, column in explicit.items():
            if lookup(record, column) is _MISSING:
                head = _parse_path(column, "--map")[0]
                raise UserError(f"--map {target}={column}: no column {column!r} in {first.where}"
                                f"{did_you_mean(str(head), names)}; columns: {', '.join(names)}")
        chosen = dict(explicit)
        verl = "problem" not in explicit and "problem" not in record and _is_chat(record.get("prompt"))
        for target, defaults in DEFAULT_COLUMNS.items():
            if target in chosen:
                continue
            if target in CODE_FIELDS and (domain == "math" or (verl and target == "prompt")):
                continue  # a verl chat prompt is the problem, not an evalplus function header
            present = [c for c in defaults if lookup(record, c) is not _MISSING]
            if present:
                chosen[target] = present[0]
        if verl:
            chosen.setdefault("answer", "reward_model.ground_truth")
            if "target" in record:
                chosen.setdefault("demonstration", "target")
        return cls(explicit, chosen, verl)

    def used_columns(self) -> set[str]:
        used = {str(_parse_path(c, "column")[0]) for c in self.columns.values()}
        return used | ({"prompt"} if self.verl_layout else set())

    def to_problem(self, row: Row, domain: str, fallback_id: str, source: str) -> Problem:
        """One validated Problem from a row; any missing or mistyped field is a UserError naming the row."""
        values = {target: lookup(row.record, column) for target, column in self.columns.items()}
        if self.verl_layout:
            values["problem"] = _last_user_turn(row.record["prompt"], row.where)
        for target, value in values.items():
            if value is _MISSING and target in self.explicit:
                raise UserError(f"{row.where}: missing column {self.columns[target]!r} (mapped to field {target!r})")
        get = {t: v for t, v in values.items() if v is not _MISSING and v is not None}
        demos = _demonstrations(get.get("demonstration"), row, self.columns.get("demonstration", "demonstration"))
        if "id" not in get or not str(get["id"]).strip():
            get["id"] = fallback_id
        if domain == "code":
            return _code_problem(get, row, self, demos, source)
        problem = _text(get.get("problem"), "problem", row, self)
        answer = _answer(get.get("answer"), row, self)
        return Problem(str(get["id"]), problem, answer, None, demos, _source(get, source))


def _column_hint(target: str, mapping: ColumnMap) -> str:
    column = mapping.columns.get(target)
    if column:
        return f"field {target!r} (column {column!r})"
    return f"field {target!r} (no column {' / '.join(DEFAULT_COLUMNS[target])}; map one with --map {target}=COLUMN)"


def _text(value: Any, target: str, row: Row, mapping: ColumnMap) -> str:
    if not isinstance(value, str) or not value.strip():
        got = "missing" if value is None else f"not a non-empty string ({type(value).__name__})"
        raise UserError(f"{row.where}: {_column_hint(target, mapping)} is {got}")
    return value


def _answer(value: Any, row: Row, mapping: ColumnMap) -> str:
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, int, float)) for v in value):
        value = ", ".join(str(v) for v in value)  # several gold answers (e.g. OlympiadBench), as LUFFY joins them
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    return _text(value, "answer", row, mapping)


def _last_user_turn(chat: list[dict[str, Any]], where: str) -> str:
    users = [m for m in chat if m.get("role") == "user"] or chat
    content = users[-1].get("content")
    if not isinstance(content, str) or not content.strip():
        raise UserError(f"{where}: column 'prompt' has no user turn with text")
    return content


def _demonstrations(value: Any, row: Row, column: str) -> list[Demonstration]:
    """A string, a list of strings / {text, correct} objects, or a chat list (assistant turns)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [Demonstration(value)]
    if _is_chat(value) and all("role" in m for m in value):
        value = [m["content"] for m in value if m.get("role") == "assistant"]
    if not isinstance(value, (list, tuple)):
        raise UserError(f"{row.where}: column {column!r} must be a string or a list of demonstrations, "
                        f"got {type(value).__name__}")
    demos = []
    for index, item in enumerate(value):
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            correct = item.get("correct")
            demos.append(Demonstration(item["text"], correct if isinstance(correct, bool) else None))
        elif isinstance(item, str):
            demos.append(Demonstration(item))
        else:
            raise UserError(f"{row.where}: column {column!r}[{index}] must be a string or an object with 'text'")
    return [d for d in demos if d.text.strip()]


def _source(values: dict[str, Any], default: str) -> str:
    source = values.get("source")
    return source if isinstance(source, str) and source else default


def _code_problem(get: dict[str, Any], row: Row, mapping: ColumnMap, demos: list[Demonstration],
                  source: str) -> Problem:
    """A code Problem: assert-style rows and evalplus rows go through prefixrft_cli.data.evalplus
    (which also writes the tests into an MBPP question); a Problem record prepared before is kept as it is."""
    from prefixrft_cli.data.evalplus import problem_from_evalplus, problem_from_mbpp_asserts

    tests = [get["tests"]] if isinstance(get.get("tests"), str) else get.get("tests")
    if isinstance(row.record.get("code"), dict):
        text = _text(get.get("problem"), "problem", row, mapping)
        return Problem(str(get["id"]), text, None, _stored_code_tests(get, tests, row), demos, _source(get, source))
    if tests is not None:
        text = _text(get.get("problem"), "problem", row, mapping)
        record = {"id": get["id"], "problem": text, "tests": tests, "test_setup_code": get.get("test_setup_code", ""),
                  "demonstration": demos[0].text if demos else None}
        problem = problem_from_mbpp_asserts(record, row.where)
    elif get.get("entry_point") is not None:
        record = {"task_id": str(get["id"]), "atol": 0, **{k: get[k] for k in CODE_FIELDS if k in get}}
        problem = problem_from_evalplus(record, row.where)
    else:
        raise UserError(f"{row.where}: a code task needs field 'tests' (assert statements) or 'entry_point' with "
                        "'base_input' / 'plus_input'; map them with --map tests=COLUMN")
    known = {d.text for d in problem.demonstrations}
    problem.demonstrations += [d for d in demos[1:] if d.text not in known]
    problem.source = _source(get, problem.source)
    return problem


def _stored_code_tests(values: dict[str, Any], tests: list | None, row: Row) -> CodeTests:
    """CodeTests of a Problem record that was prepared before (its `code` object), checked for type."""
    if tests is not None and not all(isinstance(t, str) for t in tests):
        raise UserError(f"{row.where}: field 'tests' must be a list of assert statements")
    atol = values.get("atol", 0.0)
    if not isinstance(atol, (int, float)) or isinstance(atol, bool):
        raise UserError(f"{row.where}: field 'atol' must be a number")
    setup = values.get("test_setup_code", "")
    return CodeTests(entry_point=values.get("entry_point"), prompt=values.get("prompt"),
                     canonical_solution=values.get("canonical_solution"), base_input=values.get("base_input"),
                     plus_input=values.get("plus_input"), atol=float(atol), contract=values.get("contract"),
                     tests=tests or None, test_setup_code=setup if isinstance(setup, str) else "")
