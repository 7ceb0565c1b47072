"""The built-in `code` verifier: runs a completion against a task's tests in the sandbox.

Two kinds of tasks (prefixrft_cli.records.CodeTests):
- evalplus (HumanEval+ / MBPP+): `prompt`, `entry_point`, `canonical_solution`,
  `base_input`, `plus_input`, `atol`. The expected outputs come from running the canonical
  solution on every input in the sandbox once per task (cached in the verifier, with each
  input's run time); a completion passes when each of its outputs matches, as evalplus
  judges it (evalplus_rules.py). Each input gets max(1 s, 4 x the canonical time), as in
  evalplus.
- assert-style (original MBPP, the toy task): `tests`, a list of `assert` lines, plus
  optional `test_setup_code`. Each assert is split into probes run with the candidate and
  a check run without it (asserts.py).

In both the candidate's process only reports values; the expected ones never enter it,
and the verdict is decided here. Reasons: correct; wrong (a mismatch, an exception, a
syntax error, an early exit, output or memory over the limit); timeout (its CPU-time
budget, or the wall-clock backstop twice: a run stopped by the wall clock before its CPU
budget ran out is retried once, since that is the machine's load, not the program);
no_answer (no code in the completion); error (the task itself failed: its canonical
solution or tests do not run, the sandbox broke, or this completion's report could not
be read: a frame over the caps or one that does not decode).

The program, as evalplus runs it: the completion's code is the text after `</think>`
(when present and enabled), then the last fenced code block defining the entry point
(else the last block, else the whole text). A solution that defines the entry point runs
as it stands (rule `as-is`, like an evalplus `solution`: a name it uses but never imports
fails); one that does not is the body continuing the prompt and is appended to it (rule
`prompt+completion`, like an evalplus `completion`). `CodeResult.protocol` records the
rule, and `extracted` is the program that ran. Test: tests/test_verify_code.py,
tests/test_verify_sandbox.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from prefixrft_cli.errors import UserError
from prefixrft_cli.protocols import VerifyResult
from prefixrft_cli.records import CodeTests, Problem
from prefixrft_plugins.verifiers import evalplus_rules, values
from prefixrft_plugins.verifiers.assert_rounds import AssertRounds
from prefixrft_plugins.verifiers.asserts import AssertPlan, plan_asserts
from prefixrft_plugins.verifiers.sandbox import Sandbox, SandboxJob, SandboxLimits, SandboxRun

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.S)
AS_IS, APPENDED = "as-is", "prompt+completion"


@dataclass(frozen=True)
class CodeResult(VerifyResult):
    """A VerifyResult that also says how the program was assembled (AS_IS or APPENDED; None: no code)."""

    protocol: str | None = None


def extract_code(completion: str, entry_point: str | None = None, answer_after_think: bool = True) -> str:
    """The code a completion offers (see the module docstring); '' when there is none."""
    text = completion
    if answer_after_think and "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    blocks = _FENCE.findall(text)
    if blocks:
        defining = [b for b in blocks if entry_point and _defines(b, entry_point)]
        return (defining or blocks)[-1].strip("\n")
    if text.lstrip().startswith("```"):  # an unterminated fence: drop the opening line
        text = text.lstrip().split("\n", 1)[1] if "\n" in text.lstrip() else ""
    return text if text.strip() else ""


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.M) is not None


def assemble_solution(tests: CodeTests, code: str) -> tuple[str, str]:
    """(the solution program, its rule): the code as it stands when it defines the entry point or
    there is no prompt, else the prompt followed by the code."""
    if not tests.prompt or (tests.entry_point and _defines(code, tests.entry_point)):
        return code, AS_IS
    return tests.prompt + code, APPENDED


def assemble_program(tests: CodeTests, code: str) -> str:
    """The program to run: the solution (see assemble_solution), then the set-up code."""
    program = assemble_solution(tests, code)[0]
    if tests.test_setup_code:
        program += "\n" + tests.test_setup_code  # after the solution: some MBPP set-ups use it
    return program + "\n"


@dataclass
class _Reference:
    """A task's expected outputs, from its canonical solution."""

    task: tuple[str, int] | None
    args: list[list]          # typed argument lists, base inputs first
    probes: list[dict]        # the same, encoded for the sandbox
    n_base: int
    expected: list = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)   # CPU time of each input
    broken: str = ""          # why the canonical solution could not give every output


class CodeVerifier:
    """Scores code completions in the sandbox; one warm sandbox per verifier."""

    def __init__(self, answer_after_think: bool = True, workers: int | None = None,
                 limits: SandboxLimits | None = None, exec_seconds: float = 5.0,
                 min_probe_seconds: float = 1.0, reference_time_factor: float = 4.0,
                 assert_probe_seconds: float = 2.0, wall_seconds: float = 120.0):
        self.answer_after_think = answer_after_think
        self.exec_seconds, self.min_probe_seconds = exec_seconds, min_probe_seconds
        self.reference_time_factor, self.assert_probe_seconds = reference_time_factor, assert_probe_seconds
        self.wall_seconds = wall_seconds
        self.sandbox = Sandbox(limits, parallel=workers or os.cpu_count() or 1)
        self.asserts = AssertRounds(self.run_jobs, exec_seconds, assert_probe_seconds, wall_seconds)
        self._references: dict[tuple, _Reference] = {}
        self._validated: dict[tuple, str] = {}   # assert task -> "" if its canonical solution passes, else why not
        self.retried_jobs = 0   # runs the wall-clock backstop stopped and that were run again (the machine's load)

    def verify(self, completion: str, problem: Problem) -> CodeResult:
        """Score one completion against one problem."""
        return self.verify_batch([completion], [problem])[0]

    def verify_batch(self, completions: Sequence[str], problems: Sequence[Problem]) -> list[CodeResult]:
        """Score many completions, in parallel where that helps; results keep the input order."""
        if len(completions) != len(problems):
            raise ValueError(f"{len(completions)} completions for {len(problems)} problems")
        self._validate_assert_tasks(problems)
        return self._score_batch(completions, problems)

    def _score_batch(self, completions: Sequence[str], problems: Sequence[Problem]) -> list[CodeResult]:
        codes = [extract_code(c, _tests(p).entry_point, self.answer_after_think) for c, p in zip(completions, problems)]
        self._ensure_references([p for p, code in zip(problems, codes) if code and _is_evalplus(_tests(p))])
        reasons: dict[int, str] = {}
        todo: list[tuple[int, SandboxJob, _Reference | AssertPlan]] = []
        for i, (code, problem) in enumerate(zip(codes, problems)):
            spec = self._spec(problem) if code else None
            if not code:
                reasons[i] = "no_answer"
            elif isinstance(spec, str):
                reasons[i] = "error"    # the task itself is broken
            else:
                todo.append((i, self._candidate_job(problem, code, spec), spec))
        runs = self.run_jobs([job for _, job, _ in todo],
                             [sum(spec.seconds) if isinstance(spec, _Reference) else 0.0 for _, _, spec in todo])
        asserts = []
        for (i, job, spec), run in zip(todo, runs):
            if isinstance(spec, _Reference):
                reasons[i] = _guarded(self._judge_evalplus, problems[i], spec, run)
            else:
                asserts.append((i, spec, run, job))
        reasons.update(self.asserts.judge([_tests(p).test_setup_code or "" for p in problems], asserts))
        results = []
        for i, (code, problem) in enumerate(zip(codes, problems)):
            solution, rule = assemble_solution(_tests(problem), code) if code else (None, None)
            results.append(CodeResult(_score(reasons[i]), reasons[i], solution, rule))
        return results

    def close(self) -> None:
        """Stop the sandbox process now (it also stops when this process exits)."""
        self.sandbox.close()

    # ------------------------------------------------------------ building and running jobs

    def _spec(self, problem: Problem) -> _Reference | AssertPlan | str:
        tests = _tests(problem)
        if _is_evalplus(tests):
            reference = self._references[_reference_key(problem)]
            return reference.broken or reference
        if not tests.tests:
            raise UserError(f"problem {problem.id!r}: code tests need base_input/plus_input or a list of asserts")
        if self._validated.get(_assert_key(problem)):
            return self._validated[_assert_key(problem)]
        try:
            return plan_asserts(tuple(tests.tests), tests.test_setup_code or "", tests.entry_point)
        except ValueError as err:
            return f"bad tests: {err}"

    def _candidate_job(self, problem: Problem, code: str, spec: _Reference | AssertPlan) -> SandboxJob:
        tests = _tests(problem)
        program = assemble_program(tests, code)
        if isinstance(spec, AssertPlan):
            probes = [{"expr": source} for source in spec.probes]
            return SandboxJob(program, probes, tests.entry_point, self.exec_seconds, self.assert_probe_seconds,
                              self.wall_seconds)
        limits = [max(self.min_probe_seconds, self.reference_time_factor * s) for s in spec.seconds]
        return SandboxJob(program, spec.probes, tests.entry_point, self.exec_seconds, limits, self.wall_seconds,
                          _not_none(spec, tests))

    def run_jobs(self, jobs: list[SandboxJob], costs: list[float] | None = None) -> list[SandboxRun]:
        """Run `jobs`, the costliest first (a shorter tail in parallel); a run the wall clock stopped
        before its CPU budget ran out (the machine was busy) is run once more. Results in input order."""
        costs = costs or [0.0] * len(jobs)
        order = sorted(range(len(jobs)), key=lambda k: -costs[k])
        runs: list[SandboxRun | None] = [None] * len(jobs)
        for k, run in zip(order, self.sandbox.run([jobs[k] for k in order])):
            runs[k] = run
        again = [k for k, run in enumerate(runs) if run.under_load]
        self.retried_jobs += len(again)
        for k, run in zip(again, self.sandbox.run([jobs[k] for k in again])):
            runs[k] = run
        return runs

    def _ensure_references(self, problems: Sequence[Problem]) -> None:
        """Run the canonical solution of every evalplus task not seen before."""
        missing: dict[tuple, Problem] = {}
        for problem in problems:
            key = _reference_key(problem)
            if key not in self._references and key not in missing:
                missing[key] = problem
        jobs, pending = [], []
        for key, problem in missing.items():
            tests = _tests(problem)
            task = evalplus_rules.evalplus_task(problem.id)
            base, plus = list(tests.base_input or []), list(tests.plus_input or [])
            try:
                args = evalplus_rules.typed_inputs(task, base + plus)
                probes = [{"args": values.encode(a)} for a in args]
            except (TypeError, ValueError, IndexError, values.Unencodable) as err:
                self._references[key] = _Reference(task, [], [], 0, broken=f"inputs: {err}")
                continue
            reference = _Reference(task, args, probes, len(base))
            if not tests.canonical_solution:
                reference.broken = "no canonical_solution to compute expected outputs"
                self._references[key] = reference
                continue
            program = assemble_program(tests, tests.canonical_solution)
            jobs.append(SandboxJob(program, probes, tests.entry_point, self.exec_seconds * 4, self.wall_seconds,
                                   self.wall_seconds * 2.5, _not_none(reference, tests)))
            pending.append((key, reference))
        for (key, reference), run in zip(pending, self.run_jobs(jobs, [len(j.probes) for j in jobs])):
            if run.started and len(run.frames) == len(reference.probes) and all(f.kind == "ok" for f in run.frames):
                reference.expected, reference.seconds = [f.value for f in run.frames], run.seconds
            else:
                failed = next((f.value for f in run.frames if f.kind != "ok"), run.exec_error or run.end)
                reference.broken = f"canonical solution failed ({failed})"
            self._references[key] = reference

    def _validate_assert_tasks(self, problems: Sequence[Problem]) -> None:
        """Run the canonical solution of each new assert task that has one: if it fails, the task is broken."""
        new: dict[tuple, Problem] = {}
        for problem in problems:
            tests = _tests(problem)
            if tests.tests and tests.canonical_solution and not _is_evalplus(tests):
                new.setdefault(_assert_key(problem), problem)
        new = {key: problem for key, problem in new.items() if key not in self._validated}
        if not new:
            return
        results = self._score_batch([_tests(p).canonical_solution for p in new.values()], list(new.values()))
        for key, result in zip(new, results):
            self._validated[key] = "" if result.reason == "correct" else f"canonical solution: {result.reason}"

    # ------------------------------------------------------------ verdicts

    def _judge_evalplus(self, problem: Problem, reference: _Reference, run: SandboxRun) -> str:
        if run.end == "sandbox_error" or run.unreadable:
            return "error"
        if not run.started:
            return "timeout" if run.timed_out else "wrong"
        answered = []
        for frame in run.frames:
            if frame.kind != "ok":
                break
            answered.append(frame.value)
        entry_point, n_base = _tests(problem).entry_point or "", reference.n_base
        for lo, hi in ((0, min(n_base, len(answered))), (n_base, len(answered))):
            if hi > lo and not evalplus_rules.group_passes(reference.task, entry_point, reference.args[lo:hi],
                                                           answered[lo:hi], reference.expected[lo:hi],
                                                           _tests(problem).atol):
                return "wrong"
        if len(answered) < len(run.frames):
            return "wrong"          # an exception, or a value that may not cross
        if len(answered) < len(reference.probes):
            return "timeout" if run.timed_out else "wrong"
        return "correct"


def _guarded(judge, *args) -> str:
    """A verdict that cannot fail the batch: whatever goes wrong judging one completion is its `error`."""
    try:
        return judge(*args)
    except Exception:
        return "error"


def _tests(problem: Problem) -> CodeTests:
    if problem.code is None:
        raise UserError(f"problem {problem.id!r} has no code tests (field 'code'); the code verifier needs them")
    return problem.code


def _is_evalplus(tests: CodeTests) -> bool:
    return tests.base_input is not None or tests.plus_input is not None


def _not_none(reference: _Reference, tests: CodeTests) -> bool:
    return bool(reference.task and reference.task[0] == "mbpp" and tests.entry_point in evalplus_rules.MBPP_OUTPUT_NOT_NONE)


def _reference_key(problem: Problem) -> tuple:
    tests = _tests(problem)
    return (problem.id, tests.entry_point, tests.prompt, tests.canonical_solution, tests.atol,
            len(tests.base_input or []), len(tests.plus_input or []))


def _assert_key(problem: Problem) -> tuple:
    tests = _tests(problem)
    return (problem.id, tuple(tests.tests or ()), tests.test_setup_code, tests.canonical_solution)


def _score(reason: str) -> float:
    return 1.0 if reason == "correct" else 0.0
