"""AdamW's step: torch's per-parameter loop, foreach and fused implementations on one model.

The training optimizer (prefixrft_cli/train/backend.py `new_optimizer`) is fused AdamW where
the parameters are on CPU or CUDA. This measures one `optimizer.step()` of each
implementation on the same parameters and gradients (random, 1e-3 scale), one torch thread,
the three alternated `--rounds` times, `--steps` steps each after one untimed step; the best
round's seconds a step are printed, and as JSON with --output.

Run: python bench/optimizer_speed.py --model random-30m     (bench/vs_trl.py's 30M Llama)
Results: docs/performance.md ("The update").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contenders import Shape  # noqa: E402
from vs_trl import resolve_model  # noqa: E402

from prefixrft_cli.jsonio import atomic_write_json  # noqa: E402
from prefixrft_cli.models import load_policy  # noqa: E402

IMPLEMENTATIONS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def step_seconds(params, options: dict, steps: int) -> float:
    optimizer = torch.optim.AdamW(params, lr=1e-6, betas=(0.9, 0.99), weight_decay=0.0, **options)
    optimizer.step()
    tick = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - tick) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random-30m", help="toy, random-1m, random-30m or a from_pretrained folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        model, _ = load_policy(resolve_model(Shape(model=args.model), Path(scratch)).model, "float32")
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    seconds = {name: [] for name in IMPLEMENTATIONS}
    for _ in range(args.rounds):
        for name, options in IMPLEMENTATIONS.items():
            seconds[name].append(step_seconds(params, options, args.steps))
    best = {name: round(min(runs), 4) for name, runs in seconds.items()}
    report = {"model": args.model, "parameters": sum(p.numel() for p in params), "seconds_a_step": best,
              "fused_vs_loop": round(best["fused"] / best["loop"], 3)}
    print(report)
    if args.output:
        atomic_write_json(args.output, report)


if __name__ == "__main__":
    main()
