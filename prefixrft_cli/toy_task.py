"""The bundled toy task: generated problems with step-by-step demonstrations, for a CPU.

Math: multi-step integer arithmetic (`Compute 12 + 7 * 3 - 5.`), solved one operation
per step, multiplications first, ending in `\\boxed{answer}`. Code: small Python
functions checked by assert tests, half described in words (`Write a Python function
add_7(x) that returns x plus 7.`), half given only by examples of a linear function
(`solve(1) == 5, solve(2) == 8 and solve(3) == 11`), whose demonstration works out the
slope and intercept in a comment. Both are generated from a seed, so the same call gives the
same problems everywhere; the train and test splits are disjoint by construction
(a problem's split is a function of its text's hash).

The embedded default task lives in the core; its plugins (benchmarks `toy-math` / `toy-code`,
the held-out test split, and the demonstrator `toy`, the programmatic solution of any toy
problem) are thin entries in plugins/prefixrft_plugins/toy.py.
Test: tests/test_toy_task.py.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prefixrft_cli.records import CodeTests, Demonstration, Problem

TEST_SHARE = 10  # one problem text in TEST_SHARE goes to the test split


def split_of(text: str) -> str:
    """'test' or 'train', fixed by the problem text alone, so the splits never overlap."""
    digest = int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)
    return "test" if digest % TEST_SHARE == 0 else "train"


# ---------------------------------------------------------------- math

def _math_expression(rng: random.Random) -> list[str]:
    """Operands and operators, e.g. ['12', '+', '7', '*', '3', '-', '5']: small numbers, two or three steps."""
    terms = [str(rng.randint(1, 20))]
    for _ in range(rng.choice((2, 2, 3))):
        op = rng.choice(("+", "-", "+", "-", "*"))
        terms += [op, str(rng.randint(2, 5) if op == "*" else rng.randint(1, 20))]
    return terms


def solve_math(terms: Sequence[str]) -> tuple[list[str], int]:
    """Steps ('7 * 3 = 21.') and the value: multiplications first, then left to right."""
    terms, steps = list(terms), []
    while "*" in terms:
        i = terms.index("*")
        a, b = int(terms[i - 1]), int(terms[i + 1])
        steps.append(f"{a} * {b} = {a * b}.")
        terms[i - 1:i + 2] = [str(a * b)]
    value = int(terms[0])
    for op, operand in zip(terms[1::2], terms[2::2]):
        new = value + int(operand) if op == "+" else value - int(operand)
        steps.append(f"{value} {op} {operand} = {new}.")
        value = new
    return steps, value


def _math_problem(rng: random.Random) -> tuple[str, str, str]:
    terms = _math_expression(rng)
    steps, value = solve_math(terms)
    problem = f"Compute {' '.join(terms)}."
    return problem, str(value), " ".join(steps) + f" The answer is \\boxed{{{value}}}."


# ---------------------------------------------------------------- code

@dataclass(frozen=True)
class _CodeFamily:
    """One kind of toy function: its words, its body and how to draw test inputs."""

    name: str
    words: str                       # filled with {c} and {a} (the parameter name)
    body: str                        # filled with {c} and {a}
    args: tuple[str, ...]            # parameter names to choose from
    draw: Callable[[random.Random], object]


def _ints(rng: random.Random) -> int:
    return rng.randint(-90, 90)


def _int_list(rng: random.Random) -> list[int]:
    return [rng.randint(-90, 90) for _ in range(rng.randint(0, 5))]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("abcdexyz") for _ in range(rng.randint(1, 5)))


_INT, _LIST = ("x", "n", "v"), ("xs", "nums", "items")
CODE_FAMILIES = {f.name: f for f in (
    _CodeFamily("add", "returns {a} plus {c}", "return {a} + {c}", _INT, _ints),
    _CodeFamily("sub", "returns {a} minus {c}", "return {a} - {c}", _INT, _ints),
    _CodeFamily("mul", "returns {a} times {c}", "return {a} * {c}", _INT, _ints),
    _CodeFamily("affine", "returns {a} times {c} plus 1", "return {a} * {c} + 1", _INT, _ints),
    _CodeFamily("max", "returns the larger of {a} and {c}", "return max({a}, {c})", _INT, _ints),
    _CodeFamily("min", "returns the smaller of {a} and {c}", "return min({a}, {c})", _INT, _ints),
    _CodeFamily("count", "returns how many items of {a} are greater than {c}",
                "return sum(1 for v in {a} if v > {c})", _LIST, _int_list),
    _CodeFamily("shift", "returns the list {a} with {c} added to each item",
                "return [v + {c} for v in {a}]", _LIST, _int_list),
    _CodeFamily("sumplus", "returns the sum of {a} plus {c}", "return sum({a}) + {c}", _LIST, _int_list),
    _CodeFamily("repeat", "returns the string {a} repeated {c} times", "return {a} * {c}", ("s", "word", "text"),
                _word),
)}
CODE_CONSTANTS = range(1, 100)
_CODE_TEXT = re.compile(r"Write a Python function ([a-z]+)_(\d+)\((\w+)\) that (.+)\.")


def _code_text(family: _CodeFamily, c: int, arg: str) -> str:
    return f"Write a Python function {family.name}_{c}({arg}) that {family.words.format(c=c, a=arg)}."


def _code_source(family: _CodeFamily, c: int, arg: str) -> str:
    return f"def {family.name}_{c}({arg}):\n    {family.body.format(c=c, a=arg)}\n"


_EXAMPLE_TEXT = re.compile(r"Write a Python function solve\(x\) with solve\(1\) == (-?\d+), "
                           r"solve\(2\) == (-?\d+) and solve\(3\) == (-?\d+)\.")


def _example_text(slope: int, start: int) -> str:
    y1, y2, y3 = (slope * x + start for x in (1, 2, 3))
    return f"Write a Python function solve(x) with solve(1) == {y1}, solve(2) == {y2} and solve(3) == {y3}."


def _example_source(y1: int, y2: int) -> str:
    """A linear function found from two examples, the arithmetic shown as a comment."""
    slope, start = y2 - y1, y1 - (y2 - y1)
    return (f"def solve(x):\n    # {y2} - {y1} = {slope}. {y1} - {slope} = {start}.\n"
            f"    return {slope} * x + {start}\n")


def _example_problem(rng: random.Random) -> tuple[str, CodeTests, str]:
    """A linear function given only by examples: the model has to find slope and intercept."""
    slope, start = rng.choice([a for a in range(-9, 10) if a]), rng.randint(-50, 50)
    tests = [f"assert solve({x}) == {slope * x + start}" for x in rng.sample(range(-30, 31), 4)]
    return _example_text(slope, start), CodeTests(entry_point="solve", tests=tests), \
        _example_source(slope + start, 2 * slope + start)


def _code_problem(rng: random.Random) -> tuple[str, CodeTests, str]:
    if rng.random() < 0.5:
        return _example_problem(rng)
    family = rng.choice(list(CODE_FAMILIES.values()))
    c, arg = rng.choice(CODE_CONSTANTS), rng.choice(family.args)
    name, source = f"{family.name}_{c}", _code_source(family, c, arg)
    namespace: dict = {}
    exec(source, namespace)  # our own generated reference solution
    inputs = [family.draw(rng) for _ in range(4)]
    tests = [f"assert {name}({value!r}) == {namespace[name](value)!r}" for value in inputs]
    return _code_text(family, c, arg), CodeTests(entry_point=name, tests=tests), source


# ---------------------------------------------------------------- public API

def generate_problems(domain: str, count: int, seed: int, split: str = "train") -> list[Problem]:
    """`count` distinct toy problems of `domain` ('math' or 'code') in `split`, each with one demonstration."""
    if domain not in ("math", "code"):
        raise ValueError(f"toy domain must be 'math' or 'code', not {domain!r}")
    if split not in ("train", "test"):
        raise ValueError(f"toy split must be 'train' or 'test', not {split!r}")
    rng = random.Random(f"toy-{domain}-{seed}")
    seen: set[str] = set()
    problems: list[Problem] = []
    attempts = 0
    while len(problems) < count:
        attempts += 1
        if attempts > 200 * count + 1000:
            raise ValueError(f"cannot draw {count} distinct toy {domain} problems for split {split!r}")
        if domain == "math":
            text, answer, demo = _math_problem(rng)
            code = None
        else:
            text, code, demo = _code_problem(rng)
            answer = None
        if text in seen or split_of(text) != split:
            continue
        seen.add(text)
        problems.append(Problem(id=f"toy-{domain}-{split}-{len(problems)}", problem=text, answer=answer,
                                code=code, demonstrations=[Demonstration(demo, correct=True)],
                                source=f"toy-{domain}"))
    return problems


def demonstration_for(problem: Problem) -> Demonstration:
    """The programmatic solution of a toy problem (math or code), recomputed from its text."""
    if problem.problem.startswith("Compute ") and problem.problem.endswith("."):
        terms = problem.problem[len("Compute "):-1].split(" ")
        steps, value = solve_math(terms)
        return Demonstration(" ".join(steps) + f" The answer is \\boxed{{{value}}}.", correct=True)
    match = _EXAMPLE_TEXT.fullmatch(problem.problem)
    if match:
        y1, y2, y3 = (int(v) for v in match.groups())
        if y3 - y2 == y2 - y1:
            return Demonstration(_example_source(y1, y2), correct=True)
    match = _CODE_TEXT.fullmatch(problem.problem)
    if match and match[1] in CODE_FAMILIES:
        family, c, arg = CODE_FAMILIES[match[1]], int(match[2]), match[3]
        if problem.problem == _code_text(family, c, arg):
            return Demonstration(_code_source(family, c, arg), correct=True)
    raise ValueError(f"problem {problem.id!r} is not a toy problem")


TEST_PROBLEMS = {"math": 500, "code": 300}  # size of the held-out toy benchmarks toy-math / toy-code


def toy_test_problems(domain: str) -> list[Problem]:
    """The held-out toy benchmark of `domain` (benchmark `toy-<domain>`)."""
    return generate_problems(domain, TEST_PROBLEMS[domain], seed=1, split="test")
