"""Demonstrators: `dataset` passes through, `model` keeps only verified samples and resumes after a crash."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from prefixrft_cli import registry
from prefixrft_cli.data import load_dataset
from prefixrft_cli.data.pipeline import PrepareOptions, TeacherOptions, run_prepare
from prefixrft_cli.protocols import Demonstrator, VerifyResult
from prefixrft_cli.records import Demonstration, Problem
from prefixrft_cli.rollout.sampler import Generation
from prefixrft_plugins.demonstrators import DatasetDemonstrator, ModelDemonstrator


class CharTokenizer:
    """One id per character; enough for encode_prompt(template='plain') and decode."""

    eos_token_id = 0

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids if i != self.eos_token_id)


class ScriptedSampler:
    """Answers 'Compute a + b.' with the sum on even sample slots and sum + 1 on odd ones; can crash."""

    def __init__(self, crash_after_calls: int | None = None):
        self.calls: list[list[str]] = []
        self.crash_after_calls = crash_after_calls

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, seed=0) -> Generation:
        if self.crash_after_calls is not None and len(self.calls) >= self.crash_after_calls:
            raise RuntimeError("killed")
        texts = ["".join(chr(i) for i in p) for p in prompts]
        self.calls.append(texts)
        tokens = []
        for slot, text in enumerate(texts):
            a, b = map(int, re.findall(r"\d+", text))
            answer = a + b + (slot % 2)
            tokens.append([ord(c) for c in f"{a} + {b} = {answer}. \\boxed{{{answer}}}"] + [0])
        return Generation(tokens, [[0.0] * len(t) for t in tokens], [False] * len(tokens))


class BoxedVerifier:
    def verify(self, completion: str, problem: Problem) -> VerifyResult:
        found = re.findall(r"\\boxed\{([^}]*)\}", completion)
        ok = bool(found) and found[-1] == problem.answer
        return VerifyResult(1.0 if ok else 0.0, "correct" if ok else "wrong", found[-1] if found else None)

    def verify_batch(self, completions, problems) -> list[VerifyResult]:
        return [self.verify(c, p) for c, p in zip(completions, problems)]


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Fake teacher, sampler and math verifier behind the real ModelDemonstrator code path."""
    state = {"sampler": ScriptedSampler(), "loads": 0}

    def load_policy(name, dtype="float32", trust_remote_code=False):
        state["loads"] += 1
        return _Model(), CharTokenizer()

    monkeypatch.setattr("prefixrft_cli.models.load_policy", load_policy)
    monkeypatch.setattr("prefixrft_cli.rollout.sampler.make_sampler", lambda engine, model, tokenizer: state["sampler"])
    real_get = registry.verifiers.get
    monkeypatch.setattr(registry.verifiers, "get", lambda name: BoxedVerifier if name == "math" else real_get(name))
    return state


class _Model:
    def eval(self):
        return self


def problems(count: int) -> list[Problem]:
    return [Problem(f"p{i}", f"Compute {i} + {2 * i}.", str(3 * i)) for i in range(count)]


def test_dataset_demonstrator_passes_demonstrations_through() -> None:
    demo = DatasetDemonstrator()
    assert isinstance(demo, Demonstrator)
    given = [Problem("a", "x", "1", demonstrations=[Demonstration("sol")]), Problem("b", "y", "2")]
    assert demo.demonstrate(given) == [[Demonstration("sol")], []]


def test_model_demonstrator_keeps_only_verified_samples(scripted: dict, tmp_path: Path) -> None:
    demo = ModelDemonstrator(teacher="fake", samples_per_problem=4, keep_per_problem=2, batch_problems=2,
                             journal=tmp_path / "j.jsonl")
    out = demo.demonstrate(problems(3))
    # slots 0 and 2 of each problem answer a + b (correct), slots 1 and 3 answer a + b + 1: 2 of 4 correct,
    # both identical texts -> one distinct demonstration each
    assert [[d.text for d in demos] for demos in out] == \
        [["0 + 0 = 0. \\boxed{0}"], ["1 + 2 = 3. \\boxed{3}"], ["2 + 4 = 6. \\boxed{6}"]]
    assert all(d.correct is True for demos in out for d in demos)
    assert demo.stats == {"teacher_problems_resumed": 0, "teacher_samples": 12, "teacher_samples_truncated": 0,
                          "teacher_samples_correct": 6}
    assert len(scripted["sampler"].calls) == 2 and len(scripted["sampler"].calls[0]) == 8  # 2 problems x 4 samples


def test_model_demonstrator_resumes_after_a_crash(scripted: dict, tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    scripted["sampler"] = ScriptedSampler(crash_after_calls=1)
    with pytest.raises(RuntimeError, match="killed"):
        ModelDemonstrator(teacher="fake", samples_per_problem=2, batch_problems=2, journal=journal).demonstrate(
            problems(5))
    assert [json.loads(line)["id"] for line in journal.read_text().splitlines()] == ["p0", "p1"]
    with open(journal, "a") as handle:  # the crash also cut a write in half
        handle.write('{"key": "abc", "id": "p2", "demonstr')
    scripted["sampler"] = ScriptedSampler()
    demo = ModelDemonstrator(teacher="fake", samples_per_problem=2, batch_problems=2, journal=journal)
    out = demo.demonstrate(problems(5))
    assert demo.stats["teacher_problems_resumed"] == 2
    sampled = [text for call in scripted["sampler"].calls for text in call]
    assert sampled == [f"Compute {i} + {2 * i}.\n" for i in (2, 3, 4) for _ in range(2)]  # only the unfinished
    assert [demos[0].text for demos in out] == [f"{i} + {2 * i} = {3 * i}. \\boxed{{{3 * i}}}" for i in range(5)]
    assert [json.loads(line)["id"] for line in journal.read_text().splitlines()] == ["p0", "p1", "p2", "p3", "p4"]
    loads = scripted["loads"]
    again = ModelDemonstrator(teacher="fake", samples_per_problem=2, journal=journal).demonstrate(problems(5))
    assert again == out and scripted["loads"] == loads  # all finished: the teacher is not even loaded


def test_a_different_teacher_does_not_reuse_the_journal(scripted: dict, tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    ModelDemonstrator(teacher="a", samples_per_problem=1, journal=journal).demonstrate(problems(2))
    demo = ModelDemonstrator(teacher="b", samples_per_problem=1, journal=journal)
    demo.demonstrate(problems(2))
    assert demo.stats["teacher_problems_resumed"] == 0


def test_prepare_with_the_model_demonstrator(scripted: dict, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"problem": p.problem, "answer": p.answer}) + "\n" for p in problems(4)))
    output = tmp_path / "out"
    report = run_prepare(PrepareOptions(output=output, inputs=[source], demonstrator="model",
                                        teacher=TeacherOptions(model="fake", samples_per_problem=2)))
    assert report.counts["demonstrations_filled"] == 4 and report.counts["teacher_samples_correct"] == 4
    assert all(p.demonstrations[0].correct for p in load_dataset(output))
    assert (tmp_path / "out.demos.jsonl").is_file()  # the resumable journal sits beside the folder
    assert report.manifest["settings"]["teacher"]["samples_per_problem"] == 2


@pytest.mark.slow
def test_a_real_teacher_through_the_engine_and_the_math_verifier(tmp_path: Path) -> None:
    """The bundled toy base as teacher (or, before it is built, its untrained initialisation)."""
    from prefixrft_cli.models import TOY_BASE
    from prefixrft_cli.toy_task import generate_problems

    teacher = "toy"
    if not (TOY_BASE / "config.json").is_file():
        from prefixrft_cli.toy_base import build_init

        build_init(tmp_path / "toy-init")
        teacher = str(tmp_path / "toy-init")
    tasks = generate_problems("math", 6, seed=5, split="train")
    journal = tmp_path / "j.jsonl"
    demo = ModelDemonstrator(teacher=teacher, samples_per_problem=4, max_new_tokens=48, temperature=1.0,
                             journal=journal)
    out = demo.demonstrate(tasks)
    assert len(out) == 6 and demo.stats["teacher_samples"] == 24
    assert [json.loads(line)["id"] for line in journal.read_text().splitlines()] == [t.id for t in tasks]
    verifier = registry.verifiers.get("math")()
    for task, demos in zip(tasks, out):
        assert len(demos) <= 1  # keep_per_problem = 1
        for d in demos:  # every kept demonstration passes the verifier again
            assert verifier.verify(d.text, task).score == 1.0
    assert sum(map(len, out)) <= demo.stats["teacher_samples_correct"]
