"""One writer per folder: a second writer is refused at once and told the holder's PID; death frees the lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from prefixrft_cli.errors import UserError
from prefixrft_cli.runlock import FolderLock

HOLD = ("import sys, time; from prefixrft_cli.runlock import FolderLock; "
        "FolderLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)")


def test_a_second_writer_is_refused_with_the_holders_pid_and_death_frees_the_lock(tmp_path: Path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"another prefixrft process \(PID {holder.pid}\) is writing"):
            FolderLock(tmp_path).acquire()
    finally:
        holder.kill()   # SIGKILL: no clean-up runs, the OS drops the lock
        holder.wait()
    assert (tmp_path / ".lock").read_text().strip() == str(holder.pid)   # the stale file is left ...
    with FolderLock(tmp_path) as lock:                                    # ... and does not block
        assert lock.path.read_text().strip() != str(holder.pid)


def test_the_lock_is_exclusive_within_one_process_too_and_released_on_exit(tmp_path: Path):
    with FolderLock(tmp_path / "new"):
        with pytest.raises(UserError):
            FolderLock(tmp_path / "new").acquire()
    FolderLock(tmp_path / "new").acquire().release()
