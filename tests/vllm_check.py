"""The real vLLM check, run by a Python that has vLLM: `PY tests/vllm_check.py OUT_DIR [--model DIR]`.

Builds a tiny random-init Qwen2 (head size 64, grouped-query attention, the shipped toy
tokenizer) in OUT_DIR/tiny-qwen2 unless --model is given, starts the vllm engine on it,
and compares greedy continuations and their log-probs with the hf engine: before any
update, after an update without a sync (they must differ, or the check proves nothing),
and after `sync_weights`. Prints one JSON line. Used by tests/test_vllm_engine.py
(--runslow, PREFIXRFT_VLLM_PYTHON) and recorded in docs/scaling.md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch


def build_tiny_qwen2(folder: Path) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM

    from prefixrft_cli.models import load_tokenizer

    tokenizer = load_tokenizer("toy")
    config = AutoConfig.for_model("qwen2", hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                                  num_key_value_heads=1, head_dim=64, intermediate_size=256,
                                  vocab_size=len(tokenizer), max_position_embeddings=1024,
                                  tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id,
                                  pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def compare(a, b) -> dict:
    diffs = [abs(x - y) for ra, rb in zip(a.logprobs, b.logprobs) for x, y in zip(ra, rb)]
    return {"tokens_equal": a.tokens == b.tokens, "max_abs_logprob_diff": max(diffs) if diffs else None,
            "tokens": sum(len(t) for t in a.tokens)}


def main(out_dir: Path, model_dir: Path | None) -> dict:
    from prefixrft_cli.models import load_policy
    from prefixrft_cli.rollout.sampler import make_sampler

    model_dir = model_dir or build_tiny_qwen2(out_dir / "tiny-qwen2")
    model, tokenizer = load_policy(str(model_dir))
    started = time.perf_counter()
    vllm = make_sampler("vllm", model, tokenizer, gpu_memory_utilization=0.3, max_model_len=256)
    start_seconds = time.perf_counter() - started
    hf = make_sampler("hf", model, tokenizer)
    prompts = [tokenizer(t)["input_ids"] for t in ("Compute 5 + 7.\n", "Compute 12 - 3 * 4 + 30.\n",
                                                   "Write a Python function add_3(x) that returns x plus 3.\n")]
    report = {"model": str(model_dir), "head_dim": model.config.head_dim, "vllm_start_seconds": round(start_seconds, 1)}
    report["before_update"] = compare(vllm.generate(prompts, 24, 0.0), hf.generate(prompts, 24, 0.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-2)
    for _ in range(3):  # a few real updates: cross-entropy on one text
        ids = torch.tensor([tokenizer("Compute 5 + 7.\n12")["input_ids"]])
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    updated = hf.generate(prompts, 24, 0.0)
    report["stale_without_sync"] = compare(vllm.generate(prompts, 24, 0.0), updated)
    started = time.perf_counter()
    vllm.sync_weights(model)
    report["sync_seconds"] = round(time.perf_counter() - started, 3)
    report["after_sync"] = compare(vllm.generate(prompts, 24, 0.0), updated)
    return report


if __name__ == "__main__":
    args = sys.argv[1:]
    model_arg = Path(args[args.index("--model") + 1]) if "--model" in args else None
    result = main(Path(args[0]), model_arg)
    print(json.dumps(result))
    ok = result["before_update"]["tokens_equal"] and result["after_sync"]["tokens_equal"]
    sys.exit(0 if ok and not result["stale_without_sync"]["tokens_equal"] else 1)
