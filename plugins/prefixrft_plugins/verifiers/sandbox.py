"""Run untrusted programs against probes in a sandbox, and get back what was observed.

`Sandbox` starts one runner process (sandbox_runner.py) on first use and keeps it warm;
each job then runs in a fresh, locked-down interpreter the runner starts (about 30 ms on
the 2-core development machine). A job is a program plus probes: call the entry point with
these encoded arguments (`{"args": [...]}`), evaluate an expression (`{"expr": "f(2)"}`),
call a named function (`{"call": key}`) or evaluate a check with values bound to names
and candidate functions stubbed (`{"check": ..., "bind": {...}, "stubs": [...], "memo": {...}}`).
Time limits are CPU seconds, with a wall-clock backstop. A `SandboxRun` holds the decoded
frames, the CPU time of each, and how the job ended; judging them is the caller's business.

The runner talks JSON only, so nothing the sandbox sends is ever unpickled here; whatever a
job sends that cannot be decoded makes that job's run `unreadable`, never the batch's.
Safe to call from threads (one batch at a time per Sandbox) and from forked processes (a
fork gets its own runner). What is isolated, and on which kernels: docs/security.md.
Test: tests/test_verify_sandbox.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from prefixrft_plugins.verifiers import values
from prefixrft_plugins.verifiers.framing import read_message, write_message
from prefixrft_plugins.verifiers.workers import stop_process


@dataclass(frozen=True)
class SandboxLimits:
    """Limits applied to every job's process (wall-clock limits are per job, see SandboxJob)."""

    cpu_seconds: float = 600.0         # CPU time per job at most, whatever its phases' budgets add up to
    memory_mb: int = 4096              # address space, as evalplus
    open_files: int = 64
    output_bytes: int = 1 << 20        # stdout + stderr + any file the program writes
    frame_bytes: int = 4 << 20         # one frame (honest ones stay under 1 MiB: values.DIGEST_ABOVE_CHARS)
    result_bytes: int = 64 << 20       # all frames of a job; more is a flood and ends the job
    disk_mb: int = 256                 # the jobs' folders (a tmpfs), shared by the jobs running at once
    wall_factor: float = 4.0           # wall-clock backstop of a phase: wall_factor x its CPU budget ...
    wall_slack_seconds: float = 2.0    # ... plus this


@dataclass
class SandboxJob:
    """One program and the probes to run after it."""

    program: str
    probes: list[dict]
    entry_point: str | None = None
    exec_seconds: float = 5.0                     # CPU time for the program's top-level code
    probe_seconds: float | list[float] = 2.0      # CPU time per probe (one value or one per probe)
    wall_seconds: float = 120.0                   # wall-clock cap on the whole job
    not_none: bool = False                        # report `result is not None` (evalplus' oracle for regex tasks)


@dataclass
class Frame:
    """One probe's outcome as the child reported it."""

    kind: str          # ok | raise | unencodable | need | malformed
    value: Any = None  # for 'ok' the decoded value (a values.Digest when large), else a short description


@dataclass
class SandboxRun:
    """What the runner observed for one job."""

    started: bool                                       # the program ran to the end of its top level
    frames: list[Frame] = field(default_factory=list)   # one per probe answered, in order
    seconds: list[float] = field(default_factory=list)  # CPU time of each answered probe
    end: str = ""        # complete | cpu | wall | eof | overflow | exec_error | sandbox_error
    exec_error: str = ""
    signal: int | None = None
    exit_code: int | None = None
    output_bytes: int = 0

    @property
    def timed_out(self) -> bool:
        """Stopped by its CPU-time budget or by the wall-clock backstop."""
        return self.end in ("cpu", "wall")

    @property
    def under_load(self) -> bool:
        """Stopped by the wall clock before its CPU budget ran out: the machine was busy, worth one retry."""
        return self.end == "wall"

    @property
    def unreadable(self) -> bool:
        """It sent more than the caps allow, or frames that do not decode: nothing it said can be judged."""
        return self.end == "overflow" or any(frame.kind == "malformed" for frame in self.frames)


class Sandbox:
    """A warm runner process; `run` executes jobs `parallel` at a time."""

    def __init__(self, limits: SandboxLimits | None = None, parallel: int | None = None):
        self.limits = limits or SandboxLimits()
        self.parallel = parallel or os.cpu_count() or 1
        self.isolation: dict[str, str] = {}   # network / files / pids / user, as the runner reports
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._owner = 0
        self._finalizer: weakref.finalize | None = None

    def run(self, jobs: Sequence[SandboxJob]) -> list[SandboxRun]:
        """Observations for `jobs`, in input order."""
        if not jobs:
            return []
        with self._lock:
            try:
                return self._run_locked(jobs)
            except (OSError, ValueError, EOFError) as err:
                self._stop()
                return [SandboxRun(False, end="sandbox_error", exec_error=f"{type(err).__name__}: {err}")
                        for _ in jobs]

    def _run_locked(self, jobs: Sequence[SandboxJob]) -> list[SandboxRun]:
        proc = self._ensure_started()
        request = {"jobs": [dict(vars(job), id=i) for i, job in enumerate(jobs)],   # shallow: probes can be large
                   "limits": asdict(self.limits), "parallel": self.parallel}
        write_message(proc.stdin.fileno(), request)
        results: list[SandboxRun | None] = [None] * len(jobs)
        while True:
            message = read_message(proc.stdout.fileno())
            if message is None:
                raise EOFError("the sandbox runner stopped")
            if message.get("done"):
                break
            results[message["id"]] = _observation(message, len(jobs[message["id"]].probes))
        return [r if r is not None else SandboxRun(False, end="sandbox_error") for r in results]

    def _ensure_started(self) -> subprocess.Popen:
        if self._proc is not None and self._owner == os.getpid() and self._proc.poll() is None:
            return self._proc
        self._proc, self._owner = None, os.getpid()
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.Popen([sys.executable, "-m", "prefixrft_plugins.verifiers.sandbox_runner",
                                 "--disk-mb", str(self.limits.disk_mb)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        hello = read_message(proc.stdout.fileno())
        if not hello or not hello.get("ready"):
            proc.kill()
            proc.wait()
            raise OSError("the sandbox runner did not start")
        self._proc = proc
        self.isolation = {key: hello[key] for key in ("network", "files", "pids", "user")}
        self._finalizer = weakref.finalize(self, stop_process, proc)
        return proc

    def _stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._proc = None

    def close(self) -> None:
        """Stop the runner (it also stops by itself when this process exits)."""
        with self._lock:
            self._stop()


def _observation(message: dict, n_probes: int) -> SandboxRun:
    """Decode the raw frames; anything that is not a well-formed frame becomes 'malformed'."""
    raw = [_frame(text) for text in message["frames"]]
    cpu = list(message["cpu_times"])
    run = SandboxRun(False, end=message["end"], signal=message["signal"], exit_code=message["exit"],
                     output_bytes=message["output_bytes"])
    if not raw:
        return run
    if raw[0].kind != "ready":
        run.end, run.exec_error = "exec_error", str(raw[0].value)
        return run
    run.started = True
    run.frames = raw[1:1 + n_probes]
    run.seconds = [b - a for a, b in zip(cpu[:-1], cpu[1:])][:n_probes]
    return run


def _frame(text: str) -> Frame:
    """One frame as the child sent it; never raises, whatever the text (a job's garbage is its own)."""
    try:
        return _decode_frame(text)
    except Exception as err:   # e.g. an int of more than 4300 digits, complex(10 ** 400), nesting too deep
        return Frame("malformed", f"{type(err).__name__}")


def _decode_frame(text: str) -> Frame:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return Frame("malformed", "not JSON")
    if data == ["ready"]:
        return Frame("ready")
    if not isinstance(data, list) or len(data) != 2 or data[0] not in ("ok", "digest", "raise", "unencodable",
                                                                         "need", "exec_error"):
        return Frame("malformed", "unknown frame")
    if data[0] == "digest":
        return Frame("ok", values.Digest(str(data[1])))
    if data[0] == "need":
        if not isinstance(data[1], list) or not all(isinstance(key, str) for key in data[1]):
            return Frame("malformed", "bad need frame")
        return Frame("need", list(data[1]))
    if data[0] != "ok":
        return Frame(data[0], str(data[1])[:200])
    try:
        return Frame("ok", values.decode(data[1]))
    except ValueError as err:
        return Frame("malformed", str(err)[:200])
