"""The hf rollout engine against plain `model.generate`: generated tokens per second on one batch.

Two shapes:
- `toy`: the toy model (prefixrft_cli/assets/toy-base) on one default prefix-rft training
  step's rollout batch: 16 prompts x 8 rollouts, 1 hybrid per group continuing `prompt +
  demonstration prefix` (the prefix cut by the training code itself, step 0), 64 tokens.
- `llama30m`: a random-init ~30M-parameter Llama (`AutoConfig.for_model("llama", ...)`, the toy
  tokenizer) continuing the first `--llama-rows` contexts (default 32: 4 groups of 8 with
  their 4 hybrid rows; all 128 take ~10 minutes a repetition here) for up to 256 tokens (eos
  is one of 384 ids, so about half the rows of a random model stop early, at random points).

Both contenders get the same contexts, the same `max_new_tokens` for every row, sampling at
temperature 1 (top-k off, top-p 1). `model.generate` left-pads the whole batch into one
tensor; the engine prefills it in groups of similar context length. Tokens/s counts real generated tokens only
(up to and including the first eos, within the budget). One torch thread; the contenders run
alternately, `--repeats` times each after a warm-up, and medians are reported.

`--baseline FILE` adds a third contender: the `HFSampler` of another version's engine.py (e.g.
`git worktree add /tmp/old HEAD~1`, then `--baseline /tmp/old/prefixrft_cli/rollout/engine.py`),
on the same model and rows; it also reports how many rows sampled the same tokens as this
version's engine (same seeds).

Run (at normal priority, so the timings get the CPU): `python bench/rollout_speed.py --repeats 3`
Results go to docs/performance.md ("Rollout engine").
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import time

import torch


def toy_batch(tokenizer) -> tuple[list[list[int]], list[int]]:
    """The contexts and budgets of step 0 of a default prefix-rft run (16 x 8, one hybrid per group)."""
    from prefixrft_cli.algorithms import get_algorithm
    from prefixrft_cli.config import load_config
    from prefixrft_cli.train.loop import rollout_plan
    from prefixrft_cli.train.rollouts import plan_rollouts
    from prefixrft_cli.train.setup import load_items, load_problems

    cfg = load_config(None, ["algo=prefix-rft"])
    items = load_items(cfg, tokenizer, load_problems(cfg.data.train, cfg, "train"))
    rng = random.Random(cfg.seed)
    chosen = rng.sample(items, cfg.train.prompts_per_step)
    plan = rollout_plan(cfg, get_algorithm(cfg.algo))
    rollouts, contexts, _ = plan_rollouts(chosen, plan, 0, cfg.train.steps - 1,
                                          torch.Generator().manual_seed(cfg.seed), rng)
    return contexts, [plan.max_response_tokens - r.prefix_len for r in rollouts]


def llama30m(tokenizer):
    """A random-init Llama of about 30M parameters with the toy tokenizer's vocabulary."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("llama", vocab_size=len(tokenizer), hidden_size=512, intermediate_size=1536,
                                  num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=8,
                                  max_position_embeddings=1024, tie_word_embeddings=True,
                                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def real_tokens(rows: list[list[int]], eos: int) -> int:
    """Generated tokens up to and including each row's first eos."""
    return sum(row.index(eos) + 1 if eos in row else len(row) for row in rows)


def engine_runner(engine_file: str | None = None):
    """A contender sampling with this checkout's HFSampler, or with the one defined in `engine_file`."""
    if engine_file is None:
        from prefixrft_cli.rollout.engine import HFSampler
    else:
        spec = importlib.util.spec_from_file_location("baseline_engine", engine_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        HFSampler = module.HFSampler
    sampled: list[list[list[int]]] = []   # each run's tokens, for the baseline's agreement count

    def run(model, tokenizer, contexts, max_new_tokens: int) -> tuple[int, float]:
        sampler = HFSampler(model, tokenizer)
        tick = time.perf_counter()
        out = sampler.generate(contexts, max_new_tokens, temperature=1.0, seed=1)
        seconds = time.perf_counter() - tick
        sampled.append(out.tokens)
        return real_tokens(out.tokens, tokenizer.eos_token_id), seconds

    run.sampled = sampled
    return run


def run_generate(model, tokenizer, contexts, max_new_tokens: int) -> tuple[int, float]:
    width = max(len(c) for c in contexts)
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(c)) + c for c in contexts])
    mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts])
    torch.manual_seed(1)
    tick = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=True,
                             temperature=1.0, top_k=0, top_p=1.0, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=model.generation_config.eos_token_id)
    seconds = time.perf_counter() - tick
    return real_tokens(out[:, width:].tolist(), tokenizer.eos_token_id), seconds


def compare(name: str, model, tokenizer, contexts, max_new_tokens: int, repeats: int,
            baseline: str | None = None) -> None:
    contenders = {"hf engine": engine_runner(), "model.generate": run_generate}
    if baseline is not None:
        contenders["baseline engine"] = engine_runner(baseline)
    for run in contenders.values():   # warm-up
        run(model, tokenizer, contexts[:8], 4)
    rates = {label: [] for label in contenders}
    for _ in range(repeats):
        for label, run in contenders.items():
            tokens, seconds = run(model, tokenizer, contexts, max_new_tokens)
            rates[label].append((tokens / seconds, tokens, seconds))
    medians = {label: statistics.median(r[0] for r in runs) for label, runs in rates.items()}
    widths = sorted(len(c) for c in contexts)
    print(f"{name}: {len(contexts)} rows, contexts {widths[0]}-{widths[-1]} tokens, max_new_tokens {max_new_tokens}")
    for label, runs in rates.items():
        print(f"  {label:15} median {medians[label]:8.1f} tokens/s   runs: "
              + ", ".join(f"{tokens} tok / {seconds:.2f} s" for _, tokens, seconds in runs))
    print(f"  speed-up {medians['hf engine'] / medians['model.generate']:.2f}x")
    if baseline is not None:
        ours, theirs = contenders["hf engine"].sampled[-1], contenders["baseline engine"].sampled[-1]
        print(f"  against the baseline engine {medians['hf engine'] / medians['baseline engine']:.2f}x, "
              f"same tokens in {sum(a == b for a, b in zip(ours, theirs))} of {len(ours)} rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="toy,llama30m")
    parser.add_argument("--repeats", type=int, default=5, help="alternated runs of each contender; medians")
    parser.add_argument("--llama-rows", type=int, default=32, help="rows of the batch the 30M model continues")
    parser.add_argument("--baseline", help="engine.py of another version: a third contender")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from prefixrft_cli.models import load_policy

    toy, tokenizer = load_policy("toy")
    toy.eval()
    contexts, _ = toy_batch(tokenizer)
    if "toy" in args.shapes:
        compare("toy model, default prefix-rft step", toy, tokenizer, contexts, 64, args.repeats, args.baseline)
    if "llama30m" in args.shapes:
        model = llama30m(tokenizer)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        compare(f"random-init Llama ({params:.1f}M parameters)", model, tokenizer, contexts[:args.llama_rows], 256,
                args.repeats, args.baseline)


if __name__ == "__main__":
    main()
