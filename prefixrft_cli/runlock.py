"""One writer per folder: an exclusive `fcntl.flock` on `<folder>/.lock`, held for the process's life.

`FolderLock(folder, what).acquire()` creates the folder and the lock file, takes the lock
without waiting and writes the holder's PID into the file; a second writer is refused at
once with a `UserError` naming that PID. The operating system drops the lock when the
holding process ends in any way (exit, crash, SIGKILL), so a stale lock never blocks a
rerun or a resume: the file left behind is just a file.

Callers take the lock after every input, the model and the engine have loaded and before
anything else is written, and only on the process that writes (rank 0 under a launcher).
Leaves out: network file systems whose flock is not shared between hosts (NFS before v4).
Test: tests/test_runlock.py (a second process is refused and told the PID; death frees it).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from prefixrft_cli.errors import UserError

LOCK_FILE = ".lock"


class FolderLock:
    """The exclusive write lock of one run or eval folder."""

    def __init__(self, folder: Path, what: str = "run folder"):
        self.folder = Path(folder)
        self.what = what
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    def acquire(self) -> FolderLock:
        """Take the lock now or raise a UserError naming the process that holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(f"{self.folder}: another prefixrft process (PID {holder}) is writing this {self.what}; "
                            "wait for it to end or choose another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)   # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()
