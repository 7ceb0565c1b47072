"""`prefixrft passk` through the CLI: hand-computed curves, passk.json, passk.png, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest





def write_run(folder: Path, correct: dict[str, list[int]], benchmark: str = "aime24") -> Path:
    """A samples.jsonl where correct[problem] lists each sample's score."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for pid, scores in correct.items():
        for index, score in enumerate(scores):
            lines.append(json.dumps({"benchmark": benchmark, "problem_id": pid, "sample_index": index,
                                     "completion": "x", "score": score, "reason": "correct" if score else "wrong"}))
    (folder / "samples.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_two_runs_side_by_side(tmp_path: Path, run_cli) -> None:
    base = write_run(tmp_path / "base", {"p1": [1, 0, 0, 0], "p2": [1, 1, 1, 1]})
    trained = write_run(tmp_path / "trained", {"p1": [0, 0, 0, 0], "p2": [0, 1, 0, 1]})
    out_dir = tmp_path / "report"
    code, out, err = run_cli(["passk", str(base), str(trained / "samples.jsonl"), "-o", str(out_dir)])
    assert code == 0, err
    report = json.loads((out_dir / "passk.json").read_text())
    by_label = {run["label"]: run["benchmarks"]["aime24"] for run in report["runs"]}
    assert set(by_label) == {"base", "trained"}
    # base: p1 (n=4, c=1), p2 (4, 4). pass@1 = (1/4 + 1)/2; pass@2 = (1 - C(3,2)/C(4,2) + 1)/2 = (1/2 + 1)/2
    assert by_label["base"]["k"] == [1, 2, 4]
    assert by_label["base"]["pass_at_k"] == pytest.approx([0.625, 0.75, 1.0])
    # trained: p1 (4, 0), p2 (4, 2). pass@2 of p2 = 1 - C(2,2)/C(4,2) = 5/6 -> mean 5/12; pass@4 = 1/2
    assert by_label["trained"]["pass_at_k"] == pytest.approx([0.25, 5 / 12, 0.5])
    assert by_label["trained"]["problems"] == 2 and by_label["trained"]["samples_min"] == 4
    png = (out_dir / "passk.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "62.50" in out and "41.67" in out   # the table shows percentages


def test_uneven_sample_counts_stop_at_smallest_n(tmp_path: Path, run_cli) -> None:
    run = write_run(tmp_path / "r", {"p1": [1, 0, 0], "p2": [0, 0, 0, 0, 0, 1]})
    code, _, err = run_cli(["passk", str(run), "-o", str(tmp_path / "o"), "--labels", "mine"])
    assert code == 0, err
    curve = json.loads((tmp_path / "o" / "passk.json").read_text())["runs"][0]["benchmarks"]["aime24"]
    # k stops at min n = 3; pass@3: p1 (3,1) -> 1, p2 (6,1) -> 1 - C(5,3)/C(6,3) = 1 - 10/20 = 1/2
    assert curve["k"] == [1, 2, 3] and curve["samples_max"] == 6
    assert curve["pass_at_k"][-1] == pytest.approx(0.75)


@pytest.mark.parametrize("content, expected", [
    ('{"benchmark": "a", "problem_id": "p", "sample_index": 0, "completion": "", "score": 1, "reason": "correct"}\n'
     "{not json\n", "samples.jsonl:2: malformed JSON"),
    ('{"benchmark": "a", "problem_id": "p", "sample_index": 0, "completion": "", "reason": "wrong"}\n',
     "samples.jsonl:1: field 'score' must be"),
    ('{"benchmark": "a", "problem_id": "p", "sample_index": 0, "completion": "", "score": 0, "reason": "wrong"}\n'
     '{"benchmark": "a", "problem_id": "p", "sample_index": 0, "completion": "", "score": 1, "reason": "correct"}\n',
     "samples.jsonl:2: sample ('a', 'p', 0) repeats line 1"),
    ('{"benchmark": "a", "problem_id": "p", "sample_index": 0, "completion": "", "score": 3, "reason": "x"}\n',
     "samples.jsonl:1: field 'score' must be in [0, 1]"),
])
def test_malformed_samples_line_is_one_line_error(tmp_path: Path, run_cli,
                                                   content: str, expected: str) -> None:
    (tmp_path / "samples.jsonl").write_text(content)
    code, _, err = run_cli(["passk", str(tmp_path), "-o", str(tmp_path / "o")])
    assert code == 2
    assert expected in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "passk.json").exists()


def test_missing_samples_file_is_one_line_error(tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli(["passk", str(tmp_path / "nowhere")])
    assert code == 2 and "nowhere/samples.jsonl: no such samples file" not in err
    assert "nowhere: no such samples file" in err and err.count("\n") == 1
