"""Eval throughput on the toy model: samples per second and the share of time spent verifying.

Runs `score_problems` (the core of `prefixrft eval` and of training's held-out accuracy)
on held-out toy problems of each domain, with the built-in math / code verifiers, and
reports per domain: samples/s, generation seconds, seconds inside verify_batch, and the
seconds generation sat idle waiting for the verifier (verification runs on a thread,
overlapped with the next batch's generation). Each domain is also run with verification
done serially after each batch (overlap False) to show what the overlap buys. Each
setting runs `--repeats` times after a full warm-up batch; the fastest run is reported.

Run: `nice -n 10 python bench/eval_throughput.py --problems 64 --samples 4`
Results go to docs/performance.md ("Evaluation").
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass


@dataclass
class Row:
    domain: str
    overlap: bool
    samples: int
    wall_seconds: float
    generate_seconds: float
    verify_seconds: float
    verify_wait_seconds: float
    accuracy: float

    @property
    def per_second(self) -> float:
        return self.samples / self.wall_seconds

    @property
    def verify_share(self) -> float:
        return self.verify_seconds / self.wall_seconds


def measure(domain: str, problems: int, samples: int, batch_size: int, max_new_tokens: int, overlap: bool,
            model, tokenizer, verifier) -> Row:
    from prefixrft_cli.evaluate import scoring
    from prefixrft_cli.toy_task import generate_problems

    items = generate_problems(domain, problems, seed=1, split="test")
    start = time.perf_counter()
    if overlap:
        report = scoring.score_problems(model, tokenizer, items, verifier, samples, temperature=1.0,
                                        max_new_tokens=max_new_tokens, template="plain", seed=0,
                                        batch_size=batch_size)
        timing = report.timing
    else:
        report, timing = _serial(model, tokenizer, items, verifier, samples, batch_size, max_new_tokens)
    wall = time.perf_counter() - start
    return Row(domain, overlap, len(report.samples), wall, timing.generate_seconds, timing.verify_seconds,
               timing.verify_wait_seconds, report.accuracy)


def _serial(model, tokenizer, items, verifier, samples, batch_size, max_new_tokens):
    """Generate a batch, verify it, then the next: the same work without the overlap."""
    from prefixrft_cli.evaluate import scoring
    from prefixrft_cli.prompts import encode_prompt
    from prefixrft_cli.rollout.sampler import make_sampler

    sampler = make_sampler("hf", model, tokenizer)
    prompts = [encode_prompt(p, tokenizer, "plain") for p in items]
    work = [(p, s) for p in range(len(items)) for s in range(samples)]
    timing, scored = scoring.Timing(), []
    sampling = scoring.Sampling(1.0, max_new_tokens)
    for batch in scoring.make_batches(work, batch_size, 0):
        for _, part in scoring.score_batches(sampler, tokenizer, items, prompts, [batch], verifier, sampling, timing):
            scored += part
    accuracy = sum(s.score for s in scored) / max(len(scored), 1)
    return scoring.ScoreReport(accuracy, samples, [], [], scored, timing), timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--domains", default="math,code")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each setting; the fastest is kept")
    parser.add_argument("--output", default="", help="also write the rows as JSON here")
    args = parser.parse_args()

    import torch

    from prefixrft_cli import registry
    from prefixrft_cli.models import load_policy

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_policy("toy")
    rows = []
    for domain in args.domains.split(","):
        verifier = registry.verifiers.get(domain)()
        # a full warm-up batch so that worker start-up and first-call costs are not in the figures
        measure(domain, args.batch_size, 1, args.batch_size, args.max_new_tokens, True, model, tokenizer, verifier)
        for overlap in (True, False):
            runs = [measure(domain, args.problems, args.samples, args.batch_size, args.max_new_tokens,
                            overlap, model, tokenizer, verifier) for _ in range(args.repeats)]
            rows.append(min(runs, key=lambda r: r.wall_seconds))
        getattr(verifier, "close", lambda: None)()
    print(f"toy model, {args.problems} problems x {args.samples} samples, batch {args.batch_size}, "
          f"max {args.max_new_tokens} new tokens, torch threads {torch.get_num_threads()}, "
          f"fastest of {args.repeats}")
    print(f"{'domain':8} {'overlap':8} {'samples/s':>10} {'wall s':>8} {'generate s':>11} {'verify s':>9} "
          f"{'verify share':>13} {'wait s':>7} {'accuracy':>9}")
    for r in rows:
        print(f"{r.domain:8} {str(r.overlap):8} {r.per_second:10.2f} {r.wall_seconds:8.2f} {r.generate_seconds:11.2f} "
              f"{r.verify_seconds:9.2f} {100 * r.verify_share:12.1f}% {r.verify_wait_seconds:7.2f} {r.accuracy:9.3f}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump([dict(vars(r), per_second=r.per_second, verify_share=r.verify_share) for r in rows], handle,
                      indent=2)


if __name__ == "__main__":
    main()
