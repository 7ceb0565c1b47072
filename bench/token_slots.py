"""How much of TRL's step is padding or repeated prompts: token slots of one step, counted.

A "slot" is one token position a forward computes. For each of `--steps` steps of
prefixrft's `rl_step_batch` (the library step bench/vs_trl.py times, same Shape and
config) this counts, from a forward hook on the policy:
- prefixrft's slots: the rollout's prefill and decode forwards (rows x positions), and the
  update's forwards with grad;
- the real tokens: the responses generated, and the prompts + responses trained on;
and computes what TRL's layout of the same step costs: `model.generate` decodes every row
until the longest response ends (N x max L), and GRPOTrainer trains one left/right-padded
batch, each row carrying its prompt (N x (max P + max L)).

If a step's time were proportional to its slots (a model whose matmuls dominate, as the
30M Llama's do: 69% of CPU time in aten::mm), prefixrft's slots over TRL's would be the
best ratio that doing less work can give; per-forward overhead (the toy model) keeps real
ratios above it. Padding and repeated prompts are all the waste there is to remove: what
is left is the same matmuls on the same tokens.

Run: python bench/token_slots.py --model toy --prompts 8
     python bench/token_slots.py --model random-30m --prompts 4
Results: docs/performance.md ("Against TRL").
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contenders import Shape, _Discard, prefixrft_run  # noqa: E402
from vs_trl import resolve_model  # noqa: E402

from prefixrft_cli.jsonio import atomic_write_json  # noqa: E402


class SlotCounter:
    """Forward hook: token positions of each kind of forward (prefill, decode, training)."""

    def __init__(self):
        self.slots = {"prefill": 0, "decode": 0, "train": 0}

    def __call__(self, module, args, kwargs, output) -> None:
        ids = kwargs["input_ids"]
        kind = "train" if torch.is_grad_enabled() else "decode" if ids.shape[1] == 1 else "prefill"
        self.slots[kind] += ids.numel()


def count(shape: Shape, algo: str, steps: int) -> dict:
    from prefixrft_cli.train.loop import rl_step_batch

    with tempfile.TemporaryDirectory() as tmp:
        cfg, ctx, stage = prefixrft_run(shape, algo, f"{tmp}/run")
        counter, rng = SlotCounter(), random.Random(shape.seed)
        handle = ctx.policy.register_forward_hook(counter, with_kwargs=True)
        totals = {"real_generated": 0, "real_trained": 0, "trl_decode": 0, "trl_train": 0}
        try:
            for step in range(steps):
                items = [ctx.items[k] for k in rng.sample(range(len(ctx.items)), shape.prompts_per_step)]
                _, batch = rl_step_batch(ctx, cfg, stage, items, shape.schedule_step + step, _Discard())
                prompts = [len(r.item.prompt_ids) for r in batch.rollouts]
                responses = [len(r.response_ids) for r in batch.rollouts]
                generated = [len(r.response_ids) - (r.prefix_len if r.hybrid else 0) for r in batch.rollouts]
                totals["real_generated"] += sum(generated)
                totals["real_trained"] += sum(prompts) + sum(responses)
                totals["trl_decode"] += len(responses) * max(generated)
                totals["trl_train"] += len(responses) * (max(prompts) + max(responses))
        finally:
            handle.remove()
    ours = counter.slots
    return {"algo": algo, "steps": steps, **{f"prefixrft_{k}": v for k, v in ours.items()}, **totals,
            "decode_vs_trl": round(ours["decode"] / totals["trl_decode"], 3),
            "train_vs_trl": round(ours["train"] / totals["trl_train"], 3),
            "real_trained_vs_trl": round(totals["real_trained"] / totals["trl_train"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toy")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--algos", default="rft,prefix-rft")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    shape = Shape(model=args.model, prompts_per_step=args.prompts, rollouts_per_prompt=args.rollouts,
                  max_response_tokens=args.max_tokens)
    with tempfile.TemporaryDirectory() as scratch:
        resolved = resolve_model(shape, Path(scratch))
        report = {"shape": {**vars(shape), "model": args.model},
                  "algos": [count(resolved, algo, args.steps) for algo in args.algos.split(",")]}
    for row in report["algos"]:
        print(row)
    if args.output:
        atomic_write_json(args.output, report)


if __name__ == "__main__":
    main()
