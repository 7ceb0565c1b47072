"""World-size invariance, for real: two gloo processes under torchrun end with one process's weights.

For each backend (ddp, fsdp2, DeepSpeed ZeRO-2 and ZeRO-3), `torchrun --nproc-per-node 2 -m
prefixrft_cli train` and a one-process `prefixrft train` with the same config and seed must
end with the same weights (max abs diff <= 1e-5) while the weights moved by far more than
that, write one metrics line per step (rank 0 only) with the same numbers, and leave an
ordinary from_pretrained checkpoint. The config has two mini-batches (global mini-batch
composition and dr-grpo normaliser), a KL term (the reference model) and top-20% entropy
selection over the global mini-batch. About 20-40 s a launch on two shared cores; ZeRO-3 (the
slowest, and the same code path as ZeRO-2 but for the gathered checkpoint and the lockstep
generation fsdp2 also uses) runs with --runslow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import cli_exit_code as _run
from prefixrft_cli.models import load_policy

TINY = ["--set", "train.steps=2", "--set", "train.prompts_per_step=4", "--set", "train.mini_batches=2",
        "--set", "rollout.rollouts_per_prompt=3", "--set", "rollout.max_response_tokens=40",
        "--set", "data.toy_train_problems=40", "--set", "data.eval_problems=2", "--set", "eval.samples=1",
        "--set", "eval.greedy=false", "--set", "eval.max_response_tokens=8", "--set", "loss.kl_coef=0.01",
        "--set", "optim.lr=0.0002", "--set", "optim.warmup_steps=0", "--set", "train.log_rollouts_every=1",
        "--set", "seed=3"]



def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    model, _ = load_policy(str(run_dir / "checkpoints" / "final"))   # an ordinary from_pretrained folder
    return {k: v.detach() for k, v in model.state_dict().items()}


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("one") / "run"
    assert _run(["train", "--run-dir", str(run_dir)] + TINY) == 0
    return run_dir


def torchrun(run_dir: Path, *sets: str, procs: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
               "-m", "prefixrft_cli", "train", "--run-dir", str(run_dir)] + TINY
    for item in sets:
        command += ["--set", item]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("sets", [("distributed.backend=ddp",), ("distributed.backend=fsdp2",),
                                  ("distributed.backend=deepspeed", "distributed.zero_stage=2"),
                                  pytest.param(("distributed.backend=deepspeed", "distributed.zero_stage=3"),
                                               marks=pytest.mark.slow)],
                         ids=["ddp", "fsdp2", "zero2", "zero3"])
def test_two_processes_end_with_the_weights_of_one(tmp_path: Path, one_process: Path, sets):
    if "deepspeed" in sets[0]:
        pytest.importorskip("deepspeed")
    run_dir = tmp_path / "run"
    done = torchrun(run_dir, *sets)
    assert done.returncode == 0, done.stderr[-3000:]
    ours, reference = _weights(run_dir), _weights(one_process)
    initial, _ = load_policy("toy")
    moved = max(float((reference[k] - v).abs().max()) for k, v in initial.state_dict().items())
    assert moved > 1e-4                         # training changed the weights far beyond the tolerance
    assert max(float((ours[k] - reference[k]).abs().max()) for k in reference) <= 1e-5
    ours_m, reference_m = _metrics(run_dir), _metrics(one_process)
    assert [m["step"] for m in ours_m] == [0, 1]   # rank 0 alone writes: one line per step
    for a, b in zip(ours_m, reference_m):
        assert a["reward"] == b["reward"] and a["reasons"] == b["reasons"]
        assert a["prefix_tokens_kept"] == b["prefix_tokens_kept"] and a["prefix_tokens_total"] == b["prefix_tokens_total"]
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6) and a["kl"] == pytest.approx(b["kl"], abs=1e-6)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["backend"] == sets[0].split("=")[1]
    assert "prefixrft_cli/" not in done.stderr    # no traceback through our code


def test_a_launch_of_two_with_backend_none_is_refused_in_one_line(monkeypatch, tmp_path: Path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")   # what torchrun --nproc-per-node 2 sets
    assert _run(["train", "--run-dir", str(tmp_path / "run")] + TINY) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("prefixrft: error: WORLD_SIZE=2 (a torchrun or deepspeed launch) needs distributed.backend "
                   "ddp, fsdp2 or deepspeed; it is none")
    assert not (tmp_path / "run").exists()


def test_prompts_that_do_not_split_over_the_ranks_are_refused(monkeypatch, tmp_path: Path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert _run(["train", "--run-dir", str(tmp_path / "run"), "--set", "distributed.backend=ddp"] + TINY) == 2
    err = capsys.readouterr().err.strip()
    assert "train.prompts_per_step=4 must be a multiple of train.mini_batches (2) x the number of processes (3)" in err
    assert len(err.splitlines()) == 1


def test_the_deepspeed_launchers_local_rank_argument_is_accepted(run_cli):
    # `deepspeed --module prefixrft_cli train ...` runs `python -m prefixrft_cli --local_rank=N train ...`
    code, out, _ = run_cli(["--local_rank=1", "plugins"])
    assert code == 0 and "math" in out
