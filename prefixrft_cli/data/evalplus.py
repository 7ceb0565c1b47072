"""Code tasks from their published formats into `Problem` records with `CodeTests`.

- `problem_from_evalplus`: one HumanEval+ / MBPP+ record (evalplus format: `task_id`,
  `prompt`, `entry_point`, `canonical_solution`, `base_input`, `plus_input`, `atol`,
  `contract`; `test` / `assertion` are ignored: the inputs replace them). The id is the
  evalplus `task_id` ("HumanEval/0", "Mbpp/2"): the code verifier reads it to apply
  evalplus' per-task input types and oracles. The one demonstration is the canonical
  solution written out as a whole program (prompt + solution).
- `problem_from_mbpp_asserts`: one original-MBPP record (`task_id`, `text`, `code`,
  `test_list`, `test_setup_code`) or one of ../shared/data/mbpp_train_demos.jsonl (`id`,
  `problem`, `demonstration`, `tests`, `test_setup_code`). The question lists the tests,
  as MBPP prompts do; the reference code becomes the demonstration and the canonical
  solution.

Bad records raise a UserError naming `where` (file:line) and the field. Nothing here runs
code. Test: tests/test_verify_code.py.
"""

from __future__ import annotations

import builtins
import re
from typing import Any

from prefixrft_cli.errors import UserError
from prefixrft_cli.records import CodeTests, Demonstration, Problem

EVALPLUS_SOURCES = {"HumanEval": "humaneval+", "Mbpp": "mbpp+"}


def problem_from_evalplus(record: dict[str, Any], where: str) -> Problem:
    """A Problem for one evalplus record (HumanEval+ or MBPP+)."""
    task_id = _string(record, "task_id", where)
    for name in ("prompt", "entry_point", "canonical_solution"):
        _string(record, name, where)
    inputs = {}
    for name in ("base_input", "plus_input"):
        inputs[name] = [] if record.get(name) == {} else record.get(name)  # MBPP+ v0.2.0 Mbpp/793 has {}
        if not isinstance(inputs[name], list):
            raise UserError(f"{where}: field {name!r} must be a list of argument lists")
        for i, args in enumerate(inputs[name]):
            if not isinstance(args, list):
                raise UserError(f"{where}: {name}[{i}] must be a list of arguments")
    atol = record.get("atol", 0)
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or atol < 0:
        raise UserError(f"{where}: field 'atol' must be a number >= 0, not {atol!r}")
    contract = record.get("contract")
    if contract is not None and not isinstance(contract, str):
        raise UserError(f"{where}: field 'contract' must be a string")
    tests = CodeTests(entry_point=record["entry_point"], prompt=record["prompt"],
                      canonical_solution=record["canonical_solution"], base_input=inputs["base_input"],
                      plus_input=inputs["plus_input"], atol=float(atol), contract=contract)
    source = EVALPLUS_SOURCES.get(task_id.split("/")[0], "evalplus")
    demonstration = Demonstration(record["prompt"] + record["canonical_solution"], correct=True)
    return Problem(task_id, record["prompt"], None, tests, [demonstration], source)


def problem_from_mbpp_asserts(record: dict[str, Any], where: str) -> Problem:
    """A Problem for one assert-style MBPP record (original MBPP or mbpp_train_demos)."""
    text = _first_string(record, ("text", "problem"), where)
    tests = record.get("test_list", record.get("tests"))
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) and t.strip() for t in tests):
        raise UserError(f"{where}: field 'test_list' (or 'tests') must be a non-empty list of assert lines")
    setup = record.get("test_setup_code") or ""
    if not isinstance(setup, str):
        raise UserError(f"{where}: field 'test_setup_code' must be a string")
    code = record.get("code", record.get("demonstration"))
    if code is not None and not isinstance(code, str):
        raise UserError(f"{where}: field 'code' (or 'demonstration') must be a string")
    code = code.replace("\r\n", "\n") if code else None
    raw_id = record.get("id", record.get("task_id"))
    if raw_id is None or isinstance(raw_id, bool) or str(raw_id).strip() == "":
        raise UserError(f"{where}: field 'task_id' (or 'id') is missing")
    problem_id = str(raw_id) if not isinstance(raw_id, int) else f"mbpp-{raw_id}"
    entry_point = called_function(tests, code)
    question = text.strip() + " Your code should pass these tests:\n\n" + "\n".join(t.strip() for t in tests)
    code_tests = CodeTests(entry_point=entry_point, canonical_solution=code, tests=[t.strip() for t in tests],
                           test_setup_code=setup)
    demonstrations = [Demonstration(code, correct=True)] if code else []
    return Problem(problem_id, question, None, code_tests, demonstrations, "mbpp")


def called_function(tests: list[str], code: str | None) -> str | None:
    """The solution's function the tests call: the first name defined by `code` that the tests use."""
    called = [name for name in re.findall(r"\b([A-Za-z_]\w*)\s*\(", " ".join(tests)) if not hasattr(builtins, name)]
    defined = re.findall(r"^def\s+([A-Za-z_]\w*)\s*\(", code or "", re.M)
    for name in defined:
        if name in called:
            return name
    return called[0] if called else None


def _string(record: dict[str, Any], name: str, where: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: field {name!r} must be a non-empty string")
    return value


def _first_string(record: dict[str, Any], names: tuple[str, ...], where: str) -> str:
    for name in names:
        if isinstance(record.get(name), str) and record[name].strip():
            return record[name]
    raise UserError(f"{where}: field {names[0]!r} (or {', '.join(repr(n) for n in names[1:])}) must be a non-empty string")
