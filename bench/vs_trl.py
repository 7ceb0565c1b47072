"""prefixrft's training step against TRL's GRPOTrainer on the same work, in lockstep.

Three processes (bench/contenders.py), one torch thread each: prefixrft `rft`, prefixrft
`prefix-rft` (one hybrid rollout per prompt) and TRL 1.16 `GRPOTrainer` with
loss_type="dr_grpo", scale_rewards="none", beta=0 (no reference model), no vLLM, one
optimizer step per generation batch. Same model, same toy math problems in the same
order, n rollouts of at most `--max-tokens` tokens at temperature 1, AdamW at the same
constant learning rate, prefixrft's math verifier as the reward. The coordinator tells
one process at a time to do its step i, rotating who goes first, so all contenders see
the same machine; the first `--warmup` steps are left out of the figures.

Figures per contender: median and min-max of the step's wall and CPU seconds, ratios to
TRL's medians, peak RSS, phase seconds (prefixrft: rollout / verify / update; TRL:
generate_and_score / update), tokens generated per step and mean response length (a
step faster because its responses are shorter shows here), mean reward.

`--model` takes the bundled toy model (`toy`, 1.05M parameters, trained), a folder, or
`random-1m` / `random-30m`: a randomly initialised Llama with the toy tokenizer, made in
a temporary folder (a random model tends to use the whole length budget).

Run:  python bench/vs_trl.py --output bench/vs_trl.json      (8 prompts x 8 rollouts, <= 64 tokens)
The imports are of whatever prefixrft is installed, so the same command measures later code.
Results: docs/performance.md, "Against TRL". The scaling table: bench/scaling.py.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from statistics import mean, median

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contenders import Shape, StepReport, serve  # noqa: E402

from prefixrft_cli.jsonio import atomic_write_json  # noqa: E402

CONTENDERS = ("rft", "prefix-rft", "trl")
RANDOM_MODELS = {  # name: (hidden_size, intermediate_size, layers, heads)
    "random-1m": (144, 384, 4, 4),       # the toy base's shape
    "random-30m": (512, 1408, 9, 8),
}


def random_model(name: str, folder: Path, seed: int = 0) -> str:
    """A randomly initialised Llama of RANDOM_MODELS[name] with the toy tokenizer, saved in `folder`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from prefixrft_cli.models import load_tokenizer

    hidden, intermediate, layers, heads = RANDOM_MODELS[name]
    tokenizer = load_tokenizer("toy")
    config = AutoConfig.for_model("llama", vocab_size=len(tokenizer), hidden_size=hidden,
                                  intermediate_size=intermediate, num_hidden_layers=layers, num_attention_heads=heads,
                                  num_key_value_heads=heads, max_position_embeddings=2048, tie_word_embeddings=True,
                                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                  bos_token_id=None)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def problem_order(shape: Shape, steps: int) -> list[list[int]]:
    """The problems of each step: B distinct training problems per step, drawn once from the seed."""
    rng = random.Random(shape.seed)
    return [rng.sample(range(shape.toy_train_problems), shape.prompts_per_step) for _ in range(steps)]


class Contenders:
    """The contenders' processes, started once and reused for every shape (imports are paid once)."""

    def __init__(self, names=CONTENDERS):
        spawn = multiprocessing.get_context("spawn")
        self.names, self.pipes, self.procs = tuple(names), {}, {}
        for name in self.names:
            mine, theirs = spawn.Pipe()
            self.procs[name] = spawn.Process(target=serve, args=(theirs, name), name=f"vs-trl-{name}", daemon=True)
            self.procs[name].start()
            self.pipes[name] = mine

    def __enter__(self) -> Contenders:
        return self

    def __exit__(self, *exc) -> None:
        for name, proc in self.procs.items():
            if proc.is_alive():
                self.pipes[name].send(None)
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()

    def ask(self, name: str, message):
        self.pipes[name].send(message)
        while not self.pipes[name].poll(1.0):
            proc = self.procs[name]
            if not proc.is_alive():
                raise SystemExit(f"vs_trl: contender {name} died (exit code {proc.exitcode}); see its output above")
        return self.pipes[name].recv()

    def run(self, shape: Shape, steps: int, warmup: int) -> dict:
        """Build `shape` in every process, run `warmup + steps` steps in lockstep; the summary leaves warm-up out."""
        order = problem_order(shape, warmup + steps)
        ready = {name: self.ask(name, (shape, order)) for name in self.names}
        assert len({tuple(r["first_prompt_ids"]) for r in ready.values()}) == 1, "the prompts are tokenized apart"
        reports: dict[str, list[StepReport]] = {name: [] for name in self.names}
        loads, started = [os.getloadavg()[0]], time.perf_counter()
        for step in range(warmup + steps):
            turn = step % len(self.names)          # who goes first rotates
            for name in self.names[turn:] + self.names[:turn]:
                reports[name].append(self.ask(name, ("step", step)))
            loads.append(os.getloadavg()[0])
        seconds = time.perf_counter() - started
        final = {name: self.ask(name, "end") for name in self.names}
        return summarize(shape, {n: r[warmup:] for n, r in reports.items()}, ready, final, loads, seconds, warmup)


def run_lockstep(shape: Shape, steps: int, warmup: int, contenders=CONTENDERS) -> dict:
    """One shape in fresh processes (so each peak RSS is that shape's)."""
    with Contenders(contenders) as processes:
        return processes.run(shape, steps, warmup)


def summarize(shape: Shape, reports: dict[str, list[StepReport]], ready: dict, final: dict, loads: list[float],
              seconds: float, warmup: int) -> dict:
    rows = {}
    for name, steps in reports.items():
        walls, cpus = [r.wall_seconds for r in steps], [r.cpu_seconds for r in steps]
        phases = {k: round(median(r.phase_seconds[k] for r in steps), 3) for k in steps[0].phase_seconds}
        rows[name] = {
            "wall_median_s": round(median(walls), 3), "wall_min_s": round(min(walls), 3),
            "wall_max_s": round(max(walls), 3), "cpu_median_s": round(median(cpus), 3),
            "cpu_min_s": round(min(cpus), 3), "cpu_max_s": round(max(cpus), 3),
            "wall_mean_s": round(mean(walls), 3), "cpu_mean_s": round(mean(cpus), 3),
            "wall_s": [round(w, 3) for w in walls], "cpu_s": [round(c, 3) for c in cpus],
            "phase_seconds": phases, "generated_tokens_per_step": round(mean(r.generated_tokens for r in steps), 1),
            "response_tokens_mean": round(mean(r.response_tokens_mean for r in steps), 2),
            "rows_per_step": steps[0].rows, "reward_mean": round(mean(r.reward_mean for r in steps), 4),
            "peak_rss_mb": round(final[name]["peak_rss_mb"], 1), "parameters": ready[name]["parameters"],
            "steps": len(steps), **{k: v for k, v in steps[0].extra.items()}}
    if "trl" in rows:
        for row in rows.values():
            row["wall_vs_trl"] = round(row["wall_median_s"] / rows["trl"]["wall_median_s"], 3)
            row["cpu_vs_trl"] = round(row["cpu_median_s"] / rows["trl"]["cpu_median_s"], 3)
            row["rss_vs_trl"] = round(row["peak_rss_mb"] / rows["trl"]["peak_rss_mb"], 3)
    return {"shape": asdict(shape), "warmup_steps": warmup, "contenders": rows,
            "load_average": {"min": round(min(loads), 2), "max": round(max(loads), 2),
                             "mean": round(mean(loads), 2)},
            "lockstep_seconds": round(seconds, 1), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "prefixrft": prefixrft_version()}


def prefixrft_version() -> str:
    """The installed prefixrft's folder and, when it is a git checkout, its commit (dirty marked)."""
    import prefixrft_cli

    folder = Path(prefixrft_cli.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(folder), "describe", "--always", "--dirty"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except OSError:
        commit = ""
    return f"{folder} {commit}".strip()


def table(result: dict) -> str:
    """The summary as a markdown table."""
    lines = ["| contender | step wall s, median (min-max) | CPU s, median | wall / TRL | CPU / TRL | phases s "
             "(median) | tokens generated / step | mean response tokens | reward | peak RSS MB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in result["contenders"].items():
        phases = " / ".join(f"{k} {v}" for k, v in r["phase_seconds"].items())
        lines.append(f"| {name} | {r['wall_median_s']} ({r['wall_min_s']}-{r['wall_max_s']}) | {r['cpu_median_s']} | "
                     f"{r.get('wall_vs_trl', '-')} | {r.get('cpu_vs_trl', '-')} | {phases} | "
                     f"{r['generated_tokens_per_step']} | {r['response_tokens_mean']} | {r['reward_mean']} | "
                     f"{r['peak_rss_mb']} |")
    load = result["load_average"]
    lines.append(f"\nload average {load['min']}-{load['max']} (mean {load['mean']}), {result['lockstep_seconds']} s "
                 f"in lockstep, {result['when']}, prefixrft {result['prefixrft']}")
    return "\n".join(lines)


def resolve_model(shape: Shape, scratch: Path) -> Shape:
    """`shape` with a random-* model name made into a folder under `scratch`."""
    if shape.model in RANDOM_MODELS:
        return replace(shape, model=random_model(shape.model, scratch / shape.model, shape.seed))
    return shape


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="toy", help="toy, random-1m, random-30m or a from_pretrained folder")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step (B)")
    parser.add_argument("--rollouts", type=int, default=8, help="rollouts per prompt (n)")
    parser.add_argument("--max-tokens", type=int, default=64, help="response budget in tokens")
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--steps", type=int, default=8, help="measured steps per contender")
    parser.add_argument("--warmup", type=int, default=2, help="steps run first and left out")
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help="comma-separated, of " + ", ".join(CONTENDERS))
    parser.add_argument("--output", type=Path, help="write the summary JSON here")
    args = parser.parse_args(argv)
    contenders = tuple(args.contenders.split(","))
    unknown = [c for c in contenders if c not in CONTENDERS]
    problem = (f"--contenders {args.contenders}: {', '.join(unknown)} unknown (choose from {', '.join(CONTENDERS)})"
               if unknown else "--steps must be at least 1" if args.steps < 1 else
               "--warmup must be 0 or more" if args.warmup < 0 else None)
    if problem:
        print(f"vs_trl: {problem}", file=sys.stderr)
        return 2
    shape = Shape(args.model, args.prompts, args.rollouts, args.max_tokens, args.lr)
    with tempfile.TemporaryDirectory(prefix="vs-trl-models-") as scratch:
        result = run_lockstep(resolve_model(shape, Path(scratch)), args.steps, args.warmup, contenders)
    result["shape"]["model"] = shape.model
    result["command"] = "python bench/vs_trl.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(table(result))
    if args.output:
        atomic_write_json(args.output, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
