"""`prefixrft eval`: benchmarks -> D/samples.jsonl (written as batches finish, resumable) -> D/summary.json.

The paper's protocol by default: each benchmark's own k (avg@32 on AIME24/25 and AMC,
pass@1 on MATH-500, Minerva and OlympiadBench), temperature 0.6 (the CLI's default), the
answer read after `</think>`; code benchmarks are scored by the code verifier on their
base + plus tests. Each benchmark's domain picks its verifier plugin.

Resume: D/eval.json records the sampling settings; a rerun with the same settings reads
D/samples.jsonl and generates only the missing (benchmark, problem, sample index) items.
Each item is drawn from its own seed, fixed by (seed, benchmark, problem id, sample
index), so a resumed run draws the same samples as an uninterrupted one wherever the
kill landed and however the missing items are batched. Lines are appended a verified
batch at a time; an interrupted write leaves at most a partial last line, which a rerun
cuts off (under the folder's lock, taken once the model and engine have loaded) and redoes.

Leaves out: rendering (cli/eval.py). Test: tests/test_eval_runner.py, tests/test_eval_cli.py.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from prefixrft_cli import registry
from prefixrft_cli.config import Config
from prefixrft_cli.errors import UserError, unknown_choice
from prefixrft_cli.evaluate.samples import SAMPLES_FILE, EvalSample, parse_sample, read_samples
from prefixrft_cli.evaluate.scoring import Batch, Sampling, Timing, make_batches, score_batches
from prefixrft_cli.jsonio import JsonlAppender, atomic_write_json, read_json, writable_dir
from prefixrft_cli.models import concrete_dtype
from prefixrft_cli.records import Problem
from prefixrft_cli.runlock import FolderLock

SETTINGS_FILE = "eval.json"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class EvalSettings:
    """What fixes the samples; a resumed eval must use the same."""

    model: str
    template: str
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int
    answer_after_think: bool = True
    dtype: str = "float32"
    engine: str = "hf"
    trust_remote_code: bool = False  # model.trust_remote_code, as in train and inspect-entropy


@dataclass
class EvalRequest:
    settings: EvalSettings
    benchmarks: list[str]
    output_dir: Path
    samples: int | None = None      # None: each benchmark's default_samples
    data_dir: Path | None = None
    limit: int = 0                  # first N problems of each benchmark (0 = all)
    batch_size: int = 64
    threads: int = 0                # torch threads (0 = torch's default)


def eval_request(cfg: Config, benchmarks: list[str], output_dir: Path, data_dir: Path | None = None,
                 limit: int = 0, threads: int = 0) -> EvalRequest:
    """The request `prefixrft eval` makes of the config tree (its eval, model, data and rollout sections)."""
    e = cfg.eval
    settings = EvalSettings(model=cfg.model.name_or_path, template=cfg.data.prompt_template,
                            temperature=e.temperature, top_p=e.top_p, max_new_tokens=e.max_response_tokens,
                            seed=cfg.seed, answer_after_think=e.answer_after_think,
                            dtype=concrete_dtype(cfg.model.dtype), engine=cfg.rollout.engine,
                            trust_remote_code=cfg.model.trust_remote_code)
    return EvalRequest(settings, benchmarks, output_dir, e.samples or None, data_dir, limit, e.batch_size, threads)


@dataclass
class BenchmarkPlan:
    name: str
    domain: str
    problems: list[Problem]
    samples: int                    # k
    batches: list[Batch]            # only the items still missing
    done: int                       # items already in samples.jsonl

    @property
    def total(self) -> int:
        return len(self.problems) * self.samples


@dataclass
class BenchmarkSummary:
    name: str
    domain: str
    metric: str                     # "avg@k" or "pass@1"
    samples_per_problem: int
    problems: int
    accuracy: float                 # mean over problems of the mean score of its k samples
    full_credit_samples: int
    reasons: dict[str, int]
    mean_completion_tokens: float
    truncated_share: float          # samples that hit the token budget


@dataclass
class EvalSummary:
    settings: EvalSettings
    benchmarks: list[BenchmarkSummary]
    math_average: float | None      # mean accuracy over the math benchmarks, as the paper's "Avg."
    math_benchmarks: list[str]
    generated_now: int
    resumed: int
    wall_seconds: float
    load_seconds: float             # loading the model
    pipeline_seconds: float         # generating + verifying this run's samples (wall)
    generate_seconds: float         # of which generating (main thread)
    verify_seconds: float           # inside verify_batch (overlaps generation)
    verify_wait_seconds: float      # generation idle, waiting for the verifier
    samples_per_second: float       # generated_now / pipeline_seconds


class Progress:
    """Callbacks for a live view; the default does nothing."""

    def start(self, benchmark: str, total: int, done: int) -> None:
        """A benchmark begins: `done` of `total` samples were already there."""

    def advance(self, benchmark: str, count: int) -> None:
        """`count` more samples were written."""


def plan_benchmarks(request: EvalRequest, done: set[tuple[str, str, int]]) -> list[BenchmarkPlan]:
    """Load every benchmark's problems and cut the missing items into seeded batches."""
    from prefixrft_cli.data.paths import resolve_data_dir

    names = [n.strip() for n in request.benchmarks if n.strip()]
    if not names:
        raise UserError("--benchmarks: give at least one name; valid: " + ", ".join(registry.benchmarks.names()))
    for name in names:
        if name not in registry.benchmarks.names():
            raise unknown_choice("benchmark", name, registry.benchmarks.names())
    if len(set(names)) != len(names):
        raise UserError(f"--benchmarks: {','.join(names)} names a benchmark twice")
    data_dir = resolve_data_dir(request.data_dir)
    plans = []
    for name in names:
        bench, problems = registry.load_problems(registry.benchmarks, name, data_dir)
        if request.limit:
            problems = problems[:request.limit]
        k = request.samples or int(bench.default_samples)
        items = [(p, s) for p in range(len(problems)) for s in range(k)]
        missing = [(p, s) for p, s in items if (name, problems[p].id, s) not in done]
        batches = make_batches(missing, [p.id for p in problems], request.batch_size, request.settings.seed, name)
        plans.append(BenchmarkPlan(name, bench.domain, problems, k, batches, len(items) - len(missing)))
    return plans


def compare_settings(output_dir: Path, settings: EvalSettings) -> None:
    """Refuse to mix samples drawn under different settings (reads only)."""
    path = output_dir / SETTINGS_FILE
    if path.exists():
        before = read_json(path)
        for key, value in asdict(settings).items():
            if key in before and before[key] != value:
                raise UserError(f"{output_dir}: holds an eval with {key}={before[key]!r}, this one has "
                                f"{key}={value!r}; use another --output-dir")


def done_keys(output_dir: Path, cut_partial: bool = False) -> set[tuple[str, str, int]]:
    """Keys of the samples already written; a partial last line (an interrupted write) does not count,
    and `cut_partial` (with the folder's lock held) cuts it off the file."""
    path = output_dir / SAMPLES_FILE
    if not path.exists():
        return set()
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1
    if cut_partial and complete < len(data):
        os.truncate(path, complete)
    keys = set()
    for number, line in enumerate(data[:complete].decode("utf-8", errors="replace").splitlines(), start=1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{number}: malformed JSON ({err.msg})") from None
            key = parse_sample(record if isinstance(record, dict) else {}, f"{path}:{number}").key
            if key in keys:
                raise UserError(f"{path}:{number}: sample {key} appears twice")
            keys.add(key)
    return keys


@dataclass
class Engine:
    """What generates and scores: loaded before anything is written into the eval folder."""

    model: object
    tokenizer: object
    sampler: object
    verifiers: dict[str, object]
    load_seconds: float

    def close(self) -> None:
        for verifier in self.verifiers.values():
            close = getattr(verifier, "close", None)
            if callable(close):
                close()


def load_engine(request: EvalRequest, plans: list[BenchmarkPlan], load_policy: Callable | None) -> Engine:
    from prefixrft_cli.rollout.sampler import make_sampler

    if load_policy is None:
        from prefixrft_cli.models import load_policy
    s = request.settings
    if request.threads:
        import torch

        torch.set_num_threads(request.threads)
    start = time.perf_counter()
    model, tokenizer = load_policy(s.model, s.dtype, s.trust_remote_code)
    load_seconds = time.perf_counter() - start
    sampler = make_sampler(s.engine, model, tokenizer, batch_size=request.batch_size)
    verifiers = {plan.domain: registry.verifiers.create(plan.domain) for plan in plans}
    return Engine(model, tokenizer, sampler, verifiers, load_seconds)


def run_eval(request: EvalRequest, progress: Progress | None = None,
             load_policy: Callable | None = None) -> EvalSummary:
    """Generate and score every missing sample, then summarise all of them.

    Inputs, the model and the engine load first; only then is the folder locked (one writer)
    and written, so a failed start leaves nothing behind."""
    from prefixrft_cli.models import check_model_folder, resolve_model_path

    progress = progress or Progress()
    started = time.perf_counter()
    output_dir = request.output_dir
    # a missing or broken model folder fails before any file is written
    check_model_folder(request.settings.model, resolve_model_path(request.settings.model))
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"--output-dir {output_dir}: exists and is not a folder")
    plans = plan_benchmarks(request, done_keys(output_dir))
    compare_settings(output_dir, request.settings)
    engine = load_engine(request, plans, load_policy) if any(plan.batches for plan in plans) else None
    try:
        writable_dir(output_dir, "--output-dir")
        with FolderLock(output_dir, "eval folder"):
            plans = plan_benchmarks(request, done_keys(output_dir, cut_partial=True))   # again, under the lock
            atomic_write_json(output_dir / SETTINGS_FILE, asdict(request.settings))
            timing = Timing()
            generated, pipeline_seconds = 0, 0.0
            if any(plan.batches for plan in plans):
                engine = engine or load_engine(request, plans, load_policy)
                generated, pipeline_seconds = _generate(request, plans, engine, timing, progress)
            else:
                for plan in plans:
                    progress.start(plan.name, plan.total, plan.done)
            samples = read_samples(output_dir / SAMPLES_FILE)
            summary = summarise(request.settings, plans, samples, timing, generated)
            summary.wall_seconds = round(time.perf_counter() - started, 3)
            summary.load_seconds = round(engine.load_seconds if engine else 0.0, 3)
            summary.pipeline_seconds = round(pipeline_seconds, 3)
            summary.samples_per_second = round(generated / pipeline_seconds, 3) if pipeline_seconds > 0 else 0.0
            atomic_write_json(output_dir / SUMMARY_FILE, asdict(summary))
    finally:
        if engine is not None:
            engine.close()
    return summary


def _generate(request: EvalRequest, plans: list[BenchmarkPlan], engine: Engine, timing: Timing,
              progress: Progress) -> tuple[int, float]:
    """Write every missing sample; returns (samples written, pipeline seconds)."""
    from prefixrft_cli.prompts import encode_prompt

    s = request.settings
    sampling = Sampling(s.temperature, s.max_new_tokens, s.top_p, s.answer_after_think)
    generated = 0
    start = time.perf_counter()
    with JsonlAppender(request.output_dir / SAMPLES_FILE) as out:
        for plan in plans:
            progress.start(plan.name, plan.total, plan.done)
            if not plan.batches:
                continue
            prompts = [encode_prompt(p, engine.tokenizer, s.template) for p in plan.problems]
            for _, scored in score_batches(engine.sampler, engine.tokenizer, plan.problems, prompts, plan.batches,
                                           engine.verifiers[plan.domain], sampling, timing):
                for sample in scored:
                    out.write(EvalSample(plan.name, sample.problem_id, sample.sample_index, sample.completion,
                                         sample.score, sample.reason, sample.extracted,
                                         sample.completion_tokens, sample.finished).to_json())
                generated += len(scored)
                progress.advance(plan.name, len(scored))
    return generated, time.perf_counter() - start


def summarise(settings: EvalSettings, plans: list[BenchmarkPlan], samples: list[EvalSample], timing: Timing,
              generated: int) -> EvalSummary:
    """Per-benchmark accuracy over exactly the planned (problem, sample index < k) items."""
    by_key = {s.key: s for s in samples}
    rows = []
    for plan in plans:
        chosen = []
        for problem in plan.problems:
            for index in range(plan.samples):
                key = (plan.name, problem.id, index)
                if key not in by_key:
                    raise UserError(f"{plan.name}: sample {index} of problem {problem.id!r} is missing "
                                    "after generation; rerun to fill it in")
                chosen.append(by_key[key])
        rows.append(_benchmark_summary(plan, chosen))
    math_rows = [row for row in rows if row.domain == "math"]
    math_average = sum(r.accuracy for r in math_rows) / len(math_rows) if math_rows else None
    total = sum(row.problems * row.samples_per_problem for row in rows)
    return EvalSummary(settings, rows, math_average, [r.name for r in math_rows], generated, total - generated,
                       wall_seconds=0.0, load_seconds=0.0, pipeline_seconds=0.0,
                       generate_seconds=round(timing.generate_seconds, 3),
                       verify_seconds=round(timing.verify_seconds, 3),
                       verify_wait_seconds=round(timing.verify_wait_seconds, 3), samples_per_second=0.0)


def _benchmark_summary(plan: BenchmarkPlan, chosen: list[EvalSample]) -> BenchmarkSummary:
    k = plan.samples
    per_problem: dict[str, float] = {}
    reasons: dict[str, int] = {}
    for sample in chosen:
        per_problem[sample.problem_id] = per_problem.get(sample.problem_id, 0.0) + sample.score / k
        reasons[sample.reason] = reasons.get(sample.reason, 0) + 1
    n = max(len(chosen), 1)
    accuracy = sum(per_problem.values()) / len(per_problem) if per_problem else 0.0
    return BenchmarkSummary(
        plan.name, plan.domain, "pass@1" if k == 1 else f"avg@{k}", k, len(plan.problems), accuracy,
        sum(s.correct for s in chosen), dict(sorted(reasons.items())),
        sum(s.completion_tokens for s in chosen) / n, sum(not s.finished for s in chosen) / n)
