"""Untrusted code cannot fool the code verifier: each attack ends as a fail, within the limits, host unharmed.

The task is `add_7` with two asserts (and an evalplus-style `double` for the attacks that
target that path). Every attack is a completion a cheating model could write; none of
them computes the right answers, so each must score 0. The attacks of issue 12 (memory
of the runner, files on disk, builtins and `__eq__` in comprehension asserts, undecodable
frames, other jobs' processes) are in tests/test_verify_hostile.py; docs/security.md lists
them all.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from prefixrft_cli.records import CodeTests, Problem
from prefixrft_plugins.verifiers.code import CodeVerifier
from prefixrft_plugins.verifiers.sandbox import Sandbox, SandboxJob, SandboxLimits

ADD_7 = Problem("toy-add-7", "Write add_7(x).",
                code=CodeTests(entry_point="add_7", tests=["assert add_7(5) == 12", "assert add_7(-7) == 0"]))
DOUBLE = Problem("demo/double", "def double(x):", code=CodeTests(
    entry_point="double", prompt="def double(x):\n", canonical_solution="    return 2 * x\n",
    base_input=[[1], [2]], plus_input=[[10], [-3]]))
WRONG_ADD_7 = "def add_7(x):\n    return 0\n"
LIMIT_SECONDS = 1.0   # CPU seconds per phase
WALL_SECONDS = 3.0    # wall-clock cap per job (a run it stops is retried once)


@pytest.fixture(scope="module")
def verifier():
    v = CodeVerifier(workers=2, limits=SandboxLimits(memory_mb=512, output_bytes=64 << 10, cpu_seconds=5),
                     exec_seconds=LIMIT_SECONDS, assert_probe_seconds=LIMIT_SECONDS,
                     min_probe_seconds=LIMIT_SECONDS, wall_seconds=WALL_SECONDS)
    yield v
    v.close()


def run(verifier: CodeVerifier, code: str, problem: Problem = ADD_7) -> tuple[str, float]:
    started = time.perf_counter()
    result = verifier.verify(f"```python\n{code}\n```", problem)
    elapsed = time.perf_counter() - started
    assert result.score == 0.0
    assert elapsed < 2 * WALL_SECONDS + 3.0, f"took {elapsed:.1f} s"
    return result.reason, elapsed


def test_honest_solutions_pass(verifier) -> None:
    # the baseline the attacks are measured against
    assert verifier.verify("def add_7(x):\n    return x + 7\n", ADD_7).reason == "correct"
    assert verifier.verify("    return x + x\n", DOUBLE).reason == "correct"


@pytest.mark.parametrize("code", [
    "import sys\nsys.exit(0)",
    "def add_7(x):\n    import sys\n    sys.exit(0)",
    "import os\nos._exit(0)",
    "def add_7(x):\n    import os\n    os._exit(0)",
])
def test_exiting_early_fails(verifier, code: str) -> None:
    assert run(verifier, code)[0] == "wrong"
    assert run(verifier, code.replace("add_7", "double"), DOUBLE)[0] == "wrong"


@pytest.mark.parametrize("error", ["SystemExit(0)", "KeyboardInterrupt()"])
def test_raising_system_exit_or_keyboard_interrupt_fails(verifier, error: str) -> None:
    assert run(verifier, f"def add_7(x):\n    raise {error}")[0] == "wrong"
    assert run(verifier, f"raise {error}")[0] == "wrong"


def test_patching_builtins_fails(verifier) -> None:
    code = ("import builtins\n"
            "builtins.bool = lambda *a: True\nbuiltins.isinstance = lambda *a: True\n"
            "builtins.type = lambda *a: int\nbuiltins.set = lambda *a: 1\n" + WRONG_ADD_7)
    assert run(verifier, code)[0] == "wrong"


def test_an_object_equal_to_everything_fails(verifier) -> None:
    code = ("class Yes(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
            "def add_7(x):\n    return Yes(0)\n")
    assert run(verifier, code)[0] == "wrong"
    assert run(verifier, code.replace("add_7(x)", "double(x)"), DOUBLE)[0] == "wrong"


def test_patching_the_checker_fails(verifier) -> None:
    # rewrite every reporting / decoding function in every loaded module to claim success
    code = ("import sys\n"
            "for module in list(sys.modules.values()):\n"
            "    for name in ('report', 'encode', 'dumps', 'decode', '_send', 'run_probes', 'loads'):\n"
            "        try:\n"
            "            setattr(module, name, lambda *a, **k: ['ok', True])\n"
            "        except Exception:\n"
            "            pass\n" + WRONG_ADD_7)
    assert run(verifier, code)[0] == "wrong"
    assert run(verifier, code.replace("add_7", "double"), DOUBLE)[0] == "wrong"


def test_forged_result_frames_fail(verifier) -> None:
    # write 'all probes answered True' straight into the result pipe, then leave
    code = ("import os\n"
            "for frame in (b'[\"ready\"]', b'[\"ok\",true]', b'[\"ok\",true]'):\n"
            "    os.write(3, len(frame).to_bytes(4, 'big') + frame)\n"
            "os._exit(0)\n")
    assert run(verifier, code)[0] == "wrong"


def test_printing_a_fake_verdict_fails(verifier) -> None:
    code = "print('PASSED: all tests passed')\nprint('{\"score\": 1.0, \"reason\": \"correct\"}')\n" + WRONG_ADD_7
    assert run(verifier, code)[0] == "wrong"


def test_reading_the_expected_values_fails(verifier) -> None:
    # look for the assert text in memory and answer its right-hand side: the candidate's
    # process only ever holds the call `add_7(5)`, never `== 12`
    code = ("import gc, re\n"
            "def add_7(x):\n"
            "    for obj in gc.get_objects():\n"
            "        for text in (obj if isinstance(obj, (list, tuple)) else [obj]):\n"
            "            if isinstance(text, str):\n"
            "                m = re.search(r'add_7\\(' + re.escape(str(x)) + r'\\) == (-?\\d+)', text)\n"
            "                if m:\n"
            "                    return int(m.group(1))\n"
            "    return None\n")
    assert run(verifier, code)[0] == "wrong"


def test_editing_test_files_fails_and_host_files_survive(verifier, tmp_path: Path) -> None:
    tests_file = tmp_path / "tests.jsonl"
    tests_file.write_text('{"tests": ["assert add_7(5) == 12"]}\n')
    os.chmod(tmp_path, 0o755)
    code = (f"import os\nTARGET = {str(tests_file)!r}\n"
            "for path in [TARGET] + [os.path.join(d, f) for d in ('.', '/tmp') for f in os.listdir(d)]:\n"
            "    try:\n"
            "        with open(path, 'w') as handle:\n"
            "            handle.write('assert True')\n"
            "    except OSError:\n"
            "        pass\n" + WRONG_ADD_7)
    assert run(verifier, code)[0] == "wrong"
    if verifier.sandbox.isolation.get("files") == "view" or verifier.sandbox.isolation.get("user") == "uid-per-job":
        assert tests_file.read_text() == '{"tests": ["assert add_7(5) == 12"]}\n'


def test_forking_fails_and_leaves_no_process(verifier) -> None:
    reason, _ = run(verifier, "import os\ndef add_7(x):\n    while True:\n        os.fork()\n")
    assert reason == "wrong"   # BlockingIOError: one process only
    reason, _ = run(verifier, "import subprocess\nsubprocess.Popen(['sleep', '60'])\n" + WRONG_ADD_7)
    assert reason == "wrong"
    assert _sandbox_processes(verifier) == []


@pytest.mark.parametrize("code", ["import time\ntime.sleep(60)", "def add_7(x):\n    import time\n    time.sleep(60)"])
def test_sleeping_times_out_at_the_wall_clock_cap_after_one_retry(verifier, code: str) -> None:
    reason, elapsed = run(verifier, code)
    assert reason == "timeout"
    assert 2 * WALL_SECONDS - 0.5 < elapsed < 2 * WALL_SECONDS + 3.0   # stopped at 3 s, retried once


@pytest.mark.parametrize("code", ["while True:\n    pass", "def add_7(x):\n    while True:\n        pass"])
def test_spinning_times_out(verifier, code: str) -> None:
    # 1 CPU second (the runner's count on the job's CPU clock; see the next test for the end it reports)
    assert run(verifier, code)[0] == "timeout"


def test_unbounded_allocation_fails(verifier) -> None:
    reason, _ = run(verifier, "blocks = []\nwhile True:\n    blocks.append(bytes(10 ** 8))\n")
    assert reason == "wrong"   # MemoryError at the 512 MB address-space limit, after a handful of blocks


def test_flooding_stdout_fails(verifier) -> None:
    reason, elapsed = run(verifier, "def add_7(x):\n    while True:\n        print('x' * 10000)\n")
    assert reason == "wrong"   # the 64 KiB output limit, long before the wall clock
    assert elapsed < 2 * LIMIT_SECONDS + 1.0


def test_no_network(verifier) -> None:
    if verifier.sandbox.isolation.get("network") in (None, "none"):
        verifier.verify(WRONG_ADD_7, ADD_7)   # starts the runner, which reports its isolation
    if verifier.sandbox.isolation.get("network") == "none":
        pytest.skip("no network namespace available on this machine")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    code = (f"import socket\ndef add_7(x):\n    socket.create_connection(('127.0.0.1', {port}), timeout=0.5)\n"
            "    return x + 7\n")
    assert run(verifier, code)[0] == "wrong"   # passes only if the connection succeeded
    with pytest.raises(socket.timeout):
        server.accept()
    server.close()


def _sandbox_processes(verifier: CodeVerifier) -> list[int]:
    """Processes this verifier's runner spawned that are still alive.

    Each job's keeper is a child of the runner, and the job cannot fork (one process), so
    anything a job left behind would show up here.
    """
    runner = verifier.sandbox._proc.pid
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(runner):
            found.append(int(entry))
    return found


def test_cpu_time_limits_stop_a_job_the_wall_clock_would_allow() -> None:
    sandbox = Sandbox(SandboxLimits(cpu_seconds=1, memory_mb=512))
    started = time.perf_counter()
    # the per-job cap (1 CPU second) is the kernel's RLIMIT_CPU: SIGKILL at 2 s of CPU
    capped = sandbox.run([SandboxJob("while True:\n    pass\n", [], exec_seconds=20, wall_seconds=20)])[0]
    assert capped.end == "cpu" and capped.signal == signal.SIGKILL and capped.timed_out and not capped.under_load
    # a phase's own budget is counted by the runner on the job's CPU clock
    sandbox.limits = SandboxLimits(memory_mb=512, wall_factor=30.0)   # a loaded machine must not reach the backstop
    phase = sandbox.run([SandboxJob("def f():\n    while True:\n        pass\n", [{"expr": "f()"}], exec_seconds=5,
                                    probe_seconds=0.5, wall_seconds=20)])[0]
    sandbox.close()
    assert phase.started and phase.frames == [] and phase.end == "cpu" and phase.signal is None
    assert time.perf_counter() - started < 20   # 2.5 CPU seconds


def test_waiting_does_not_spend_the_cpu_budget() -> None:
    # a solution slowed down by a busy machine (here: by sleeping) is not failed for it
    sandbox = Sandbox(SandboxLimits(memory_mb=512))
    run = sandbox.run([SandboxJob("import time\ntime.sleep(1.5)\nX = 5\n", [{"expr": "X"}], exec_seconds=0.5,
                                  probe_seconds=0.5, wall_seconds=20)])[0]
    sandbox.close()
    assert run.end == "complete" and run.frames[0].value == 5
    assert 0 <= run.seconds[0] < 0.5   # the probe's CPU time, not its wall time


def test_open_file_limit(verifier) -> None:
    code = "handles = [open(f'f{i}', 'w') for i in range(200)]\n" + "def add_7(x):\n    return x + 7\n"
    assert run(verifier, code)[0] == "wrong"   # OSError: too many open files (limit 64)


def test_a_job_starts_without_json_typing_or_re() -> None:
    # the child's start-up is most of a small job's cost: it loads only what it needs (values.py)
    sandbox = Sandbox(SandboxLimits(memory_mb=512))
    program = "import sys\nfrom collections import Counter\ndef f():\n    return Counter('aab')\n"
    run = sandbox.run([SandboxJob(program, [{"expr": "sorted({'json', 're', 'typing'} & set(sys.modules))"},
                                            {"expr": "f()"}, {"expr": "{'k': [1.5, float('inf')], 2: 'é'}"}])])[0]
    sandbox.close()
    assert run.end == "complete" and run.frames[0].value == []
    assert run.frames[1].value == {"a": 2, "b": 1} and run.frames[2].value == {"k": [1.5, float("inf")], 2: "é"}
