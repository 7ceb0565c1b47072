"""score_problems / score_batches with a scripted sampler and verifier: numbers, order, seeds, overlap."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from prefixrft_cli.evaluate.scoring import Batch, Sampling, answer_part, make_batches, score_batches, score_problems
from prefixrft_cli.protocols import VerifyResult
from prefixrft_cli.records import Problem


class CharTokenizer:
    """One id per character; enough for encode_prompt (plain template) and decode."""

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": [ord(ch) for ch in text]}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids)


@dataclass
class Out:
    tokens: list[list[int]]
    logprobs: list[list[float]]
    truncated: list[bool]


class ScriptedSampler:
    """Answers with the last word of the prompt after a think block; records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, float, tuple[int, ...]]] = []   # (prompts, temperature, per-row seeds)
        self.second_call = threading.Event()

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, seed=0, seeds=None):
        self.calls.append((len(prompts), temperature, tuple(seeds)))
        if len(self.calls) == 2:
            self.second_call.set()
        texts = ["<think>right</think>" + "".join(map(chr, p)).split()[-1] for p in prompts]
        return Out([[ord(c) for c in t] for t in texts], [[0.0] * len(t) for t in texts], [False] * len(texts))


class WordVerifier:
    """'right' -> 1 (correct), 'half' -> 0.5 (wrong), anything else -> 0 (wrong)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def verify(self, completion, problem):
        return self.verify_batch([completion], [problem])[0]

    def verify_batch(self, completions, problems):
        self.seen += completions
        score = {"right": 1.0, "half": 0.5}
        return [VerifyResult(score.get(c, 0.0), "correct" if c == "right" else "wrong", c) for c in completions]


PROBLEMS = [Problem("a", "q0 right"), Problem("b", "q1 wrong"), Problem("c", "q2 half")]


def test_avg_at_k_counts_and_order() -> None:
    sampler, verifier = ScriptedSampler(), WordVerifier()
    report = score_problems(None, CharTokenizer(), PROBLEMS, verifier, samples=4, temperature=0.6,
                            max_new_tokens=8, template="plain", seed=3, batch_size=5, sampler=sampler)
    # problem means: a 1.0, b 0.0, c 0.5 -> avg@4 = 1.5 / 3 = 0.5; only a's samples are full credit
    assert report.accuracy == pytest.approx(0.5)
    assert report.mean_scores == pytest.approx([1.0, 0.0, 0.5])
    assert report.correct == [4, 0, 0]
    assert [(s.problem_id, s.sample_index) for s in report.samples] == \
        [(pid, i) for pid in "abc" for i in range(4)]
    # 12 items in batches of 5 -> calls of 5, 5, 2, all at the requested temperature
    assert [(n, t) for n, t, _ in sampler.calls] == [(5, 0.6), (5, 0.6), (2, 0.6)]
    assert len({seed for *_, seeds in sampler.calls for seed in seeds}) == 12   # one seed per sample
    assert report.samples[0].completion == "<think>right</think>right" and report.samples[0].finished
    assert verifier.seen[:4] == ["right"] * 4      # the verifier read only what follows </think>


def test_seeds_are_fixed_by_the_sample_not_by_its_batch() -> None:
    first, second = ScriptedSampler(), ScriptedSampler()
    for sampler, batch_size in ((first, 2), (second, 5)):
        score_problems(None, CharTokenizer(), PROBLEMS, WordVerifier(), samples=2, temperature=1.0,
                       max_new_tokens=8, template="plain", seed=7, batch_size=batch_size, sampler=sampler)
    assert [s for c in first.calls for s in c[2]] == [s for c in second.calls for s in c[2]]
    assert [c[0] for c in first.calls] == [2, 2, 2] and [c[0] for c in second.calls] == [5, 1]
    other = ScriptedSampler()
    score_problems(None, CharTokenizer(), PROBLEMS, WordVerifier(), samples=2, temperature=1.0,
                   max_new_tokens=8, template="plain", seed=8, batch_size=2, sampler=other)
    assert [c[2] for c in other.calls] != [c[2] for c in first.calls]


def test_answer_after_think_can_be_turned_off() -> None:
    report = score_problems(None, CharTokenizer(), PROBLEMS, WordVerifier(), samples=1, temperature=0.0,
                            max_new_tokens=8, template="plain", seed=0, sampler=ScriptedSampler(),
                            answer_after_think=False)
    assert report.accuracy == 0.0       # the verifier saw "<think>right</think>right", not "right"
    assert answer_part("a</think>b</think>c", True) == "c"
    assert answer_part("no think", True) == "no think"


def test_verification_overlaps_next_generation() -> None:
    sampler = ScriptedSampler()

    class WaitingVerifier(WordVerifier):
        def verify_batch(self, completions, problems):
            # batch 0's verification may only finish once batch 1 is generating
            self.overlapped = sampler.second_call.wait(timeout=10)
            return super().verify_batch(completions, problems)

    verifier = WaitingVerifier()
    batches = make_batches([(0, 0), (1, 0), (2, 0), (0, 1)], [p.id for p in PROBLEMS], 2, seed=0)
    prompts = [[ord(c) for c in p.problem] for p in PROBLEMS]
    got = list(score_batches(sampler, CharTokenizer(), PROBLEMS, prompts, batches, verifier,
                             Sampling(temperature=1.0, max_new_tokens=8)))
    assert verifier.overlapped
    assert [b for b, _ in got] == batches
    assert [s.problem_id for _, scored in got for s in scored] == ["a", "b", "c", "a"]
    assert isinstance(batches[0], Batch) and batches[0].items == ((0, 0), (1, 0))
