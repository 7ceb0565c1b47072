"""The typed config tree: shipped YAMLs load, overrides apply, bad keys and values are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefixrft_cli.config import Config, dump_yaml, load_config, reference_markdown, shipped_configs
from prefixrft_cli.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = shipped_configs()


def test_configs_are_shipped_inside_the_package():
    assert len(SHIPPED) >= 8 and "paper/prefix-rft" in SHIPPED and "toy-math" in SHIPPED
    assert all(path.is_relative_to(ROOT / "prefixrft_cli" / "configs") for path in SHIPPED.values())


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_yaml_loads_by_name_and_names_its_command(name: str):
    cfg = load_config(name)
    assert isinstance(cfg, Config)
    assert load_config(name + ".yaml") == cfg
    header = SHIPPED[name].read_text().splitlines()[:4]
    assert any(line.split()[:6] == ["#", "Run:", "prefixrft", "train", "--config", name] for line in header)


def test_unknown_config_name_suggests_a_shipped_one():
    with pytest.raises(UserError, match="--config paper/prefix-rtf: no such file or shipped config "
                                        r"\(did you mean 'paper/prefix-rft'\?\)"):
        load_config("paper/prefix-rtf")


def test_configs_command_lists_shows_and_writes_json(run_cli, tmp_path: Path):
    code, out, _ = run_cli(["configs", "--output", str(tmp_path / "configs.json")])
    assert code == 0 and "paper/prefix-rft" in out and "toy-code" in out
    rows = json.loads((tmp_path / "configs.json").read_text())
    assert [r["name"] for r in rows] == list(SHIPPED)
    code, out, _ = run_cli(["configs", "--show", "paper/luffy"])
    assert code == 0 and out == SHIPPED["paper/luffy"].read_text()
    code, _, err = run_cli(["configs", "--show", "paper/lufy"])
    assert code == 2 and "did you mean 'paper/luffy'" in err


def test_paper_configs_make_two_optimizer_updates_a_step():
    # LUFFY (whose hyperparameters the paper follows): batch 128 prompts, mini-batch 64
    for name in [n for n in SHIPPED if n.startswith("paper/")]:
        cfg = load_config(name)
        assert cfg.train.prompts_per_step // cfg.train.mini_batches == 64 and cfg.train.mini_batches == 2


def test_paper_config_has_the_paper_hyperparameters():
    cfg = load_config("paper/prefix-rft")
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


@pytest.mark.slow
def test_an_installed_wheel_ships_the_configs(tmp_path: Path):
    """Build the wheel, install it apart from the clone, run `--config paper/prefix-rft` from elsewhere."""
    import os
    import subprocess
    import sys

    pip = [sys.executable, "-m", "pip"]
    subprocess.run(pip + ["wheel", "--no-deps", "-q", str(ROOT), "-w", str(tmp_path / "wheel")], check=True)
    wheel = next((tmp_path / "wheel").glob("prefixrft-*.whl"))
    subprocess.run(pip + ["install", "-q", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)], check=True)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    code = ("import prefixrft_cli, sys; from prefixrft_cli.config import load_config, shipped_configs; "
            "print(prefixrft_cli.__file__); print(sorted(shipped_configs())); "
            "print(load_config('paper/prefix-rft').train.mini_batches)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0].startswith(str(tmp_path / "site"))
    assert eval(out[1]) == sorted(SHIPPED) and out[2] == "2"
