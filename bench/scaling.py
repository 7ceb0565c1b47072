"""How a step's cost grows: prefixrft rft / prefix-rft against TRL's GRPOTrainer over four axes.

Each cell is one `bench/vs_trl.py` lockstep comparison (same processes for the whole
table, so the imports are paid once; a cell's first `--warmup` steps are left out):

- n, rollouts per prompt: 4, 8, 16 (toy model, 8 prompts, <= 64 tokens)
- prompts per step: 4, 8, 16 (toy model, n = 8, <= 64 tokens)
- response length: 32, 128, 512 tokens (random-init 30M Llama, 2 prompts x 4 rollouts; a
  random model uses the whole budget)
- model size: random 1M against random 30M (2 prompts x 4 rollouts, <= 128 tokens)

Run:  python bench/scaling.py --output bench/scaling.json            (about 20-30 min on 2 busy cores)
      python bench/scaling.py --axes n,prompts --output /tmp/s.json  (a subset)
The imports are of whatever prefixrft is installed. Results: docs/performance.md, "How cost grows".
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contenders import Shape  # noqa: E402
from vs_trl import Contenders, resolve_model  # noqa: E402

from prefixrft_cli.jsonio import atomic_write_json  # noqa: E402

TOY = Shape(model="toy", prompts_per_step=8, rollouts_per_prompt=8, max_response_tokens=64)
RANDOM = Shape(model="random-30m", prompts_per_step=2, rollouts_per_prompt=4, max_response_tokens=128)
AXES: dict[str, list[Shape]] = {
    "n": [replace(TOY, rollouts_per_prompt=n) for n in (4, 8, 16)],
    "prompts": [replace(TOY, prompts_per_step=b) for b in (4, 16)],      # 8 is the n axis's middle cell
    "length": [replace(RANDOM, max_response_tokens=t) for t in (32, 128, 512)],
    "size": [replace(RANDOM, model="random-1m")],                         # against the length axis's 128 cell
}


def run_table(axes: list[str], steps: int, warmup: int) -> dict:
    cells, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scaling-models-") as scratch, Contenders() as processes:
        for axis in axes:
            for shape in AXES[axis]:
                result = processes.run(resolve_model(shape, Path(scratch)), steps, warmup)
                result["shape"]["model"], result["axis"] = shape.model, axis
                cells.append(result)
                print(row(result), flush=True)
    return {"cells": cells, "wall_seconds": round(time.perf_counter() - started, 1), "steps": steps,
            "warmup": warmup}


HEADER = ("| axis | model | B x n | max tokens | CPU s a step: rft / prefix-rft / TRL | rft / TRL, CPU (wall) | "
          "prefix-rft / TRL, CPU (wall) | update / TRL's update, rft / prefix-rft | update share of the step, "
          "rft / prefix-rft / TRL | mean response tokens, rft / prefix-rft / TRL | load |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def row(result: dict) -> str:
    """One cell as a markdown row: CPU-second medians, the ratios to TRL (wall in brackets), the update phase."""
    s, c = result["shape"], result["contenders"]
    names = ("rft", "prefix-rft", "trl")
    seconds = " / ".join(str(c[k]["cpu_median_s"]) for k in names)
    ratios = " | ".join(f"{c[k]['cpu_vs_trl']:.2f} ({c[k]['wall_vs_trl']:.2f})" for k in names[:2])
    update = " / ".join(f"{c[k]['phase_seconds']['update'] / c['trl']['phase_seconds']['update']:.2f}"
                        for k in names[:2])
    shares = " / ".join(f"{c[k]['phase_seconds']['update'] / c[k]['wall_median_s']:.0%}" for k in names)
    lengths = " / ".join(str(round(c[k]["response_tokens_mean"])) for k in names)
    load = result["load_average"]
    return (f"| {result['axis']} | {s['model']} | {s['prompts_per_step']} x {s['rollouts_per_prompt']} | "
            f"{s['max_response_tokens']} | {seconds} | {ratios} | {update} | {shares} | {lengths} | "
            f"{load['min']}-{load['max']} |")


def markdown(table: dict) -> str:
    """The whole table (the rows in the order they ran), for docs/performance.md."""
    return "\n".join([HEADER] + [row(cell) for cell in table["cells"]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--axes", default=",".join(AXES), help="comma-separated, of " + ", ".join(AXES))
    parser.add_argument("--steps", type=int, default=3, help="measured steps per cell")
    parser.add_argument("--warmup", type=int, default=1, help="steps per cell run first and left out")
    parser.add_argument("--output", type=Path, help="write every cell's summary JSON here")
    parser.add_argument("--markdown", type=Path, help="only print the table of an --output JSON written before")
    args = parser.parse_args(argv)
    axes = args.axes.split(",")
    if any(a not in AXES for a in axes) or args.steps < 1 or args.warmup < 0:
        print(f"scaling: --axes {args.axes}: choose from {', '.join(AXES)} (and --steps >= 1, --warmup >= 0)",
              file=sys.stderr)
        return 2
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return 0
    print(HEADER, flush=True)
    table = run_table(axes, args.steps, args.warmup)
    table["command"] = "python bench/scaling.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"\n{len(table['cells'])} cells in {table['wall_seconds']} s")
    if args.output:
        atomic_write_json(args.output, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
