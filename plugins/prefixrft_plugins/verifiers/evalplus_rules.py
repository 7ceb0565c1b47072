"""How evalplus judges a HumanEval+ / MBPP+ output, restated: input types, special oracles, tolerance.

evalplus stores test inputs as JSON, so tuples, sets and complex numbers arrive as lists and
strings; for some MBPP+ tasks it converts them back before calling the function. It then
compares each output with the canonical solution's output for the same input: exactly,
or within `atol` (1e-6 when the expected value is a float or a list of floats, whatever
the task's atol) using numpy's allclose with rtol 1e-7. A few tasks have their own oracle
(a root of a polynomial for HumanEval/32, set equality for some MBPP+ tasks, ...).

This module restates those rules in our own code, from reading evalplus 0.3.1
(`evalplus/data/mbpp.py`, `evalplus/eval/__init__.py`, `evalplus/eval/_special_oracle.py`).
The task is named by its evalplus id ("HumanEval/32", "Mbpp/2") found in `Problem.id`.
One deliberate difference: evalplus 0.3.1 fails every HumanEval/32 solution (its
`find_zero` oracle `continue`s before the input is recorded as passed); here the oracle
is applied as intended, |poly(x)| <= atol.
Everything here runs on plain decoded values in the verifier, never on untrusted objects.
Test: tests/test_verify_code.py (rules) and tests/test_verify_real_data.py (all tasks).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

_TASK_ID = re.compile(r"\b(HumanEval|Mbpp)/(\d+)\b")


def evalplus_task(problem_id: str) -> tuple[str, int] | None:
    """('humaneval' | 'mbpp', number) for an evalplus task id inside `problem_id`, else None."""
    match = _TASK_ID.search(problem_id)
    return (match[1].lower(), int(match[2])) if match else None


# ---------------------------------------------------------------- MBPP+ input types

def _tuple(x: Any) -> tuple:
    return tuple(x)


def _tuples(x: Sequence) -> list[tuple]:
    return [tuple(item) for item in x]


def _deep_tuple(x: Any) -> Any:
    return tuple(_deep_tuple(item) for item in x) if isinstance(x, list) else x


def _each_arg(convert: Callable[[Any], Any]) -> Callable[[list], list]:
    return lambda args: [convert(arg) for arg in args]


def _first_arg(convert: Callable[[Any], Any]) -> Callable[[list], list]:
    return lambda args: [convert(args[0]), *args[1:]]


def _second_arg(convert: Callable[[Any], Any]) -> Callable[[list], list]:
    return lambda args: [args[0], convert(args[1]), *args[2:]]


def _sets_or_empty_dicts(args: list) -> list:
    # Mbpp/115: a non-empty list becomes a set, an empty one `{}` (a dict, as evalplus does)
    return [[set(item) if isinstance(item, list) and item else {} for item in args[0]]]


def _tuple_of_tuples_mixed(args: list) -> list:
    # Mbpp/278: one argument, a tuple whose list items become tuples
    return [tuple(tuple(item) if isinstance(item, list) else item for item in args[0])]


_GROUPS: list[tuple[tuple[int, ...], Callable[[list], Any]]] = [
    ((2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630, 726, 740,
      744, 809), _each_arg(_tuple)),
    ((63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780), _each_arg(_tuples)),
    ((75, 413, 444, 753), _first_arg(_tuples)),
    ((106, 750), _second_arg(_tuple)),
    ((115,), _sets_or_empty_dicts),
    ((124,), lambda args: [float(args[0]), complex(args[1])]),
    ((250, 405, 446, 617, 720, 763, 808, 307), _first_arg(_tuple)),
    ((259, 401, 445), _each_arg(lambda arg: tuple(tuple(item) for item in arg))),
    ((278,), _tuple_of_tuples_mixed),
    ((722,), _first_arg(lambda mapping: {key: tuple(value) for key, value in mapping.items()})),
    ((252,), lambda args: [complex(args[0])]),
    ((580, 615, 791), _each_arg(_deep_tuple)),
]
MBPP_INPUT_TYPES: dict[int, Callable[[list], Any]] = {n: convert for numbers, convert in _GROUPS for n in numbers}


def typed_inputs(task: tuple[str, int] | None, inputs: list) -> list[list]:
    """The argument lists evalplus passes for `inputs` of `task` (MBPP+ tuples, sets, complex numbers)."""
    convert = MBPP_INPUT_TYPES.get(task[1]) if task and task[0] == "mbpp" else None
    return [list(convert(list(args))) if convert else list(args) for args in inputs]


# ---------------------------------------------------------------- oracles

MBPP_OUTPUT_NOT_NONE = ("check_str", "text_match_three", "text_starta_endb")  # outputs: is it not None
MBPP_OUTPUT_SET_EQUAL = ("similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly",
                         "larg_nnum", "intersection_array", "find_dissimilar", "Diff")


def _polynomial(coefficients: Sequence[float], x: float) -> float:
    return sum(c * math.pow(x, i) for i, c in enumerate(coefficients))


def _pyramid_surface(base_edge: float, height: float) -> int:
    # Mbpp/581 reads "height" as the pyramid's height, not its slant height
    slant = math.sqrt((base_edge / 2) ** 2 + height ** 2)
    return round(base_edge ** 2 + 2 * base_edge * slant)


def _digit_distance(a: int, b: int) -> int:
    # Mbpp/558 pads the shorter number with zeros on the left
    left, right = str(a), str(b)
    width = max(len(left), len(right))
    return sum(abs(int(x) - int(y)) for x, y in zip(left.zfill(width), right.zfill(width)))


def is_floats(x: Any) -> bool:
    """A float, or a non-empty list / tuple of floats: compared with a tolerance."""
    if isinstance(x, float):
        return True
    return isinstance(x, (list, tuple)) and bool(x) and all(isinstance(item, float) for item in x)


def group_passes(task: tuple[str, int] | None, entry_point: str, args: Sequence[list], outputs: Sequence[Any],
                 expected: Sequence[Any], atol: float) -> bool:
    """Whether every output of one input group (base or plus) passes, as evalplus judges it.

    As in evalplus, once a float expected value forces atol to 1e-6 it stays so for the rest
    of the group.
    """
    dataset = task[0] if task else ""
    for inp, out, exp in zip(args, outputs, expected, strict=True):
        if dataset == "humaneval" and entry_point == "find_zero":
            try:
                if not abs(_polynomial(*inp, out)) <= atol:
                    return False
            except (TypeError, ValueError, OverflowError):
                return False
            continue
        try:
            exact = _exact_match(dataset, entry_point, inp, out, exp, atol)
        except (TypeError, ValueError, OverflowError, KeyError):
            return False
        if atol == 0 and is_floats(exp):
            atol = 1e-6
        if not exact and atol != 0:
            if not _close(out, exp, atol):
                return False
        elif not exact:
            return False
    return True


def _exact_match(dataset: str, entry_point: str, inp: list, out: Any, exp: Any, atol: float) -> bool:
    exact = bool(out == exp)
    if dataset != "mbpp":
        return exact
    if entry_point == "are_equivalent":     # Mbpp/164: the task is ambiguous, any returned value passes
        return True
    if entry_point == "sum_div":            # Mbpp/295
        return exact or out == 0
    if entry_point == "surface_Area":       # Mbpp/581
        return exact or abs(out - _pyramid_surface(*inp)) <= atol
    if entry_point == "digit_distance_nums":  # Mbpp/558
        return exact or out == _digit_distance(*inp)
    if entry_point in MBPP_OUTPUT_SET_EQUAL:
        return set(out) == set(exp)
    return exact


def _close(out: Any, exp: Any, atol: float) -> bool:
    if type(out) is not type(exp):
        return False
    if isinstance(exp, (list, tuple)) and len(out) != len(exp):
        return False
    try:
        return bool(np.allclose(out, exp, rtol=1e-07, atol=atol))
    except (TypeError, ValueError, OverflowError):
        return False
