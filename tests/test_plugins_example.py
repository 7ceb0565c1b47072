"""The example third-party plugin, installed for real and used through the CLI; the docs name every protocol method.

The package in plugins/example-plugin is pip-installed (no dependencies, no index) into a
temporary folder that only the subprocesses below see through PYTHONPATH, so the test
environment is left as it was.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prefixrft_cli import protocols

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "plugins" / "example-plugin"
DOCS = ROOT / "docs" / "plugins.md"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("example-plugin")
    source = base / "source"
    shutil.copytree(PLUGIN, source)   # building in a copy keeps build/ and *.egg-info out of the repository
    site = base / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--disable-pip-version-check", "--target", str(site), str(source)],
                   check=True, capture_output=True, timeout=300)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def prefixrft(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefixrft_cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_plugins_lists_the_four_entries(plugin_env, tmp_path: Path) -> None:
    done = prefixrft(plugin_env, "plugins", "--output", str(tmp_path / "plugins.json"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = {(r["group"], r["name"]): r for r in json.loads((tmp_path / "plugins.json").read_text())}
    for key, status in [(("prefixrft.verifiers", "exact-match"), "ok"),
                        (("prefixrft.demonstrators", "answer-template"), "ok"),
                        (("prefixrft.benchmarks", "capitals"), "ok: 12 problems"),
                        (("prefixrft.train_sets", "exact-match"), "ok: 18 problems")]:
        assert rows[key]["distribution"] == "prefixrft-example-plugin"
        assert rows[key]["status"] == status
    assert rows[("prefixrft.verifiers", "math")]["status"] == "ok"   # built-ins still there
    # the main environment never saw the plugin
    from prefixrft_cli import registry
    assert "exact-match" not in registry.Registry("verifier", "prefixrft.verifiers").names()


def test_verify_with_the_plugin_verifier(plugin_env, tmp_path: Path) -> None:
    records = [{"completion": "It is Paris.\nAnswer: paris", "answer": "Paris"},
               {"completion": "Answer: Lyon", "answer": "Paris"},
               {"completion": "I do not know", "answer": "Oslo"},
               {"completion": "answer:  new   delhi.", "answer": "New Delhi"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    done = prefixrft(plugin_env, "verify", "--domain", "exact-match", "in.jsonl", "--output", "out.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    scored = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in scored] == ["correct", "wrong", "no_answer", "correct"]
    assert [r["extracted"] for r in scored] == ["paris", "Lyon", None, "new   delhi."]
    summary = json.loads((tmp_path / "out.summary.json").read_text())
    assert summary["accuracy"] == 0.5 and summary["by_reason"]["correct"] == 2


def test_benchmark_and_demonstrator_load_through_the_registry(plugin_env, tmp_path: Path) -> None:
    script = ("from prefixrft_cli import registry\n"
              "bench = registry.benchmarks.get('capitals')()\n"
              "problems = bench.load('.')\n"
              "demos = registry.demonstrators.get('answer-template')().demonstrate(problems)\n"
              "verifier = registry.verifiers.get(bench.domain)()\n"
              "results = verifier.verify_batch([d[0].text for d in demos], problems)\n"
              "print(len(problems), bench.domain, sum(r.score for r in results))\n")
    done = subprocess.run([sys.executable, "-c", script], env=plugin_env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # 12 bundled questions; each template demonstration verifies as correct
    assert done.stdout.split() == ["12", "exact-match", "12.0"]


def test_docs_name_every_protocol_method_and_group() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for protocol in (protocols.Verifier, protocols.Demonstrator, protocols.Benchmark, protocols.TrainSet):
        members = [name for name, _ in inspect.getmembers(protocol, inspect.isfunction) if not name.startswith("_")]
        members += [name for name in getattr(protocol, "__annotations__", {})]
        assert members, protocol
        for name in members:
            assert f"`{name}" in text, f"docs/plugins.md does not name {protocol.__name__}.{name}"
    for group in ("prefixrft.verifiers", "prefixrft.demonstrators", "prefixrft.benchmarks", "prefixrft.train_sets"):
        assert group in text
    for field in ("score", "reason", "extracted", *protocols.REASONS):
        assert f"`{field}`" in text


def test_train_on_the_plugin_domain_with_no_data_flags(plugin_env, tmp_path: Path) -> None:
    """`prefixrft train --domain exact-match`: the plugin's train set and its benchmark are found."""
    done = prefixrft(plugin_env, "train", "--domain", "exact-match", "--steps", "1", "--run-dir", "run",
                     "--set", "train.prompts_per_step=2", "--set", "rollout.rollouts_per_prompt=2",
                     "--set", "eval.samples=1", "--set", "eval.greedy=false", "--set", "train.max_wall_minutes=0",
                     "--set", "rollout.max_response_tokens=8", "--set", "eval.max_response_tokens=8", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["domain"] == "exact-match" and summary["steps"] == 1
    assert "on 12 held-out problems" in done.stdout
