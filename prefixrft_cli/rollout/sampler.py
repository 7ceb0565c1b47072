"""The sampler contract every rollout engine meets: token ids in, token ids and log-probs out.

`hf` (rollout/engine.py) and `vllm` (rollout/vllm_engine.py) both import this module and
not each other; `make_sampler` chooses one by `rollout.engine`, once, importing it lazily.
Test: tests/test_engine.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from prefixrft_cli.errors import unknown_choice

ENGINES = ("hf", "vllm")


@dataclass
class Generation:
    """What a sampler returns, one entry per prompt, in input order."""

    tokens: list[list[int]]      # completion ids (no prompt), ending with eos when the model stopped
    logprobs: list[list[float]]  # log-prob of each completion id under the sampling distribution
    truncated: list[bool]        # True when the budget ran out before eos


class Sampler(Protocol):
    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int | Sequence[int],
                 temperature: float = 1.0, top_p: float = 1.0, seed: int = 0) -> Generation:
        """Sample one completion per prompt (temperature 0 = greedy)."""
        ...

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Make the engine sample from `model`'s current weights."""
        ...


def make_sampler(engine: str, model: torch.nn.Module, tokenizer, batch_size: int = 256) -> Sampler:
    """The sampler named `engine` for this policy."""
    if engine == "hf":
        from prefixrft_cli.rollout.engine import HFSampler

        return HFSampler(model, tokenizer, batch_size)
    if engine == "vllm":
        from prefixrft_cli.rollout.vllm_engine import VLLMSampler

        return VLLMSampler(model, tokenizer)
    raise unknown_choice("rollout engine", engine, ENGINES)
