"""Split assert-style tests so that untrusted code never judges itself.

A test such as `assert add_7(5) == 12` is cut in two: the *probe* `add_7(5)` runs in the
candidate's sandbox and only its value comes back; the *check* `bool(__probe_0 == 12)`
runs later in a separate sandbox that holds no candidate code, with the probe's value
bound to `__probe_0`. The candidate never sees the expected `12`, and patching `__eq__`,
builtins or the checker inside its own process changes nothing the check relies on.

A probe is a call of a name the tests do not define themselves (not a builtin, not bound
by the set-up code, not a standard-library module): the solution's functions and classes.
Nested calls stay inside their probe (`f(Pair(1, 2))` is one probe). When such a call
depends on a variable bound inside the assert (a comprehension or lambda), it cannot be
cut out: the whole assert becomes a check with *stubs*. It runs in the clean process with
each candidate name replaced by a stub that answers calls from a memo of values the
candidate reported; calls not in the memo are sent to the candidate (`call_key` names
one) and the check runs again (code.py does the rounds). So even there, the candidate
only ever returns plain values, and the comparison and the builtins are the clean
process's. Test: tests/test_verify_code.py, tests/test_verify_sandbox.py.
"""

from __future__ import annotations

import ast
import builtins
import sys
from dataclasses import dataclass
from functools import lru_cache

PROBE_PREFIX = "__probe_"


@dataclass(frozen=True)
class AssertCheck:
    """One assert: the check source, the probes (indices into AssertPlan.probes) it binds, the names it stubs."""

    source: str
    probes: tuple[int, ...]
    stubs: tuple[str, ...] = ()


@dataclass(frozen=True)
class AssertPlan:
    """Probes for the candidate's process and checks for the clean one."""

    probes: tuple[str, ...]
    checks: tuple[AssertCheck, ...]
    modules: tuple[str, ...]   # standard-library modules the checks name (imported before them)


@lru_cache(maxsize=4096)
def plan_asserts(tests: tuple[str, ...], setup_code: str = "", entry_point: str | None = None) -> AssertPlan:
    """The plan for `tests` (each one `assert ...` statement); ValueError names a test that is not."""
    defined = _bound_names(ast.parse(setup_code or ""))
    probes: list[str] = []
    checks: list[AssertCheck] = []
    modules: set[str] = set()
    for number, test in enumerate(tests):
        try:
            body = ast.parse(test.strip()).body
        except SyntaxError as err:
            raise ValueError(f"test {number} is not valid Python: {err.msg}") from None
        if len(body) != 1 or not isinstance(body[0], ast.Assert):
            raise ValueError(f"test {number} is not a single assert statement: {test[:60]!r}")
        expression = body[0].test
        free = _free_names(expression)
        module_names = {name for name in free if name in sys.stdlib_module_names and name not in defined}
        candidate = {name for name in free if not _is_known(name, defined) and name not in module_names}
        if entry_point:
            candidate.add(entry_point)
        modules |= module_names
        splitter = _Splitter(candidate, len(probes))
        check = splitter.visit(expression)
        if splitter.needs_whole_assert:
            checks.append(AssertCheck(f"bool({ast.unparse(expression)})", (), tuple(sorted(candidate))))
            continue
        first = len(probes)
        probes.extend(splitter.probes)
        checks.append(AssertCheck(f"bool({ast.unparse(check)})", tuple(range(first, len(probes)))))
    return AssertPlan(tuple(probes), tuple(checks), tuple(sorted(modules)))


def _is_known(name: str, defined: set[str]) -> bool:
    return name in defined or hasattr(builtins, name)


class _Splitter(ast.NodeTransformer):
    """Replace each maximal call of a candidate name by a probe variable."""

    def __init__(self, candidate: set[str], offset: int):
        self.candidate, self.offset = candidate, offset
        self.probes: list[str] = []
        self.local: list[set[str]] = []   # names bound by enclosing comprehensions / lambdas
        self.needs_whole_assert = False

    def _scoped(self, node: ast.AST) -> ast.AST:
        self.local.append(_bound_names(node))
        try:
            return self.generic_visit(node)
        finally:
            self.local.pop()

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_Lambda = _scoped

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if not (_free_names(node.func) & self.candidate):
            return self.generic_visit(node)
        if any(_free_names(node) & scope for scope in self.local):
            self.needs_whole_assert = True
            return node
        self.probes.append(ast.unparse(node))
        return ast.Name(f"{PROBE_PREFIX}{self.offset + len(self.probes) - 1}", ast.Load())

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.candidate and not any(node.id in scope for scope in self.local):
            self.probes.append(node.id)   # a candidate object used directly: its value must cross
            return ast.Name(f"{PROBE_PREFIX}{self.offset + len(self.probes) - 1}", ast.Load())
        return node


def _free_names(node: ast.AST) -> set[str]:
    """Names read anywhere inside `node` (over-approximates: includes comprehension variables)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _bound_names(node: ast.AST) -> set[str]:
    """Names bound inside `node`: assignments, defs, classes, imports, loop and comprehension targets, args."""
    names: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            names.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in n.names)
        elif isinstance(n, ast.arg):
            names.add(n.arg)
    return names
