"""The sampler contract every rollout engine meets: token ids in, token ids and log-probs out.

`hf` (rollout/engine.py) and `vllm` (rollout/vllm_engine.py) both import this module and
not each other; `make_sampler` chooses one by `rollout.engine`, once, importing it lazily.

Seeding: `generate(..., seeds=[s_0, s_1, ...])` gives row i its own random stream, seeded by
s_i alone, so a row's tokens do not depend on which other rows share its batch, its rank or
its position. Without `seeds`, row i gets `row_seed(seed, i)`. Training derives s_i with
`row_seed(step seed, global rollout index)`, so a run samples the same tokens however many
processes it is split over; an evaluation can use `row_seed(seed, problem, sample index)`.
Test: tests/test_engine.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from prefixrft_cli.errors import UserError, unknown_choice

ENGINES = ("hf", "vllm")


@dataclass
class Generation:
    """What a sampler returns, one entry per prompt, in input order."""

    tokens: list[list[int]]      # completion ids (no prompt), ending with eos when the model stopped
    logprobs: list[list[float]]  # log-prob of each completion id under the sampling distribution
    truncated: list[bool]        # True when the budget ran out before eos


class Sampler(Protocol):
    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int | Sequence[int],
                 temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
                 seeds: Sequence[int] | None = None) -> Generation:
        """Sample one completion per prompt (temperature 0 = greedy); row i from its own seed seeds[i]."""
        ...

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Make the engine sample from `model`'s current weights."""
        ...


class Lockstep(Protocol):
    """What generation on a sharded policy needs from the training backend (train/backend.py)."""

    def max_int(self, value: int) -> int:
        """The largest `value` over all ranks."""
        ...

    def all_true(self, flag: bool) -> bool:
        """Whether `flag` holds on every rank."""
        ...


def row_seed(seed: int, *parts: int | str) -> int:
    """A 63-bit seed fixed by `seed` and the parts (e.g. step, prompt index, rollout index), the same everywhere."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def make_sampler(engine: str, model: torch.nn.Module, tokenizer, batch_size: int = 256,
                 gpu_memory_utilization: float = 0.5, max_model_len: int | None = None,
                 dtype: str | None = None) -> Sampler:
    """The sampler named `engine` for this policy (the last three arguments are vLLM's)."""
    if engine == "hf":
        from prefixrft_cli.rollout.engine import HFSampler

        return HFSampler(model, tokenizer, batch_size)
    if engine == "vllm":
        from prefixrft_cli.rollout.vllm_engine import VLLMSampler

        return VLLMSampler(model, tokenizer, gpu_memory_utilization, max_model_len, dtype)
    raise unknown_choice("rollout engine", engine, ENGINES)


def eos_ids(model: torch.nn.Module, tokenizer) -> list[int]:
    """Every id that ends a response: the tokenizer's eos and the generation config's."""
    ids = {tokenizer.eos_token_id}
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(config_eos) if isinstance(config_eos, list) else {config_eos}
    ids.discard(None)
    if not ids:
        raise UserError("the tokenizer has no eos token: responses could never end")
    return sorted(ids)

