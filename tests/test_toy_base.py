"""The toy base build is deterministic: the same recipe twice gives byte-identical weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from prefixrft_cli.models import load_policy
from prefixrft_cli.toy_base import MODEL_SHAPE, build

TINY = ["train.steps=2", "train.prompts_per_step=8", "data.eval_problems=4", "eval.samples=1"]


def _digest(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.slow  # about 40 s on 2 idle cores: two tokenizer trainings and two short warm-ups
def test_build_twice_gives_identical_weights(tmp_path: Path):
    first, second = tmp_path / "a", tmp_path / "b"
    summary = build(first, seed=0, extra_overrides=TINY)
    build(second, seed=0, extra_overrides=TINY)
    assert summary.steps == 2
    assert _digest(first) == _digest(second)
    model, tokenizer = load_policy(str(first))
    assert model.config.hidden_size == MODEL_SHAPE["hidden_size"]
    assert tokenizer.decode(tokenizer("Compute 1 + 2.")["input_ids"]) == "Compute 1 + 2."
