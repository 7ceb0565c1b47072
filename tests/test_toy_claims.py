"""experiments/toy_claims.py: a smoke sweep of seconds (1 step, 1 seed), resume, and the report by hand."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from prefixrft_cli.config import load_config

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture(scope="module")
def tc():
    spec = importlib.util.spec_from_file_location("toy_claims", EXPERIMENTS / "toy_claims.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["toy_claims"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def budget(tc, **changes):
    values = dict(steps=4, seeds=2, jobs=1, eval_problems=2, eval_samples=1, passk_problems=2, passk_samples=4)
    return tc.Budget(**{**values, **changes})


def test_every_variant_gets_the_same_budget_on_each_setting(tc, tmp_path: Path):
    by_name = {v.name: v for v in tc.VARIANTS}
    assert list(by_name) == ["prefix-rft", "prefix-rft-all", "rft", "sft", "sft-then-rft", "luffy"]
    b = budget(tc, steps=5)
    cfg = load_config("toy-quality", tc.run_overrides(by_name["prefix-rft-all"], 1, b, tmp_path))
    assert (cfg.algo, cfg.seed, cfg.selection.mode, cfg.train.steps) == ("prefix-rft", 1, "all", 5)
    assert (cfg.data.toy_wrong_demo_share, cfg.data.use_incorrect_demos) == (0.5, True)
    cfg = load_config("toy-quantity", tc.run_overrides(by_name["sft-then-rft"], 0, b, tmp_path))
    assert (cfg.train.sft_steps, cfg.train.steps, cfg.data.toy_demo_share) == (2, 3, 0.01)
    assert b.command().startswith("nice -n 5 python experiments/toy_claims.py --steps 5 --seeds 2 --jobs 1")


def write_fake(root: Path, setting: str, variant: str, seed: int, easy: float, hard: float,
               passk: list | None = None) -> None:
    run = root / setting / variant / f"seed-{seed}" if setting != "base" else root / "base" / f"seed-{seed}"
    run.mkdir(parents=True)
    heldout = {"easy": {"accuracy": easy, "greedy": easy}, "hard": {"accuracy": hard, "greedy": hard}}
    if passk is not None:
        heldout["passk_counts"] = passk
    (run / "heldout.json").write_text(json.dumps(heldout))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"reward": 0.5, "reward_hybrid": 0.75, "sft_loss_demos": 1.0,
                                                           "response_length": 20, "truncation_rate": 0.0}) + "\n"
                                               for _ in range(3)))


def test_report_pairs_seeds_against_prefix_rft(tc, tmp_path: Path):
    import toy_claims_report as report_module

    root = tmp_path / "runs"
    for seed, (p_easy, s_easy) in enumerate([(0.6, 0.5), (0.4, 0.45)]):
        write_fake(root, "base", "base", seed, 0.2, 0.0, passk=[[4, 0], [4, 1]])
        write_fake(root, "hard", "prefix-rft", seed, p_easy, 0.1, passk=[[4, 2], [4, 0]])
        write_fake(root, "hard", "sft", seed, s_easy, 0.0, passk=[[4, 4], [4, 0]])
    settings = tuple(s for s in tc.SETTINGS if s.name == "hard")
    variants = tuple(v for v in tc.VARIANTS if v.name in ("prefix-rft", "sft"))
    report = report_module.write_outputs(root, tmp_path / "out", budget(tc), settings, variants)
    sft = report["settings"][0]["variants"][1]
    # sft − prefix-rft on the same seed: 0.5 − 0.6 = −0.1 and 0.45 − 0.4 = +0.05; prefix-rft ahead on one seed
    assert sft["easy_vs_reference"]["values"] == pytest.approx([-0.1, 0.05]) and sft["easy_reference_ahead"] == 1
    assert sft["hard_reference_ahead"] == 2
    # pass@1 of sft: (4/4 + 0/4) / 2 = 0.5; pass@4: (1 + 0) / 2; base pass@4 (0 + 1) / 2 = 0.5
    assert sft["passk"]["1"]["mean"] == pytest.approx(0.5) and report["base"]["passk"]["4"]["mean"] == 0.5
    table = (tmp_path / "out" / "toy_claims.md").read_text()
    assert "| `sft` | 47.5 ± 3.5 | 47.5 ± 3.5 | 0.0 ± 0.0 | 0.0 ± 0.0 | -2.5 ± 10.6 | 1/2 | -10.0 ± 0.0 | 2/2 |" in table
    assert "| pass@1 | pass@4 |" in table and "| base | 12.5 ± 0.0 | 50.0 ± 0.0 |" in table  # (0 + 1/4) / 2; (0 + 1) / 2
    for name in ("reward", "sft_loss", "length", "passk"):
        assert (tmp_path / "out" / f"toy_claims_{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_smoke_sweep_trains_scores_and_resumes(tc, tmp_path: Path, capsys):
    args = ["--steps", "1", "--seeds", "1", "--jobs", "1", "--eval-problems", "2", "--eval-samples", "1",
            "--passk-problems", "2", "--passk-samples", "4", "--settings", "hard",
            "--variants", "prefix-rft,sft", "--set", "train.prompts_per_step=2", "--set", "data.toy_train_problems=20",
            "--results-dir", str(tmp_path / "runs"), "--output-dir", str(tmp_path / "out")]
    assert tc.main(args) == 0
    heldout = json.loads((tmp_path / "runs" / "hard" / "prefix-rft" / "seed-0" / "heldout.json").read_text())
    assert set(heldout) == {"easy", "hard", "passk_counts"} and heldout["passk_counts"][0][0] == 4
    sft = tmp_path / "runs" / "hard" / "sft" / "seed-0"
    assert len((sft / "metrics.jsonl").read_text().splitlines()) == 1
    table = (tmp_path / "out" / "toy_claims.md").read_text()
    assert "### hard (`--config toy-hard`)" in table and "| `sft` |" in table
    (sft / "heldout.json").unlink()                 # trained, not scored: scored again, not retrained
    prefix = tmp_path / "runs" / "hard" / "prefix-rft" / "seed-0"
    (prefix / "heldout.json").unlink()
    (prefix / "summary.json").unlink()              # interrupted: its folder is removed and trained again
    jobs = tc.pending_jobs(tmp_path / "runs", budget(tc, seeds=1), tc.SETTINGS[2:], tc.VARIANTS[::3])
    assert [(j.name, j.score_only) for j in jobs] == [("hard/prefix-rft/seed-0", False), ("hard/sft/seed-0", True)]
    assert not prefix.exists() and sft.exists()
    assert tc.main(args + ["--variants", "prefix-rft,sfx"]) == 2
    assert "--variants 'prefix-rft,sfx': unknown sfx" in capsys.readouterr().err
