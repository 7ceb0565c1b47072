"""Devices, precision and non-finite steps: auto picks CPU/float32 here, float16 has a loss scaler,
a non-finite gradient never reaches the weights, and a run of them stops with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import cli_exit_code as _run
from prefixrft_cli.errors import UserError
from prefixrft_cli.models import load_policy
from prefixrft_cli.train.backend import Backend, deepspeed_config, new_optimizer, single_process
from prefixrft_cli.train.precision import make_precision, resolve_device, resolve_dtype
from prefixrft_cli.config import Config, load_config
from prefixrft_cli.train.step import select_across_ranks
from prefixrft_cli.algo.entropy import select_tokens

QUICK = ["--set", "train.steps=3", "--set", "train.prompts_per_step=2", "--set", "rollout.rollouts_per_prompt=2",
         "--set", "data.eval_problems=2", "--set", "eval.samples=1", "--set", "eval.greedy=false",
         "--set", "data.toy_train_problems=20", "--set", "rollout.max_response_tokens=32"]



def test_auto_is_cpu_and_float32_without_cuda_and_cuda_is_refused_in_one_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto") == torch.device("cpu") and resolve_dtype("auto", torch.device("cpu")) == "float32"
    assert resolve_dtype("auto", torch.device("cuda", 0)) == "bfloat16"
    with pytest.raises(UserError, match=r"model.device=cuda: torch .* sees no CUDA device"):
        resolve_device("cuda")


def test_float16_gets_a_grad_scaler_and_fsdp2_refuses_it():
    cpu = torch.device("cpu")
    assert make_precision("float16", cpu, "none").scaler is not None
    assert make_precision("bfloat16", cpu, "ddp").scaler is None and make_precision("auto", cpu, "none").name == "float32"
    with pytest.raises(UserError, match="float16 with distributed.backend=fsdp2"):
        make_precision("float16", cpu, "fsdp2")
    ds = deepspeed_config(Config(), "bfloat16")
    assert ds["bf16"] == {"enabled": True, "check_grad_overflow": True} and not ds["fp16"]["enabled"]


def _tiny_step(backend: Backend, grad_value: float):
    layer = torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in layer.parameters()]
    optimizer, scheduler = new_optimizer(layer.parameters(), Config())
    backend.backward(layer, layer(torch.ones(1, 3)).sum() * grad_value)
    norm, applied = backend.step(layer, optimizer, scheduler, 1.0)
    changed = any(not torch.equal(b, p) for b, p in zip(before, layer.parameters()))
    return norm, applied, changed, scheduler.last_epoch


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_non_finite_gradient_skips_the_update_and_the_schedule(dtype: str):
    cpu = torch.device("cpu")
    backend = Backend(cpu, make_precision(dtype, cpu, "none"))
    norm, applied, changed, lr_steps = _tiny_step(backend, float("nan"))
    assert not applied and not changed and lr_steps == 0 and norm != norm
    norm, applied, changed, lr_steps = _tiny_step(backend, 1.0)
    assert applied and changed and lr_steps == 1 and norm > 0


def test_mixed_precision_trains_with_float32_weights(tmp_path: Path):
    assert _run(["train", "--run-dir", str(tmp_path), "--set", "model.dtype=bfloat16",
                 "--set", "train.gradient_checkpointing=true"] + QUICK) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["precision"] == "bfloat16" and summary["device"] == "cpu" and summary["steps"] == 3
    model, _ = load_policy(str(tmp_path / "checkpoints" / "final"))
    assert next(model.parameters()).dtype == torch.float32   # master weights stayed float32
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(m["skipped_updates"] == 0 and m["grad_norm"] is not None for m in metrics)
    assert any(m["grad_norm"] > 0 for m in metrics)


def test_non_finite_steps_in_a_row_stop_the_run_in_one_line_keeping_the_weights(tmp_path: Path, monkeypatch,
                                                                                 capsys):
    import prefixrft_cli.train.step as step

    original = step.ppo_clip_loss
    monkeypatch.setattr(step, "ppo_clip_loss", lambda *a: (original(*a)[0] * float("nan"), original(*a)[1]))
    assert _run(["train", "--run-dir", str(tmp_path), "--set", "train.max_skipped_steps=2"] + QUICK) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "training stopped at prefix-rft step 1: 2 steps in a row" in err
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(m["step"], m["skipped_updates"], m["grad_norm"]) for m in metrics] == [(0, 1, None), (1, 1, None)]
    kept, _ = load_policy(str(tmp_path / "checkpoints" / "last-good"))
    initial, _ = load_policy("toy")
    for a, b in zip(kept.state_dict().values(), initial.state_dict().values()):
        assert torch.equal(a, b)   # no non-finite step reached the weights
    assert not (tmp_path / "summary.json").exists()


class _TwoRanks:
    """Rank `rank` of two whose shares of the candidates are `shares` (what all_gather would return)."""

    def __init__(self, rank: int, shares: list[list[float]]):
        self.rank, self.world_size, self.shares = rank, 2, shares

    def all_gather(self, obj):
        assert obj == self.shares[self.rank]
        return self.shares


@pytest.mark.parametrize("mode", ["top", "bottom", "random"])
def test_selection_across_ranks_equals_one_process_holding_both_shares(mode: str):
    # One process: rows 0-1 (rank 0's share) then rows 2-3 (rank 1's), prefix tokens as candidates;
    # equal entropies 0.5 test the tie-break by global row-major position.
    entropy = torch.tensor([[0.5, 0.1, 0.9], [0.2, 0.5, 0.0], [0.5, 0.7, 0.3], [0.4, 0.5, 0.6]])
    candidates = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=torch.bool)
    whole = select_tokens(entropy, candidates, mode, 0.4, torch.Generator().manual_seed(1))
    shares = [entropy[:2][candidates[:2]].tolist(), entropy[2:][candidates[2:]].tolist()]
    parts = [select_across_ranks(entropy[r * 2:(r + 1) * 2], candidates[r * 2:(r + 1) * 2], mode, 0.4,
                                 torch.Generator().manual_seed(1), _TwoRanks(r, shares)) for r in (0, 1)]
    assert torch.equal(torch.cat(parts), whole)
    assert int(whole.sum()) == 4   # ceil(0.4 · 9 candidates)
    assert torch.equal(select_across_ranks(entropy, candidates, mode, 0.4, torch.Generator().manual_seed(1),
                                           single_process()), whole)


def test_deepspeed_one_stage_per_run_and_hf_rollouts_only_when_distributed():
    from prefixrft_cli.train.backend import check_layout

    with pytest.raises(UserError, match="deepspeed trains one stage per run"):
        check_layout(load_config(None, ["algo=sft-then-rft", "distributed.backend=deepspeed"]), 1)
    with pytest.raises(UserError, match="rollout.engine=vllm runs in one process here"):
        check_layout(load_config(None, ["rollout.engine=vllm", "distributed.backend=ddp"]), 1)
