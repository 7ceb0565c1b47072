"""How fast the verifiers are: math checks per second, code checks per completion, HumanEval+ vs evalplus.

    python bench/verify_speed.py --data ../shared/data --rounds 3 --output bench/verify_speed.json

Measures, on this machine with `--workers` helper processes (default: all cores):
1. math, fast path: a training step's 128 toy answers (`\\boxed{28}` against "28"), median of 21;
2. math, math-verify path: the 500 MATH-500 reference answers against their gold answers,
   every pair sent to the timed math-verify workers (the fast path bypassed), the same
   answers against the next problem's gold (mostly unequal: sympy works harder), the
   solutions with their boxes unwrapped (math-verify's own extraction reads the whole
   text), and the matching pairs through `verify_batch` (fast path on);
3. code, toy task: 128 small functions with assert tests, per completion (median of 5);
4. code, HumanEval+: every canonical solution (164 tasks, base + plus inputs) with a fresh
   verifier (expected outputs computed, "cold") and again ("warm", cached), and evalplus'
   own `evalplus.evaluate` on the same solutions with the same number of processes, cold
   (empty evalplus cache) and warm, in alternation: ours, evalplus, ours, evalplus, ...
   (`--rounds` of each). Medians, their ratio, the ratio in each round, and the load average
   before and after each run are recorded. evalplus reads our copy of the data
   (HUMANEVAL_OVERRIDE_PATH) and never touches the network; it is only needed here:
   `pip install --no-deps evalplus==0.3.1 wget appdirs termcolor tree-sitter tree-sitter-python fire tempdir`.
Run it at normal priority (other work on a shared machine at a higher nice value yields to
it); `--parts humaneval` runs one part. Results go to stdout and `--output`;
docs/performance.md quotes them.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
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
from prefixrft_plugins.verifiers.math import MathVerifier, extract_answer


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - started


def median_seconds(fn, repeats: int) -> float:
    """The median of `repeats` timings after one warm-up call (short timings are noisy on a shared machine)."""
    fn()
    return statistics.median(timed(fn)[1] for _ in range(repeats))


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def bench_math(data: Path, workers: int) -> dict:
    verifier = MathVerifier(workers=workers)
    toy = generate_problems("math", 128, seed=0)
    rng = random.Random(0)
    toy_completions = [p.demonstrations[0].text if rng.random() < 0.5 else f"so \\boxed{{{rng.randint(-99, 99)}}}"
                       for p in toy]
    toy_seconds = median_seconds(lambda: verifier.verify_batch(toy_completions, toy), repeats=21)
    records = [json.loads(line) for line in (data / "math500.jsonl").read_text().splitlines()]
    tasks = [{"gold": r["answer"], "boxes": [extract_answer(r["solution"]) or ""]} for r in records]
    verifier.workers.start()   # every worker ready before the timing starts
    cpu_before = cpu_seconds(verifier.workers.pids)
    answers, slow_seconds = timed(lambda: verifier.workers.map(tasks))
    slow_cpu = cpu_seconds(verifier.workers.pids) - cpu_before
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
        # what `workers` otherwise idle cores would do: checks per CPU-second of the workers, times `workers`
        "math_verify_worker_cpu_seconds": round(slow_cpu, 2),
        "math_verify_checks_per_second_on_free_cores": round(workers * len(tasks) / slow_cpu, 1),
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


def humaneval_tasks(data: Path) -> tuple[list[dict], list[Problem], list[str]]:
    path = data / "humanevalplus.jsonl.gz"
    with gzip.open(path, "rt") as handle:
        records = [json.loads(line) for line in handle]
    problems = [problem_from_evalplus(r, f"{path.name}:{i}") for i, r in enumerate(records)]
    return records, problems, [r["canonical_solution"] for r in records]


def run_ours(data: Path, workers: int) -> dict:
    """A fresh verifier on every canonical solution: cold (expected outputs computed), then warm."""
    _, problems, completions = humaneval_tasks(data)
    cpu_before = process_tree_cpu()
    verifier = CodeVerifier(workers=workers)
    out = {}
    for label in ("cold", "warm"):
        results, seconds = timed(lambda: verifier.verify_batch(completions, problems))
        out[f"{label}_seconds"] = round(seconds, 1)
        out[f"{label}_correct"] = sum(r.reason == "correct" for r in results)
    out["retried_jobs"] = verifier.retried_jobs   # stopped by the wall-clock backstop, run again
    verifier.close()   # the runner is reaped: its CPU and its jobs' count as this process's children's
    out["cpu_seconds"] = round(process_tree_cpu() - cpu_before, 1)
    return out


def process_tree_cpu() -> float:
    """CPU seconds of this process and of its reaped descendants (the load-independent cost of a run)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_evalplus(data: Path, workers: int) -> dict:
    """evalplus.evaluate on the canonical solutions: cold (empty cache, computes ground truth), then warm.
    HUMANEVAL_OVERRIDE_PATH points it at our copy of the data, so it downloads nothing."""
    records = humaneval_tasks(data)[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, HUMANEVAL_OVERRIDE_PATH=str(data / "humanevalplus.jsonl.gz"),
                   XDG_CACHE_HOME=str(tmp / "cache"))
        out, cpu_before = {}, process_tree_cpu()
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
            out[f"{label}_seconds"] = round(seconds, 1)
            out[f"{label}_correct"] = len(results["eval"]) - len(failed)
            out[f"{label}_failed"] = failed
        out["cpu_seconds"] = round(process_tree_cpu() - cpu_before, 1)
        return out


def bench_humaneval(data: Path, workers: int, rounds: int, evalplus: bool) -> dict:
    """Ours and evalplus in alternation (ours, evalplus, ours, ...), each cold then warm; medians,
    ratios of the medians and of each round, and the load average around every run."""
    contenders = {"ours": run_ours, **({"evalplus": run_evalplus} if evalplus else {})}
    runs = []
    for round_ in range(rounds):
        for name, run in contenders.items():
            load_before = os.getloadavg()[0]
            result = run(data, workers)
            runs.append({"round": round_, "contender": name, **result,
                         "load": [round(load_before, 2), round(os.getloadavg()[0], 2)]})
            print("humaneval", json.dumps(runs[-1]), flush=True)
    report = {"humaneval_tasks": len(humaneval_tasks(data)[0]), "rounds": rounds, "runs": runs}
    for name in contenders:
        for label in ("cold", "warm"):
            report[f"{name}_{label}_median_seconds"] = statistics.median(
                r[f"{label}_seconds"] for r in runs if r["contender"] == name)
    if evalplus:
        for label in ("cold", "warm"):
            report[f"ratio_{label}"] = round(report[f"ours_{label}_median_seconds"] /
                                             report[f"evalplus_{label}_median_seconds"], 3)
            report[f"ratio_{label}_by_round"] = [round(a[f"{label}_seconds"] / b[f"{label}_seconds"], 3)
                                                 for a, b in zip(runs[0::2], runs[1::2])]
        # CPU seconds of cold + warm together: what the load cannot change (autogroup scheduling gives
        # each sandboxed job, a session of its own, a share of its own; evalplus' workers share one)
        report["ratio_cpu_by_round"] = [round(a["cpu_seconds"] / b["cpu_seconds"], 3)
                                        for a, b in zip(runs[0::2], runs[1::2])]
        cpu = {name: statistics.median(r["cpu_seconds"] for r in runs if r["contender"] == name) for name in contenders}
        report["ratio_cpu"] = round(cpu["ours"] / cpu["evalplus"], 3)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3, help="HumanEval+ rounds, ours and evalplus in each")
    parser.add_argument("--parts", default="math,toy_code,humaneval", help="which parts to run (comma-separated)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--skip-evalplus", action="store_true")
    args = parser.parse_args()
    parts = {"math": lambda: bench_math(args.data, args.workers),
             "toy_code": lambda: bench_toy_code(args.workers),
             "humaneval": lambda: bench_humaneval(args.data, args.workers, args.rounds, not args.skip_evalplus)}
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu_count": os.cpu_count(),
              "workers": args.workers, "nice": os.nice(0)}
    for name in args.parts.split(","):
        load_before = os.getloadavg()
        report[name] = {**parts[name](), "load_before": [round(x, 2) for x in load_before],
                        "load_after": [round(x, 2) for x in os.getloadavg()]}
        print(name, json.dumps({k: v for k, v in report[name].items() if k != "runs"}), flush=True)
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
