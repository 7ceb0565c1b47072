"""The hostile programs of issue 12, each against the sandbox or `prefixrft verify --domain code`.

Each test is one attack: reading what the runner holds in memory, reading the tests or
solutions on disk, fooling a comprehension assert with a shadowed builtin or an
always-true `__eq__`, frames that do not decode (a huge integer, a complex number from a
huge integer, a 64 MiB frame), and killing or stopping the processes of other jobs. The
expected outcome is always the same: the attacker scores 0, its neighbours are judged as
if it were not there, and nothing raises. docs/security.md lists these with the rest.
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from prefixrft_cli.cli.app import main
from prefixrft_cli.records import CodeTests, Problem
from prefixrft_plugins.verifiers.code import CodeVerifier
from prefixrft_plugins.verifiers.sandbox import Sandbox, SandboxJob, SandboxLimits

SQUARES = Problem("squares", "Write sq(x).", code=CodeTests(
    entry_point="sq", tests=["assert all(sq(x) == x * x for x in range(5))", "assert abs(sq(3) - 9) < 1e-9"]))
DOUBLE = Problem("demo/double", "def double(x):", code=CodeTests(
    entry_point="double", prompt="def double(x):\n", canonical_solution="    return 2 * x\n",
    base_input=[[1], [2]], plus_input=[[10], [-3]]))
HONEST_DOUBLE = "    return 2 * x\n"


def forged_frames(*frames: bytes) -> str:
    """A `double` that writes these raw frames into its result pipe (fd 3) and leaves."""
    return ("import os\ndef double(x):\n    return 0\n"
            f"for frame in {list(frames)!r}:\n"
            "    os.write(3, len(frame).to_bytes(4, 'big') + frame)\n"
            "os._exit(0)\n")


@pytest.fixture(scope="module")
def verifier():
    v = CodeVerifier(workers=2, limits=SandboxLimits(memory_mb=512), exec_seconds=2.0, assert_probe_seconds=2.0,
                     wall_seconds=20.0)
    yield v
    v.close()


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox(SandboxLimits(memory_mb=512), parallel=2)
    yield box
    box.close()


def isolated(box: Sandbox, key: str, value: str) -> None:
    if not box.isolation:
        box.run([SandboxJob("", [])])   # starts the runner, which reports its isolation
    if box.isolation.get(key) != value:
        pytest.skip(f"this machine gives the sandbox {key}={box.isolation.get(key)!r}, not {value!r}")


def test_the_runner_memory_holds_nothing_for_the_child(sandbox) -> None:
    # a job whose output is a secret (as a canonical solution's expected outputs are), then
    # a job that searches every object it can reach and, where /proc is there, its whole
    # memory: it starts from a fresh interpreter, so it finds nothing
    secret = SandboxJob("def f():\n    return 'SECRET-' + str(7919 * 101)\n", [{"expr": "f()"}] * 3)
    scan = ("import gc, os, re\n"
            "PATTERN = re.compile(rb'SECRET-(\\d{6})')\n"
            "def hits(data):\n"
            "    return [m for m in PATTERN.findall(data) if int(m) % 7919 == 0]\n"
            "def scan():\n"
            "    found = []\n"
            "    for obj in gc.get_objects():\n"
            "        items = list(obj.values()) if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else []\n"
            "        for item in items:\n"
            "            if isinstance(item, str):\n"
            "                found += hits(item.encode('utf-8', 'replace'))\n"
            "    if os.path.exists('/proc/self/maps'):\n"
            "        with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb') as mem:\n"
            "            for line in maps:\n"
            "                span, perms = line.split()[:2]\n"
            "                lo, hi = (int(a, 16) for a in span.split('-'))\n"
            "                if 'r' in perms and hi - lo < 1 << 28:\n"
            "                    try:\n"
            "                        mem.seek(lo)\n"
            "                        found += hits(mem.read(hi - lo))\n"
            "                    except OSError:\n"
            "                        pass\n"
            "    return len(found)\n")
    first = sandbox.run([secret])[0]
    assert [frame.value for frame in first.frames] == ["SECRET-799819"] * 3
    runs = sandbox.run([secret, SandboxJob(scan, [{"expr": "scan()"}]), SandboxJob(scan, [{"expr": "scan()"}])])
    assert [run.frames[0].value for run in runs[1:]] == [0, 0]


def test_files_on_disk_cannot_be_read(sandbox, tmp_path: Path) -> None:
    isolated(sandbox, "files", "view")
    own = tmp_path / "expected.json"
    own.write_text('{"expected": 12}')
    os.chmod(tmp_path, 0o755)
    os.chmod(own, 0o644)   # readable by anyone on the host
    project = Path(__file__).resolve().parents[1]
    home = Path(os.path.expanduser("~"))
    targets = [str(project.parent / "shared" / "data"), str(Path(__file__).resolve()), str(own),
               str(project / "plugins"), "/home", "/etc/passwd", "/proc/self/environ",
               *(str(p) for p in home.iterdir() if p.name != ".pyenv")]   # the home's files, but the interpreter
    probe = ("import os\n"
             "def readable(paths):\n"
             "    out = []\n"
             "    for path in paths:\n"
             "        try:\n"
             "            if os.path.isdir(path):\n"
             "                os.listdir(path)\n"
             "            else:\n"
             "                open(path, 'rb').read(1)\n"
             "            out.append(path)\n"
             "        except OSError:\n"
             "            pass\n"
             "    return out\n")
    site = str(Path(os.__file__).parent / "site-packages")
    run = sandbox.run([SandboxJob(probe, [{"expr": f"readable({targets!r})"}, {"expr": "sorted(os.listdir('/'))"},
                                          {"expr": "os.listdir('/tmp')"}, {"expr": f"os.listdir({site!r})"}])])[0]
    assert run.frames[0].value == []
    assert run.frames[3].value == []   # the interpreter's third-party packages are hidden
    assert run.frames[1].value == ["bin", "dev", "lib", "lib64", "root", "sandbox", "sbin", "tmp", "usr"]
    assert run.frames[2].value == ["output.log"]   # its own folder: the job file is already gone


def test_a_comprehension_assert_cannot_be_fooled(verifier) -> None:
    # the check runs in the clean process: neither a global `all` nor an object that equals
    # everything reaches it; the candidate only ever hands over plain values
    shadowing = "def all(*args):\n    return True\ndef abs(x):\n    return 0\ndef sq(x):\n    return 0\n"
    always_equal = ("class Yes(int):\n    def __eq__(self, other):\n        return True\n"
                    "    __hash__ = int.__hash__\n    def __sub__(self, other):\n        return 0\n"
                    "def sq(x):\n    return Yes(0)\n")
    patching = "import builtins\nbuiltins.all = lambda *a: True\nbuiltins.abs = lambda x: 0\ndef sq(x):\n    return 1\n"
    results = verifier.verify_batch([shadowing, always_equal, patching, "def sq(x):\n    return x * x\n"],
                                    [SQUARES] * 4)
    assert [r.reason for r in results] == ["wrong", "wrong", "wrong", "correct"]


@pytest.mark.parametrize("frame, why", [
    (b'["ok",1' + b"0" * 5000 + b"]", "an int of 5001 digits: json refuses it"),
    (b'["ok",["C",1' + b"0" * 400 + b',0]]', "complex(10 ** 400) overflows"),
    (b'["ok",' + b"[" * 100_000 + b"]" * 100_000 + b"]", "nesting deeper than the recursion limit"),
    (b'["ok",["I","zz"]]', "not a hex integer"),
    (b"\xff\xfe not utf-8 or json", "not JSON"),
])
def test_an_undecodable_frame_is_that_completions_error(verifier, frame: bytes, why: str) -> None:
    attacker = forged_frames(b'["ready"]', frame, frame, frame, frame)
    results = verifier.verify_batch([HONEST_DOUBLE, f"```python\n{attacker}```", HONEST_DOUBLE], [DOUBLE] * 3)
    assert [r.reason for r in results] == ["correct", "error", "correct"], why


def test_an_oversized_frame_is_refused_before_it_is_read(sandbox) -> None:
    # a 64 MiB frame: the runner reads its 4-byte length, refuses it, and kills the job;
    # the verifier never holds more than a few frames' worth of memory
    attacker = ("import os\nos.write(3, (64 << 20).to_bytes(4, 'big'))\nchunk = b'1,' * (1 << 20)\n"
                "for _ in range(32):\n    os.write(3, chunk)\n")
    tracemalloc.start()
    run = sandbox.run([SandboxJob(attacker, [{"expr": "1"}])])[0]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert run.end == "overflow" and run.unreadable and run.frames == []
    assert peak < 8 << 20, f"verifier peak {peak / 2 ** 20:.1f} MiB"


def test_prefixrft_verify_survives_the_overflowing_complex(tmp_path: Path, capsys) -> None:
    attacker = forged_frames(b'["ready"]', b'["ok",["C",1' + b"0" * 400 + b',0]]')
    fields = {"task_id": "demo/double", "prompt": "def double(x):\n", "entry_point": "double",
              "canonical_solution": "    return 2 * x\n", "base_input": [[1]], "plus_input": [], "atol": 0}
    records = [{"completion": f"```python\n{attacker}```", **fields}, {"completion": HONEST_DOUBLE, **fields}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(SystemExit) as stop:
        main(["verify", "--domain", "code", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"),
              "--workers", "2"])
    err = capsys.readouterr().err
    assert (stop.value.code or 0) == 0 and "Traceback" not in err
    scored = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in scored] == ["error", "correct"]


def test_a_job_can_signal_nothing_but_itself(sandbox) -> None:
    # the attacker kills and stops every process it can name, while an honest job runs
    # beside it: the honest one still answers, and the attacker sees only its own PID 1
    isolated(sandbox, "pids", "per-job")
    attacker = ("import os, signal\n"
                "victims = 0\n"
                "for sig in (signal.SIGSTOP, signal.SIGKILL):\n"
                "    try:\n"
                "        os.kill(-1, sig)\n"
                "    except OSError:\n"
                "        pass\n"
                "for pid in range(2, 1 << 15):\n"
                "    try:\n"
                "        os.kill(pid, signal.SIGSTOP)\n"
                "        victims += 1\n"
                "    except PermissionError:\n"
                "        victims += 1\n"
                "    except ProcessLookupError:\n"
                "        pass\n"
                "ME = os.getpid()\n")
    honest = "import time\ntime.sleep(1.0)\nX = 42\n"
    started = time.perf_counter()
    runs = sandbox.run([SandboxJob(honest, [{"expr": "X"}]), SandboxJob(attacker, [{"expr": "(victims, ME)"}]),
                        SandboxJob(honest, [{"expr": "X"}])])
    assert time.perf_counter() - started < 15
    assert [run.frames[0].value for run in runs] == [42, (0, 1), 42]
    assert [run.end for run in runs] == ["complete"] * 3
