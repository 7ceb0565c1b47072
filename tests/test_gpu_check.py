"""bench/gpu_check.py, the prepared GPU check: its model is Qwen2.5-0.5B's shape, and its CPU path runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_model_has_the_half_billion_parameters_of_qwen2_5_0_5b():
    from transformers import Qwen2ForCausalLM

    check = _load()
    config, _ = check.qwen2_config(check.QWEN2_05B)
    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    # 151,936 x 896 tied embeddings + 24 blocks of 14.9M + final norm = 494,032,768 (Qwen2.5-0.5B's count)
    assert sum(p.numel() for p in model.parameters()) == 494_032_768


@pytest.mark.slow
def test_the_cpu_path_trains_and_compares_backends(tmp_path: Path):
    out = tmp_path / "check.json"
    result = _load().main(["--device", "cpu", "--tiny", "--steps", "2", "--max-response-tokens", "16",
                           "--backends", "ddp", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["train"]["steps"] == 2 and result["train"]["precision"] == "float32"
    assert result["train"]["skipped_updates"] == 0 and result["train"]["seconds_per_step"]["update"] > 0
    assert result["backend_max_abs_diff"]["ddp"] <= 1e-5
