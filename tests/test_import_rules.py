"""The import rules of docs/architecture.md: dependencies point one way, and the core never imports a plugin.

    cli        may import anything in prefixrft_cli
    train      -> evaluate, data, rollout, algo, the base modules        (never cli)
    evaluate   -> data, rollout, algo, the base modules                  (never cli, train)
    data       -> the base modules                                       (never cli, train, evaluate, rollout)
    rollout    -> algo, the base modules; hf and vllm engines import rollout/sampler.py, not each other
    algo       -> only the standard library, torch, numpy (tests/test_algo_imports.py)
    base       config, config_doc, yamlio, progress_line, algorithms, registry, protocols, records, errors,
               jsonio, models, prompts, toy_task: import only each other and algo
    everywhere in prefixrft_cli: never prefixrft_plugins (plugins are found through entry points)

Function-level (lazy) imports count the same as top-level ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import prefixrft_cli

PACKAGE = Path(prefixrft_cli.__file__).parent
LAYERS = ("cli", "train", "evaluate", "data", "rollout", "algo")
BASE = {"config", "config_doc", "yamlio", "progress_line", "algorithms", "registry", "protocols", "records",
        "errors", "jsonio", "models", "prompts", "toy_task"}
FORBIDDEN = {  # layer -> layers it must not import
    "train": {"cli"},
    "evaluate": {"cli", "train"},
    "data": {"cli", "train", "evaluate", "rollout"},
    "rollout": {"cli", "train", "evaluate", "data"},
    "base": {"cli", "train", "evaluate", "data", "rollout", "workflow"},
}


def layer_of(module: str) -> str | None:
    """The layer of a dotted prefixrft_cli module name: one of LAYERS, 'base', or 'workflow' (toy_base, verify, ...)."""
    parts = module.split(".")
    if parts[0] != "prefixrft_cli" or len(parts) == 1:
        return None
    if parts[1] in LAYERS:
        return parts[1]
    return "base" if parts[1] in BASE else "workflow"


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module == "prefixrft_cli":  # from prefixrft_cli import registry
                found += [(node.lineno, f"prefixrft_cli.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def modules() -> list[tuple[Path, str]]:
    return [(p, ".".join(("prefixrft_cli",) + p.relative_to(PACKAGE).with_suffix("").parts))
            for p in sorted(PACKAGE.rglob("*.py"))]


def test_dependencies_point_one_way():
    bad = []
    for path, name in modules():
        source = layer_of(name)
        for line, target in imports(path):
            if layer_of(target) in FORBIDDEN.get(source, set()):
                bad.append(f"{name}:{line} ({source}) imports {target} ({layer_of(target)})")
    assert bad == []


def test_the_core_never_imports_a_plugin():
    bad = [f"{name}:{line} imports {target}" for path, name in modules() for line, target in imports(path)
           if target.split(".")[0] == "prefixrft_plugins"]
    assert bad == []


def test_rollout_engines_import_the_contract_not_each_other():
    engines = {"prefixrft_cli.rollout.engine", "prefixrft_cli.rollout.vllm_engine"}
    for path, name in modules():
        if name in engines:
            targets = {target for _, target in imports(path)}
            assert "prefixrft_cli.rollout.sampler" in targets and not targets & (engines - {name})


def test_the_rules_see_every_layer():
    assert {layer_of(name) for _, name in modules()} >= set(LAYERS) | {"base", "workflow"}
