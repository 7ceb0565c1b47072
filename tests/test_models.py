"""The toy base: a real model folder whose tokenizer gives the same ids after a reload."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from prefixrft_cli.errors import UserError
from prefixrft_cli.models import TOY_BASE, load_policy, resolve_model_path
from prefixrft_cli.prompts import encode_demonstration, encode_prompt, prompt_text
from prefixrft_cli.records import Problem
from prefixrft_cli.toy_task import generate_problems

TEXTS = ["Compute 3 - 27 * 7 + 12.\n", "27 * 7 = 189. 3 - 189 = -186. The answer is \\boxed{-174}.",
         "def count_4(xs):\n    return sum(1 for v in xs if v > 4)\n", "  odd   spacing\t\nand ümlauts 12345"]


def test_toy_base_is_a_llama_folder_of_a_few_million_parameters():
    model, tokenizer = load_policy("toy")
    assert model.config.model_type == "llama"
    assert 1_000_000 <= sum(p.numel() for p in model.parameters()) <= 5_000_000
    assert tokenizer.eos_token_id is not None and tokenizer.pad_token_id is not None


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizer_ids_survive_the_model_folder_round_trip(text: str):
    raw = Tokenizer.from_file(str(TOY_BASE / "tokenizer.json"))
    _, tokenizer = load_policy("toy")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == raw.encode(text, add_special_tokens=False).ids
    assert tokenizer.decode(ids) == text


def test_digits_are_single_tokens():
    _, tokenizer = load_policy("toy")
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("12345", add_special_tokens=False)["input_ids"])
    assert pieces == ["1", "2", "3", "4", "5"]


def test_saved_and_reloaded_folder_gives_the_same_ids(tmp_path: Path):
    model, tokenizer = load_policy("toy")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    _, again = load_policy(str(tmp_path))
    for text in TEXTS:
        assert again(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_prompt_templates():
    _, tokenizer = load_policy("toy")
    problem = generate_problems("math", 1, seed=0)[0]
    assert prompt_text(problem, tokenizer, "plain") == problem.problem + "\n"
    chat = prompt_text(problem, tokenizer, "chat")
    assert chat == f"<|im_start|>user\n{problem.problem}<|im_end|>\n<|im_start|>assistant\n"
    assert prompt_text(problem, tokenizer, "luffy").startswith("<|im_start|>system\nYour task is to follow")
    assert encode_prompt(problem, tokenizer, "chat") == tokenizer(chat, add_special_tokens=False)["input_ids"]
    demo = encode_demonstration("1 + 2 = 3.", tokenizer)
    assert demo[-1] == tokenizer.eos_token_id and tokenizer.decode(demo[:-1]) == "1 + 2 = 3."


def test_template_errors_are_user_errors():
    _, tokenizer = load_policy("toy")
    with pytest.raises(UserError, match="unknown prompt template 'fancy'; valid: plain, chat, luffy"):
        prompt_text(Problem("p", "x"), tokenizer, "fancy")


def test_missing_local_model_folder_is_a_one_line_error(tmp_path: Path):
    with pytest.raises(UserError, match="no such model folder"):
        resolve_model_path(str(tmp_path / "nope"))
    assert resolve_model_path("Qwen/Qwen2.5-Math-7B") == "Qwen/Qwen2.5-Math-7B"
    assert resolve_model_path("toy") == str(TOY_BASE)
