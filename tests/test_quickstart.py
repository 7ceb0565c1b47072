"""docs/quickstart.md "Your first hour": every `$` line is run, and its shown output must be what it prints.

Timings (elapsed, `N s`, samples/s) and `...` are not compared; whitespace is normalised so
that rich's line wrapping does not matter. Blocks that train (a few steps, ~30 s each on a
busy 2-core machine) run with --runslow; the others run in the default suite.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "quickstart.md"
VOLATILE = re.compile(r"elapsed|\d s[;,]|samples/s|^\.\.\.$")


def blocks() -> list[list[tuple[str, list[str]]]]:
    """The console blocks of the section: each a list of (command, expected output lines)."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Your first hour"):]
    section = section[:section.index("\n## ", 5)]
    out = []
    for body in re.findall(r"```console\n(.*?)```", section, re.S):
        commands: list[tuple[str, list[str]]] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            elif commands:
                commands[-1][1].append(line)
        out.append(commands)
    return out


def _squash(text: str) -> str:
    return " ".join(text.split())


def _run_block(commands: list[tuple[str, list[str]]], tmp_path: Path) -> None:
    env = dict(os.environ, COLUMNS="80", PYTHONIOENCODING="utf-8", PREFIXRFT_DATA_DIR=str(tmp_path / "data"))
    for command, expected in commands:
        words = shlex.split(command)
        if words[:2] == ["pip", "install"]:
            source = tmp_path / "plugin-source"
            shutil.copytree(ROOT / words[2], source)
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                            "--no-build-isolation", "--disable-pip-version-check", "--target",
                            str(tmp_path / "site"), str(source)], check=True, capture_output=True, timeout=300)
            env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), env.get("PYTHONPATH", "")])
            continue
        assert words[0] == "prefixrft", command
        done = subprocess.run([sys.executable, "-m", "prefixrft_cli", *words[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        printed = _squash(done.stdout + "\n" + done.stderr)
        wants_error = any(line.startswith("prefixrft: error:") for line in expected)
        assert done.returncode == (2 if wants_error else 0), (command, done.stderr[-2000:])
        assert "Traceback" not in done.stderr
        for line in expected:
            if line.strip() and not VOLATILE.search(line):
                assert _squash(line) in printed, f"{command}\nmissing: {line}\nprinted:\n{done.stdout}{done.stderr}"


ALL = blocks()
PARAMS = [pytest.param(block, id=block[-1][0].split()[1] + f"-{i}",
                       marks=[pytest.mark.slow] if any(" train --domain" in f" {c}" for c, _ in block) else [])
          for i, block in enumerate(ALL)]


def test_the_section_walks_the_four_user_commands() -> None:
    commands = [c for block in ALL for c, _ in block]
    for needed in ("prefixrft train --domain code", "prefixrft eval --benchmarks aime24,mbpp+",
                   "prefixrft inspect-entropy", "pip install plugins/example-plugin", "prefixrft plugins",
                   "prefixrft train --domain exact-match"):
        assert any(c.startswith(needed) for c in commands), needed


@pytest.mark.parametrize("block", PARAMS)
def test_quickstart_block(block, tmp_path: Path) -> None:
    _run_block(block, tmp_path)
