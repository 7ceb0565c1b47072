"""`prefixrft verify` and `verify_file`: records in, scores and a summary out, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefixrft_cli.cli.app import main
from prefixrft_cli.data.evalplus import problem_from_evalplus
from prefixrft_cli.errors import UserError
from prefixrft_cli.verify import summary_path, verify_file


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stop:
        main(list(args))
    out = capsys.readouterr()
    return stop.value.code or 0, out.out, out.err


def test_math_file_scores_and_summary(tmp_path: Path) -> None:
    records = [{"id": "a", "completion": "so \\boxed{28}", "answer": "28", "extra": 1},
               {"id": "b", "completion": "\\boxed{\\frac{1}{2}}", "answer": 0.5},
               {"id": "c", "completion": "\\boxed{7}", "answer": "8"},
               {"id": "d", "completion": "no box", "answer": "1"}]
    summary = verify_file("math", write_jsonl(tmp_path / "in.jsonl", records), tmp_path / "out.jsonl")
    scored = read_jsonl(tmp_path / "out.jsonl")
    assert [r["reason"] for r in scored] == ["correct", "correct", "wrong", "no_answer"]
    assert [r["score"] for r in scored] == [1.0, 1.0, 0.0, 0.0]
    assert scored[0]["extra"] == 1 and scored[1]["extracted"] == "\\frac{1}{2}"   # input fields kept
    assert (summary.total, summary.correct, summary.accuracy) == (4, 2, 0.5)
    on_disk = json.loads(summary_path(tmp_path / "out.jsonl").read_text())
    assert on_disk["by_reason"] == {"correct": 2, "wrong": 1, "no_answer": 1, "timeout": 0, "error": 0}
    assert summary_path(tmp_path / "out.jsonl").name == "out.summary.json"


def test_code_file_with_inline_tasks(tmp_path: Path) -> None:
    evalplus_fields = {"task_id": "demo/double", "prompt": "def double(x):\n", "entry_point": "double",
                       "canonical_solution": "    return 2 * x\n", "base_input": [[1]], "plus_input": [[5]], "atol": 0}
    records = [
        {"completion": "def add_7(x):\n    return x + 7\n", "tests": ["assert add_7(1) == 8"]},
        {"completion": "def add_7(x):\n    return x\n", "tests": ["assert add_7(1) == 8"]},
        {"completion": "    return x * 2\n", **evalplus_fields},
        {"completion": "    return x + 2\n", **evalplus_fields},
        {"completion": "```python\ndef f():\n    return 1\n```",
         "code": {"entry_point": "f", "tests": ["assert f() == 1"]}},
    ]
    summary = verify_file("code", write_jsonl(tmp_path / "in.jsonl", records), tmp_path / "out.jsonl", workers=2)
    scored = read_jsonl(tmp_path / "out.jsonl")
    assert [r["reason"] for r in scored] == ["correct", "wrong", "correct", "wrong", "correct"]
    # the rule that assembled each program: a body continues the prompt, a definition stands alone
    assert [r["protocol"] for r in scored] == ["as-is", "as-is", "prompt+completion", "prompt+completion", "as-is"]
    assert summary.accuracy == 3 / 5


def _humaneval_data_dir(shared_data: Path, tmp_path: Path, count: int) -> Path:
    """A data folder laid out as `prefixrft prepare --benchmark humaneval+` writes it."""
    lines = (shared_data / "humanevalplus_mini.jsonl").read_text().splitlines()[:count]
    problems = [problem_from_evalplus(json.loads(line), f"mini:{i}") for i, line in enumerate(lines)]
    folder = tmp_path / "data" / "benchmarks"
    folder.mkdir(parents=True)
    write_jsonl(folder / "humaneval+.jsonl", [p.to_json() for p in problems])
    return tmp_path / "data"


def test_code_by_task_id_through_the_benchmark(shared_data: Path, tmp_path: Path, capsys) -> None:
    data_dir = _humaneval_data_dir(shared_data, tmp_path, 3)
    mini = [json.loads(line) for line in (shared_data / "humanevalplus_mini.jsonl").read_text().splitlines()[:3]]
    records = [{"task_id": r["task_id"], "completion": r["canonical_solution"]} for r in mini]
    records.append({"task_id": mini[0]["task_id"], "completion": "    return None\n"})
    write_jsonl(tmp_path / "in.jsonl", records)
    code, out, err = cli(capsys, "verify", "--domain", "code", str(tmp_path / "in.jsonl"), "--output",
                         str(tmp_path / "out.jsonl"), "--benchmark", "humaneval+", "--data-dir", str(data_dir))
    assert code == 0, err
    assert [r["reason"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["correct"] * 3 + ["wrong"]
    assert "accuracy" in out and "0.7500" in out
    # an id the benchmark does not have names the line and the benchmark
    write_jsonl(tmp_path / "bad.jsonl", [{"task_id": "HumanEval/999", "completion": "x"}])
    code, _, err = cli(capsys, "verify", "--domain", "code", str(tmp_path / "bad.jsonl"), "-o",
                       str(tmp_path / "o.jsonl"), "--benchmark", "humaneval+", "--data-dir", str(data_dir))
    assert code == 2 and "bad.jsonl:1: task_id 'HumanEval/999' is not in benchmark 'humaneval+'" in err
    # a math benchmark cannot resolve code tasks
    code, _, err = cli(capsys, "verify", "--domain", "code", str(tmp_path / "bad.jsonl"), "-o",
                       str(tmp_path / "o.jsonl"), "--benchmark", "math500", "--data-dir", str(data_dir))
    assert code == 2 and "--benchmark math500 is a math benchmark" in err


@pytest.mark.parametrize("records, domain, message", [
    ([{"completion": "\\boxed{1}"}], "math", "in.jsonl:1: field 'answer' is missing"),
    ([{"answer": "1"}], "math", "in.jsonl:1: field 'completion' must be a string"),
    ([{"completion": "x", "task_id": "HumanEval/0"}], "code", "in.jsonl:1: no code task"),
    ([{"completion": "x", "tests": "assert f()"}], "code", "in.jsonl:1: field 'tests' must be a non-empty list"),
    ([{"completion": "x", "answer": "1"}], "maths", "unknown verifier 'maths' (did you mean 'math'?)"),
])
def test_bad_input_is_one_line_with_exit_2(tmp_path: Path, capsys, records, domain, message) -> None:
    write_jsonl(tmp_path / "in.jsonl", records)
    code, _, err = cli(capsys, "verify", "--domain", domain, str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o.jsonl"))
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.jsonl").exists()


def test_empty_input_is_refused(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("\n")
    with pytest.raises(UserError, match="no records"):
        verify_file("math", tmp_path / "in.jsonl", tmp_path / "out.jsonl")


def test_answer_format_reaches_the_math_verifier(tmp_path: Path, capsys) -> None:
    from prefixrft_cli.config import Config, validate
    from prefixrft_cli.verify import make_verifier

    strict = make_verifier("math", answer_format="strict-boxed", workers=1)
    assert strict.strict_boxed and not make_verifier("math", workers=1).strict_boxed
    assert make_verifier("code", answer_format="strict-boxed", workers=1).answer_after_think   # not its option
    cfg = Config()
    cfg.train.reward_answer_format = "boxed"
    with pytest.raises(UserError, match="train.reward_answer_format='boxed' is not valid"):
        validate(cfg)
    write_jsonl(tmp_path / "in.jsonl", [{"completion": "so the answer is $-5$", "answer": "-5"}])
    code, _, _ = cli(capsys, "verify", "--domain", "math", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o.jsonl"),
                     "--answer-format", "strict-boxed", "--workers", "1")
    assert code == 0 and read_jsonl(tmp_path / "o.jsonl")[0]["reason"] == "no_answer"
    code, _, err = cli(capsys, "verify", "--domain", "math", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o.jsonl"),
                       "--answer-format", "boxed")
    assert code == 2 and "answer_format 'boxed' is not one of any, strict-boxed" in err
