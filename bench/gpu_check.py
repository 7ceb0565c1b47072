"""The prepared GPU check: Prefix-RFT steps of a ~0.5B model in bf16 on CUDA, and backend equality with NCCL.

No GPU was lent to the session that wrote this; run it in one that has one (docs/scaling.md).
1. Builds a random-init Qwen2-architecture model of Qwen2.5-0.5B's shape (24 layers, hidden 896,
   14 query / 2 KV heads, MLP 4864, vocabulary 151,936, tied embeddings: 494M parameters) with
   the bundled toy tokenizer (prompts use the toy ids; the logits span the whole vocabulary).
2. Trains it with `run_training` (the code `prefixrft train` runs): model.device=cuda,
   model.dtype=bfloat16 (bf16 autocast, float32 weights and AdamW state), gradient
   checkpointing, --steps Prefix-RFT steps; records peak GPU memory and seconds per step.
3. Backend equality: the toy model trained 2 steps with each of --backends in its own process
   (`python -m prefixrft_cli train`, NCCL at world size 1 on one GPU: NCCL refuses two ranks
   on one device) ends with the same weights as backend none: max abs diff per backend.
Writes the results as JSON to --out and prints them.

On the device machine (PyTorch there; carry the other dependencies as wheels in .whl/):
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
    python3 -m pip install -q --no-index --no-deps --no-build-isolation -e .
    python3 bench/gpu_check.py --out $OUT/gpu_check.json
CPU smoke path (tests/test_gpu_check.py): python bench/gpu_check.py --device cpu --tiny --out X.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

QWEN2_05B = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864, vocab_size=151936, max_position_embeddings=4096, tie_word_embeddings=True)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=128, vocab_size=2048, max_position_embeddings=512, tie_word_embeddings=True)


def qwen2_config(shape: dict):
    from transformers import AutoTokenizer, Qwen2Config

    from prefixrft_cli.models import TOY_BASE

    tokenizer = AutoTokenizer.from_pretrained(TOY_BASE)
    config = Qwen2Config(**shape, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return config, tokenizer


def build_model(folder: Path, shape: dict, seed: int = 0) -> int:
    """A random-init Qwen2 model and the toy tokenizer saved as a from_pretrained folder; returns its parameters."""
    from transformers import Qwen2ForCausalLM

    config, tokenizer = qwen2_config(shape)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def train_on(folder: Path, run_dir: Path, device: str, dtype: str, steps: int, tokens: int) -> dict:
    """Prefix-RFT steps on `folder`; peak memory and seconds per step."""
    from prefixrft_cli.config import load_config
    from prefixrft_cli.train import run_training

    cfg = load_config(None, [f"model.name_or_path={folder}", f"model.device={device}", f"model.dtype={dtype}",
                             "train.gradient_checkpointing=true", f"train.steps={steps}", "train.max_wall_minutes=0",
                             "train.prompts_per_step=8", "rollout.rollouts_per_prompt=8",
                             f"rollout.max_response_tokens={tokens}", "data.toy_train_problems=200",
                             "data.eval_problems=4", "eval.samples=1", "eval.greedy=false",
                             f"eval.max_response_tokens={min(tokens, 32)}", f"train.run_dir={run_dir}",
                             "train.threads=0"])
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    summary = run_training(cfg, show=False)
    wall = time.perf_counter() - started
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    phases = {k: round(sum(m["seconds"][k] for m in lines) / len(lines), 3) for k in lines[0]["seconds"]}
    return {"steps": len(lines), "precision": summary.precision, "device": summary.device,
            "run_seconds": round(wall, 1),
            "seconds_per_step": phases, "response_length_mean": sum(m["response_length"] for m in lines) / len(lines),
            "skipped_updates": sum(m["skipped_updates"] for m in lines),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if device == "cuda" else None}


def backend_equality(work: Path, device: str, backends: list[str]) -> dict:
    """Max abs weight difference to backend none after 2 toy steps, each backend a one-process launch."""
    from safetensors.torch import load_file

    common = ["train.steps=2", "train.prompts_per_step=4", "rollout.rollouts_per_prompt=4", "data.eval_problems=2",
              "eval.samples=1", "eval.greedy=false", "data.toy_train_problems=40", f"model.device={device}",
              "model.dtype=float32", "optim.warmup_steps=0"]
    weights = {}
    for backend in ["none"] + backends:
        run_dir = work / f"eq-{backend}"
        command = [sys.executable, "-m", "prefixrft_cli", "train", "--run-dir", str(run_dir)]
        for item in common + [f"distributed.backend={backend}"]:
            command += ["--set", item]
        done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        if done.returncode:
            weights[backend] = done.stderr.strip().splitlines()[-1:]
            continue
        weights[backend] = load_file(run_dir / "checkpoints" / "final" / "model.safetensors")
    reference = weights["none"]
    return {b: (max(float((w[k] - reference[k]).abs().max()) for k in reference) if isinstance(w, dict)
                else f"failed: {w}") for b, w in weights.items() if b != "none"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true", help="a tiny Qwen2 instead of the 0.5B one (CPU smoke path)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--max-response-tokens", type=int, default=256)
    parser.add_argument("--backends", default="ddp,fsdp2", help="compared with none; empty: skip")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result: dict = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        result["parameters"] = build_model(work / "model", TINY if args.tiny else QWEN2_05B)
        dtype = "bfloat16" if args.device == "cuda" else "float32"
        result["train"] = train_on(work / "model", work / "run", args.device, dtype, args.steps,
                                   args.max_response_tokens)
        backends = [b for b in args.backends.split(",") if b]
        result["backend_max_abs_diff"] = backend_equality(work, args.device, backends) if backends else {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
