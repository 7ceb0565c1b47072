"""Resumable checkpoints: everything a run needs to continue exactly, written atomically.

A checkpoint is a folder `checkpoints/step-NNNNNN/` (N = steps done over all stages):

    model/              the policy and tokenizer as a from_pretrained folder
    optimizer.pt        the optimizer's and the LR schedule's state dicts
    rank-R.pt           per process: python / numpy / torch RNG states, the run's torch
                        generator (prefix lengths, random selection) and random.Random (data
                        order, demonstration choice), the data order still to serve and the
                        rollout sampler's seed counter
    trainer_state.json  stage, step in stage, the held-out accuracy before training, the
                        byte length of metrics.jsonl and rollouts.jsonl at this step;
                        written last

It is written into `.step-NNNNNN.tmp/`, every file and the folder fsynced, then renamed,
so a folder named `step-*` is always whole; the newest `train.keep_checkpoints` are kept.
A failure while writing (disk full, permission, quota) removes the partial folder, leaves
the previous checkpoints as they were and ends with one line.

Distributed backends provide the model and optimizer state through `CheckpointBackend`
(collective calls run on every rank; only the writer, rank 0, writes them); every rank
writes and restores its own `rank-R.pt`. `LocalBackend` is the single-process one.

Test: tests/test_resume.py (kill, resume, compare; an injected write error).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from prefixrft_cli.errors import UserError

PREFIX = "step-"
STATE_FILE = "trainer_state.json"
FORMAT = 1


@dataclass
class Position:
    """Where a run stands: the next step to run, and what the run folder held at that point."""

    stage: int                      # index into the run's stages (sft-then-rft has two)
    stage_step: int                 # steps done in that stage
    global_step: int                # steps done over all stages
    accuracy_before: dict           # the held-out result before training (EvalResult fields)
    metrics_bytes: int              # length of metrics.jsonl when this step began
    rollouts_bytes: int             # length of rollouts.jsonl when this step began
    wall_seconds: float             # wall time spent by the run's sessions so far


class CheckpointBackend(Protocol):
    """What a training backend provides for checkpoints (one process, DDP, FSDP2, DeepSpeed)."""

    rank: int
    is_writer: bool                 # rank 0 writes the shared files

    def save_model(self, folder: Path) -> None:
        """Write the policy and tokenizer as a from_pretrained folder (the writer writes)."""

    def load_model(self, folder: Path) -> None:
        """Load the weights of a from_pretrained folder into the live policy."""

    def optimizer_state(self, optimizer, scheduler) -> dict | None:
        """The optimizer and schedule state dicts (None on ranks that do not write)."""

    def load_optimizer_state(self, optimizer, scheduler, state: dict) -> None:
        """Restore what optimizer_state returned."""

    def barrier(self) -> None:
        """Wait for every rank."""


class LocalBackend:
    """One process: the model and optimizer live here whole."""

    rank, is_writer = 0, True

    def __init__(self, model: torch.nn.Module, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def save_model(self, folder: Path) -> None:
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def load_model(self, folder: Path) -> None:
        from transformers import AutoModelForCausalLM

        dtype = next(self.model.parameters()).dtype
        saved = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
        self.model.load_state_dict(saved.state_dict())

    def optimizer_state(self, optimizer, scheduler) -> dict:
        return {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}

    def load_optimizer_state(self, optimizer, scheduler, state: dict) -> None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])

    def barrier(self) -> None:
        pass


def rng_state(generator: torch.Generator, rng: random.Random) -> dict:
    """Every random state of this process (tensors and plain values: loadable with weights_only)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                      gauss),
             "torch": torch.get_rng_state(), "generator": generator.get_state(), "run_rng": rng.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, generator: torch.Generator, rng: random.Random) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["generator"])
    rng.setstate(state["run_rng"])


class CheckpointStore:
    """The `checkpoints/` folder of one run: save, prune to the newest `keep`, find the latest."""

    def __init__(self, folder: Path, backend: CheckpointBackend, keep: int):
        self.folder, self.backend, self.keep = Path(folder), backend, keep

    def latest(self) -> Path | None:
        """The newest whole checkpoint, or None."""
        found = sorted(self._steps())
        return found[-1][1] if found else None

    def save(self, position: Position, optimizer, scheduler, rank_state: dict) -> Path:
        """Write a checkpoint of `position` atomically; a failed write leaves the older ones intact."""
        name = f"{PREFIX}{position.global_step:06d}"
        final, tmp = self.folder / name, self.folder / f".{name}.tmp"
        backend = self.backend
        try:
            if backend.is_writer:
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
            backend.barrier()
            optim = backend.optimizer_state(optimizer, scheduler)
            backend.save_model(tmp / "model")
            torch.save(rank_state, tmp / f"rank-{backend.rank}.pt")
            if backend.is_writer:
                torch.save(optim, tmp / "optimizer.pt")
                (tmp / STATE_FILE).write_text(json.dumps({"format": FORMAT, **asdict(position)}, indent=2) + "\n")
            backend.barrier()
            if backend.is_writer:
                _publish(tmp, final)
        except BaseException as err:
            reason = _describe(err, self.folder)
            if backend.is_writer:
                shutil.rmtree(tmp, ignore_errors=True)
            if not isinstance(err, Exception):   # a second Ctrl-C: stop, with the partial folder gone
                raise
            previous = self.latest()
            kept = f"{previous} is intact" if previous else "no earlier checkpoint exists"
            raise UserError(f"writing checkpoint {final} failed ({reason}); {kept}") from None
        if backend.is_writer:
            self._prune()
        return final

    def load(self, path: Path) -> tuple[Position, dict, dict]:
        """(position, optimizer state, this rank's RNG and data state) of a checkpoint folder."""
        try:
            data = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
            if data.pop("format", None) != FORMAT:
                raise UserError(f"{path / STATE_FILE}: not a checkpoint this version of prefixrft can read")
            optim = torch.load(path / "optimizer.pt", weights_only=True)
            rank_state = torch.load(path / f"rank-{self.backend.rank}.pt", weights_only=True)
        except (OSError, ValueError, RuntimeError, TypeError) as err:
            raise UserError(f"{path}: cannot read the checkpoint ({_describe(err)})") from None
        return Position(**data), optim, rank_state

    def clean_partial(self) -> None:
        """Remove temporary folders left by a process that died while writing."""
        if self.backend.is_writer and self.folder.is_dir():
            for tmp in self.folder.glob(f".{PREFIX}*.tmp"):
                shutil.rmtree(tmp, ignore_errors=True)

    def _steps(self) -> list[tuple[int, Path]]:
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.glob(f"{PREFIX}*"):
            number = path.name.removeprefix(PREFIX)
            if number.isdigit() and (path / STATE_FILE).is_file():
                found.append((int(number), path))
        return found

    def _prune(self) -> None:
        for _, path in sorted(self._steps())[:-self.keep]:
            shutil.rmtree(path, ignore_errors=True)


def _publish(tmp: Path, final: Path) -> None:
    """Make a fully written temporary folder `final`: fsync its files, rename it, fsync the parent."""
    _fsync_tree(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def write_folder(final: Path, write: Callable[[Path], object]) -> Path:
    """`write(tmp)` into a temporary sibling, fsync it, rename it to `final`; a failure removes it, in one line."""
    tmp = final.with_name(f".{final.name}.tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write(tmp)
        _publish(tmp, final)
    except BaseException as err:
        reason = _describe(err, final.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        if not isinstance(err, Exception):
            raise
        raise UserError(f"writing {final} failed ({reason}); nothing partial was left") from None
    return final


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for path in sorted(p for p in folder.rglob("*") if p.is_dir()):
        _fsync_dir(path)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe(err: Exception, folder: Path) -> str:
    """The error in a few words, and the free space left, since writers' own messages rarely say "disk full"."""
    if isinstance(err, OSError) and err.strerror:
        what = f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    else:
        text = str(err).strip().splitlines()
        what = f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return what
    return f"{what}; {free / 2**20:.1f} MiB free on that disk"
