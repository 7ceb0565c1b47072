"""Every config leaf is read somewhere outside config.py: a key nothing reads is a silent no-op for the user."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

from prefixrft_cli.config import Config

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for folder in ("prefixrft_cli", "plugins/prefixrft_plugins") for p in (ROOT / folder).rglob("*.py")
           if p.name != "config.py"]

# Leaves being wired by parallel work right now (remove each as its reader lands):
IN_FLIGHT = {
    "rollout.vllm_gpu_memory_utilization",  # the vLLM engine's memory share (rollout/vllm_engine.py work)
    "model.device",                         # device placement (train/ devices work)
    "distributed.backend",                  # DDP / FSDP2 / DeepSpeed (train/ distributed work)
    "distributed.zero_stage",               # DeepSpeed ZeRO stage (train/ distributed work)
}


def leaves() -> list[tuple[str, str]]:
    """(section, key) of every leaf; section '' for top-level keys."""
    out = []
    for name, hint in typing.get_type_hints(Config).items():
        if dataclasses.is_dataclass(hint):
            out += [(name, f.name) for f in dataclasses.fields(hint)]
        else:
            out.append(("", name))
    return out


def reads() -> set[str]:
    """'section.key' (or 'key') for every way a module reads a leaf.

    `x.section.key`; `key` read in a module that also reads `section` (a section bound to a
    name: `r = cfg.rollout; r.temperature`); `x.key` for top-level keys; and outside cli/
    (where dotted strings set keys) a dotted string constant, as a recipe's stages name the
    key of their steps.
    """
    found: set[str] = set()
    for path in SOURCES:
        attrs, strings = set(), set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                attrs.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                strings.add(node.value)
        found |= attrs | {f"{owner}.{attr}" for owner in attrs for attr in attrs}
        if "cli" not in path.parts:
            found |= strings
    return found


def test_every_config_leaf_is_read_somewhere():
    found = reads()
    unread = [f"{section}.{key}" if section else key for section, key in leaves()
              if (f"{section}.{key}" if section else key) not in found]
    assert sorted(set(unread) - IN_FLIGHT) == []


def test_the_allow_list_names_real_leaves():
    assert IN_FLIGHT <= {f"{section}.{key}" for section, key in leaves()}
