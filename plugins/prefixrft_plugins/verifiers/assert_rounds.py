"""Judging assert-style tests from the values candidates reported, in a process that holds no candidate code.

After a candidate's probes ran (asserts.py), its checks run in a clean sandbox job: the
task's modules and as much of its set-up code as runs without the solution, then each
check with the probed values bound to names. A check with stubs (an assert whose calls
depend on a comprehension or lambda variable) may answer "need" with the calls it could
not answer yet; those calls go to a fresh run of the candidate (`{"call": key}` probes),
their values join the candidate's memo, and the checks run again, at most
MAX_CALL_ROUNDS times. A call that raised, or whose value cannot be sent back, makes its
stub raise: the assert fails as it would have. Whatever else goes wrong with one
candidate (an unreadable report, a failed decode) is its `error`, never its neighbours'.
Test: tests/test_verify_code.py, tests/test_verify_sandbox.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prefixrft_plugins.verifiers import values
from prefixrft_plugins.verifiers.asserts import PROBE_PREFIX, AssertPlan
from prefixrft_plugins.verifiers.sandbox import SandboxJob, SandboxRun

MAX_CALL_ROUNDS = 8


@dataclass
class _Candidate:
    index: int
    plan: AssertPlan
    job: SandboxJob                  # the candidate's own job: its program answers the stubs' calls
    setup: str
    binds: list[dict]                # per check: probe name -> encoded value
    memo: dict[str, list] = field(default_factory=dict)   # call key -> ["ok", encoded value] | ["raise"]


class AssertRounds:
    """Runs the checks (and the stubbed calls they ask for) through `run_jobs`, the verifier's runner."""

    def __init__(self, run_jobs: Callable[[list[SandboxJob]], list[SandboxRun]], exec_seconds: float,
                 probe_seconds: float, wall_seconds: float):
        self.run_jobs = run_jobs
        self.exec_seconds, self.probe_seconds, self.wall_seconds = exec_seconds, probe_seconds, wall_seconds

    def judge(self, setups: Sequence[str], probed: list[tuple[int, AssertPlan, SandboxRun, SandboxJob]]) -> dict[int, str]:
        """Reasons for every candidate of `probed` (index, plan, probe run, its job); `setups[index]` its set-up code."""
        reasons: dict[int, str] = {}
        pending: list[_Candidate] = []
        for i, plan, run, job in probed:
            reason = _probe_failure(plan, run)
            if reason:
                reasons[i] = reason
                continue
            try:
                binds = [{f"{PROBE_PREFIX}{k}": values.encode(run.frames[k].value) for k in check.probes}
                         for check in plan.checks]
            except values.Unencodable:   # a value only sent as a digest cannot be checked
                reasons[i] = "wrong"
                continue
            pending.append(_Candidate(i, plan, job, setups[i], binds))
        for round_number in range(MAX_CALL_ROUNDS + 1):
            if not pending:
                break
            needing = []
            for candidate, verdict in zip(pending, self._check(pending)):
                if isinstance(verdict, str):
                    reasons[candidate.index] = verdict
                elif round_number == MAX_CALL_ROUNDS:
                    reasons[candidate.index] = "error"   # more rounds of calls than we allow
                else:
                    needing.append((candidate, verdict))
            pending = self._answer_calls(needing, reasons)
        return reasons

    def _check(self, candidates: list[_Candidate]) -> list[str | list[str]]:
        """Per candidate: a reason, or the call keys its checks still need."""
        groups: dict[str, list[int]] = {}
        for k, candidate in enumerate(candidates):
            groups.setdefault(candidate.setup, []).append(k)
        jobs = []
        for setup, members in groups.items():
            modules = {m for k in members for m in candidates[k].plan.modules}
            probes = [{"check": check.source, "bind": bind, "stubs": list(check.stubs), "memo": candidates[k].memo}
                      for k in members for check, bind in zip(candidates[k].plan.checks, candidates[k].binds)]
            jobs.append(SandboxJob(check_program(setup, modules), probes, None, self.exec_seconds,
                                   self.probe_seconds, self.wall_seconds * 2.5))
        verdicts: list[str | list[str]] = ["error"] * len(candidates)
        for members, run in zip(groups.values(), self.run_jobs(jobs)):
            frames = iter(run.frames)
            for k in members:
                outcomes = [next(frames, None) for _ in candidates[k].plan.checks]
                verdicts[k] = "error" if not run.started or run.unreadable else _verdict(outcomes)
        return verdicts

    def _answer_calls(self, needing: list[tuple[_Candidate, list[str]]], reasons: dict[int, str]) -> list[_Candidate]:
        """Run each candidate on the calls its checks asked for; those that answered go round again."""
        jobs = [SandboxJob(c.job.program, [{"call": key} for key in keys], c.job.entry_point, self.exec_seconds,
                           self.probe_seconds, self.wall_seconds) for c, keys in needing]
        again = []
        for (candidate, keys), run in zip(needing, self.run_jobs(jobs)):
            if run.end == "sandbox_error" or run.unreadable:
                reasons[candidate.index] = "error"
            elif not run.started or len(run.frames) < len(keys):
                reasons[candidate.index] = "timeout" if run.timed_out else "wrong"
            else:
                for key, frame in zip(keys, run.frames):
                    candidate.memo[key] = _memo_value(frame)
                again.append(candidate)
        return again


def _probe_failure(plan: AssertPlan, run: SandboxRun) -> str:
    """Why the candidate's probe run already decides its verdict, or ''."""
    if run.end == "sandbox_error" or run.unreadable:
        return "error"
    if not run.started or len(run.frames) < len(plan.probes):
        return "timeout" if run.timed_out else "wrong"
    if any(frame.kind != "ok" for frame in run.frames):
        return "wrong"
    return ""


def _verdict(outcomes: list) -> str | list[str]:
    """'correct' when every check is True, 'wrong' when one is not, else the calls still needed."""
    needed: list[str] = []
    for frame in outcomes:
        if frame is not None and frame.kind == "need":
            needed += [key for key in frame.value if key not in needed]
        elif frame is None or frame.kind != "ok" or frame.value is not True:
            return "wrong"
    return needed or "correct"


def _memo_value(frame) -> list:
    if frame.kind != "ok":
        return ["raise"]
    try:
        return ["ok", values.encode(frame.value)]
    except values.Unencodable:   # a digest: too large to replay into the check
        return ["raise"]


def check_program(setup: str, modules: set[str]) -> str:
    """The clean process: the modules the checks name, then as much of the set-up code as runs
    without the candidate (some MBPP set-ups build objects of the solution's classes)."""
    imports = "".join(f"import {m}\n" for m in sorted(modules))
    if not setup.strip():
        return imports
    return imports + f"try:\n    exec(compile({setup!r}, 'test_setup_code', 'exec'))\nexcept Exception:\n    pass\n"
