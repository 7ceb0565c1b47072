"""experiments/toy_comparison.py without training: overrides, resume, aggregation, table and plot on fake run folders."""

from __future__ import annotations

import importlib.util
import json
import math
import struct
import sys
from pathlib import Path

import pytest

from prefixrft_cli.config import load_config

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "toy_comparison.py"


@pytest.fixture(scope="module")
def tc():
    spec = importlib.util.spec_from_file_location("toy_comparison", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["toy_comparison"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def write_run(root: Path, variant: str, seed: int, before: tuple[float, float], after: tuple[float, float],
              rewards: list[tuple[float, float | None]] = ()) -> None:
    run = root / variant / f"seed-{seed}"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({
        "accuracy_before": before[0], "greedy_accuracy_before": before[1], "accuracy_after": after[0],
        "greedy_accuracy_after": after[1], "wall_seconds": 120.0, "steps": 4}))
    lines = [{"stage": "sft", "step": 0, "loss": 1.0}] if not rewards else []
    lines += [{"stage": "prefix-rft", "step": k, "reward": r, "reward_on_policy": r, "reward_hybrid": h,
               "prefix_fraction_mean": 0.5}
              for k, (r, h) in enumerate(rewards)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.fixture()
def fake_results(tmp_path: Path) -> Path:
    """prefix-rft and sft with seeds 0 and 1, rft with seed 0 only (seed 1 missing)."""
    root = tmp_path / "results"
    write_run(root, "prefix-rft", 0, (0.2, 0.3), (0.4, 0.5), [(0.1, 0.5), (0.2, 0.6), (0.3, 0.7), (0.4, 0.8)])
    write_run(root, "prefix-rft", 1, (0.3, 0.3), (0.6, 0.4), [(0.2, None), (0.2, 1.0), (0.2, 1.0), (0.2, 1.0)])
    write_run(root, "sft", 0, (0.2, 0.3), (0.3, 0.3))
    write_run(root, "sft", 1, (0.3, 0.3), (0.5, 0.4))
    write_run(root, "rft", 0, (0.2, 0.3), (0.25, 0.35), [(0.5, None)] * 4)
    return root


def variants(tc, *names):
    return tuple(v for v in tc.VARIANTS if v.name in names)


def test_overrides_give_every_variant_the_same_budget(tc, tmp_path: Path):
    budget = tc.Budget(steps=5, seeds=3, jobs=2, eval_problems=50, eval_samples=4, sets=("optim.lr=0.0002",))
    by_name = {v.name: v for v in tc.VARIANTS}
    cfg = load_config(None, tc.run_overrides(by_name["prefix-rft-bottom"], 2, budget, tmp_path / "r"))
    assert (cfg.algo, cfg.seed, cfg.selection.mode, cfg.prefix.scheduler) == ("prefix-rft", 2, "bottom", "cosine")
    assert (cfg.train.steps, cfg.train.max_wall_minutes, cfg.train.threads) == (5, 0.0, 1)
    assert (cfg.data.eval_problems, cfg.eval.samples, cfg.optim.lr) == (50, 4, 0.0002)
    cfg = load_config(None, tc.run_overrides(by_name["prefix-rft-uniform"], 0, budget, tmp_path / "r"))
    assert (cfg.selection.mode, cfg.prefix.scheduler) == ("top", "uniform")
    cfg = load_config(None, tc.run_overrides(by_name["sft-then-rft"], 0, budget, tmp_path / "r"))
    assert (cfg.train.sft_steps, cfg.train.steps) == (2, 3)  # 5 steps split 5 // 2 = 2 SFT, 3 RFT
    assert [v.name for v in tc.VARIANTS if v.algo == "prefix-rft"] == [
        "prefix-rft", "prefix-rft-random", "prefix-rft-bottom", "prefix-rft-all", "prefix-rft-none",
        "prefix-rft-uniform"]
    assert budget.command() == ("nice -n 5 python experiments/toy_comparison.py --steps 5 --seeds 3 --jobs 2 "
                                "--eval-problems 50 --eval-samples 4 --set optim.lr=0.0002")


def test_pending_runs_skip_finished_and_restart_interrupted(tc, fake_results: Path):
    interrupted = fake_results / "rft" / "seed-1"
    interrupted.mkdir()
    (interrupted / "metrics.jsonl").write_text('{"reward": 0.1}\n')
    budget = tc.Budget(steps=4, seeds=2, jobs=1, eval_problems=10, eval_samples=2)
    todo = tc.pending_runs(fake_results, budget, variants(tc, "prefix-rft", "rft", "sft"))
    assert [name for name, _ in todo] == ["rft/seed-1"]
    assert f"train.run_dir={interrupted}" in todo[0][1] and "seed=1" in todo[0][1]
    assert not interrupted.exists()


def test_small_helpers(tc):
    assert tc.tail_mean([1.0, None, 2.0, 3.0, 4.0], count=2) == 3.5        # last two defined: (3 + 4) / 2
    assert tc.tail_mean([None, None]) is None
    assert tc.mean_std([0.4, 0.6]) == pytest.approx((0.5, math.sqrt(0.02)))  # (0.1² + 0.1²) / (2 − 1) = 0.02
    assert tc.mean_std([0.3]) == (0.3, 0.0)
    smoothed = tc.smooth([None, 1.0, 3.0, None, 5.0], window=2)             # trailing mean of the last 2 defined
    assert math.isnan(smoothed[0]) and smoothed[1:] == [1.0, 2.0, 2.0, 4.0]
    assert tc.mean_curve([[1.0, None, 3.0], [3.0, 4.0]]) == [2.0, 4.0, 3.0]


def test_aggregate_means_stds_and_missing(tc, fake_results: Path):
    budget = tc.Budget(steps=4, seeds=2, jobs=1, eval_problems=10, eval_samples=2)
    chosen = variants(tc, "prefix-rft", "rft", "sft")
    runs, missing = tc.collect(fake_results, budget, chosen)
    assert missing == ["rft/seed-1"] and len(runs) == 5
    report = tc.aggregate(runs, chosen, budget, missing)
    # base per seed: seed 0 scores 0.2 in all three runs, seed 1 0.3 -> mean 0.25, std |0.3 − 0.2| / √2
    assert report["base"]["accuracy"]["mean"] == pytest.approx(0.25)
    assert report["base"]["accuracy"]["std"] == pytest.approx(0.1 / math.sqrt(2))
    rows = {row["name"]: row for row in report["variants"]}
    p = rows["prefix-rft"]
    assert p["accuracy_after"]["mean"] == pytest.approx(0.5)                 # (0.4 + 0.6) / 2
    assert p["gain"]["values"] == pytest.approx([0.2, 0.3])                  # paired: after − before per seed
    assert p["greedy_gain"]["mean"] == pytest.approx(0.15)                   # (0.2 + 0.1) / 2
    assert p["train_reward_tail"]["values"] == pytest.approx([0.25, 0.2])    # means of 0.1..0.4 and of 0.2s
    assert p["hybrid_reward_tail"]["values"] == pytest.approx([0.65, 1.0])   # None skipped in seed 1
    assert p["on_policy_reward_tail"]["mean"] == pytest.approx(0.225)        # (0.25 + 0.2) / 2
    assert p["vs_reference"] is None                                         # prefix-rft is the reference
    # sft − prefix-rft on the same seed: 0.3 − 0.4 and 0.5 − 0.6; greedy 0.3 − 0.5 and 0.4 − 0.4
    assert rows["sft"]["vs_reference"]["values"] == pytest.approx([-0.1, -0.1])
    assert rows["sft"]["greedy_vs_reference"]["values"] == pytest.approx([-0.2, 0.0])
    assert rows["rft"]["vs_reference"]["values"] == pytest.approx([-0.15])  # only seed 0 is paired
    assert rows["sft"]["train_reward_tail"] is None and rows["sft"]["hybrid_reward_tail"] is None
    assert rows["rft"]["seeds"] == [0] and rows["rft"]["accuracy_after"]["std"] == 0.0
    assert rows["rft"]["hybrid_reward_tail"] is None


def test_table_and_outputs(tc, fake_results: Path, tmp_path: Path):
    budget = tc.Budget(steps=4, seeds=2, jobs=1, eval_problems=10, eval_samples=2)
    out = tmp_path / "docs"
    report = tc.write_outputs(fake_results, out, budget, variants(tc, "prefix-rft", "rft", "sft"))
    table = (out / "toy_comparison.md").read_text()
    assert "| base | toy base, before training | 25.0 ± 7.1 | 30.0 ± 0.0 |" in table
    # 0.05 / √2 = 3.5 pts; 0.35 / √2 = 24.7 pts
    assert ("| `prefix-rft` | the method: top 20% entropy prefix tokens, cosine | 50.0 ± 14.1 | 45.0 ± 7.1 "
            "| +25.0 ± 7.1 | +15.0 ± 7.1 |  |  | 22.5 ± 3.5 | 82.5 ± 24.7 | 2.0 |") in table
    assert ("| `sft` | cross-entropy on demonstrations | 40.0 ± 14.1 | 35.0 ± 7.1 | +15.0 ± 7.1 | +5.0 ± 7.1 "
            "| -10.0 ± 0.0 | -10.0 ± 14.1 | — | — | 2.0 |") in table
    assert "Missing runs (not in the means): rft/seed-1" in table
    assert f"`{budget.command()}`" in table and "4 steps per run (16 prompts × 8 rollouts" in table
    assert json.loads((out / "toy_comparison.json").read_text()) == json.loads(json.dumps(report))
    png = (out / "toy_comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # IHDR: one panel of 4.4 × 3.3 inches at 110 dpi
    assert (width, height) == (484, 363)


def test_main_report_only_and_bad_options(tc, fake_results: Path, tmp_path: Path, capsys):
    common = ["--steps", "4", "--seeds", "2", "--results-dir", str(fake_results), "--output-dir", str(tmp_path / "o")]
    assert tc.main(common + ["--variants", "prefix-rft,sft", "--report-only"]) == 0
    assert (tmp_path / "o" / "toy_comparison.png").is_file()
    assert tc.main(common + ["--variants", "prefix-rft,rft", "--report-only"]) == 1  # rft/seed-1 is missing
    assert tc.main(common + ["--variants", "prefix-rft,rtf"]) == 2
    assert "--variants 'prefix-rft,rtf': unknown rtf; valid: prefix-rft," in capsys.readouterr().err
    assert tc.main(common + ["--set", "train.stepz=3"]) == 2
    assert "unknown config key 'train.stepz'" in capsys.readouterr().err
    assert tc.main(common + ["--seeds", "0"]) == 2
