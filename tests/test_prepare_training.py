"""`prefixrft prepare` for training sets: formats, column mapping, validation, stages, dataset folders."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefixrft_cli.data import load_dataset, stages
from prefixrft_cli.data.pipeline import PrepareOptions, run_prepare
from prefixrft_cli.data.readers import iter_rows
from prefixrft_cli.errors import UserError
from prefixrft_cli.records import Demonstration, Problem

ROWS = [
    {"question": "What is 1+1?", "solution": "1+1 = \\boxed{2}", "gt": "2", "level": 1},
    {"question": "What is 2+3?", "solution": "\\boxed{5}", "gt": 5, "level": 2},
    {"question": "what  is 1+1?", "solution": "Two: \\boxed{2}", "gt": "2", "level": 1},  # a copy of row 0
    {"question": "What is 4*4?", "solution": "", "gt": "16", "level": 3},                 # no demonstration
]
MAP = {"problem": "question", "demonstration": "solution", "answer": "gt"}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_hf_folder(folder: Path, rows: list[dict], shards: int = 1) -> Path:
    """The layout `datasets.Dataset.save_to_disk` writes: arrow stream files, dataset_info.json, state.json."""
    folder.mkdir(parents=True)
    table = pa.Table.from_pylist(rows)
    names = []
    per_shard = -(-len(rows) // shards)
    for index in range(shards):
        name = f"data-{index:05d}-of-{shards:05d}.arrow"
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table.slice(index * per_shard, per_shard))
        names.append(name)
    (folder / "dataset_info.json").write_text(json.dumps({"features": {k: {"dtype": "string"} for k in rows[0]}}))
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": n} for n in names],
                                                   "_fingerprint": "abc", "_split": "train"}))
    return folder


def prepare(tmp_path: Path, inputs: list[Path], **options) -> tuple[dict, Path]:
    output = tmp_path / "out"
    report = run_prepare(PrepareOptions(output=output, inputs=inputs, **options))
    return report.counts, output


def test_map_validate_dedupe_from_jsonl(tmp_path: Path) -> None:
    counts, output = prepare(tmp_path, [write_jsonl(tmp_path / "in.jsonl", ROWS)], mapping=MAP)
    # 4 rows read; row 2 is row 0 up to case and spaces -> 1 duplicate, its distinct solution merged onto row 0
    assert (counts["read"], counts["duplicates_removed"], counts["duplicate_demonstrations_merged"]) == (4, 1, 1)
    assert (counts["kept"], counts["train"], counts["train_with_demonstration"]) == (3, 3, 2)
    train = load_dataset(output)
    assert [p.id for p in train] == ["in-0", "in-1", "in-3"]
    assert [d.text for d in train[0].demonstrations] == ["1+1 = \\boxed{2}", "Two: \\boxed{2}"]
    assert train[1].answer == "5"  # a numeric gold answer is kept as its string
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["inputs"][0]["ignored_columns"] == ["level"]
    assert manifest["inputs"][0]["columns"] == {"problem": "question", "demonstration": "solution", "answer": "gt"}
    assert manifest["files"]["train"]["records"] == 3 and len(manifest["files"]["train"]["sha256"]) == 64
    assert not (output / "eval.jsonl").exists()


@pytest.mark.parametrize("kind", ["json", "json-lines", "parquet", "hf-folder"])
def test_every_input_format_gives_the_same_records(tmp_path: Path, kind: str) -> None:
    if kind == "json":
        path = tmp_path / "in.json"
        path.write_text(json.dumps(ROWS))
    elif kind == "json-lines":  # what datasets' to_json writes under a .json name
        path = write_jsonl(tmp_path / "in.json", ROWS)
    elif kind == "parquet":
        path = tmp_path / "in.parquet"
        pq.write_table(pa.Table.from_pylist([dict(r, gt=str(r["gt"])) for r in ROWS]), path)
    else:
        path = write_hf_folder(tmp_path / "in", [dict(r, gt=str(r["gt"])) for r in ROWS], shards=2)
    counts, output = prepare(tmp_path, [path], mapping=MAP)
    assert (counts["read"], counts["kept"]) == (4, 3)
    assert [(p.problem, p.answer) for p in load_dataset(output)] == \
        [("What is 1+1?", "2"), ("What is 2+3?", "5"), ("What is 4*4?", "16")]


def test_hf_dataset_dict_folder_and_its_split(tmp_path: Path) -> None:
    root = tmp_path / "dd"
    rows = [dict(r, gt=str(r["gt"])) for r in ROWS]
    write_hf_folder(root / "train", rows[:2])
    write_hf_folder(root / "test", rows[3:])
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    assert [r.record["question"] for r in iter_rows(root)] == ["What is 1+1?", "What is 2+3?"]
    assert [r.record["question"] for r in iter_rows(root, "test")] == ["What is 4*4?"]
    assert next(iter(iter_rows(root, "test"))).where.endswith("test/data-00000-of-00001.arrow: row 0")
    with pytest.raises(UserError, match=r"--hf-split validation: not in .*; valid: train, test"):
        list(iter_rows(root, "validation"))


def test_verl_layout_and_nested_paths(tmp_path: Path) -> None:
    rows = [{"data_source": "olympiads",
             "prompt": [{"role": "system", "content": "Think."}, {"role": "user", "content": "What is 6*7?"}],
             "target": [{"role": "assistant", "content": "6*7 = \\boxed{42}"}],
             "reward_model": {"style": "rule", "ground_truth": "42"}, "extra_info": {"index": 7}}]
    path = tmp_path / "openr1.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    _, output = prepare(tmp_path, [path])
    [problem] = load_dataset(output)
    assert (problem.problem, problem.answer, problem.demonstrations[0].text) == \
        ("What is 6*7?", "42", "6*7 = \\boxed{42}")
    explicit = {"problem": "prompt[-1].content", "answer": "reward_model.ground_truth",
                "demonstration": "target[0].content", "id": "extra_info.index"}
    _, output = prepare(tmp_path / "b", [path], mapping=explicit)
    [problem] = load_dataset(output)
    assert (problem.id, problem.problem, problem.answer) == ("7", "What is 6*7?", "42")


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"problem": "a?", "answer": "1"}\n\n{"problem": "b?", "answer": }\n')
    with pytest.raises(UserError, match=rf"^{path}:3: malformed JSON"):
        prepare(tmp_path, [path])


def test_missing_field_names_row_field_and_the_fix(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [{"problem": "a?", "answer": "1"}, {"problem": "b?"}])
    with pytest.raises(UserError, match=rf"^{path}:2: field 'answer' \(column 'answer'\) is missing$"):
        prepare(tmp_path, [path])
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "a?", "answer": "1"}])
    with pytest.raises(UserError, match=r"q.jsonl:1: field 'problem' \(no column problem; map one with --map "
                                        r"problem=COLUMN\) is missing"):
        prepare(tmp_path, [path])


def test_unknown_column_and_unknown_field_in_map(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", ROWS)
    with pytest.raises(UserError, match=r"^--map problem=questoin: no column 'questoin' in .*in.jsonl:1 "
                                        r"\(did you mean 'question'\?\); columns: gt, level, question, solution$"):
        prepare(tmp_path, [path], mapping={"problem": "questoin"})
    with pytest.raises(UserError, match=r"^--map tests=level: field 'tests' belongs to code tasks; add --domain code$"):
        prepare(tmp_path, [path], mapping={**MAP, "tests": "level"})
    from prefixrft_cli.data.mapping import parse_map_options

    with pytest.raises(UserError, match=r"^--map problme=question: unknown field 'problme' \(did you mean "
                                        r"'problem'\?\); valid: id, problem, answer, demonstration, source"):
        parse_map_options(["problme=question"])
    with pytest.raises(UserError, match=r"^--map problem: expected FIELD=COLUMN"):
        parse_map_options(["problem"])


def test_code_rows_need_tests(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [{"problem": "Write f.", "demonstration": "def f(): pass"}])
    with pytest.raises(UserError, match=r"in.jsonl:1: a code task needs field 'tests'"):
        prepare(tmp_path, [path], domain="code")


def test_duplicate_ids_and_existing_output_are_errors(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "problem": "x?", "answer": "1"},
                                               {"id": "a", "problem": "y?", "answer": "2"}])
    with pytest.raises(UserError, match=r"in.jsonl:2: id 'a' was already used at .*in.jsonl:1"):
        prepare(tmp_path, [path])
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match=r"--output .*out: already exists; pass --overwrite"):
        prepare(tmp_path, [write_jsonl(tmp_path / "ok.jsonl", ROWS)], mapping=MAP)


def test_split_is_seeded_and_complete(tmp_path: Path) -> None:
    rows = [{"problem": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(40)]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    counts, output = prepare(tmp_path / "a", [path], eval_fraction=0.25, seed=3)
    train, held = load_dataset(output), load_dataset(output, "eval")
    assert (len(train), len(held), counts["eval"]) == (30, 10, 10)  # round(0.25 * 40) = 10
    assert sorted(p.id for p in train + held) == sorted(f"in-{i}" for i in range(40))
    _, again = prepare(tmp_path / "b", [path], eval_fraction=0.25, seed=3)
    assert [p.id for p in load_dataset(again, "eval")] == [p.id for p in held]
    _, other = prepare(tmp_path / "c", [path], eval_fraction=0.25, seed=4)
    assert [p.id for p in load_dataset(other, "eval")] != [p.id for p in held]


def test_dedupe_and_length_filter_counts() -> None:
    problems = [Problem("a", "One two three", "1", demonstrations=[Demonstration("x y")]),
                Problem("b", "one  TWO three", "1", demonstrations=[Demonstration("x y z w")]),
                Problem("c", "four five six seven eight", "2", demonstrations=[Demonstration("p q r s t u")]),
                Problem("d", "nine", "3", demonstrations=[])]
    result = stages.dedupe(problems, ["1", "2", "3", "4"])
    assert (result.duplicates, result.demonstrations_merged, [p.id for p in result.kept]) == (1, 1, ["a", "c", "d"])

    def words(texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    # prompt lengths a=3, c=5, d=1 with limit 4 -> c dropped; demos a: 2 and 4 words, limit 3 -> the 4-word one dropped
    # (c's 6-word demonstration also counts as too long: demonstrations are checked before their problem)
    filtered = stages.filter_by_length(result.kept, words, max_prompt_tokens=4, max_demo_tokens=3)
    assert [p.id for p in filtered.kept] == ["a", "d"]
    assert (filtered.prompts_too_long, filtered.demonstrations_too_long) == (1, 2)
    assert [d.text for d in filtered.kept[0].demonstrations] == ["x y"]
    assert (filtered.longest_prompt_tokens, filtered.longest_demo_tokens) == (3, 2)


def test_a_failure_leaves_no_folder_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefixrft_cli.data import dataset

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    path = write_jsonl(tmp_path / "in.jsonl", ROWS)
    monkeypatch.setattr(dataset, "_swap_into_place", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare(tmp_path, [path], mapping=MAP)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # no out/, no .out.*.tmp
    monkeypatch.undo()
    prepare(tmp_path, [path], mapping=MAP)
    counts, output = prepare(tmp_path, [path], mapping=MAP, eval_fraction=0.34, overwrite=True)
    assert counts["eval"] == 1 and (output / "eval.jsonl").is_file()  # round(0.34 * 3) = 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out"]


def test_load_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such dataset folder or JSONL file"):
        load_dataset(tmp_path / "nothing")
    with pytest.raises(UserError, match="not a prepared dataset folder"):
        load_dataset(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "problem": "x"}\n{"id": "b"}\n')
    with pytest.raises(UserError, match=rf"^{bad}:2: field 'problem' must be a non-empty string$"):
        load_dataset(bad)
    _, output = prepare(tmp_path, [write_jsonl(tmp_path / "in.jsonl", ROWS)], mapping=MAP)
    with pytest.raises(UserError, match=r"no split 'eval'; splits: train"):
        load_dataset(output, "eval")


def test_shared_training_files_import(shared_data: Path, tmp_path: Path) -> None:
    counts, output = prepare(tmp_path / "math", [shared_data / "math_train_demos.jsonl"])
    assert (counts["read"], counts["duplicates_removed"], counts["train_with_demonstration"]) == (2000, 0, 2000)
    first = load_dataset(output)[0]
    assert first.id == "math_train-algebra-0" and first.answer and first.demonstrations[0].text.count("boxed")
    explicit = {"problem": "problem", "demonstration": "demonstration", "answer": "answer", "id": "id"}
    counts, output = prepare(tmp_path / "aime", [shared_data / "aime_1983_2023_demos.jsonl"], mapping=explicit)
    assert (counts["read"], counts["train"]) == (972, 972)
    code_map = {"problem": "problem", "demonstration": "demonstration", "tests": "tests",
                "test_setup_code": "test_setup_code"}
    counts, output = prepare(tmp_path / "mbpp", [shared_data / "mbpp_train_demos.jsonl"], domain="code",
                             mapping=code_map)
    assert (counts["read"], counts["train_with_demonstration"]) == (266, 266)
    problem = load_dataset(output)[0]
    assert problem.id == "mbpp-601" and problem.answer is None and problem.code.entry_point == "max_chain_length"
    assert problem.code.tests[0].startswith("assert max_chain_length(")
    assert problem.problem.endswith(problem.code.tests[-1])  # MBPP questions list their tests
    assert "def max_chain_length" in problem.demonstrations[0].text and problem.demonstrations[0].correct


def test_code_formats_through_prepare(shared_data: Path, tmp_path: Path) -> None:
    counts, output = prepare(tmp_path / "orig", [shared_data / "mbpp_original.jsonl"], domain="code",
                             mapping={"problem": "text", "demonstration": "code"})
    problems = load_dataset(output)
    assert (counts["read"], counts["duplicates_removed"], len(problems)) == (974, 0, 974)
    assert problems[0].id == "mbpp-1" and problems[0].code.tests == \
        json.loads((shared_data / "mbpp_original.jsonl").read_text().splitlines()[0])["test_list"]
    counts, output = prepare(tmp_path / "he", [shared_data / "humanevalplus_mini.jsonl"], domain="code")
    problems = load_dataset(output)
    assert counts["train"] == 164 and problems[0].id == "HumanEval/0"
    assert problems[0].code.entry_point == "has_close_elements" and problems[0].code.plus_input
    # a prepared file is itself a valid input: preparing it again gives the same records
    counts, again = prepare(tmp_path / "again", [output / "train.jsonl"], domain="code")
    assert load_dataset(again) == problems and counts["read"] == 164


def test_cli_toy_dataset_and_bad_map(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.test_prepare_benchmarks import run_cli

    assert run_cli(["prepare", "--toy", "math", "--count", "50", "--eval-fraction", "0.2",
                    "--output", str(tmp_path / "toy")]) == 0
    train, held = load_dataset(tmp_path / "toy"), load_dataset(tmp_path / "toy", "eval")
    assert (len(train), len(held)) == (40, 10)
    assert all(p.demonstrations and p.demonstrations[0].correct for p in train)  # filled by the toy demonstrator
    manifest = json.loads((tmp_path / "toy" / "manifest.json").read_text())
    assert manifest["counts"]["demonstrations_filled"] == 40
    assert manifest["command"] == f"prefixrft prepare --output {tmp_path / 'toy'} --toy math --count 50 " \
                                  "--eval-fraction 0.2"
    capsys.readouterr()
    path = write_jsonl(tmp_path / "in.jsonl", ROWS)
    assert run_cli(["prepare", "--input", str(path), "--map", "problem=nope", "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("prefixrft: error: --map problem=nope: no column 'nope'") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
