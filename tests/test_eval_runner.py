"""`prefixrft eval` through the CLI on the toy model: resume after an interrupt, summary numbers, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefixrft_cli.rollout.engine import HFSampler

# 6 problems x 4 samples = 24 items in batches of 8 -> 3 generate calls
EVAL = ["eval", "--model", "toy", "--benchmarks", "toy-math", "--limit", "6", "--samples", "4",
        "--batch-size", "8", "--max-new-tokens", "48"]


def read_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]


class GenerateSpy:
    """Counts HFSampler.generate calls and prompts; raises KeyboardInterrupt on call number `fail_at`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int = 0):
        self.calls, self.prompts, self.fail_at = 0, 0, fail_at
        original = HFSampler.generate

        def generate(sampler, prompts, *args, **kwargs):
            self.calls += 1
            if self.calls == self.fail_at:
                raise KeyboardInterrupt
            self.prompts += len(prompts)
            return original(sampler, prompts, *args, **kwargs)

        monkeypatch.setattr(HFSampler, "generate", generate)


def test_interrupted_eval_resumes_without_redoing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  run_cli) -> None:
    full, cut = tmp_path / "full", tmp_path / "cut"
    spy = GenerateSpy(monkeypatch)
    assert run_cli(EVAL + ["-o", str(full)])[0] == 0
    assert (spy.calls, spy.prompts) == (3, 24)

    spy = GenerateSpy(monkeypatch, fail_at=3)        # killed while generating the third batch
    code, _, _ = run_cli(EVAL + ["-o", str(cut)])
    assert code != 0
    # batch 1 was verified and written when batch 2 finished generating; batch 2's verdicts were lost
    assert len(read_lines(cut)) == 8 and not (cut / "summary.json").exists()

    spy = GenerateSpy(monkeypatch)
    code, out, err = run_cli(EVAL + ["-o", str(cut)])
    assert code == 0, err
    assert (spy.calls, spy.prompts) == (2, 16)       # only batches 2 and 3 are generated again
    lines = read_lines(cut)
    keys = [(r["benchmark"], r["problem_id"], r["sample_index"]) for r in lines]
    assert len(keys) == 24 and len(set(keys)) == 24
    # batches are seeded by their position, so the resumed eval drew the very same samples
    reference = {(r["problem_id"], r["sample_index"]): r["completion"] for r in read_lines(full)}
    assert {(r["problem_id"], r["sample_index"]): r["completion"] for r in lines} == reference
    summary = json.loads((cut / "summary.json").read_text())
    assert (summary["generated_now"], summary["resumed"]) == (16, 8)
    assert "16 samples generated now, 8 already there" in out

    spy = GenerateSpy(monkeypatch)                   # a finished eval reruns without generating
    assert run_cli(EVAL + ["-o", str(cut)])[0] == 0 and spy.calls == 0


def test_partial_last_line_is_cut_and_redone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             run_cli) -> None:
    out_dir = tmp_path / "e"
    assert run_cli(EVAL + ["-o", str(out_dir)])[0] == 0
    text = (out_dir / "samples.jsonl").read_text()
    last = text.splitlines()[-1]
    (out_dir / "samples.jsonl").write_text(text[: len(text) - len(last) // 2 - 1])   # a write cut short
    spy = GenerateSpy(monkeypatch)
    code, _, err = run_cli(EVAL + ["-o", str(out_dir)])
    assert code == 0, err
    assert spy.prompts == 1
    lines = read_lines(out_dir)
    assert len(lines) == 24 and len({(r["problem_id"], r["sample_index"]) for r in lines}) == 24


def test_summary_agrees_with_samples(tmp_path: Path, run_cli) -> None:
    out_dir = tmp_path / "e"
    code, out, _ = run_cli(["eval", "--model", "toy", "--benchmarks", "toy-math", "--limit", "3",
                            "--max-new-tokens", "48", "-o", str(out_dir)])
    assert code == 0
    summary = json.loads((out_dir / "summary.json").read_text())
    row = summary["benchmarks"][0]
    # no --samples: toy-math's own default_samples (8) -> avg@8 over 3 problems
    assert (row["metric"], row["samples_per_problem"], row["problems"]) == ("avg@8", 8, 3)
    lines = read_lines(out_dir)
    assert len(lines) == 24
    per_problem: dict[str, list[float]] = {}
    for r in lines:
        per_problem.setdefault(r["problem_id"], []).append(r["score"])
    expected = sum(sum(s) / len(s) for s in per_problem.values()) / len(per_problem)
    assert row["accuracy"] == pytest.approx(expected)
    assert summary["math_average"] == pytest.approx(expected) and summary["math_benchmarks"] == ["toy-math"]
    assert row["full_credit_samples"] == sum(r["score"] == 1.0 for r in lines)
    assert sum(row["reasons"].values()) == 24
    assert summary["settings"]["temperature"] == 0.6 and summary["settings"]["answer_after_think"] is True
    assert f"{100 * expected:.2f}" in out


@pytest.mark.parametrize("argv, expected", [
    (["--benchmarks", "toy-math,aime2024"], "unknown benchmark 'aime2024'"),
    (["--benchmarks", "toy-math", "--model", "./no/such/model"], "--model ./no/such/model: no such model folder"),
    (["--benchmarks", "toy-math", "--template", "fancy"], "data.prompt_template='fancy' is not valid"),
])
def test_bad_options_are_one_line_errors(tmp_path: Path, run_cli,
                                         argv: list[str], expected: str) -> None:
    code, _, err = run_cli(["eval", "-o", str(tmp_path / "e"), *argv])
    assert code == 2 and expected in err and err.count("\n") == 1
    if "unknown benchmark" in expected:
        assert "valid: aime24, aime25, amc, amc23" in err
    assert not (tmp_path / "e").exists()


def test_bad_existing_folder_is_one_line_error(tmp_path: Path, run_cli) -> None:
    out_dir = tmp_path / "e"
    out_dir.mkdir()
    good = {"benchmark": "toy-math", "problem_id": "p", "sample_index": 0, "completion": "", "score": 0,
            "reason": "wrong"}
    (out_dir / "samples.jsonl").write_text(json.dumps(good) + "\n{oops\n" + json.dumps(good) + "\n")
    code, _, err = run_cli(EVAL + ["-o", str(out_dir)])
    assert code == 2 and "samples.jsonl:2: malformed JSON" in err and err.count("\n") == 1

    (out_dir / "samples.jsonl").unlink()
    (out_dir / "eval.json").write_text(json.dumps({"model": "toy", "temperature": 1.0}))
    code, _, err = run_cli(EVAL + ["-o", str(out_dir)])
    assert code == 2 and "holds an eval with temperature=1.0, this one has temperature=0.6" in err


def test_eval_reads_the_eval_section_of_the_config_tree(tmp_path: Path, run_cli) -> None:
    out_dir = tmp_path / "e"
    code, _, err = run_cli(["eval", "--model", "toy", "--benchmarks", "toy-math", "--limit", "2",
                            "--max-new-tokens", "8", "--set", "eval.samples=3", "--set", "eval.temperature=0.1",
                            "--set", "eval.batch_size=4", "-o", str(out_dir)])
    assert code == 0, err
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["settings"]["temperature"] == 0.1
    assert (summary["benchmarks"][0]["metric"], summary["benchmarks"][0]["samples_per_problem"]) == ("avg@3", 3)
    assert len(read_lines(out_dir)) == 6
