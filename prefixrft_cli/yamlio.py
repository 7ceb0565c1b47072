"""Reading config YAML the way users write it: YAML 1.2 numbers, no duplicate keys, line numbers kept.

PyYAML's safe loader follows YAML 1.1, where `1e-5` (no dot) is a string; here it is a
number, as YAML 1.2 and every other tool reads it. A key given twice in one mapping is an
error naming its line (PyYAML silently keeps the last). Every mapping comes back as a
`Mapping` (a dict) whose `lines` say on which line each key stands, so a bad value can be
reported as `file:line`. A UTF-8 byte-order mark is accepted; other bytes that are not
UTF-8 are a UserError naming the line. Test: tests/test_robust_inputs.py.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from prefixrft_cli.errors import UserError
from prefixrft_cli.jsonio import read_text


class Mapping(dict):
    """A YAML mapping; `lines[key]` is the 1-based line of the key."""

    lines: dict[Any, int]


class Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats (`1e-5`, `3E+2`) and refusal of duplicate keys."""


# YAML 1.1's float pattern plus exponent-only forms (`1e-5`); the int pattern keeps plain integers.
Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"""^(?:
     [-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+
    )$""", re.X), list("-+0123456789"))


def _construct_mapping(loader: Loader, node: yaml.MappingNode) -> Mapping:
    loader.flatten_mapping(node)
    data = Mapping()
    data.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a plain value",
                                                    key_node.start_mark)
        if key in data:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} given twice (first on line {data.lines[key]})", key_node.start_mark)
        data[key] = loader.construct_object(value_node, deep=True)
        data.lines[key] = key_node.start_mark.line + 1
    return data


Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def parse(text: str, where: str, with_line: bool = True) -> Any:
    """One YAML document from `text`; any YAML error is a UserError naming `where` (and the line)."""
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - Loader is a SafeLoader
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f":{mark.line + 1}" if mark is not None and with_line else ""
        problem = err.problem or err.context or "malformed"
        if problem.startswith("key "):
            raise UserError(f"{where}{line}: {problem}") from None
        raise UserError(f"{where}{line}: malformed YAML ({problem})") from None
    except yaml.YAMLError as err:
        raise UserError(f"{where}: malformed YAML ({str(err).splitlines()[0] if str(err) else 'unreadable'})") \
            from None
    except RecursionError:
        raise UserError(f"{where}: YAML nested too deeply") from None


def read_yaml(path: Path) -> Any:
    """The YAML document in file `path` (UTF-8, a BOM allowed)."""
    return parse(read_text(path), str(path))


def parse_value(raw: str, where: str) -> Any:
    """The value of a `key=value` override, read as YAML (`1e-5` a number, `[0.9, 0.99]` a list)."""
    if not raw.strip():
        return ""
    return parse(raw, where, with_line=False)
