"""`prefixrft train` end to end on the toy model, through the CLI: the run folder and its contents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import cli_exit_code as run
from prefixrft_cli.models import load_policy

QUICK = ["--set", "train.steps=2", "--set", "train.prompts_per_step=4", "--set", "data.eval_problems=6",
         "--set", "eval.samples=2", "--set", "data.toy_train_problems=50", "--set", "train.threads=1",
         "--set", "train.log_rollouts_every=1"]



def test_default_algo_writes_a_complete_run_folder(tmp_path: Path):
    assert run(["train", "--run-dir", str(tmp_path)] + QUICK) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["algo"] == "prefix-rft"
    for key in ("accuracy_before", "accuracy_after", "greedy_accuracy_before", "greedy_accuracy_after"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["wall_seconds"] > 0
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["train"]["steps"] == 2 and config["selection"]["mode"] == "top"
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1]
    first = metrics[0]
    # cosine schedule: low_t = 0.95 at step 0, so every sampled L lies in [0.95, 0.95]
    assert first["prefix_len_low"] == pytest.approx(0.95) and first["prefix_fraction_mean"] == pytest.approx(0.95)
    # ... and the schedule reaches its end on the last step: low_t = prefix_len_low_end = 0.05
    assert metrics[-1]["prefix_len_low"] == pytest.approx(0.05)
    assert 0 < first["prefix_tokens_kept"] <= first["prefix_tokens_total"]
    assert first["reward_hybrid"] is not None and 0.0 <= first["reward"] <= 1.0
    rollouts = [json.loads(line) for line in (tmp_path / "rollouts.jsonl").read_text().splitlines()]
    assert any(r["hybrid"] and r["prefix_tokens"] > 0 for r in rollouts)
    model, _ = load_policy(str(tmp_path / "checkpoints" / "final"))
    assert model.config.model_type == "llama"


@pytest.mark.parametrize("algo", ["rft", "sft", "luffy", "rft-sft-loss", "sft-then-rft"])
def test_every_algo_runs(tmp_path: Path, algo: str):
    assert run(["train", "--algo", algo, "--run-dir", str(tmp_path), "--set", "train.sft_steps=1"] + QUICK) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["algo"] == algo
    stages = [json.loads(line)["stage"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert stages == (["sft", "rft", "rft"] if algo == "sft-then-rft" else [algo, algo])
    if algo == "sft-then-rft":
        assert (tmp_path / "checkpoints" / "sft-stage" / "config.json").is_file()


def test_code_domain_runs(tmp_path: Path):
    assert run(["train", "--domain", "code", "--run-dir", str(tmp_path)] + QUICK) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["domain"] == "code"


@pytest.mark.parametrize("args, message", [
    (["--algo", "ppo"], "command line: algo='ppo' is not valid"),
    (["--domain", "chemistry"], "unknown verifier 'chemistry'"),
    (["--set", "train.stepz=1"], "unknown config key 'train.stepz' (did you mean 'train.steps'?)"),
    (["--config", "missing.yaml"], "--config missing.yaml: no such file"),
    (["--model", "./no/such/folder"], "--model ./no/such/folder: no such model folder"),
    (["--set", "data.train=missing.jsonl"], "missing.jsonl"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, args: list[str], message: str):
    assert run(["train", "--run-dir", str(tmp_path / "run")] + args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("prefixrft: error:")
    assert not (tmp_path / "run").exists()   # a failed start leaves no folder to block the corrected rerun


def test_a_folder_holding_a_run_is_refused(tmp_path: Path, capsys):
    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n')
    assert run(["train", "--run-dir", str(tmp_path)] + QUICK) == 2
    assert f"already holds a run; continue it with `prefixrft train --resume {tmp_path}`" in capsys.readouterr().err
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 0}\n'


def test_malformed_training_line_names_file_and_line(tmp_path: Path, capsys):
    data = tmp_path / "train.jsonl"
    data.write_text('{"id": "a", "problem": "Compute 1 + 1.", "answer": "2"}\n{"id": "b", oops}\n')
    assert run(["train", "--run-dir", str(tmp_path / "run"), "--set", f"data.train={data}"]) == 2
    assert f"{data}:2" in capsys.readouterr().err
