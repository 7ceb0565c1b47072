"""The memory plan (`prefixrft train --dry-run`): a Qwen2.5-7B config.json against hand-derived numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli_exit_code as run
from prefixrft_cli.config import load_config
from prefixrft_cli.errors import UserError
from prefixrft_cli.plan import GB, ModelShape, PlanInputs, estimate, inputs_from_config, sharding

# Qwen/Qwen2.5-Math-7B's config.json, the fields that matter (q/k/v carry a bias in qwen2)
QWEN_7B = {"model_type": "qwen2", "hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
           "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152064,
           "tie_word_embeddings": False, "max_position_embeddings": 4096}
# embeddings and lm_head 2 x 152064 x 3584 = 1,089,994,752
# one layer: q 3584*3584 + 3584 = 12,848,640; k, v 3584*512 + 512 = 1,835,520 each; o 12,845,056;
#            MLP 3 * 3584 * 18944 = 203,685,888; two norms 7,168  -> 233,057,792; x 28 = 6,525,618,176
# final norm 3,584 -> 7,615,616,512 (the model card's 7.62B)
PSI = 7_615_616_512



def shape() -> ModelShape:
    return ModelShape.from_config(QWEN_7B, "config.json")


def inputs(**changes) -> PlanInputs:
    base = dict(backend="none", zero_stage=2, world_size=1, dtype="bfloat16", micro_batch_sequences=1,
                prompt_tokens=1024, response_tokens=8192, engine="vllm", rollout_sequences=128,
                vllm_gpu_memory_utilization=0.5, reference_model=False, gpu_memory_bytes=None)
    return PlanInputs(**{**base, **changes})


def test_parameter_count_of_qwen_7b():
    assert shape().layer_parameters() == 233_057_792
    assert shape().parameters() == PSI


def test_tied_embeddings_and_no_bias_count_once():
    llama = dict(QWEN_7B, model_type="llama", tie_word_embeddings=True)
    # one embedding matrix fewer (544,997,376) and no q/k/v bias (3584 + 2 * 512 = 4,608 per layer)
    assert ModelShape.from_config(llama, "c").parameters() == PSI - 544_997_376 - 28 * 4_608


@pytest.mark.parametrize("backend, stage, expected", [
    ("none", 2, (1, 1, 1)), ("ddp", 2, (1, 1, 1)), ("fsdp2", 2, (8, 8, 8)),
    ("deepspeed", 1, (1, 1, 8)), ("deepspeed", 2, (1, 8, 8)), ("deepspeed", 3, (8, 8, 8))])
def test_zero_stages_shard_what_the_paper_says(backend, stage, expected):
    assert sharding(backend, stage, 8) == expected


def test_bf16_states_per_backend():
    # none / ddp: fp32 weights (4) + autocast's bf16 copies (2), fp32 grads (4), Adam m + v (8); nothing sharded
    ddp = estimate(shape(), inputs(backend="ddp", world_size=8))
    assert (ddp.parameters, ddp.gradients, ddp.optimizer_state) == (6 * PSI, 4 * PSI, 8 * PSI)
    # fsdp2: the same fp32 states, all sharded 8 ways (it casts one layer at a time, not counted)
    fsdp = estimate(shape(), inputs(backend="fsdp2", world_size=8))
    assert (fsdp.parameters, fsdp.gradients, fsdp.optimizer_state) == (4 * PSI // 8, 4 * PSI // 8, PSI)
    # DeepSpeed bf16: bf16 weights 2 bytes and grads 2 bytes; fp32 master + Adam m + v = 12 bytes
    z2 = estimate(shape(), inputs(backend="deepspeed", zero_stage=2, world_size=8))
    assert (z2.parameters, z2.gradients, z2.optimizer_state) == (15_231_233_024, 1_903_904_128, 11_423_424_768)
    z3 = estimate(shape(), inputs(backend="deepspeed", zero_stage=3, world_size=8))
    assert z3.parameters == 1_903_904_128 and z3.parameters + z3.gradients + z3.optimizer_state == 16 * PSI // 8


def test_fp32_states_have_no_master_copy():
    plan = estimate(shape(), inputs(dtype="float32"))
    assert (plan.parameters, plan.gradients, plan.optimizer_state) == (4 * PSI, 4 * PSI, 8 * PSI)


def test_activations_and_logits_by_hand():
    plan = estimate(shape(), inputs())
    # per token per layer: 7 * 3584 + 3 * 512 + 4 * 18944 = 102,400 elements = 204,800 bytes in bf16
    layers = 9216 * 204_800 * 28                      # 1 sequence of 1024 + 8192 tokens: 52,848,230,400
    logits = 152_064 * (9216 * 2 + 2 * 8192 * 4)      # bf16 logits of all positions + fp32 copy and log-softmax
    assert plan.activations == layers + logits == 65_616_740_352
    # checkpointed: each layer's input (3584 x 2 bytes) kept, one layer recomputed
    assert plan.activations_checkpointed == 9216 * (3584 * 2 * 28 + 204_800) + logits


def test_kv_cache_and_vllm_reservation():
    # K and V, 28 layers, 4 kv heads of 128, bf16: 57,344 bytes a token (Qwen2.5-7B's 56 KiB)
    plan = estimate(shape(), inputs(gpu_memory_bytes=80 * GB))
    assert plan.kv_cache == 128 * 9216 * 57_344
    assert plan.vllm_reserved == 40 * GB
    states = 18 * PSI                                 # 6 + 4 + 8 bytes a parameter (backend none, bf16)
    assert plan.total == states + plan.activations + 40 * GB and plan.fits is False
    assert any("max_position_embeddings 4096" in note for note in plan.notes)


def test_zero3_on_8_gpus_fits_with_checkpointing_only():
    plan = estimate(shape(), inputs(backend="deepspeed", zero_stage=3, world_size=8, gpu_memory_bytes=80 * GB,
                                    vllm_gpu_memory_utilization=0.3))
    # states 16 * PSI / 8 = 14.2 GiB, vLLM 0.3 * 80 = 24 GiB; activations 61.1 GiB -> 99.3 GiB, too much;
    # checkpointed 9216 * (3584 * 2 * 28 + 204,800) + logits = 15.4 GiB -> 53.6 GiB, fits
    assert plan.total == 16 * PSI // 8 + plan.activations + int(0.3 * 80 * GB)
    assert (plan.fits, plan.fits_checkpointed) == (False, True)
    assert round(plan.total_checkpointed / GB, 1) == 53.6


def test_hf_engine_peak_is_the_larger_of_generation_and_update():
    plan = estimate(shape(), inputs(engine="hf", rollout_sequences=512, micro_batch_sequences=1))
    kv = 256 * 9216 * 57_344                          # the hf engine decodes 256 sequences at a time
    prefill = 256 * 152_064 * (2 + 4 + 4 + 8)        # last-position logits, fp32 copy, log-probs, fp64 cdf
    assert (plan.kv_cache, plan.rollout_logits) == (kv, prefill)
    assert plan.total == 18 * PSI + max(plan.activations, kv + prefill)


def test_inputs_from_the_paper_config_split_prompts_across_ranks():
    cfg = load_config(None, ["train.prompts_per_step=128", "train.mini_batches=2", "train.micro_batch_responses=0",
                             "distributed.backend=fsdp2"])
    got = inputs_from_config(cfg, world_size=8, gpu_memory_gb=80)
    # 128 prompts x 8 rollouts / 8 ranks = 128 per rank; 2 mini-batches of 64 sequences
    assert (got.rollout_sequences, got.micro_batch_sequences, got.backend) == (128, 64, "fsdp2")
    assert got.gpu_memory_bytes == 80 * GB


def test_moe_and_incomplete_configs_are_refused():
    with pytest.raises(UserError, match="mixture-of-experts"):
        ModelShape.from_config(dict(QWEN_7B, num_experts=64), "c.json")
    with pytest.raises(UserError, match="c.json: no integer 'hidden_size'"):
        ModelShape.from_config({"num_hidden_layers": 2}, "c.json")


def test_dry_run_cli_prints_json_and_trains_nothing(tmp_path: Path, capsys, monkeypatch):
    folder = tmp_path / "qwen7b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(QWEN_7B))
    monkeypatch.chdir(tmp_path)
    assert run(["train", "--config", "paper/prefix-rft", "--model", str(folder), "--dry-run", "--json",
                "--world-size", "8", "--gpu-memory-gb", "141", "--set", "distributed.backend=deepspeed",
                "--set", "distributed.zero_stage=3"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["plan"]["parameter_count"] == PSI
    assert record["plan"]["parameters"] == 2 * PSI // 8
    assert record["inputs"]["rollout_sequences"] == 128 and record["inputs"]["world_size"] == 8
    assert not (tmp_path / "runs").exists()


def test_dry_run_on_the_toy_model_renders_a_table(capsys):
    assert run(["train", "--dry-run", "--gpu-memory-gb", "1"]) == 0
    out = capsys.readouterr().out
    assert "0.00105B parameters" in out and "fits 1 GiB" in out and "nothing was trained" in out


def test_dry_run_bad_config_json_is_one_line(tmp_path: Path, capsys):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{not json")
    assert run(["train", "--dry-run", "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "config.json: not valid JSON" in err and len(err.strip().splitlines()) == 1


def test_world_size_comes_from_the_launcher_unless_given(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert run(["train", "--dry-run", "--json", "--set", "distributed.backend=fsdp2"]) == 0
    record = json.loads(capsys.readouterr().out)
    # 16 prompts x 8 rollouts / 4 ranks = 32 rollouts per rank; fp32 toy: 4 bytes a parameter over 4 ranks
    assert record["inputs"]["world_size"] == 4 and record["inputs"]["rollout_sequences"] == 32
    assert record["plan"]["parameters"] == 1_051_920 * 4 // 4
    assert run(["train", "--dry-run", "--world-size", "0"]) == 2
    assert "--world-size 0: must be at least 1" in capsys.readouterr().err
    assert run(["train", "--dry-run", "--gpu-memory-gb", "-1"]) == 2
    assert "--gpu-memory-gb -1.0: must be positive" in capsys.readouterr().err
