"""algo/ is pure math: every module imports only the standard library, torch, numpy or algo itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import prefixrft_cli.algo

ALGO = Path(prefixrft_cli.algo.__file__).parent
ALLOWED = set(sys.stdlib_module_names) | {"torch", "numpy"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def is_allowed(name: str) -> bool:
    if name.startswith("."):   # relative: inside algo/
        return True
    if name == "prefixrft_cli.algo" or name.startswith("prefixrft_cli.algo."):
        return True
    return name.split(".")[0] in ALLOWED


def test_algo_imports_only_stdlib_torch_numpy() -> None:
    modules = sorted(ALGO.rglob("*.py"))
    assert {"schedule.py", "prefix.py", "advantages.py", "entropy.py", "loss.py"} <= {p.name for p in modules}
    bad = [f"{path.name}:{line} imports {name}" for path in modules
           for line, name in imported_modules(path) if not is_allowed(name)]
    assert bad == []


def test_the_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import math\nimport transformers\nfrom prefixrft_cli.config import Config\n")
    names = [name for _, name in imported_modules(sample)]
    assert [is_allowed(n) for n in names] == [True, False, False]
