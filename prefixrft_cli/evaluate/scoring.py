"""Scoring a policy on problems: batched generation, then verification, pipelined.

`score_batches` is the one core that `prefixrft eval` and training's before/after
accuracy share. It takes batches of (problem, sample index) work items, each item with
its own seed (from the run seed, the problem id and the sample index: a sample is the
same whatever batch it lands in), generates a batch through the sampler and hands it to the verifier on a
background thread while the next batch generates; the verifier's `verify_batch` spreads
its work over its own processes. Batches come back verified, in order.

`score_problems` is the in-process entry: k samples of each problem, avg@k accuracy
(the mean over problems of each problem's mean score), per-problem correct counts
(full-credit samples, what pass@k counts) and every sample.

The answer is read after the last `</think>` when `answer_after_think` is set (LUFFY's
protocol); the stored completion is always the whole text.

Leaves out: files and resume (evaluate/runner.py). Test: tests/test_eval_scoring.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from prefixrft_cli.protocols import Verifier, VerifyResult
from prefixrft_cli.records import Problem
from prefixrft_cli.rollout.sampler import row_seed

THINK_END = "</think>"


@dataclass(frozen=True)
class Sampling:
    """How completions are drawn and read."""

    temperature: float          # 0 = greedy
    max_new_tokens: int
    top_p: float = 1.0
    answer_after_think: bool = True


@dataclass(frozen=True)
class Batch:
    """Work items (problem index, sample index) generated together, each drawn from its own seed."""

    items: tuple[tuple[int, int], ...]
    seeds: tuple[int, ...]      # one per item


@dataclass(frozen=True)
class ScoredSample:
    problem_index: int
    problem_id: str
    sample_index: int
    completion: str
    score: float
    reason: str
    extracted: str | None
    completion_tokens: int
    finished: bool              # the model stopped (eos) before the token budget


@dataclass
class Timing:
    """Seconds spent: generating (main thread), inside verify_batch (worker thread), and
    waiting for verification with nothing left to generate."""

    generate_seconds: float = 0.0
    verify_seconds: float = 0.0
    verify_wait_seconds: float = 0.0


@dataclass
class ScoreReport:
    """avg@k of a policy on problems, with the per-problem counts and every sample."""

    accuracy: float                 # mean over problems of the mean score of its k samples
    samples_per_problem: int        # k
    correct: list[int]              # per problem, in input order: full-credit samples
    mean_scores: list[float]        # per problem, in input order
    samples: list[ScoredSample]     # problem-major, sample index ascending
    timing: Timing = field(default_factory=Timing)


def answer_part(completion: str, after_think: bool) -> str:
    """The text a verifier should read: what follows the last </think>, when there is one."""
    if after_think and THINK_END in completion:
        return completion.rsplit(THINK_END, 1)[1]
    return completion


def make_batches(items: Sequence[tuple[int, int]], problem_ids: Sequence[str], batch_size: int, seed: int,
                 *key: object) -> list[Batch]:
    """Items cut into batches of batch_size; item (p, s) is seeded by (seed, key, problem p's id, s)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    seeds = [row_seed(seed, *key, problem_ids[p], s) for p, s in items]
    return [Batch(tuple(items[start:start + batch_size]), tuple(seeds[start:start + batch_size]))
            for start in range(0, len(items), batch_size)]


def score_batches(sampler, tokenizer, problems: Sequence[Problem], prompts: Sequence[Sequence[int]],
                  batches: Iterable[Batch], verifier: Verifier, sampling: Sampling,
                  timing: Timing | None = None) -> Iterator[tuple[Batch, list[ScoredSample]]]:
    """Generate and verify each batch; verification of one overlaps generation of the next."""
    timing = timing if timing is not None else Timing()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify") as pool:
        pending: tuple[Batch, list, Future] | None = None
        for batch in batches:
            start = time.perf_counter()
            out = sampler.generate([prompts[p] for p, _ in batch.items], sampling.max_new_tokens,
                                   temperature=sampling.temperature, top_p=sampling.top_p, seeds=list(batch.seeds))
            texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in out.tokens]
            timing.generate_seconds += time.perf_counter() - start
            answers = [answer_part(t, sampling.answer_after_think) for t in texts]
            future = pool.submit(_verify, verifier, answers, [problems[p] for p, _ in batch.items], timing)
            if pending is not None:
                yield _collect(problems, *pending, timing)
            pending = (batch, list(zip(texts, out.tokens, out.truncated)), future)
        if pending is not None:
            yield _collect(problems, *pending, timing)


def _verify(verifier: Verifier, answers: list[str], problems: list[Problem], timing: Timing) -> list[VerifyResult]:
    start = time.perf_counter()
    try:
        results = verifier.verify_batch(answers, problems)
    finally:
        timing.verify_seconds += time.perf_counter() - start
    if len(results) != len(answers):
        raise RuntimeError(f"verifier returned {len(results)} results for {len(answers)} completions")
    return results


def _collect(problems: Sequence[Problem], batch: Batch, generated: list, future: Future,
             timing: Timing) -> tuple[Batch, list[ScoredSample]]:
    start = time.perf_counter()
    results = future.result()
    timing.verify_wait_seconds += time.perf_counter() - start
    scored = []
    for (p, s), (text, ids, truncated), result in zip(batch.items, generated, results):
        scored.append(ScoredSample(p, problems[p].id, s, text, float(result.score), result.reason,
                                   result.extracted, len(ids), not truncated))
    return batch, scored


def score_problems(model, tokenizer, problems: Sequence[Problem], verifier: Verifier, samples: int,
                   temperature: float, max_new_tokens: int, template: str, seed: int, batch_size: int = 64,
                   *, top_p: float = 1.0, answer_after_think: bool = True, sampler=None) -> ScoreReport:
    """avg@k (k = samples) of `model` on `problems`; temperature 0 is greedy.

    `sampler` reuses an existing one (training passes its own); by default an hf sampler on `model`.
    """
    from prefixrft_cli.prompts import encode_prompt

    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if not problems:
        return ScoreReport(0.0, samples, [], [], [])
    if sampler is None:
        from prefixrft_cli.rollout.sampler import make_sampler

        sampler = make_sampler("hf", model, tokenizer)
    prompts = [encode_prompt(p, tokenizer, template) for p in problems]
    items = [(p, s) for p in range(len(problems)) for s in range(samples)]
    timing = Timing()
    collected: list[ScoredSample] = []
    sampling = Sampling(temperature, max_new_tokens, top_p, answer_after_think)
    batches = make_batches(items, [p.id for p in problems], batch_size, seed)
    for _, scored in score_batches(sampler, tokenizer, problems, prompts, batches, verifier, sampling, timing):
        collected += scored
    totals = [0.0] * len(problems)
    correct = [0] * len(problems)
    for sample in collected:
        totals[sample.problem_index] += sample.score
        correct[sample.problem_index] += sample.score >= 1.0
    means = [t / samples for t in totals]
    return ScoreReport(sum(means) / len(means), samples, correct, means, collected, timing)
