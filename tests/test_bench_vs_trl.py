"""bench/vs_trl.py, the lockstep harness against TRL: the same work is set up on both sides, and a tiny run works.

The fast tests check what the harness builds (problem order, the random model, prefixrft's
config and TRL's GRPOConfig for one shape); the slow one runs one warm-up and one measured
step of each contender in lockstep (about a minute on a busy 2-core machine: three
processes import torch, transformers and TRL).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from contenders import Shape, shape_config, trl_args  # noqa: E402
from vs_trl import main, problem_order, random_model, run_lockstep  # noqa: E402

TINY = Shape(prompts_per_step=2, rollouts_per_prompt=2, max_response_tokens=8)


def test_problem_order_is_seeded_and_distinct_within_a_step() -> None:
    order = problem_order(TINY, 5)
    assert order == problem_order(TINY, 5) and len(order) == 5
    assert all(len(set(step)) == TINY.prompts_per_step for step in order)
    assert order != problem_order(Shape(prompts_per_step=2, seed=1), 5)


def test_both_sides_are_configured_for_the_same_work(tmp_path: Path) -> None:
    shape = Shape(prompts_per_step=4, rollouts_per_prompt=8, max_response_tokens=32, lr=3e-6)
    for algo in ("rft", "prefix-rft"):
        cfg = shape_config(shape, algo, str(tmp_path / algo))
        assert (cfg.algo, cfg.train.prompts_per_step, cfg.rollout.rollouts_per_prompt) == (algo, 4, 8)
        assert (cfg.rollout.max_response_tokens, cfg.optim.lr, cfg.optim.warmup_steps) == (32, 3e-6, 0)
        assert cfg.loss.kl_coef == 0 and cfg.rollout.temperature == 1.0 and cfg.train.threads == 1
    args = trl_args(shape, str(tmp_path / "trl"), steps=3)
    assert args.per_device_train_batch_size == 32 and args.num_generations == 8 and args.steps_per_generation == 1
    assert (args.max_completion_length, args.learning_rate, args.max_steps) == (32, 3e-6, 3)
    assert (args.beta, args.loss_type, args.scale_rewards, args.use_vllm) == (0.0, "dr_grpo", "none", False)
    assert (args.temperature, args.top_k, args.num_iterations, args.bf16, args.shuffle_dataset) == (1.0, 0, 1, False,
                                                                                                   False)
    assert (args.adam_beta2, args.max_grad_norm, args.lr_scheduler_type) == (0.99, 1.0, "constant")
    # TRL recomputes activations by default; prefixrft's contenders keep them: neither may differ
    assert args.gradient_checkpointing is False and not cfg.train.gradient_checkpointing


def test_random_model_is_a_llama_with_the_toy_tokenizer(tmp_path: Path) -> None:
    from prefixrft_cli.models import load_policy

    model, tokenizer = load_policy(random_model("random-1m", tmp_path / "m"))
    assert model.config.model_type == "llama" and 0.9e6 < sum(p.numel() for p in model.parameters()) < 1.2e6
    assert tokenizer.eos_token_id == model.config.eos_token_id


def test_bad_options_exit_2(capsys: pytest.CaptureFixture) -> None:
    assert main(["--contenders", "rft,verl"]) == 2
    assert "verl" in capsys.readouterr().err


@pytest.mark.slow
def test_a_tiny_lockstep_run_measures_every_contender() -> None:
    result = run_lockstep(TINY, steps=1, warmup=1)
    rows = result["contenders"]
    assert set(rows) == {"rft", "prefix-rft", "trl"} and rows["trl"]["wall_vs_trl"] == 1.0
    for name, row in rows.items():
        assert row["rows_per_step"] == 4 and row["steps"] == 1 and row["peak_rss_mb"] > 100
        assert 0 < row["generated_tokens_per_step"] <= 4 * 8 and 0 < row["response_tokens_mean"] <= 8
        assert row["cpu_median_s"] > 0 and "update" in row["phase_seconds"]
    assert set(rows["rft"]["phase_seconds"]) == {"rollout", "verify", "update"} and rows["rft"]["hybrid_rows"] == 0
    assert rows["prefix-rft"]["hybrid_rows"] == 2   # one hybrid rollout per prompt
