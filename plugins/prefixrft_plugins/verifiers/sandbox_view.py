"""The isolation the sandbox runner sets up: no network, a read-only file view, a PID namespace and a uid per job.

Once, in the runner (`enter_namespaces`, `build_view`):
- as root: a new network namespace and a private mount namespace; without root: the
  same inside a new user namespace (the runner keeps its uid, mapped to itself), where
  the kernel allows unprivileged user namespaces; else nothing (mode "none");
- the view: a small tmpfs made read-only, holding only what Python needs to run
  (/usr and the /bin, /lib, /lib64, /sbin links, the interpreter's installation with its
  site-packages hidden, /dev/null, /dev/zero, /dev/urandom, and /sandbox with
  sandbox_child.py and values.py, compiled), plus a
  size-capped tmpfs for the jobs' folders. No /proc, no /home, no /root, no project tree,
  no data files.

Per job (`enter_job_namespaces` in the job's first process, `enter_view` in the second):
a new PID namespace (the job's process is its PID 1: it can see and signal nothing but
itself) and a new mount namespace where only its own folder appears, as /tmp, then
chroot into the view. As root each concurrent job also gets its own uid
(`job_uid`), so no two jobs share a user either.

Kernel needs: unshare(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID), chroot, bind mounts
(Linux >= 3.8 for user namespaces). Test: tests/test_verify_sandbox.py.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import sys

CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x40000000, 0x10000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_KEEPCAPS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE = 8, 47, 2
CAP_DAC_READ_SEARCH, CAPABILITY_VERSION_3 = 2, 0x20080522
_STATVFS_TO_MS = ((8, 8), (1024, 1024), (2048, 2048), (4096, 1 << 21))   # noexec, noatime, nodiratime, relatime
JOB_UID_BASE = 1 << 30
SYSTEM_DIRS = ("/usr", "/bin", "/lib", "/lib64", "/lib32", "/libx32", "/sbin")
DEVICES = ("null", "zero", "urandom")
_libc = ctypes.CDLL(None, use_errno=True)


def enter_namespaces() -> str:
    """Leave the host's network and mounts: 'root', 'userns' (no root needed), or 'none'."""
    if os.geteuid() == 0 and _libc.unshare(CLONE_NEWNET | CLONE_NEWNS) == 0:
        return "root"
    uid, gid = os.geteuid(), os.getegid()
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS) != 0:
        return "none"
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)
    except OSError:
        return "none"
    return "userns"


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def become(uid: int, read_all: bool) -> None:
    """Drop root for `uid`; with `read_all`, keep across the coming exec only the right to read any
    file (CAP_DAC_READ_SEARCH as an ambient capability): for an interpreter that lives where other
    users cannot read (e.g. under /root) when there is no view to bind it into."""
    if read_all:
        _libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    if read_all:
        data = (_CapData * 2)()
        data[0].effective = data[0].permitted = data[0].inheritable = 1 << CAP_DAC_READ_SEARCH
        if _libc.capset(ctypes.byref(_CapHeader(CAPABILITY_VERSION_3, 0)), data) != 0 or \
                _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_DAC_READ_SEARCH, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "cannot keep CAP_DAC_READ_SEARCH")


def interpreter_readable_by(uid: int, python: str) -> bool:
    """Whether `uid` can run `python` and read its standard library as the host lays them out."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            become(uid, read_all=False)
            code = 0 if os.access(python, os.X_OK) and os.listdir(os.path.dirname(os.__file__)) else 1
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def job_uid(slot: int) -> int:
    """A uid no other job of this runner (and, by the pid in it, of another runner) uses at the same time."""
    return JOB_UID_BASE + ((os.getpid() & 0xFFFFF) << 8) + slot % 256


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = (lambda text: None if text is None else text.encode())
    if _libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _bind_read_only(source: str, target: str) -> None:
    # keep the source mount's own flags: in a user namespace they are locked, and a
    # remount that drops one (e.g. relatime) is refused
    kept = sum(ms for st, ms in _STATVFS_TO_MS if os.statvfs(source).f_flag & st)
    mount(source, target, None, MS_BIND)
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | kept)


def build_view(base: str, disk_mb: int, child_files: list[str]) -> tuple[str, str]:
    """The read-only root and the jobs' folder under `base` (see the module docstring); OSError if it cannot."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    root, jobs = os.path.join(base, "root"), os.path.join(base, "jobs")
    os.makedirs(jobs, mode=0o711)
    os.makedirs(root, mode=0o755)
    mount("tmpfs", jobs, "tmpfs", MS_NOSUID | MS_NODEV, f"size={int(disk_mb)}m,mode=711")
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=755")
    wanted = [d for d in SYSTEM_DIRS if os.path.lexists(d)]
    interpreter = os.path.realpath(sys.base_prefix)
    if not any(interpreter == d or interpreter.startswith(d + "/") for d in wanted):
        wanted.append(interpreter)
    for path in wanted:
        inside = root + path
        os.makedirs(os.path.dirname(inside), mode=0o755, exist_ok=True)
        if os.path.islink(path):
            os.symlink(os.readlink(path), inside)
        else:
            os.makedirs(inside, mode=0o755, exist_ok=True)
            _bind_read_only(path, inside)
    hidden = os.path.join(interpreter, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages")
    if os.path.isdir(root + hidden):   # the interpreter's own third-party packages: not needed, not shown
        mount("tmpfs", root + hidden, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k")
    os.makedirs(os.path.join(root, "dev"), mode=0o755)
    for device in DEVICES:
        open(os.path.join(root, "dev", device), "w").close()
        mount(f"/dev/{device}", os.path.join(root, "dev", device), None, MS_BIND)
    os.makedirs(os.path.join(root, "tmp"), mode=0o755)
    _copy_child_files(os.path.join(root, "sandbox"), child_files)
    mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)   # read-only from here on
    return root, jobs


def plain_folders(base: str, child_files: list[str]) -> tuple[None, str]:
    """Without a mount namespace: no view, the jobs' folders and the child's files under `base`."""
    jobs = os.path.join(base, "jobs")
    os.makedirs(jobs, mode=0o711)
    _copy_child_files(os.path.join(base, "sandbox"), child_files)
    return None, jobs


def _copy_child_files(folder: str, files: list[str]) -> None:
    """Copy the child's files and compile them once (a job's interpreter writes no bytecode): the
    first file into a .pyc beside it, run as the script; the others into __pycache__, imported."""
    import py_compile

    os.makedirs(folder, mode=0o755)
    for k, path in enumerate(files):
        target = os.path.join(folder, os.path.basename(path))
        shutil.copyfile(path, target)
        compiled = target + "c" if k == 0 else importlib.util.cache_from_source(target)
        py_compile.compile(target, cfile=compiled, doraise=True)
        for name in (target, compiled, os.path.dirname(compiled)):
            os.chmod(name, 0o755 if os.path.isdir(name) else 0o644)


def release_view(base: str) -> None:
    """Detach the view's mounts and delete `base`."""
    for name in ("root", "jobs"):
        _libc.umount2(os.path.join(base, name).encode(), MNT_DETACH)
    shutil.rmtree(base, ignore_errors=True)


def enter_job_namespaces(root: str | None, workdir: str) -> str:
    """In a job's first process: a new PID namespace for its children and a mount namespace showing
    only `workdir` as the view's /tmp. Returns 'pid+mount', 'pid' or 'none' (what the kernel allowed)."""
    if root is not None and _libc.unshare(CLONE_NEWPID | CLONE_NEWNS) == 0:
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        mount(workdir, os.path.join(root, "tmp"), None, MS_BIND | MS_NOSUID | MS_NODEV)
        return "pid+mount"
    if _libc.unshare(CLONE_NEWPID) == 0:
        return "pid"
    return "none"


def enter_view(root: str | None, workdir: str) -> str:
    """In the job's process: chroot into the view and work in /tmp (its own folder); the folder's path."""
    if root is None:
        os.chdir(workdir)
        return workdir
    os.chroot(root)
    os.chdir("/tmp")
    return "/tmp"


def child_script(root: str | None, base: str) -> str:
    """Where the compiled sandbox_child is, as the job's process sees it."""
    return "/sandbox/sandbox_child.pyc" if root is not None else os.path.join(base, "sandbox", "sandbox_child.pyc")
