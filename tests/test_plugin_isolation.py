"""Plugins isolated by name: a broken, duplicate or failing plugin is reported, attributed and skipped.

A fake distribution `evil-plugin` (a dist-info folder and one module, no pip) is put on
PYTHONPATH for the subprocesses only. It registers a benchmark named like a built-in
(`aime24`), a verifier whose constructor raises, a benchmark whose load() raises, and an
entry that does not import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MODULE = '''
from prefixrft_cli.records import Problem

class FakeAime:
    domain = "math"
    default_samples = 1
    def load(self, data_dir):
        return [Problem("fake-0", "What is 1+1?", "2")]

class RaisingVerifier:
    def __init__(self):
        raise RuntimeError("no licence key")

class FailingBenchmark:
    domain = "math"
    default_samples = 1
    def load(self, data_dir):
        return [][3]
'''
ENTRY_POINTS = '''[prefixrft.benchmarks]
aime24 = evil_plugin:FakeAime
fails-to-load = evil_plugin:FailingBenchmark
not-importable = evil_plugin_missing:Thing

[prefixrft.verifiers]
raising = evil_plugin:RaisingVerifier
'''


@pytest.fixture(scope="module")
def evil_env(tmp_path_factory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("evil-site")
    (site / "evil_plugin.py").write_text(MODULE)
    info = site / "evil_plugin-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evil-plugin\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def prefixrft(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefixrft_cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_plugins_reports_each_failure_with_its_entry_point_and_distribution(evil_env, tmp_path: Path) -> None:
    done = prefixrft(evil_env, "plugins", "--output", "plugins.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    rows = {(r["group"].split(".")[1], r["name"]): r for r in json.loads((tmp_path / "plugins.json").read_text())}
    assert rows[("benchmarks", "aime24")]["distribution"] == "prefixrft"
    assert rows[("benchmarks", "aime24")]["status"] == "ok: 30 problems"
    refused = rows[("benchmarks", "evil-plugin:aime24")]
    assert refused["distribution"] == "evil-plugin" and refused["version"] == "0.3"
    assert "'aime24' is already prefixrft's" in refused["status"] and "'evil-plugin:aime24'" in refused["status"]
    failing = rows[("benchmarks", "fails-to-load")]["status"]
    assert failing.startswith("failed (evil_plugin:FailingBenchmark)") and "IndexError" in failing
    raising = rows[("verifiers", "raising")]["status"]
    assert raising.startswith("failed (evil_plugin:RaisingVerifier)") and "RuntimeError: no licence key" in raising
    missing = rows[("benchmarks", "not-importable")]
    assert missing["status"].startswith("failed") and "ModuleNotFoundError" in missing["status"]
    assert missing["distribution"] == "evil-plugin"
    assert rows[("verifiers", "math")]["status"] == "ok"


def test_everything_else_keeps_working_and_failures_are_one_attributed_line(evil_env, tmp_path: Path) -> None:
    done = prefixrft(evil_env, "train", "--print-config", cwd=tmp_path)
    assert done.returncode == 0 and "algo: prefix-rft" in done.stdout, done.stderr
    script = ("from prefixrft_cli import registry\n"
              "print(registry.load_problems(registry.benchmarks, 'aime24', '.')[1][0].id)\n"
              "print(registry.load_problems(registry.benchmarks, 'evil-plugin:aime24', '.')[1][0].id)\n")
    shown = subprocess.run([sys.executable, "-c", script], env=evil_env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert shown.stdout.split() == ["aime24-0", "fake-0"], shown.stderr
    (tmp_path / "in.jsonl").write_text(json.dumps({"completion": "2", "answer": "2"}) + "\n")
    for args, expected in [
        (("verify", "--domain", "raising", "in.jsonl", "--output", "out.jsonl"),
         "verifier plugin 'raising' (evil_plugin:RaisingVerifier from evil-plugin 0.3) failed in its constructor: "
         "RuntimeError: no licence key"),
        (("verify", "--benchmark", "fails-to-load", "in.jsonl", "--output", "out.jsonl"),
         "benchmark plugin 'fails-to-load' (evil_plugin:FailingBenchmark from evil-plugin 0.3) failed in load(): "
         "IndexError"),
        (("eval", "--benchmarks", "not-importable", "--model", "toy"),
         "benchmark plugin 'not-importable' (evil_plugin_missing:Thing from evil-plugin 0.3) failed to load: "
         "ModuleNotFoundError"),
    ]:
        done = prefixrft(evil_env, *args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert expected in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert not (tmp_path / "out.jsonl").exists()
