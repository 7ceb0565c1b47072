"""docs/config.md, generated from the typed config tree in config.py (its field comments, CHOICES and RANGES).

Run `python -m prefixrft_cli.config > docs/config.md`; tests/test_config.py checks the page is current.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing

from prefixrft_cli.config import CHOICES, RANGES, Config


def _valid_text(dotted: str) -> str:
    if dotted in RANGES:
        return str(RANGES[dotted]).replace("|", "\\|")
    if dotted in CHOICES:
        return " \\| ".join(CHOICES[dotted])
    return ""


def reference_markdown() -> str:
    """docs/config.md, rendered from this file's field comments (the one place each field is documented)."""
    lines = ["# Config reference", "",
             "Every default lives in `prefixrft_cli/config.py`; this page is generated from it with",
             "`python -m prefixrft_cli.config > docs/config.md` (a test checks they agree).",
             "Override with a YAML file (`--config FILE.yaml`, nested keys) or `--set section.key=value`.",
             "`valid` is checked when the config is loaded (`[a, b]` closed, `(a, b]` open at a); a value",
             "outside it stops the command with one line naming the file and line or the `--set`.",
             "`prefixrft train ... --print-config` prints the resolved, validated tree and exits.", ""]
    hints = typing.get_type_hints(Config)
    sections = [("top level", "", Config)] + [(name, name + ".", hint) for name, hint in hints.items()
                                               if dataclasses.is_dataclass(hint)]
    for title, prefix, section in sections:
        lines += [f"## {title}", "", "| key | default | valid | meaning |", "| --- | --- | --- | --- |"]
        for line in inspect.getsource(section).splitlines():
            match = re.match(r"\s+(\w+): ([^=]+?)(?: = (.+?))?\s*(?:#\s*(.*))?$", line)
            if not match or (section is Config and dataclasses.is_dataclass(hints[match[1]])):
                continue
            meaning = (match[4] or "").replace("|", "\\|")
            lines.append(f"| `{prefix}{match[1]}` | `{match[3] or ''}` | {_valid_text(prefix + match[1])} | {meaning} |")
        lines.append("")
    return "\n".join(lines)
