"""End to end on the toy model, through the CLI: train a checkpoint, eval it against its base, plot pass@k of both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from prefixrft_cli.cli.app import main

# SFT from the toy base on toy demonstrations: a handful of steps, cheap before/after checks
TRAIN = ["train", "--algo", "sft", "--model", "toy", "--steps", "10", "--set", "train.prompts_per_step=16",
         "--set", "optim.lr=0.0003", "--set", "optim.warmup_steps=0", "--set", "data.toy_train_problems=400",
         "--set", "data.eval_problems=2", "--set", "eval.samples=1", "--set", "eval.greedy=false",
         "--set", "train.threads=1", "--set", "train.max_wall_minutes=0", "--set", "train.log_rollouts_every=100"]
EVAL = ["eval", "--benchmarks", "toy-math", "--limit", "24", "--samples", "4", "--batch-size", "48",
        "--max-new-tokens", "64", "--threads", "1"]


@pytest.fixture(autouse=True)
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    try:
        main(argv)
    except SystemExit as exit_:
        assert exit_.code in (0, None), capsys.readouterr().err
    return capsys.readouterr().out


def test_trained_checkpoint_against_base_and_passk_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_cli(TRAIN + ["--run-dir", str(tmp_path / "run")], capsys)
    checkpoint = tmp_path / "run" / "checkpoints" / "final"
    assert (checkpoint / "config.json").is_file()
    run_cli(EVAL + ["--model", "toy", "-o", str(tmp_path / "base")], capsys)
    run_cli(EVAL + ["--model", str(checkpoint), "-o", str(tmp_path / "sft")], capsys)
    summaries = {name: json.loads((tmp_path / name / "summary.json").read_text()) for name in ("base", "sft")}
    accuracy = {name: s["benchmarks"][0]["accuracy"] for name, s in summaries.items()}
    assert summaries["sft"]["settings"]["model"] == str(checkpoint)
    completions = {name: [json.loads(line)["completion"] for line in (tmp_path / name / "samples.jsonl").open()]
                   for name in ("base", "sft")}
    assert len(completions["base"]) == len(completions["sft"]) == 96
    assert completions["base"] != completions["sft"]               # the checkpoint is a different policy

    out = run_cli(["passk", str(tmp_path / "base"), str(tmp_path / "sft"), "-o", str(tmp_path / "pk")], capsys)
    report = {run["label"]: run["benchmarks"]["toy-math"]
              for run in json.loads((tmp_path / "pk" / "passk.json").read_text())["runs"]}
    assert set(report) == {"base", "sft"}
    for name, curve in report.items():
        assert curve["k"] == [1, 2, 4] and curve["problems"] == 24
        # toy-math scores are 0 or 1, so pass@1 from 4 samples is exactly eval's avg@4
        assert curve["pass_at_k"][0] == pytest.approx(accuracy[name])
        assert curve["pass_at_k"] == sorted(curve["pass_at_k"])    # more tries never hurt
    assert (tmp_path / "pk" / "passk.png").read_bytes()[:4] == b"\x89PNG"
    assert "toy-math: pass@k" in out
