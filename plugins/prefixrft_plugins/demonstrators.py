"""Built-in demonstrators: `dataset` (the demonstrations a dataset already has) and `model`
(sample from a teacher model, keep only the completions the domain's verifier accepts).

`model` appends each finished problem to a JSONL journal as it goes, so a run that
crashes resumes where it stopped: problems already in the journal (same teacher, id and
text) are not sampled again. It uses the project's engine (prefixrft_cli.models,
prompts, rollout.engine) and the verifier registered for the problem's domain.
Registered under the entry-point group `prefixrft.demonstrators`.
Test: tests/test_prepare_demonstrators.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from prefixrft_cli.data.progress import NO_PROGRESS, Progress
from prefixrft_cli.errors import UserError
from prefixrft_cli.jsonio import JsonlAppender, atomic_write_text, read_text
from prefixrft_cli.records import Demonstration, Problem


class DatasetDemonstrator:
    """Demonstrator `dataset`: the demonstrations read from the dataset's own column; it makes none."""

    def demonstrate(self, problems: Sequence[Problem]) -> list[list[Demonstration]]:
        """Demonstrations for each problem, in input order (an empty list where none could be made)."""
        return [list(problem.demonstrations) for problem in problems]


class ModelDemonstrator:
    """Demonstrator `model`: k samples a problem from a teacher; verified-correct ones become demonstrations."""

    def __init__(self, teacher: str = "toy", samples_per_problem: int = 4, keep_per_problem: int = 1,
                 max_new_tokens: int = 512, temperature: float = 0.7, prompt_template: str = "plain",
                 dtype: str = "float32", batch_problems: int = 8, seed: int = 0, journal: Path | None = None,
                 engine: str = "hf", progress: Progress = NO_PROGRESS,
                 trust_remote_code: bool = False):
        if samples_per_problem < 1 or keep_per_problem < 1 or batch_problems < 1 or max_new_tokens < 1:
            raise UserError("teacher options: samples, keep, batch and max-new-tokens must be at least 1")
        self.teacher, self.samples, self.keep = teacher, samples_per_problem, keep_per_problem
        self.max_new_tokens, self.temperature, self.template = max_new_tokens, temperature, prompt_template
        self.dtype, self.batch_problems, self.seed, self.engine = dtype, batch_problems, seed, engine
        self.journal = Path(journal) if journal is not None else None
        self.progress = progress
        self.trust_remote_code = trust_remote_code
        self.stats = {"teacher_problems_resumed": 0, "teacher_samples": 0, "teacher_samples_truncated": 0,
                      "teacher_samples_correct": 0}

    def key(self, problem: Problem) -> str:
        """Identifies a finished problem in the journal: teacher, id and text."""
        return hashlib.sha1(f"{self.teacher}\n{problem.id}\n{problem.problem}".encode()).hexdigest()

    def demonstrate(self, problems: Sequence[Problem]) -> list[list[Demonstration]]:
        """Demonstrations for each problem, in input order (an empty list where none could be made)."""
        done = self._read_journal()
        todo = [p for p in problems if self.key(p) not in done]
        self.stats["teacher_problems_resumed"] = len(problems) - len(todo)
        if todo:
            self._sample(todo, done)
        return [[Demonstration(text, correct=True) for text in done[self.key(p)]] for p in problems]

    def _sample(self, todo: list[Problem], done: dict[str, list[str]]) -> None:
        from prefixrft_cli import registry
        from prefixrft_cli.models import load_policy
        from prefixrft_cli.prompts import encode_prompt
        from prefixrft_cli.rollout.sampler import make_sampler

        model, tokenizer = load_policy(self.teacher, self.dtype, self.trust_remote_code)
        model.eval()
        sampler = make_sampler(self.engine, model, tokenizer)
        verifiers = {}
        appender = JsonlAppender(self.journal) if self.journal is not None else None
        try:
            with self.progress.stage(f"sampling from teacher {self.teacher}", len(todo)) as advance:
                for start in range(0, len(todo), self.batch_problems):
                    batch = todo[start:start + self.batch_problems]
                    prompts = [encode_prompt(p, tokenizer, self.template) for p in batch for _ in range(self.samples)]
                    seed = self.seed + int(self.key(batch[0])[:8], 16)
                    out = sampler.generate(prompts, self.max_new_tokens, temperature=self.temperature, seed=seed)
                    texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in out.tokens]
                    for index, problem in enumerate(batch):
                        span = slice(index * self.samples, (index + 1) * self.samples)
                        kept = self._verified(problem, texts[span], out.truncated[span], verifiers, registry)
                        done[self.key(problem)] = kept
                        if appender is not None:
                            appender.write({"key": self.key(problem), "id": problem.id, "teacher": self.teacher,
                                            "samples": self.samples, "demonstrations": kept})
                    advance(len(batch))
        finally:
            if appender is not None:
                appender.close()

    def _verified(self, problem: Problem, texts: list[str], truncated: list[bool], verifiers: dict,
                  registry) -> list[str]:
        """Up to `keep` distinct completions that finished (eos) and that the domain's verifier scores 1."""
        domain = "code" if problem.code is not None else "math"
        if domain not in verifiers:
            verifiers[domain] = registry.verifiers.create(domain)
        finished = [t for t, cut in zip(texts, truncated) if not cut and t.strip()]
        self.stats["teacher_samples"] += len(texts)
        self.stats["teacher_samples_truncated"] += sum(truncated)
        results = verifiers[domain].verify_batch(finished, [problem] * len(finished)) if finished else []
        kept: list[str] = []
        for text, result in zip(finished, results):
            if result.score >= 1.0:
                self.stats["teacher_samples_correct"] += 1
                if text not in kept and len(kept) < self.keep:
                    kept.append(text)
        return kept

    def _read_journal(self) -> dict[str, list[str]]:
        """Finished problems from an earlier run; a last line cut short by a crash is removed (and resampled)."""
        if self.journal is None or not self.journal.is_file():
            return {}
        text = read_text(self.journal)
        if text and not text.endswith("\n"):  # a crash cut the last write: drop it so appends start clean
            text = text[:text.rfind("\n") + 1]
            atomic_write_text(self.journal, text)
        lines = text.splitlines()
        done: dict[str, list[str]] = {}
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                done[record["key"]] = [str(t) for t in record["demonstrations"]]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{self.journal}:{number}: malformed demonstration journal line; "
                                "delete the file to start over") from None
        return done
