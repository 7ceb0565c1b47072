"""No traceback for any input a user can give: config values, YAML files, data files, output paths.

The fuzz tests (hypothesis) feed the readers and the config loader random bytes, every
truncation of a valid file, wrong types and huge values: each call must either succeed or
raise a one-line UserError; anything else fails the test. Each runs in about a second.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefixrft_cli.cli.app import main
from prefixrft_cli.config import RANGES, Config, load_config
from prefixrft_cli.data.readers import iter_rows
from prefixrft_cli.errors import UserError
from prefixrft_cli.jsonio import atomic_write_text, read_json, read_jsonl

# Derandomised (the same examples on every run, so CI is steady) and no example database on disk.
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def numeric_fields(node: type = Config, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(node):
        hint = typing.get_type_hints(node)[f.name]
        if dataclasses.is_dataclass(hint):
            out += numeric_fields(hint, f"{prefix}{f.name}.")
        elif hint in (int, float) or typing.get_origin(hint) is tuple:
            out.append(prefix + f.name)
    return out


def test_every_numeric_field_has_its_range_and_nothing_else_does() -> None:
    assert set(numeric_fields()) == set(RANGES)
    defaults = load_config()   # every default is inside its own range
    assert defaults == Config()


@pytest.mark.parametrize("override, message", [
    ("rollout.temperature=-1", "rollout.temperature=-1.0 is out of range; valid: >= 0.0"),
    ("train.micro_batch_responses=-1", "train.micro_batch_responses=-1 is out of range; valid: >= 0"),
    ("train.max_wall_minutes=-1", "train.max_wall_minutes=-1.0 is out of range"),
    ("eval.max_response_tokens=0", "eval.max_response_tokens=0 is out of range; valid: >= 1"),
    ("data.eval_problems=-1", "data.eval_problems=-1 is out of range"),
    ("train.checkpoint_every=-1", "train.checkpoint_every=-1 is out of range"),
    ("optim.betas=[0.9, 1.5]", "optim.betas=(0.9, 1.5) is out of range; valid: [0.0, 1.0)"),
    ("seed=-3", "seed=-3 is out of range"),
    ("train.steps=1e400", "train.steps expects an integer, got inf"),
    ("optim.lr=.inf", "optim.lr expects a finite number"),
    ("train.steps=123456789012345678901234567890", "train.steps=123456789012345678901234567890 is too large"),
    ("trian.steps=3", "unknown config section 'trian' in 'trian.steps' (did you mean 'train.steps'?)"),
    ("train.steps=[", "override 'train.steps=[': malformed YAML"),
])
def test_bad_values_are_one_line_naming_the_override(override: str, message: str) -> None:
    with pytest.raises(UserError) as err:
        load_config(None, [override])
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"override {override!r}")


def test_yaml_1_2_numbers_bom_and_lines(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_bytes("\ufeffoptim:\n  lr: 3e-6\n  weight_decay: 1E-2\ntrain:\n  steps: 1e3\n".encode())
    cfg = load_config(path, ["optim.grad_clip_norm=5e-1"])
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.train.steps, cfg.optim.grad_clip_norm) == (3e-6, 0.01, 1000, 0.5)
    assert load_config(None, ["optim.lr=1e-5"]).optim.lr == 1e-5


@pytest.mark.parametrize("text, message", [
    ("train:\n  steps: 2\n  steps: 3\n", "bad.yaml:3: key 'steps' given twice (first on line 2)"),
    ("trian:\n  steps: 3\n", "bad.yaml:1: unknown config section 'trian' (did you mean 'train'?)"),
    ("rollout:\n  top_p: 0\n", "bad.yaml:2: rollout.top_p=0.0 is out of range; valid: (0.0, 1.0]"),
    ("train:\n  steps: many\n", "bad.yaml:2: train.steps expects an integer, got 'many'"),
    ("- 1\n- 2\n", "bad.yaml: expected a mapping of config keys"),
    ("? [a]\n: 1\n", "bad.yaml:1: malformed YAML"),
])
def test_yaml_errors_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_config(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def _only_user_errors(call) -> None:
    try:
        call()
    except UserError as err:
        assert "\n" not in str(err), str(err)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_config_file_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    _only_user_errors(lambda: load_config(path))


KEYS = numeric_fields() + ["algo", "domain", "model.dtype", "selection.mode", "data.train", "model.trust_remote_code",
                           "train", "optim.betas", "nope.x", "train.nope"]
VALUES = st.one_of(st.integers(min_value=-2**70, max_value=2**70), st.floats(allow_nan=True),
                   st.text(max_size=12), st.booleans(), st.none(),
                   st.lists(st.one_of(st.integers(), st.floats()), max_size=3),
                   st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=4))
def test_fuzz_config_values_of_every_type(tmp_path: Path, items: list) -> None:
    overrides = [f"{key}={json.dumps(value)}" for key, value in items]
    _only_user_errors(lambda: load_config(None, overrides))
    nested: dict = {}
    for key, value in items:
        *sections, leaf = key.split(".")
        node = nested
        for section in sections:
            node = node.setdefault(section, {}) if isinstance(node.get(section, {}), dict) else {}
        node[leaf] = value
    path = tmp_path / "values.yaml"
    path.write_text(json.dumps(nested))   # JSON is YAML
    _only_user_errors(lambda: load_config(path))


VALID_JSONL = b'{"id": "a-0", "problem": "What is 1+1?", "answer": "2"}\n{"id": "a-1", "problem": "2+2?", "answer": "4"}\n'


def _read_all(path: Path) -> None:
    list(read_jsonl(path))


@pytest.mark.parametrize("suffix, payload", [(".jsonl", VALID_JSONL), (".jsonl.gz", gzip.compress(VALID_JSONL))])
def test_truncation_at_every_position(tmp_path: Path, suffix: str, payload: bytes) -> None:
    path = tmp_path / f"cut{suffix}"
    for end in range(len(payload) + 1):
        path.write_bytes(payload[:end])
        _only_user_errors(lambda: _read_all(path))
        _only_user_errors(lambda: list(iter_rows(path)))


@FUZZ
@given(st.binary(max_size=400), st.sampled_from([".jsonl", ".jsonl.gz", ".json", ".parquet", ".arrow"]))
def test_fuzz_data_readers_with_random_bytes(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    _only_user_errors(lambda: list(iter_rows(path)))
    _only_user_errors(lambda: read_json(path))


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_gzip_members_with_random_tails(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "tail.jsonl.gz"
    path.write_bytes(gzip.compress(VALID_JSONL)[:20] + tail)
    _only_user_errors(lambda: _read_all(path))


def test_empty_and_non_utf8_files_name_the_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert list(read_jsonl(empty)) == []
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(VALID_JSONL + '{"problem": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(UserError, match=r"latin.jsonl:3: not UTF-8 text"):
        _read_all(latin)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + VALID_JSONL)
    assert [n for n, _ in read_jsonl(bom)] == [1, 2]


def test_output_paths_that_cannot_be_written_leave_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(UserError, match="afile exists and is not a folder"):
        atomic_write_text(blocker / "out.json", "{}")
    with pytest.raises(UserError, match="is a folder; give a file name"):
        atomic_write_text(tmp_path, "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("args, message", [
    (["verify", "--domain", "math", "{good}", "--output", "{good}"], "is the input file"),
    (["verify", "--domain", "math", "{latin}", "--output", "{out}"], "latin.jsonl:1: not UTF-8 text"),
    (["verify", "--domain", "math", "{notgz}", "--output", "{out}"], "not.jsonl.gz: not a complete gzip file"),
    (["verify", "--domain", "math", "{good}", "--output", "{blocker}/x.jsonl"], "exists and is not a folder"),
    (["passk", "{latin}"], "not UTF-8 text"),
    (["prepare", "--input", "{latin}", "--output", "{out}"], "not UTF-8 text"),
    (["inspect-entropy", "--data", "{latin}"], "not UTF-8 text"),
    (["eval", "--benchmarks", "toy-math", "--model", "toy", "--output-dir", "{blocker}"], "exists and is not a folder"),
    (["train", "--run-dir", "{blocker}", "--set", "train.steps=1"], "exists and is not a folder"),
    (["train", "--config", "{latin}"], "not UTF-8 text"),
])
def test_commands_answer_bad_files_in_one_line(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    files = {"good": tmp_path / "good.jsonl", "latin": tmp_path / "latin.jsonl", "notgz": tmp_path / "not.jsonl.gz",
             "blocker": tmp_path / "afile", "out": tmp_path / "out" / "o.jsonl"}
    files["good"].write_text('{"completion": "2", "answer": "2"}\n')
    files["latin"].write_bytes('{"completion": "caf\xe9", "answer": "2"}\n'.encode("latin-1"))
    files["notgz"].write_bytes(b"plain text")
    files["blocker"].write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(**{k: str(v) for k, v in files.items()}) for a in args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert files["good"].read_text() == '{"completion": "2", "answer": "2"}\n'


def test_prepare_says_which_filter_took_every_problem(tmp_path: Path, capsys) -> None:
    source = tmp_path / "one.jsonl"
    source.write_text('{"id": "a", "problem": "What is 1+1?", "answer": "2"}\n')
    for flag, reason in ((["--max-prompt-tokens", "1"], "1 read, 1 prompts over --max-prompt-tokens 1"),
                         (["--require-demonstration"], "1 read, 1 dropped by --require-demonstration")):
        with pytest.raises(SystemExit):
            main(["prepare", "--input", str(source), "--output", str(tmp_path / "out"), *flag])
        assert f"no training problems left: {reason}" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()


def test_broken_model_folders_say_what_is_wrong(tmp_path: Path) -> None:
    import shutil

    from prefixrft_cli.models import TOY_BASE, load_policy

    cases = {"config": ("config.json", b"{bad", r"config.json:1: malformed JSON"),
             "tokenizer": (None, None, r"the folder has no tokenizer files \(one of tokenizer.json"),
             "weights": ("model.safetensors", b"\x00" * 100, r"cannot load the model \(")}
    for name, (file, content, message) in cases.items():
        folder = tmp_path / name
        shutil.copytree(TOY_BASE, folder)
        if file is None:
            for tokenizer_file in ("tokenizer.json", "tokenizer_config.json"):
                (folder / tokenizer_file).unlink()
        else:
            (folder / file).write_bytes(content)
        with pytest.raises(UserError, match=message):
            load_policy(str(folder))
