"""The typed config tree: shipped YAMLs load, overrides apply, bad keys and values are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefixrft_cli.config import Config, dump_yaml, load_config, reference_markdown
from prefixrft_cli.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "configs").rglob("*.yaml"))


def test_configs_are_shipped():
    assert len(SHIPPED) >= 8


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_yaml_loads_and_names_its_command(path: Path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    header = path.read_text().splitlines()[:4]
    assert any(line.startswith("# Run: prefixrft train --config " + str(path.relative_to(ROOT))) for line in header)


def test_paper_config_has_the_paper_hyperparameters():
    cfg = load_config(ROOT / "configs/paper/prefix-rft.yaml")
    assert (cfg.rollout.rollouts_per_prompt, cfg.rollout.hybrid_rollouts_per_prompt) == (8, 1)
    assert (cfg.selection.mode, cfg.selection.keep_ratio, cfg.train.steps) == ("top", 0.2, 500)
    assert (cfg.prefix.scheduler, cfg.prefix.prefix_len_high, cfg.prefix.prefix_len_low_end) == ("cosine", 0.95, 0.05)
    assert (cfg.optim.lr, cfg.train.prompts_per_step, cfg.rollout.max_response_tokens) == (1e-6, 128, 8192)
    assert (cfg.rollout.temperature, cfg.eval.temperature, cfg.loss.kl_coef) == (1.0, 0.6, 0.0)


def test_yaml_then_overrides_in_order(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  steps: 7\nrollout:\n  temperature: 0.5\n")
    cfg = load_config(path, ["train.steps=9", "selection.mode=static:0.001"])
    assert (cfg.train.steps, cfg.rollout.temperature, cfg.selection.mode) == (9, 0.5, "static:0.001")


def test_resolved_config_round_trips(tmp_path: Path):
    cfg = load_config(None, ["algo=rft", "optim.betas=[0.8, 0.9]"])
    path = tmp_path / "config.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize("override, message", [
    ("train.stepz=3", "unknown config key 'train.stepz' (did you mean 'train.steps'?)"),
    ("algo=rfft", "override 'algo=rfft': algo='rfft' is not valid (did you mean 'rft'?)"),
    ("train.steps=abc", "train.steps expects an integer, got 'abc'"),
    ("selection.mode=static:x", "selection.mode='static:x' is not valid"),
    ("rollout.hybrid_rollouts_per_prompt=8", "must be at least 1 and below rollout.rollouts_per_prompt (8)"),
    ("train", "expected key=value"),
])
def test_bad_overrides_are_one_line_errors(override: str, message: str):
    with pytest.raises(UserError) as err:
        load_config(None, [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_yaml_key_names_the_file_and_suggests(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("rollout:\n  temprature: 0.7\n")
    with pytest.raises(UserError, match=r"bad.yaml:2: unknown config key 'rollout.temprature' \(did you mean 'temperature'"):
        load_config(path)


def test_malformed_yaml_names_the_line(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  steps: 3\n  - oops\n")
    with pytest.raises(UserError, match=r"bad.yaml:3: malformed YAML"):
        load_config(path)


def test_config_reference_doc_is_current_and_complete():
    text = (ROOT / "docs" / "config.md").read_text()
    assert text == reference_markdown(), "regenerate: python -m prefixrft_cli.config > docs/config.md"
    for line in text.splitlines():
        if line.startswith("| `"):
            assert not line.endswith("|  |"), f"field without a description: {line}"
