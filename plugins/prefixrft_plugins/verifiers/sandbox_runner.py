"""The sandbox runner process: starts one locked-down fresh interpreter per job and reports what it observed.

Started by `sandbox.Sandbox` as `python -m prefixrft_plugins.verifiers.sandbox_runner`; it
talks to its parent over stdin/stdout with length-prefixed JSON messages (see sandbox.py).
At start it leaves the host's network and mounts and builds the read-only file view
(sandbox_view.py).

Each job: the runner writes `job` (a marshal of the program and probes) into a fresh
folder and forks a *keeper* process, which enters a new PID and mount namespace
(sandbox_view) and forks the job's process. The keeper only waits for it and exits with its status; killing the keeper
kills the job (the job asks for SIGKILL when its keeper dies, and it is PID 1 of its
namespace, so nothing it started survives it). The job's process, before any untrusted
line runs: starts a new session, keeps /dev/null as stdin, a capped log file as
stdout/stderr and its result pipe as fd 3, chroots into the view, takes its own uid
(as root), sets CPU-time, address-space, open-file, file-size and process-count limits
(one process: no fork), sets no-new-privileges and execs a fresh Python running
sandbox_child.py. Nothing of the runner's memory (other jobs, expected outputs) survives
that exec.

Time: each phase (the program's top level, then each probe) has a CPU-time budget,
measured on the job's process CPU clock from the moment the previous frame arrived, and
a generous wall-clock backstop (`wall_factor` x budget + `wall_slack_seconds`, all
capped by the job's `wall_seconds`), so a loaded machine slows a job down without failing
it. The end says which one stopped it: "cpu" or "wall". Output: a frame longer than
`frame_bytes` or more than `result_bytes` in all ends the job as "overflow" before any of
it is decoded. The runner never judges anything: the verifier decides from these
observations.

Leaves out: a seccomp filter. Without root or user namespaces there is no network, file
or PID isolation and jobs run as the calling user; the hello message says which isolation
is in force. Test: tests/test_verify_sandbox.py; docs/security.md.
"""

from __future__ import annotations

import ctypes
import marshal
import math
import os
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field

from prefixrft_plugins.verifiers import sandbox_child, sandbox_view, values
from prefixrft_plugins.verifiers.framing import read_message, write_message

PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
EOF_GRACE_SECONDS = 1.0
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class Host:
    """What the runner set up once: the view, the folders, how jobs are isolated."""

    root: str | None      # the read-only view (None: no mount namespace)
    jobs: str             # where job folders live
    script: str           # sandbox_child.py as a job sees it
    python: str           # the interpreter to exec
    as_root: bool
    read_all: bool = False  # no view, and the jobs' uids cannot read the interpreter: they may read any file


# ---------------------------------------------------------------- the job's two processes

def _keeper(job: dict, host: Host, uid: int | None, workdir: str, result_fd: int, pid_fd: int) -> None:
    """The job's first process: new namespaces, fork the job, report its pid, mirror its end."""
    code = 70
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        sandbox_view.enter_job_namespaces(host.root, workdir)
        alive_r, alive_w = os.pipe()   # closes when this keeper dies: the job checks it once
        pid = os.fork()
        if pid == 0:
            os.close(alive_w)
            _job_process(job, host, uid, workdir, result_fd, alive_r)
        os.close(result_fd)
        os.write(pid_fd, pid.to_bytes(4, "big"))
        os.close(pid_fd)
        status = os.waitpid(pid, 0)[1]
        if os.WIFSIGNALED(status):   # end the same way, so the runner sees how the job ended
            if os.WTERMSIG(status) != signal.SIGKILL:
                signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
            os.kill(os.getpid(), os.WTERMSIG(status))
        code = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 71
    finally:
        os._exit(code)


def _job_process(job: dict, host: Host, uid: int | None, workdir: str, result_fd: int, alive_fd: int) -> None:
    """Lock down, then exec the fresh interpreter (see the module docstring). Never returns."""
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if select.select([alive_fd], [], [], 0)[0]:   # the keeper already died
            os._exit(72)
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(os.path.join(workdir, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for source, target in ((null, 0), (log, 1), (log, 2), (result_fd, 3)):
            os.dup2(source, target)
        os.closerange(4, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        sandbox_view.enter_view(host.root, workdir)
        if uid is not None:
            sandbox_view.become(uid, host.read_all)
        _set_limits(job, job["limits"])
        env = {"HOME": "/tmp" if host.root else workdir, "TMPDIR": "/tmp" if host.root else workdir,
               "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        os.execve(host.python, [host.python, "-E", "-s", "-S", "-B", host.script], env)
    finally:
        os._exit(73)


def _set_limits(job: dict, limits: dict) -> None:
    probes = job["probe_seconds"] if isinstance(job["probe_seconds"], list) else \
        [job["probe_seconds"]] * len(job["probes"])
    cpu = max(1, math.ceil(min(limits["cpu_seconds"], job["exec_seconds"] + sum(probes)) + 1))
    memory = int(limits["memory_mb"]) << 20
    for which, value in ((resource.RLIMIT_CPU, (cpu, cpu)), (resource.RLIMIT_AS, (memory, memory)),
                         (resource.RLIMIT_NOFILE, (limits["open_files"],) * 2),
                         (resource.RLIMIT_FSIZE, (limits["output_bytes"],) * 2),
                         (resource.RLIMIT_NPROC, (1, 1)), (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(which, value)
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


# ---------------------------------------------------------------- the runner's side of a job

def process_cpu_seconds(pid: int) -> float | None:
    """CPU time used so far by process `pid` (its process CPU clock), or None once it is gone."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)   # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
    except OSError:
        return None


@dataclass
class _Running:
    job: dict
    slot: int
    keeper: int
    pid: int
    fd: int
    workdir: str
    started: float
    phase_wall: float = 0.0          # wall clock when the current phase began
    phase_cpu: float = 0.0           # the job's CPU time then
    cpu: float = 0.0                 # its CPU time at the last look
    buffer: bytearray = field(default_factory=bytearray)
    frames: list = field(default_factory=list)
    times: list = field(default_factory=list)
    cpu_times: list = field(default_factory=list)
    received: int = 0

    def budget(self) -> float:
        """CPU seconds the current phase may use: the program's, then probe k's."""
        k = len(self.frames) - 1
        if k < 0:
            return self.job["exec_seconds"]
        limits = self.job["probe_seconds"]
        return limits[k] if isinstance(limits, list) else limits

    def backstop(self, limits: dict) -> float:
        """The wall-clock time at which the current phase (or the whole job) is given up."""
        phase = self.phase_wall + limits["wall_factor"] * self.budget() + limits["wall_slack_seconds"]
        return min(phase, self.started + self.job["wall_seconds"])

    def look(self) -> float:
        cpu = process_cpu_seconds(self.pid)
        self.cpu = self.cpu if cpu is None else cpu
        return self.cpu

    def feed(self, data: bytes, now: float, frame_bytes: int) -> str | None:
        """Take pipe bytes; 'complete' once every frame has arrived, 'overflow' for a frame over the cap."""
        self.buffer += data
        self.received += len(data)
        while len(self.buffer) >= 4:
            size = int.from_bytes(self.buffer[:4], "big")
            if size > frame_bytes:
                return "overflow"          # refused before it is read in full, let alone decoded
            if len(self.buffer) < 4 + size:
                break
            frame = bytes(self.buffer[4:4 + size]).decode("utf-8", "replace")
            del self.buffer[:4 + size]
            self.frames.append(frame)
            self.times.append(now - self.started)
            self.cpu_times.append(self.look())
            self.phase_wall, self.phase_cpu = now, self.cpu
            if len(self.frames) == 1 and not frame.startswith('["ready"'):
                return "complete"  # the program itself failed: nothing more will come
            if len(self.frames) - 1 >= len(self.job["probes"]):
                return "complete"
        return None


def _start(job: dict, host: Host, slot: int) -> _Running:
    workdir = tempfile.mkdtemp(prefix="job-", dir=host.jobs)
    payload = {key: job[key] for key in ("program", "probes", "entry_point", "not_none")}
    with open(os.path.join(workdir, "job"), "wb") as handle:
        marshal.dump(payload, handle)   # JSON types only (they came as JSON); the child loads it without json
    uid = sandbox_view.job_uid(slot) if host.as_root else None
    if uid is not None:
        for path in (workdir, os.path.join(workdir, "job")):
            os.chown(path, uid, uid)
    read_fd, write_fd = os.pipe()
    pid_r, pid_w = os.pipe()
    keeper = os.fork()
    if keeper == 0:
        os.close(read_fd)
        os.close(pid_r)
        _keeper(job, host, uid, workdir, write_fd, pid_w)
    os.close(write_fd)
    os.close(pid_w)
    pid = int.from_bytes(os.read(pid_r, 4) or b"\0\0\0\0", "big")
    os.close(pid_r)
    now = time.monotonic()
    return _Running(job, slot, keeper, pid or keeper, read_fd, workdir, now, phase_wall=now)


def _finish(run: _Running, end: str) -> dict:
    """Kill the job (through its keeper), reap it, delete its folder; what was observed."""
    status, killed_by_us = _reap(run.keeper, wait=end == "eof")
    os.close(run.fd)
    log = os.path.join(run.workdir, "output.log")
    output_bytes = os.lstat(log).st_size if os.path.isfile(log) else 0
    shutil.rmtree(run.workdir, ignore_errors=True)
    killed_by = os.WTERMSIG(status) if os.WIFSIGNALED(status) and not killed_by_us else None
    if killed_by in (signal.SIGKILL, signal.SIGXCPU):
        end = "cpu"   # the kernel's CPU-time limit (RLIMIT_CPU), the backstop behind our own count
    exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    return {"id": run.job["id"], "frames": run.frames, "times": run.times, "cpu_times": run.cpu_times,
            "end": end, "signal": killed_by, "exit": exit_code, "output_bytes": output_bytes}


def _reap(keeper: int, wait: bool) -> tuple[int, bool]:
    """The keeper's exit status, and whether we had to kill it. With `wait`, give a job that
    closed its pipe EOF_GRACE_SECONDS to end by itself (its own exit status then tells how it ended)."""
    if wait:
        pidfd = os.pidfd_open(keeper)
        try:
            select.select([pidfd], [], [], EOF_GRACE_SECONDS)
        finally:
            os.close(pidfd)
        pid, status = os.waitpid(keeper, os.WNOHANG)
        if pid:
            return status, False
    try:
        os.kill(keeper, signal.SIGKILL)   # our own unreaped child: its pid cannot have been reused
    except ProcessLookupError:
        pass
    return os.waitpid(keeper, 0)[1], True


def _ends(active: dict[int, _Running], readable: list[int], limits: dict, now: float) -> list[tuple[int, str]]:
    """The jobs that end now, and why."""
    ended = []
    for fd, run in active.items():
        end = None
        if fd in readable:
            data = os.read(fd, 1 << 20)
            end = "eof" if not data else run.feed(data, now, limits["frame_bytes"])
            if end is None and run.received > limits["result_bytes"]:
                end = "overflow"
        if end is None and run.look() - run.phase_cpu > run.budget():
            end = "cpu"
        if end is None and now >= run.backstop(limits):
            end = "wall"
        if end:
            ended.append((fd, end))
    return ended


def run_batch(request: dict, host: Host, out_fd: int, control_fd: int) -> None:
    """Run every job of a request, `parallel` at a time, sending each result as it ends."""
    limits, parallel = request["limits"], max(1, int(request["parallel"]))
    pending, active = deque(dict(job, limits=limits) for job in request["jobs"]), {}
    free_slots = deque(range(parallel))
    while pending or active:
        while pending and free_slots:
            run = _start(pending.popleft(), host, free_slots.popleft())
            active[run.fd] = run
        now = time.monotonic()
        wait = min(min(run.backstop(limits), now + run.budget() - (run.look() - run.phase_cpu))
                   for run in active.values()) - now
        readable, _, _ = select.select([*active, control_fd], [], [], max(0.005, wait))
        if control_fd in readable:  # the parent went away: stop everything
            for run in active.values():
                _finish(run, "cancelled")
            raise SystemExit(0)
        for fd, end in _ends(active, readable, limits, time.monotonic()):
            run = active.pop(fd)
            free_slots.append(run.slot)
            write_message(out_fd, _finish(run, end))
    write_message(out_fd, {"done": True})


def _set_up(disk_mb: int) -> tuple[Host, dict]:
    mode = sandbox_view.enter_namespaces()
    files = [sandbox_child.__file__, values.__file__]
    base = tempfile.mkdtemp(prefix="prefixrft-sandbox-")
    os.chmod(base, 0o711)
    try:
        root, jobs = sandbox_view.build_view(base, disk_mb, files) if mode != "none" else (None, "")
    except OSError:
        root, jobs = None, ""
    if root is None:
        root, jobs = sandbox_view.plain_folders(base, files)
    as_root, python = os.geteuid() == 0, os.path.realpath(sys.executable)
    read_all = as_root and root is None and not sandbox_view.interpreter_readable_by(sandbox_view.job_uid(255), python)
    host = Host(root, jobs, sandbox_view.child_script(root, base), python, as_root, read_all)
    user = ("uid-per-job+read-all" if read_all else "uid-per-job") if as_root else "same-user"
    isolation = {"network": "none" if mode == "none" else "netns", "files": "view" if root else "shared",
                 "pids": "per-job" if mode != "none" else "shared", "user": user, "base": base}
    return host, isolation


def main() -> None:
    in_fd, out_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    disk_mb = int(sys.argv[sys.argv.index("--disk-mb") + 1]) if "--disk-mb" in sys.argv else 256
    host, isolation = _set_up(disk_mb)
    try:
        write_message(out_fd, {"ready": True, "pid": os.getpid(), **isolation})
        while True:
            request = read_message(in_fd)
            if request is None:
                return
            run_batch(request, host, out_fd, in_fd)
    finally:
        sandbox_view.release_view(isolation["base"])


if __name__ == "__main__":
    main()
