"""How fast the verifiers are: math checks per second, code checks per completion, HumanEval+ vs evalplus.

    python bench/verify_speed.py --data ../shared/data --output bench/verify_speed.json

Measures, on this machine with `--workers` helper processes (default: all cores):
1. math, fast path: a training step's 128 toy answers (`\\boxed{28}` against "28"), median of 21;
2. math, math-verify path: the 500 MATH-500 reference answers against their gold answers,
   every pair sent to the timed math-verify workers (the fast path bypassed), the same
   answers against the next problem's gold (mostly unequal: sympy works harder), the
   solutions with their boxes unwrapped (math-verify's own extraction reads the whole
   text), and the matching pairs through `verify_batch` (fast path on);
3. code, toy task: 128 small functions with assert tests, per completion (median of 5);
4. code, HumanEval+: every canonical solution (164 tasks, base + plus inputs) with a fresh
   verifier (expected outputs computed, "cold") and again ("warm", cached), next to
   evalplus' own `evalplus.evaluate` on the same solutions with the same number of
   processes, cold (empty evalplus cache) and warm. evalplus is only needed here:
   `pip install --no-deps evalplus wget appdirs termcolor tree-sitter tree-sitter-python fire tempdir`.
One run of each; results go to stdout and `--output`. docs/performance.md quotes them.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prefixrft_cli.data.evalplus import problem_from_evalplus
from prefixrft_cli.records import Problem
from prefixrft_cli.toy_task import generate_problems
from prefixrft_plugins.verifiers.code import CodeVerifier
from prefixrft_plugins.verifiers.math import MathVerifier, extract_answer, normalize


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def median_seconds(fn, repeats: int) -> float:
    """The median of `repeats` timings after one warm-up call (short timings are noisy on a shared machine)."""
    fn()
    return statistics.median(timed(fn)[1] for _ in range(repeats))


def bench_math(data: Path, workers: int) -> dict:
    verifier = MathVerifier(workers=workers)
    toy = generate_problems("math", 128, seed=0)
    rng = random.Random(0)
    toy_completions = [p.demonstrations[0].text if rng.random() < 0.5 else f"so \\boxed{{{rng.randint(-99, 99)}}}"
                       for p in toy]
    toy_seconds = median_seconds(lambda: verifier.verify_batch(toy_completions, toy), repeats=21)
    records = [json.loads(line) for line in (data / "math500.jsonl").read_text().splitlines()]
    tasks = [{"gold": r["answer"], "boxes": [extract_answer(r["solution"]) or ""]} for r in records]
    verifier.workers.map(tasks[:workers])   # start the workers outside the timing
    answers, slow_seconds = timed(lambda: verifier.workers.map(tasks))
    shifted = [{"gold": tasks[(i + 1) % len(tasks)]["gold"], "boxes": t["boxes"]} for i, t in enumerate(tasks)]
    deranged, deranged_seconds = timed(lambda: verifier.workers.map(shifted))
    # no box: math-verify's own extraction reads the whole solution (its final `\boxed{x}` written as `x`)
    unboxed = [{"gold": r["answer"], "text": r["solution"].replace("\\boxed", "")} for r in records]
    text_answers, text_seconds = timed(lambda: verifier.workers.map(unboxed))
    problems = [Problem(r["id"], r["problem"], answer=r["answer"]) for r in records]
    results, batch_seconds = timed(lambda: verifier.verify_batch([r["solution"] for r in records], problems))
    verifier.close()
    return {
        "toy_batch_128_ms": round(toy_seconds * 1000, 3),
        "math_verify_checks": len(tasks),
        "math_verify_seconds": round(slow_seconds, 2),
        "math_verify_checks_per_second": round(len(tasks) / slow_seconds, 1),
        "math_verify_correct": sum(bool(a and a.get("ok")) for a in answers),
        "math_verify_deranged_seconds": round(deranged_seconds, 2),
        "math_verify_deranged_checks_per_second": round(len(shifted) / deranged_seconds, 1),
        "math_verify_deranged_correct": sum(bool(a and a.get("ok")) for a in deranged),
        "math_verify_deranged_timeouts": sum(a is None for a in deranged),
        "math_verify_text_checks_per_second": round(len(unboxed) / text_seconds, 1),
        "math_verify_text_correct": sum(bool(a and a.get("ok")) for a in text_answers),
        "math500_verify_batch_seconds": round(batch_seconds, 3),
        "math500_correct": sum(r.reason == "correct" for r in results),
    }


def bench_toy_code(workers: int) -> dict:
    verifier = CodeVerifier(workers=workers)
    problems = generate_problems("code", 64, seed=0) * 2
    completions = [p.demonstrations[0].text for p in problems]
    results = verifier.verify_batch(completions, problems)
    seconds = median_seconds(lambda: verifier.verify_batch(completions, problems), repeats=5)
    verifier.close()
    return {"toy_code_completions": len(problems), "toy_code_seconds": round(seconds, 3),
            "toy_code_ms_per_completion": round(seconds / len(problems) * 1000, 2),
            "toy_code_correct": sum(r.reason == "correct" for r in results)}


def bench_humaneval(data: Path, workers: int) -> dict:
    path = data / "humanevalplus.jsonl.gz"
    with gzip.open(path, "rt") as handle:
        records = [json.loads(line) for line in handle]
    problems = [problem_from_evalplus(r, f"{path.name}:{i}") for i, r in enumerate(records)]
    completions = [r["canonical_solution"] for r in records]
    verifier = CodeVerifier(workers=workers)
    cold, cold_seconds = timed(lambda: verifier.verify_batch(completions, problems))
    warm, warm_seconds = timed(lambda: verifier.verify_batch(completions, problems))
    verifier.close()
    return {"humaneval_tasks": len(records), "ours_cold_seconds": round(cold_seconds, 1),
            "ours_warm_seconds": round(warm_seconds, 1),
            "ours_correct": [sum(r.reason == "correct" for r in cold), sum(r.reason == "correct" for r in warm)]}


def bench_evalplus(data: Path, workers: int) -> dict:
    """evalplus.evaluate on the canonical solutions: cold (empty cache, computes ground truth), then warm."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with gzip.open(data / "humanevalplus.jsonl.gz", "rt") as handle:
            records = [json.loads(line) for line in handle]
        env = dict(os.environ, HUMANEVAL_OVERRIDE_PATH=str(data / "humanevalplus.jsonl.gz"),
                   XDG_CACHE_HOME=str(tmp / "cache"))
        out = {}
        for label in ("cold", "warm"):
            samples = tmp / f"samples_{label}.jsonl"
            samples.write_text("".join(json.dumps({"task_id": r["task_id"], "solution": r["prompt"] +
                                                   r["canonical_solution"]}) + "\n" for r in records))
            command = [sys.executable, "-m", "evalplus.evaluate", "--dataset", "humaneval", "--samples",
                       str(samples), "--parallel", str(workers), "--i-just-wanna-run"]
            done, seconds = timed(lambda: subprocess.run(command, env=env, capture_output=True, text=True))
            if done.returncode != 0:
                raise RuntimeError(f"evalplus failed: {done.stderr[-2000:]}")
            results = json.loads((tmp / f"samples_{label}_eval_results.json").read_text())
            failed = sorted(task for task, r in results["eval"].items()
                            if not r[0]["base_status"] == r[0]["plus_status"] == "pass")
            out[f"evalplus_{label}_seconds"] = round(seconds, 1)
            out[f"evalplus_{label}_passed"] = len(results["eval"]) - len(failed)
            out[f"evalplus_{label}_failed"] = failed
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--skip-evalplus", action="store_true")
    args = parser.parse_args()
    report = {"cpu_count": os.cpu_count(), "workers": args.workers}
    for name, run in (("math", lambda: bench_math(args.data, args.workers)),
                      ("toy_code", lambda: bench_toy_code(args.workers)),
                      ("humaneval", lambda: bench_humaneval(args.data, args.workers))):
        report[name] = run()
        print(name, json.dumps(report[name]), flush=True)
    if not args.skip_evalplus:
        report["evalplus"] = bench_evalplus(args.data, args.workers)
        print("evalplus", json.dumps(report["evalplus"]), flush=True)
        ours, theirs = report["humaneval"], report["evalplus"]
        report["ratio_cold"] = round(ours["ours_cold_seconds"] / theirs["evalplus_cold_seconds"], 3)
        report["ratio_warm"] = round(ours["ours_warm_seconds"] / theirs["evalplus_warm_seconds"], 3)
        print("ours / evalplus: cold", report["ratio_cold"], "warm", report["ratio_warm"])
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
