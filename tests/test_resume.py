"""Never lose a run: SIGKILL / SIGINT / SIGTERM at a random step, a failed checkpoint write and the
wall-time limit, each followed by `--resume`, end exactly where an uninterrupted run ends.

One uninterrupted reference run of `sft-then-rft` (2 SFT + 3 RFT steps: the kill can land in
either stage) is shared by every test; each interrupted run uses the same config and seed.
Compared: final weights (max abs diff <= 1e-6), every metrics.jsonl line but its timing
fields, rollouts.jsonl, and summary.json but its wall time and paths.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import cli_exit_code as cli
from prefixrft_cli.runlock import FolderLock

RUN = ["--algo", "sft-then-rft", "--set", "train.sft_steps=2", "--set", "train.steps=3",
       "--set", "train.prompts_per_step=4", "--set", "rollout.rollouts_per_prompt=4",
       "--set", "data.eval_problems=6", "--set", "eval.samples=2", "--set", "eval.greedy=false",
       "--set", "data.toy_train_problems=50",
       "--set", "train.threads=1", "--set", "train.log_rollouts_every=1", "--set", "train.checkpoint_every=2"]
TOTAL_STEPS = 5
TIMING = ("elapsed_seconds", "seconds")
SUMMARY_PATHS = ("wall_seconds", "run_dir", "checkpoint")



@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("reference")
    assert cli(["train", "--run-dir", str(run_dir)] + RUN) == 0
    return run_dir


def metrics(run_dir: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in TIMING} for line in lines]


def assert_same_run(run_dir: Path, reference: Path) -> None:
    got, want = metrics(run_dir), metrics(reference)
    assert [(m["stage"], m["step"]) for m in got] == [("sft", 0), ("sft", 1), ("rft", 0), ("rft", 1), ("rft", 2)]
    assert got == want
    assert (run_dir / "rollouts.jsonl").read_text() == (reference / "rollouts.jsonl").read_text()
    for folder in ("final", "sft-stage"):
        a = load_file(run_dir / "checkpoints" / folder / "model.safetensors")
        b = load_file(reference / "checkpoints" / folder / "model.safetensors")
        assert a.keys() == b.keys()
        assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    summaries = [json.loads((d / "summary.json").read_text()) for d in (run_dir, reference)]
    for summary in summaries:
        for key in SUMMARY_PATHS:
            summary.pop(key)
    assert summaries[0] == summaries[1]
    assert summaries[0]["steps"] == TOTAL_STEPS


def start_run(run_dir: Path) -> subprocess.Popen:
    """The run as its own process in its own session (a terminal's process group)."""
    return subprocess.Popen([sys.executable, "-m", "prefixrft_cli", "train", "--run-dir", str(run_dir)] + RUN,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_lines(run_dir: Path, proc: subprocess.Popen, lines: int) -> None:
    path, deadline = run_dir / "metrics.jsonl", time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and path.read_text().count("\n") >= lines:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run did not reach {lines} metrics lines (exit {proc.poll()})")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
                         ids=lambda s: s.name)
def test_a_signal_at_a_random_step_then_resume_equals_an_uninterrupted_run(tmp_path: Path, reference: Path,
                                                                           sig: signal.Signals, capsys):
    at = random.randint(1, TOTAL_STEPS - 1)   # a kill after this many steps have been logged
    run_dir = tmp_path / "run"
    proc = start_run(run_dir)
    wait_for_lines(run_dir, proc, at)
    os.killpg(proc.pid, sig)   # to the whole process group, as a Ctrl-C at a terminal would be
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 128 + sig, f"killed after step {at}: {err}"
        assert "Traceback" not in err and "KeyboardInterrupt" not in err
        ours = [line for line in err.splitlines() if line.startswith("prefixrft:")]   # (others: library warnings)
        assert len(ours) == 1 and err.strip().splitlines()[-1] == ours[0], err
        assert ours[0].startswith(f"prefixrft: {sig.name}: stopped at step ")
        assert ours[0].endswith(f"resume with: prefixrft train --resume {run_dir}")
    assert cli(["train", "--resume", str(run_dir)]) == 0, f"killed after step {at}: {capsys.readouterr().err}"
    assert_same_run(run_dir, reference)


def disk_full_at_step_4(real_save):
    """torch.save that fails with ENOSPC while writing step 4's checkpoint, and saves otherwise."""
    def save(obj, path, *args, **kwargs):
        if ".step-000004.tmp" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(obj, path, *args, **kwargs)
    return save


def test_a_failed_checkpoint_write_keeps_the_previous_one_and_resume_continues(tmp_path: Path, reference: Path,
                                                                              monkeypatch, capsys):
    from prefixrft_cli.train import checkpoint

    monkeypatch.setattr(checkpoint.torch, "save", disk_full_at_step_4(torch.save))
    run_dir = tmp_path / "run"
    assert cli(["train", "--run-dir", str(run_dir)] + RUN) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err
    assert f"{run_dir / 'checkpoints' / 'step-000002'} is intact" in err
    folders = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert folders == ["sft-stage", "step-000000", "step-000002"]   # no partial .step-000004.tmp
    monkeypatch.undo()
    assert cli(["train", "--resume", str(run_dir)]) == 0
    assert_same_run(run_dir, reference)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == \
        ["final", "sft-stage", "step-000004", "step-000005"]   # train.keep_checkpoints=2


def test_relift_resumes_with_its_buffer_of_unsolved_prompts(tmp_path: Path, monkeypatch, capsys):
    # relift keeps unsolved prompts across steps: a resume from step 3 must carry the one left by step 2 into step 3's SFT
    from prefixrft_cli.train import checkpoint

    run = ["--algo", "relift", "--set", "train.steps=4", "--set", "train.prompts_per_step=3",
           "--set", "rollout.rollouts_per_prompt=1", "--set", "data.eval_problems=2", "--set", "eval.samples=1",
           "--set", "eval.greedy=false", "--set", "data.toy_train_problems=30", "--set", "train.checkpoint_every=1",
           "--set", "seed=2"]
    reference, run_dir = tmp_path / "reference", tmp_path / "run"
    assert cli(["train", "--run-dir", str(reference)] + run) == 0
    monkeypatch.setattr(checkpoint.torch, "save", disk_full_at_step_4(torch.save))
    assert cli(["train", "--run-dir", str(run_dir)] + run) == 2
    state = torch.load(run_dir / "checkpoints" / "step-000003" / "rank-0.pt", weights_only=True)
    monkeypatch.undo()
    assert cli(["train", "--resume", str(run_dir)]) == 0, capsys.readouterr().err
    got, want = metrics(run_dir), metrics(reference)
    assert len(got) == 4 and got == want
    assert any(m["sft_interleaved_prompts"] for m in want)   # the buffer was used
    assert state["hard_prompts"], "no unsolved prompt was waiting at step 3: the test would not test the buffer"


def test_the_wall_time_limit_stops_with_a_checkpoint_that_resume_continues(tmp_path: Path, reference: Path,
                                                                          capsys):
    run_dir = tmp_path / "run"
    assert cli(["train", "--run-dir", str(run_dir), "--max-wall-minutes", "0.0001"] + RUN) == 0
    out = capsys.readouterr().out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stopped_early_by_time_limit"] is True and summary["steps"] == 0
    assert summary["resume_command"] == f"prefixrft train --resume {run_dir}"
    assert "stopped by the wall-clock limit" in out
    assert cli(["train", "--resume", str(run_dir), "--max-wall-minutes", "0"]) == 0
    assert_same_run(run_dir, reference)


@pytest.mark.parametrize("args, message", [
    (["--set", "train.steps=9"], "train.steps=9 would change the run"),
    (["--seed", "3"], "seed=3 would change the run"),
    (["--config", "configs/toy-math.yaml"], "a resumed run uses its own config.yaml"),
])
def test_resume_refuses_overrides_that_change_the_run(tmp_path: Path, reference: Path, capsys, args, message):
    assert cli(["train", "--resume", str(reference)] + args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_resume_of_a_complete_run_or_a_plain_folder_is_refused(tmp_path: Path, reference: Path, capsys):
    assert cli(["train", "--resume", str(reference), "--max-wall-minutes", "5"]) == 2
    assert "the run is complete" in capsys.readouterr().err
    assert cli(["train", "--resume", str(tmp_path)]) == 2
    assert "not a run folder (no config.yaml)" in capsys.readouterr().err


def test_resume_of_a_distributed_run_is_refused_in_one_line(tmp_path: Path, reference: Path, capsys):
    run_dir = tmp_path / "ddp"
    run_dir.mkdir()
    saved = (reference / "config.yaml").read_text()
    assert "backend: none" in saved
    (run_dir / "config.yaml").write_text(saved.replace("backend: none", "backend: ddp"))
    assert cli(["train", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "distributed.backend=ddp runs cannot be resumed yet" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml"]


def test_a_second_writer_is_refused_and_nothing_is_written(tmp_path: Path, capsys):
    run_dir = tmp_path / "run"
    with FolderLock(run_dir):
        assert cli(["train", "--run-dir", str(run_dir)] + RUN) == 2
    err = capsys.readouterr().err.strip()
    assert f"another prefixrft process (PID {os.getpid()}) is writing" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]


@pytest.mark.slow
def test_a_full_disk_keeps_the_previous_checkpoint_and_resume_continues(tmp_path: Path, reference: Path, capsys):
    """A real ENOSPC: the run folder on a 20 MB tmpfs (root only), grown after the failure, then resumed."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        # the weights take 4.2 MB, AdamW's moments 8.4 MB more once a stage has stepped: step-0, sft-stage and
        # step-2 (each stage's first step: no moments yet) fit in 20 MB, step-4 does not
        run_dir = mount / "run"
        assert cli(["train", "--run-dir", str(run_dir)] + RUN) == 2
        ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith("prefixrft:")]
        assert len(ours) == 1 and "writing checkpoint" in ours[0] and "; 0.0 MiB free on that disk" in ours[0], ours
        assert f"{run_dir / 'checkpoints' / 'step-000002'} is intact" in ours[0]
        assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["sft-stage", "step-000000", "step-000002"]
        subprocess.run(["mount", "-o", "remount,size=200m", str(mount)], check=True)
        assert cli(["train", "--resume", str(run_dir)]) == 0
        assert_same_run(run_dir, reference)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
