"""The bundled toy task: generated problems with step-by-step demonstrations, for a CPU.

Math: multi-step integer arithmetic (`Compute 12 + 7 * 3 - 5.`), solved one operation
per step, multiplications first, ending in `\\boxed{answer}`. Code: small Python
functions checked by assert tests, half described in words (`Write a Python function
add_7(x) that returns x plus 7.`), half given only by examples of a linear function
(`solve(1) == 5, solve(2) == 8 and solve(3) == 11`), whose demonstration works out the
slope and intercept in a comment. Both are generated from a seed, so the same call gives the
same problems everywhere; the train and test splits are disjoint by construction
(a problem's split is a function of its text's hash).

`ToyOptions` make the settings of the paper's claims (docs/experiments.md, "The paper's
claims"): a harder math difficulty (longer chains, larger numbers), a share of wrong
demonstrations (flagged `correct: false`, as the paper's data flags them) and a share of
problems without any demonstration. The problems themselves never depend on the demonstration
shares (those draw from their own generator), so the settings train on the same problems.

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

DIFFICULTIES = ("easy", "hard")


@dataclass(frozen=True)
class ToyOptions:
    """How the toy training set departs from the default (every field at its default: the default set)."""

    difficulty: str = "easy"        # easy: 2-3 operations on numbers up to 20; hard: 4-5 on numbers up to 60 (math)
    demo_share: float = 1.0         # share of problems that keep their demonstration (the rest have none)
    wrong_demo_share: float = 0.0   # share of the kept demonstrations made wrong, flagged correct=False


# difficulty -> (choices of the operation count, largest operand, largest multiplier)
_MATH_SHAPES = {"easy": ((2, 2, 3), 20, 5), "hard": ((4, 5), 60, 9)}


def _math_expression(rng: random.Random, difficulty: str = "easy") -> list[str]:
    """Operands and operators, e.g. ['12', '+', '7', '*', '3', '-', '5']: at `easy`, small numbers, two or three steps."""
    counts, largest, multiplier = _MATH_SHAPES[difficulty]
    terms = [str(rng.randint(1, largest))]
    for _ in range(rng.choice(counts)):
        op = rng.choice(("+", "-", "+", "-", "*"))
        terms += [op, str(rng.randint(2, multiplier) if op == "*" else rng.randint(1, largest))]
    return terms


def solve_math(terms: Sequence[str], mistake: tuple[int, int] | None = None) -> tuple[list[str], int]:
    """Steps ('7 * 3 = 21.') and the value: multiplications first, then left to right.

    `mistake` = (step, offset): that step's result is off by `offset`, and the later steps compute from it.
    """
    terms, steps = list(terms), []

    def result(exact: int) -> int:
        return exact + mistake[1] if mistake is not None and len(steps) == mistake[0] else exact

    while "*" in terms:
        i = terms.index("*")
        a, b = int(terms[i - 1]), int(terms[i + 1])
        product = result(a * b)
        steps.append(f"{a} * {b} = {product}.")
        terms[i - 1:i + 2] = [str(product)]
    value = int(terms[0])
    for op, operand in zip(terms[1::2], terms[2::2]):
        new = result(value + int(operand) if op == "+" else value - int(operand))
        steps.append(f"{value} {op} {operand} = {new}.")
        value = new
    return steps, value


def _math_problem(rng: random.Random, difficulty: str = "easy") -> tuple[str, str, str]:
    terms = _math_expression(rng, difficulty)
    steps, value = solve_math(terms)
    problem = f"Compute {' '.join(terms)}."
    return problem, str(value), " ".join(steps) + f" The answer is \\boxed{{{value}}}."


def wrong_math_demonstration(terms: Sequence[str], rng: random.Random) -> str:
    """A demonstration with one mistake: a wrong intermediate step carried to the end, or a wrong final answer."""
    offset = rng.choice((-3, -2, -1, 1, 2, 3))
    steps, value = solve_math(terms)
    if len(steps) < 2 or rng.random() < 0.5:  # right steps, wrong answer
        return " ".join(steps) + f" The answer is \\boxed{{{value + offset}}}."
    steps, value = solve_math(terms, (rng.randrange(len(steps) - 1), offset))
    return " ".join(steps) + f" The answer is \\boxed{{{value}}}."


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

def generate_problems(domain: str, count: int, seed: int, split: str = "train",
                      options: ToyOptions = ToyOptions()) -> list[Problem]:
    """`count` distinct toy problems of `domain` ('math' or 'code') in `split`, each with one demonstration
    (unless `options` leave some without one or make some wrong)."""
    if domain not in ("math", "code"):
        raise ValueError(f"toy domain must be 'math' or 'code', not {domain!r}")
    if split not in ("train", "test"):
        raise ValueError(f"toy split must be 'train' or 'test', not {split!r}")
    check_options(domain, options)
    rng = random.Random(f"toy-{domain}-{seed}" if options.difficulty == "easy" else f"toy-{domain}-{seed}-hard")
    seen: set[str] = set()
    problems: list[Problem] = []
    attempts = 0
    while len(problems) < count:
        attempts += 1
        if attempts > 200 * count + 1000:
            raise ValueError(f"cannot draw {count} distinct toy {domain} problems for split {split!r}")
        if domain == "math":
            text, answer, demo = _math_problem(rng, options.difficulty)
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
    return _thin_demonstrations(problems, options, random.Random(f"toy-{domain}-{seed}-demos"))


def check_options(domain: str, options: ToyOptions) -> None:
    """ValueError naming the option when `options` do not fit `domain`."""
    if options.difficulty not in DIFFICULTIES:
        raise ValueError(f"toy difficulty must be one of {', '.join(DIFFICULTIES)}, not {options.difficulty!r}")
    for name in ("demo_share", "wrong_demo_share"):
        if not 0.0 <= getattr(options, name) <= 1.0:
            raise ValueError(f"toy {name} must be in [0, 1], not {getattr(options, name)}")
    if domain != "math" and (options.difficulty != "easy" or options.wrong_demo_share):
        raise ValueError("toy difficulty hard and wrong demonstrations are defined for the math toy task only")


def _thin_demonstrations(problems: list[Problem], options: ToyOptions, rng: random.Random) -> list[Problem]:
    """Drop the demonstration of all but round(demo_share · count) problems; make round(wrong_demo_share ·
    kept) of the kept ones wrong (flagged correct=False). `rng` is the demonstrations' own generator."""
    kept = sorted(rng.sample(range(len(problems)), round(options.demo_share * len(problems))))
    wrong = set(rng.sample(kept, round(options.wrong_demo_share * len(kept))))
    kept_set = set(kept)
    for index, problem in enumerate(problems):
        if index not in kept_set:
            problem.demonstrations = []
        elif index in wrong:
            terms = problem.problem[len("Compute "):-1].split(" ")
            problem.demonstrations = [Demonstration(wrong_math_demonstration(terms, rng), correct=False)]
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


def toy_test_problems(domain: str, difficulty: str = "easy") -> list[Problem]:
    """The held-out toy benchmark of `domain` (benchmark `toy-<domain>` at difficulty easy)."""
    return generate_problems(domain, TEST_PROBLEMS[domain], seed=1, split="test", options=ToyOptions(difficulty))
