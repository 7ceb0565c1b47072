"""A small pool of helper processes where every task has its own deadline.

`TimedWorkers(module, size, timeout_seconds)` starts `size` processes running
`python -m module` on first use. Each reads a task message, answers with one message
(framing.py), and said {"ready": true} once after start-up. `map(tasks)` hands tasks to
idle workers; a worker that has not answered `timeout_seconds` after it got its task is
SIGKILLed, its task reported as None, and a fresh worker started in its place (start-up
time never counts against a task). A worker that dies mid-task yields {"error": ...}.
`start()` starts them all ahead of the first `map` and waits until each is ready.

Works from any thread (one `map` at a time per pool, others wait) and inside worker
processes of other pools (no signals, no multiprocessing); a forked copy of the pool
starts its own processes. Test: tests/test_verify_math.py.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from prefixrft_plugins.verifiers.framing import read_message, write_message

START_TIMEOUT_SECONDS = 120.0


@dataclass
class _Worker:
    proc: subprocess.Popen
    ready: bool = False
    task: int | None = None      # index of the task it is working on
    deadline: float = 0.0
    started: float = 0.0

    @property
    def fd(self) -> int:
        return self.proc.stdout.fileno()


class TimedWorkers:
    """`size` helper processes of `module`, each task bounded by `timeout_seconds` of wall time."""

    def __init__(self, module: str, size: int, timeout_seconds: float):
        self.module, self.size, self.timeout_seconds = module, max(1, size), timeout_seconds
        self._workers: list[_Worker] = []
        self._owner = 0
        self._lock = threading.Lock()
        weakref.finalize(self, _stop_all, self._workers)

    def map(self, tasks: Sequence[dict]) -> list[dict | None]:
        """One answer per task, in order: the worker's message, or None when it ran out of time."""
        if not tasks:
            return []
        with self._lock:
            self._adopt()
            return self._run(tasks)

    def start(self) -> None:
        """Start every worker now and wait until each is ready (then no start-up falls into a timing)."""
        with self._lock:
            self._adopt()
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while not all(w.ready for w in self._workers):
                starting = {w.fd: w for w in self._workers if not w.ready}
                readable, _, _ = select.select(list(starting), [], [], max(0.0, deadline - time.monotonic()))
                if not readable:
                    raise RuntimeError(f"{self.module} did not start within {START_TIMEOUT_SECONDS:.0f} s")
                for fd in readable:
                    message = read_message(fd)
                    if message is None:
                        raise RuntimeError(f"{self.module} stopped while starting")
                    starting[fd].ready = bool(message.get("ready"))

    @property
    def pids(self) -> list[int]:
        """The worker processes now running (e.g. to read their CPU time)."""
        return [w.proc.pid for w in self._workers]

    def _adopt(self) -> None:
        if self._owner != os.getpid():   # a forked copy: the parent's processes are not ours
            self._workers.clear()
            self._owner = os.getpid()
        while len(self._workers) < self.size:
            self._workers.append(self._spawn())

    def _run(self, tasks: Sequence[dict]) -> list[dict | None]:
        answers: list[dict | None] = [None] * len(tasks)
        pending, done = deque(range(len(tasks))), 0
        while done < len(tasks):
            now = time.monotonic()
            for worker in self._workers:
                if worker.ready and worker.task is None and pending:
                    worker.task = pending.popleft()
                    worker.deadline = now + self.timeout_seconds
                    write_message(worker.proc.stdin.fileno(), tasks[worker.task])
            busy = [w for w in self._workers if w.task is not None]
            waits = [w.deadline for w in busy] + [w.started + START_TIMEOUT_SECONDS for w in self._workers if not w.ready]
            timeout = max(0.0, min(waits) - now) if waits else None
            readable, _, _ = select.select([w.fd for w in self._workers], [], [], timeout)
            now = time.monotonic()
            for i, worker in enumerate(list(self._workers)):
                if worker.fd in readable:
                    message = read_message(worker.fd)
                    if message is None:   # it died
                        if worker.task is not None:
                            answers[worker.task] = {"error": "worker process died"}
                            done += 1
                        self._replace(worker)
                    elif not worker.ready:
                        worker.ready = bool(message.get("ready"))
                    elif worker.task is not None:
                        answers[worker.task] = message
                        worker.task = None
                        done += 1
                elif worker.task is not None and now >= worker.deadline:
                    done += 1   # answers[task] stays None: out of time
                    self._replace(worker)
                elif not worker.ready and now >= worker.started + START_TIMEOUT_SECONDS:
                    raise RuntimeError(f"{self.module} did not start within {START_TIMEOUT_SECONDS:.0f} s")
        return answers

    def _spawn(self) -> _Worker:
        # its own session: a Ctrl-C at the terminal is the parent's to handle; the worker ends when its pipe closes
        proc = subprocess.Popen([sys.executable, "-m", self.module], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                start_new_session=True)
        return _Worker(proc, started=time.monotonic())

    def _replace(self, worker: _Worker) -> None:
        stop_process(worker.proc, kill=True)
        self._workers[self._workers.index(worker)] = self._spawn()

    def close(self) -> None:
        """Stop every worker now."""
        with self._lock:
            _stop_all(self._workers)


def stop_process(proc: subprocess.Popen, kill: bool = False) -> None:
    """Close a helper's pipes and reap it (killed first when `kill`), never hanging past 5 s."""
    if kill:
        proc.kill()
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except OSError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _stop_all(workers: list[_Worker]) -> None:
    for worker in workers:
        stop_process(worker.proc, kill=False)
    workers.clear()
