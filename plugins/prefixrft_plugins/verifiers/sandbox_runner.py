"""The sandbox runner process: forks one locked-down child per job and reports what it observed.

Started by `sandbox.Sandbox` as `python -m prefixrft_plugins.verifiers.sandbox_runner`; it
talks to its parent over stdin/stdout with length-prefixed JSON messages (see sandbox.py).
At start it leaves the host's network (a new network namespace: as root directly, else
through an unprivileged user namespace when the kernel allows), moves into a private mount
namespace where a fresh size-capped tmpfs covers /tmp (the jobs' folders live there) and
every other mount is read-only, and imports the modules solutions commonly use, so each
job costs one fork instead of an interpreter start.

Each job's child, before any untrusted line runs: starts a new session (its own process
group), asks to be killed if the runner dies, keeps only /dev/null as stdin, a capped
log file as stdout/stderr and its result pipe, drops to user `nobody` when the runner is
root, takes a fresh temporary working folder, and sets CPU-time, address-space,
open-file, file-size and process-count limits (one process: no fork, no threads). Then it
runs the program and each probe, writing one frame per probe to the result pipe.

The runner enforces the wall clock: the program gets `exec_seconds`, each probe its own
limit from the moment the previous frame arrived, the whole job `wall_seconds`. On
completion, deadline, end of pipe or too many result bytes it SIGKILLs the child's
process group, reaps it, deletes its folder and sends back the raw frames and their
arrival times. It never judges anything: the verifier decides from these observations.

Leaves out: a seccomp filter (system calls are limited only by the user and the limits
above). Without root or user namespaces there is no network or file-system isolation and
jobs run as the calling user; the hello message says which isolation is in force
(network / files / user). Test: tests/test_verify_sandbox.py.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import shutil
import signal
import stat
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field

from prefixrft_plugins.verifiers import values
from prefixrft_plugins.verifiers.framing import read_message, write_all, write_message

NOBODY = 65534
PR_SET_PDEATHSIG, PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS = 1, 8, 38
CAP_DAC_READ_SEARCH, CAPABILITY_VERSION_3 = 2, 0x20080522
CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWUSER = 0x00020000, 0x40000000, 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
MOUNT_FLAGS = {"nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024, "nodiratime": 2048,
               "relatime": 1 << 21, "strictatime": 1 << 24}
PRELOAD = ("math", "cmath", "re", "string", "collections", "itertools", "functools", "heapq", "bisect",
           "operator", "typing", "random", "hashlib", "statistics", "fractions", "decimal", "copy",
           "datetime", "array", "json")
_libc = ctypes.CDLL(None, use_errno=True)


# ---------------------------------------------------------------- isolation (once, in the runner)

def isolate_network() -> str:
    """Leave the host network: 'netns' as root, 'userns' through a user namespace, else 'none'."""
    if os.geteuid() == 0 and _libc.unshare(CLONE_NEWNET) == 0:
        return "netns"
    uid, gid = os.geteuid(), os.getegid()
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
        try:
            for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
                with open(f"/proc/self/{name}", "w") as handle:
                    handle.write(text)
            return "userns"
        except OSError:
            return "none"
    return "none"


def isolate_files(disk_mb: int) -> str:
    """In a private mount namespace: a fresh size-capped tmpfs on /tmp, every other mount read-only.

    Returns 'read-only' when that worked, else 'shared' (jobs then see the host's files
    with the permissions of their user). Nothing written under the new /tmp reaches the host.
    """
    if _libc.unshare(CLONE_NEWNS) != 0:
        return "shared"
    if _mount(None, "/", None, MS_REC | MS_PRIVATE) != 0:
        return "shared"
    if _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={int(disk_mb)}m,mode=1777") != 0:
        return "shared"
    with open("/proc/self/mountinfo") as handle:
        mounts = [line.split() for line in handle]
    for fields in mounts:
        point = fields[4].encode().decode("unicode_escape")
        if point == "/tmp":
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in fields[5].split(","):
            flags |= MOUNT_FLAGS.get(option, 0)
        if _mount(None, point, None, flags) != 0 and point == "/":
            return "shared"
    return "read-only"


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> int:
    encode = (lambda text: None if text is None else text.encode())
    return _libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def become_nobody(read_all: bool) -> None:
    """Drop root for user `nobody`; with `read_all`, keep only the right to read any file."""
    if read_all:
        _libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    if read_all:
        data = (_CapData * 2)()
        data[0].effective = data[0].permitted = 1 << CAP_DAC_READ_SEARCH
        if _libc.capset(ctypes.byref(_CapHeader(CAPABILITY_VERSION_3, 0)), data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed")


def nobody_needs_read_all() -> bool:
    """True when user `nobody` cannot read this Python's standard library (e.g. it lives under /root)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            become_nobody(read_all=False)
            os.listdir(os.path.dirname(os.__file__))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) != 0


# ---------------------------------------------------------------- the child (runs untrusted code)

def _enter_sandbox(workdir: str, limits: dict, cpu_seconds: float, result_fd: int) -> None:
    """Lock this freshly forked process down; the result pipe ends up as fd 3."""
    os.setsid()
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(os.path.join(workdir, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.dup2(result_fd, 3)
    os.closerange(4, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    if os.geteuid() == 0:
        become_nobody(limits["read_all"])
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update({"HOME": workdir, "TMPDIR": workdir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    tempfile.tempdir = workdir
    cpu = max(1, int(cpu_seconds + 0.999))
    memory = int(limits["memory_mb"]) << 20
    for which, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_AS, (memory, memory)),
                         (resource.RLIMIT_NOFILE, (limits["open_files"],) * 2),
                         (resource.RLIMIT_FSIZE, (limits["output_bytes"],) * 2),
                         (resource.RLIMIT_NPROC, (1, 1)), (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(which, value)
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def _send(payload: list) -> None:
    try:
        data = json.dumps(payload, allow_nan=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError, TypeError):
        data = b'["unencodable","not JSON"]'
    write_all(3, len(data).to_bytes(4, "big") + data)


def _error_name(err: BaseException) -> str:
    try:
        return str(type(err).__name__)[:80]
    except BaseException:
        return "?"


def run_probes(job: dict) -> None:
    """Run the program, then each probe, one frame each: ['ok', value] | ['raise', name] | ['unencodable', why]."""
    import builtins

    namespace = {"__name__": "__sandbox__", "__builtins__": builtins}
    try:
        exec(compile(job["program"], "solution.py", "exec"), namespace)
    except BaseException as err:
        _send(["exec_error", _error_name(err)])
        return
    _send(["ready"])
    function = namespace.get(job.get("entry_point") or "")
    for probe in job["probes"]:
        try:
            if "args" in probe:
                result = function(*values.decode(probe["args"]))
                if job.get("not_none") and type(result) is not bool:
                    result = result is not None
            elif "expr" in probe:
                result = eval(compile(probe["expr"], "<test>", "eval"), namespace)
            else:
                scope = dict(namespace)
                scope.update({name: values.decode(value) for name, value in probe["bind"].items()})
                result = eval(compile(probe["check"], "<test>", "eval"), scope)
            frame = values.report(result)
        except values.Unencodable as err:
            frame = ["unencodable", str(err)]
        except BaseException as err:
            frame = ["raise", _error_name(err)]
        _send(frame)


def _child(job: dict, workdir: str, limits: dict, result_fd: int) -> None:
    code = 70
    try:
        _enter_sandbox(workdir, limits, min(limits["cpu_seconds"], job["wall_seconds"]), result_fd)
        code = 71
        run_probes(job)
        code = 0
    finally:
        os._exit(code)


# ---------------------------------------------------------------- the runner's side of a job

@dataclass
class _Running:
    job: dict
    pid: int
    fd: int
    workdir: str
    started: float
    deadline: float
    buffer: bytearray = field(default_factory=bytearray)
    frames: list = field(default_factory=list)
    times: list = field(default_factory=list)
    received: int = 0

    def probe_limit(self, index: int) -> float:
        limits = self.job["probe_seconds"]
        return limits[index] if isinstance(limits, list) else limits

    def feed(self, data: bytes, now: float) -> bool:
        """Take pipe bytes; True once every frame this job can send has arrived."""
        self.buffer += data
        self.received += len(data)
        while len(self.buffer) >= 4:
            size = int.from_bytes(self.buffer[:4], "big")
            if len(self.buffer) < 4 + size:
                break
            frame = bytes(self.buffer[4:4 + size]).decode("utf-8", "replace")
            del self.buffer[:4 + size]
            self.frames.append(frame)
            self.times.append(now - self.started)
            if len(self.frames) == 1 and not frame.startswith('["ready"'):
                return True  # the program itself failed: nothing more will come
            probes_done = len(self.frames) - 1
            if probes_done >= len(self.job["probes"]):
                return True
            self.deadline = min(self.started + self.job["wall_seconds"], now + self.probe_limit(probes_done))
        return False


def _start(job: dict, base: str, limits: dict) -> _Running:
    workdir = tempfile.mkdtemp(prefix="job-", dir=base)
    if os.geteuid() == 0:
        os.chown(workdir, NOBODY, NOBODY)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child(job, workdir, limits, write_fd)
    os.close(write_fd)
    now = time.monotonic()
    deadline = now + min(job["exec_seconds"], job["wall_seconds"])
    return _Running(job, pid, read_fd, workdir, now, deadline)


def _finish(run: _Running, end: str, dying: list[int]) -> dict:
    """Kill the child's whole process group, delete its folder; what was observed.

    A job that sent all its frames is reaped later (its exit status says nothing new);
    any other is reaped now, so a death by SIGXCPU shows in the result.
    """
    for target in (lambda: os.killpg(run.pid, signal.SIGKILL), lambda: os.kill(run.pid, signal.SIGKILL)):
        try:
            target()
        except ProcessLookupError:
            pass
    status = None
    if end == "complete":
        dying.append(run.pid)
    else:
        status = os.waitpid(run.pid, 0)[1]
    os.close(run.fd)
    log = os.path.join(run.workdir, "output.log")
    output_bytes = os.lstat(log).st_size if os.path.isfile(log) else 0
    _remove_tree(run.workdir)
    killed_by = os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None
    exit_code = os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None
    return {"id": run.job["id"], "frames": run.frames, "times": run.times, "end": end,
            "signal": killed_by, "exit": exit_code, "output_bytes": output_bytes}


def _reap(dying: list[int], block: bool) -> None:
    for pid in list(dying):
        if os.waitpid(pid, 0 if block else os.WNOHANG)[0] == pid:
            dying.remove(pid)


def _remove_tree(path: str) -> None:
    def unlock(function, failed, _exc):
        os.chmod(os.path.dirname(failed), stat.S_IRWXU)
        function(failed)

    shutil.rmtree(path, onerror=unlock)


def run_batch(request: dict, base: str, out_fd: int, control_fd: int) -> None:
    """Run every job of a request, `parallel` at a time, sending each result as it ends."""
    pending, active, dying = deque(request["jobs"]), {}, []
    limits, parallel = request["limits"], max(1, int(request["parallel"]))
    while pending or active:
        _reap(dying, block=False)
        while pending and len(active) < parallel:
            run = _start(pending.popleft(), base, limits)
            active[run.fd] = run
        now = time.monotonic()
        wait = max(0.0, min(run.deadline for run in active.values()) - now)
        readable, _, _ = select.select([*active, control_fd], [], [], wait)
        if control_fd in readable:  # the parent went away: stop everything
            for run in active.values():
                _finish(run, "cancelled", dying)
            _reap(dying, block=True)
            raise SystemExit(0)
        now = time.monotonic()
        for fd in readable:
            run = active[fd]
            data = os.read(fd, 1 << 20)
            end = None
            if not data:
                end = "eof"
            elif run.feed(data, now):
                end = "complete"
            elif run.received > limits["result_bytes"]:
                end = "overflow"
            if end:
                write_message(out_fd, _finish(active.pop(fd), end, dying))
        for fd in [fd for fd, run in active.items() if now >= run.deadline]:
            write_message(out_fd, _finish(active.pop(fd), "deadline", dying))
    _reap(dying, block=True)
    write_message(out_fd, {"done": True})


def main() -> None:
    in_fd, out_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    disk_mb = int(sys.argv[sys.argv.index("--disk-mb") + 1]) if "--disk-mb" in sys.argv else 256
    network = isolate_network()
    read_all = os.geteuid() == 0 and nobody_needs_read_all()
    user = "nobody+read-all" if read_all else "nobody" if os.geteuid() == 0 else "same-user"
    for name in PRELOAD:
        __import__(name)
    files = isolate_files(disk_mb)
    fast_tmp = "/tmp" if files == "read-only" else "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    base = tempfile.mkdtemp(prefix="prefixrft-sandbox-", dir=fast_tmp)
    os.chmod(base, 0o711)
    try:
        write_message(out_fd, {"ready": True, "network": network, "files": files, "user": user,
                               "pid": os.getpid()})
        while True:
            request = read_message(in_fd)
            if request is None:
                return
            request["limits"]["read_all"] = read_all
            run_batch(request, base, out_fd, in_fd)
    finally:
        _remove_tree(base)


if __name__ == "__main__":
    main()
