"""Optional metric sinks: flattened scalars, and a one-line install hint when the package is missing."""

from __future__ import annotations

import sys

import pytest

from prefixrft_cli.config import load_config
from prefixrft_cli.errors import UserError
from prefixrft_cli.train.report import make_reporter, scalars


def test_scalars_flatten_numbers_and_skip_the_rest():
    record = {"reward": 0.5, "step": 3, "seconds": {"rollout": 1.25}, "stage": "rft", "hybrid": True, "x": None}
    assert scalars(record) == {"reward": 0.5, "step": 3.0, "seconds/rollout": 1.25}


def test_none_means_no_reporter(tmp_path):
    assert make_reporter(load_config(None), tmp_path) is None


@pytest.mark.parametrize("sink, module, hint", [("wandb", "wandb", "prefixrft[wandb]"),
                                                ("tensorboard", "torch.utils.tensorboard", "prefixrft[tensorboard]")])
def test_missing_sink_is_a_one_line_install_hint(tmp_path, monkeypatch, sink, module, hint):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(UserError) as err:
        make_reporter(load_config(None, [f"train.report_to={sink}"]), tmp_path)
    assert str(err.value).startswith(f"train.report_to={sink} needs") and f"pip install '{hint}'" in str(err.value)
