"""inspect-entropy: token statistics against hand-computed values, the two tables, and the CLI on the toy model."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from prefixrft_cli.evaluate.entropy_view import (entropy_colour, inspect_demonstration, retained_table,
                                                 slice_table)


class FixedLM(torch.nn.Module):
    """Logits [1, T, 3] from a table, one row per position; honours logits_to_keep like HF models."""

    def __init__(self, rows: list[list[float]]):
        super().__init__()
        self.rows = torch.tensor(rows)

    def forward(self, input_ids, logits_to_keep=0):
        logits = self.rows[: input_ids.shape[1]][None]
        return SimpleNamespace(logits=logits[:, -logits_to_keep:] if logits_to_keep else logits)


class Letters:
    def decode(self, ids):
        return "".join("abc"[i] for i in ids)


def test_token_statistics_match_hand_values() -> None:
    # prompt = 2 tokens, demonstration = [c, a]. Position 1 predicts 'c' with uniform logits;
    # position 2 predicts 'a' with probabilities (0.8, 0.1, 0.1).
    rows = [[9.0, 9.0, 9.0], [0.0, 0.0, 0.0], [math.log(8.0), 0.0, 0.0], [5.0, 5.0, 5.0]]
    stats = inspect_demonstration(FixedLM(rows), Letters(), [0, 1], [2, 0])
    first, second = stats
    assert first.entropy == pytest.approx(math.log(3), abs=1e-6)          # uniform over 3: ln 3 = 1.0986
    assert first.top1_prob == pytest.approx(1 / 3) and first.demo_prob == pytest.approx(1 / 3)
    assert not first.top1_is_demo and first.text == "c"                   # argmax tie -> 'a', not 'c'
    # H = -(0.8 ln 0.8 + 2 * 0.1 ln 0.1) = 0.178515 + 0.460517 = 0.639032
    assert second.entropy == pytest.approx(0.639032, abs=1e-5)
    assert second.top1_is_demo and second.top1_prob == pytest.approx(0.8) and second.demo_prob == pytest.approx(0.8)


def test_slice_table_by_hand() -> None:
    entropy = torch.tensor([0.1 * (i + 1) for i in range(10)])            # 0.1 .. 1.0
    top1_prob = torch.tensor([0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.3, 0.1])
    top1_is_demo = torch.tensor([1, 1, 1, 0, 1, 0, 1, 0, 0, 1], dtype=torch.bool)
    low, middle, high = slice_table(entropy, top1_prob, top1_is_demo)
    # ceil(0.2 * 10) = 2 tokens per outer slice: low = {0.1, 0.2}, high = {0.9, 1.0}, middle = the 6 others
    assert (low.tokens, middle.tokens, high.tokens) == (2, 6, 2)
    assert low.mean_entropy == pytest.approx(0.15) and high.mean_entropy == pytest.approx(0.95)
    assert middle.mean_entropy == pytest.approx(0.55)                    # mean of 0.3 .. 0.8
    assert low.mean_top1_prob == pytest.approx(0.9) and high.mean_top1_prob == pytest.approx(0.2)
    assert low.top1_is_demo_share == 1.0 and middle.top1_is_demo_share == pytest.approx(3 / 6)
    assert high.top1_is_demo_share == 0.5


def test_retained_table_by_hand() -> None:
    entropy = torch.tensor([0.1 * (i + 1) for i in range(10)])
    signal = [0.05, 0.05, 0.0, 0.0, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2]           # 1 - p(y*), sums to 1.0
    demo_prob = 1.0 - torch.tensor(signal, dtype=torch.float64)
    rows = retained_table(entropy, demo_prob)
    # top 2 tokens (entropy 1.0, 0.9) carry 0.4; top 5 carry 0.8; top 8 carry 0.9; all carry 1.0
    assert [r.tokens for r in rows] == [2, 5, 8, 10]
    assert [r.signal_share for r in rows] == pytest.approx([0.4, 0.8, 0.9, 1.0])


def test_colours_run_green_to_red() -> None:
    assert entropy_colour(0.0, 2.0) == (90, 200, 90)
    assert entropy_colour(2.0, 2.0) == (255, 50, 60)
    assert entropy_colour(9.0, 2.0) == (255, 50, 60)        # beyond the scale stays red


# ---------------------------------------------------------------- through the CLI on the toy model


def test_cli_on_toy_demonstrations(tmp_path, run_cli) -> None:
    from prefixrft_cli.records import Demonstration, Problem

    data = tmp_path / "demos.jsonl"
    problems = [Problem("p1", "Compute 3 + 4.", "7", demonstrations=[Demonstration("3 + 4 = 7. The answer is "
                                                                                   "\\boxed{7}.")]),
                Problem("p2", "Compute 2 * 5.", "10"),          # no demonstration: skipped
                Problem("p3", "Compute 9 - 1.", "8", demonstrations=[Demonstration("9 - 1 = 8. \\boxed{8}."),
                                                                     Demonstration("\\boxed{8}")])]
    data.write_text("".join(json.dumps(p.to_json()) + "\n" for p in problems))
    out_dir = tmp_path / "ent"
    code, out, err = run_cli(["inspect-entropy", "--model", "toy", "--data", str(data), "-o", str(out_dir)])
    assert code == 0, err
    report = json.loads((out_dir / "entropy.json").read_text())
    views = report["demonstrations"]
    assert [(v["problem_id"], v["demonstration"]) for v in views] == [("p1", 0), ("p3", 0), ("p3", 1)]
    tokens = [t for v in views for t in v["tokens"]]
    assert "".join(t["text"] for t in views[0]["tokens"]).startswith("3 + 4 = 7.")
    assert views[0]["tokens"][-1]["text"] == "<|endoftext|>"          # demonstrations end with eos
    n = len(tokens)
    low, middle, high = report["slices"]
    outer = math.ceil(0.2 * n)
    assert (low["tokens"], middle["tokens"], high["tokens"]) == (outer, n - 2 * outer, outer)
    by_entropy = sorted(t["entropy"] for t in tokens)
    assert low["mean_entropy"] == pytest.approx(sum(by_entropy[:outer]) / outer, rel=1e-5)
    assert high["mean_entropy"] == pytest.approx(sum(by_entropy[-outer:]) / outer, rel=1e-5)
    assert high["top1_is_demo_share"] == pytest.approx(
        sum(t["top1_is_demo"] for t in sorted(tokens, key=lambda t: -t["entropy"])[:outer]) / outer)
    assert all(t["top1_text"] == t["text"] for t in tokens if t["top1_is_demo"])
    shares = [r["signal_share"] for r in report["retained"]]
    assert shares == sorted(shares) and shares[-1] == pytest.approx(1.0)
    page = (out_dir / "entropy.html").read_text()
    assert page.count("<span") == n and "Retained ratio" in page
    assert "Highest-entropy" in out and "Retained ratio" in out and f"{100 * shares[0]:.1f}%" in out


def test_cli_toy_task_and_bad_data(tmp_path, run_cli) -> None:
    code, _, err = run_cli(["inspect-entropy", "--model", "toy", "--data", "toy", "--domain", "code", "--limit", "2",
                            "--show", "0", "-o", str(tmp_path / "e")])
    assert code == 0, err
    report = json.loads((tmp_path / "e" / "entropy.json").read_text())
    assert len(report["demonstrations"]) == 2
    assert "".join(t["text"] for t in report["demonstrations"][0]["tokens"]).startswith("def ")

    code, _, err = run_cli(["inspect-entropy", "--model", "toy", "--data", str(tmp_path / "missing.jsonl")])
    assert code == 2 and "missing.jsonl: no such dataset folder or JSONL file" in err and err.count("\n") == 1
    empty = tmp_path / "nodemos.jsonl"
    empty.write_text(json.dumps({"id": "a", "problem": "Compute 1 + 1."}) + "\n")
    code, _, err = run_cli(["inspect-entropy", "--model", "toy", "--data", str(empty)])
    assert code == 2 and "no problem has a demonstration" in err
