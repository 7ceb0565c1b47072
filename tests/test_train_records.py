"""The typed step record and run summary write the JSON keys run folders have always had."""

from __future__ import annotations

import dataclasses

from prefixrft_cli.train.records import RunSummary, StepRecord
from prefixrft_cli.train.view import describe

RL_KEYS = ["reward", "reward_hybrid", "reward_on_policy", "prefix_len_low", "prefix_fraction_mean",
           "prefix_fractions", "prefix_tokens_kept", "prefix_tokens_total", "entropy_kept", "entropy_dropped",
           "entropy_on_policy", "sft_loss_demos", "sft_interleaved_loss", "sft_interleaved_prompts", "loss", "kl",
           "response_length", "truncation_rate", "clip_fraction", "grad_norm", "updates", "skipped_updates",
           "reasons", "seconds", "stage", "step", "lr", "elapsed_seconds"]


def test_rl_step_record_keys_and_values():
    record = StepRecord(has_rollouts=True, loss=0.25, grad_norm=1.5, phase_seconds={"rollout": 0.5},
                        reward_mean=0.75, response_length_tokens=12.0, clip_fraction=0.0, reasons={"correct": 3},
                        stage="prefix-rft", step=4)
    line = record.to_json()
    assert list(line) == RL_KEYS
    assert (line["reward"], line["response_length"], line["seconds"], line["step"]) == (0.75, 12.0, {"rollout": 0.5}, 4)
    assert describe(record) == "reward 0.750  loss 0.2500  len 12 clip 0.000  |g| 1.50  r0.50s"


def test_sft_step_record_leaves_the_rollout_fields_out():
    line = StepRecord(has_rollouts=False, loss=2.0, grad_norm=0.5, sft_loss_demos=2.0,
                      phase_seconds={"update": 0.1}).to_json()
    assert set(line) == {"loss", "sft_loss_demos", "grad_norm", "updates", "skipped_updates", "seconds", "stage",
                         "step", "lr", "elapsed_seconds"}


def test_a_skipped_step_shows_no_numbers_it_does_not_have():
    record = StepRecord(has_rollouts=False, loss=None, grad_norm=None, updates=1, skipped_updates=1)
    assert describe(record) == "loss -  |g| -  [red]skipped 1[/red]  "


def test_run_summary_keys_are_the_summary_json_keys():
    names = [f.name for f in dataclasses.fields(RunSummary)]
    assert names == ["algo", "domain", "model", "accuracy_before", "accuracy_after", "greedy_accuracy_before",
                     "greedy_accuracy_after", "eval_samples", "eval_temperature", "eval_problems", "steps",
                     "steps_planned", "stopped_early_by_time_limit", "wall_seconds", "checkpoint", "run_dir",
                     "resume_command", "backend", "world_size", "device", "precision"]
