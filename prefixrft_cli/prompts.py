"""Prompt templates, the same at train and eval time: plain, chat, luffy.

- plain: the problem text and a newline, no special tokens beyond the tokenizer's own.
- chat:  the tokenizer's chat template, one user turn, generation prompt added.
- luffy: the chat template with LUFFY's system prompt (assets/luffy_system_prompt.txt,
         from LUFFY's released code, MIT) and the problem as the user turn.
Demonstrations are encoded on their own and end with eos, so `prompt ⊕ demonstration`
is exactly what the model would have produced.
"""

from __future__ import annotations

from functools import lru_cache

from prefixrft_cli.errors import UserError
from prefixrft_cli.models import ASSETS
from prefixrft_cli.records import Problem

TEMPLATES = ("plain", "chat", "luffy")


@lru_cache(maxsize=1)
def luffy_system_prompt() -> str:
    return (ASSETS / "luffy_system_prompt.txt").read_text(encoding="utf-8")


def prompt_text(problem: Problem, tokenizer, template: str) -> str:
    """The prompt as text (for logs); `encode_prompt` gives the ids the model sees."""
    if template == "plain":
        return problem.problem + "\n"
    if template not in TEMPLATES:
        raise UserError(f"unknown prompt template {template!r}; valid: {', '.join(TEMPLATES)}")
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(f"prompt template {template!r} needs a tokenizer with a chat template; "
                        "this one has none (use data.prompt_template=plain)")
    messages = [{"role": "user", "content": problem.problem}]
    if template == "luffy":
        messages.insert(0, {"role": "system", "content": luffy_system_prompt()})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompt(problem: Problem, tokenizer, template: str) -> list[int]:
    """Prompt token ids for `problem` under `template`."""
    text = prompt_text(problem, tokenizer, template)
    # the chat template already holds any bos; plain text gets the tokenizer's own specials
    return tokenizer(text, add_special_tokens=(template == "plain"))["input_ids"]


def encode_demonstration(text: str, tokenizer) -> list[int]:
    """Demonstration ids as a response: no leading specials, eos at the end."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
