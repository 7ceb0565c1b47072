"""The hf sampler: greedy equals a step-by-step argmax, budgets and eos are honoured, seeds repeat."""

from __future__ import annotations

import torch

from prefixrft_cli.models import load_policy
from prefixrft_cli.rollout.engine import HFSampler
from prefixrft_cli.rollout.sampler import make_sampler


def _argmax_reference(model, prompt: list[int], steps: int, eos: int) -> list[int]:
    """The obvious slow decoder: one full forward per new token, no cache, no padding."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            ids.append(token)
            if token == eos:
                break
    return ids[len(prompt):]


def test_greedy_batch_with_left_padding_matches_the_reference():
    model, tokenizer = load_policy("toy")
    sampler = make_sampler("hf", model, tokenizer)
    prompts = [tokenizer(t)["input_ids"] for t in ("Compute 5 + 7.\n", "Compute 12 - 3 * 4 + 30.\n",
                                                   "Write a Python function add_3(x) that returns x plus 3.\n")]
    out = sampler.generate(prompts, 24, temperature=0.0)
    for prompt, tokens in zip(prompts, out.tokens):
        assert tokens == _argmax_reference(model, prompt, 24, tokenizer.eos_token_id)


def test_budgets_eos_truncation_and_logprobs():
    model, tokenizer = load_policy("toy")
    sampler = make_sampler("hf", model, tokenizer)
    prompts = [tokenizer("Compute 5 + 7.\n")["input_ids"]] * 3
    out = sampler.generate(prompts, [1, 3, 200], temperature=1.0, seed=3)
    assert [len(t) <= b for t, b in zip(out.tokens, [1, 3, 200])] == [True] * 3
    assert len(out.tokens[0]) == 1 and out.truncated[0] == (out.tokens[0][-1] != tokenizer.eos_token_id)
    assert out.tokens[2][-1] == tokenizer.eos_token_id and not out.truncated[2]
    assert all(len(lp) == len(t) and all(x <= 0 for x in lp) for lp, t in zip(out.logprobs, out.tokens))


def test_same_seed_same_samples_and_top_p():
    model, tokenizer = load_policy("toy")
    sampler = make_sampler("hf", model, tokenizer)
    prompts = [tokenizer("Compute 5 + 7.\n")["input_ids"]] * 8
    first = sampler.generate(prompts, 30, temperature=1.0, seed=11)
    assert sampler.generate(prompts, 30, temperature=1.0, seed=11).tokens == first.tokens
    assert sampler.generate(prompts, 30, temperature=1.0, seed=12).tokens != first.tokens
    # top_p close to 0 keeps only the most likely token: the same as greedy
    greedy = sampler.generate(prompts[:1], 30, temperature=0.0).tokens
    assert sampler.generate(prompts[:1], 30, temperature=1.0, top_p=1e-6, seed=5).tokens == greedy


def test_per_row_seeds_make_a_row_independent_of_its_batch():
    model, tokenizer = load_policy("toy")
    sampler = HFSampler(model, tokenizer, batch_size=3)
    prompts = [tokenizer.encode(f"Compute {a} + {b}.") for a, b in ((1, 2), (30, 4), (5, 66), (7, 8), (9, 10))]
    seeds = [101, 202, 303, 404, 505]
    whole = sampler.generate(prompts, 24, temperature=1.0, seeds=seeds).tokens     # batches [0..2], [3, 4]
    alone = [sampler.generate([p], 24, temperature=1.0, seeds=[s]).tokens[0] for p, s in zip(prompts, seeds)]
    shuffled = sampler.generate(prompts[::-1], 24, temperature=1.0, seeds=seeds[::-1]).tokens[::-1]
    assert whole == alone == shuffled
    assert sampler.generate(prompts[:1], 24, temperature=1.0, seeds=[102]).tokens[0] != whole[0]


def test_a_rows_tokens_depend_on_its_own_seed_only():
    # Row "12 - 3" with seed 7 must sample the same tokens alone, behind other rows, or in another
    # position: what a rank samples cannot depend on which prompts share its batch.
    model, tokenizer = load_policy("toy")
    sampler = make_sampler("hf", model, tokenizer)
    a, b, c = (tokenizer(t)["input_ids"] for t in ("Compute 5 + 7.\n", "Compute 12 - 3 * 4 + 30.\n", "Compute 1.\n"))
    together = sampler.generate([a, b, c], 30, temperature=1.0, seeds=[5, 7, 9])
    alone = sampler.generate([b], 30, temperature=1.0, seeds=[7])
    moved = sampler.generate([c, b], 30, temperature=1.0, seeds=[9, 7])
    assert together.tokens[1] == alone.tokens[0] == moved.tokens[1]
    assert together.tokens[2] == moved.tokens[0]
    assert sampler.generate([b], 30, temperature=1.0, seeds=[8]).tokens != alone.tokens  # another seed, another draw


class _FakeLockstep:
    """Another rank with more prompts and a longer budget: this rank must keep pace."""

    def __init__(self, prompts: int, steps: int):
        self.prompts, self.steps, self.calls = prompts, steps, []

    def max_int(self, value: int) -> int:
        self.calls.append(value)
        return max(value, self.prompts if len(self.calls) == 1 else self.steps)

    def all_true(self, flag: bool) -> bool:
        return False   # the other rank is never done first


def test_lockstep_pads_batches_and_decodes_as_long_as_the_slowest_rank():
    model, tokenizer = load_policy("toy")
    prompts = [tokenizer("Compute 5 + 7.\n")["input_ids"]] * 2
    plain = make_sampler("hf", model, tokenizer).generate(prompts, 12, temperature=1.0, seeds=[1, 2])
    lockstep = _FakeLockstep(prompts=5, steps=20)
    sampler = make_sampler("hf", model, tokenizer)
    sampler.lockstep = lockstep
    out = sampler.generate(prompts, 12, temperature=1.0, seeds=[1, 2])
    assert out.tokens == plain.tokens and len(out.tokens) == 2   # padding rows are dropped, real rows unchanged
    assert lockstep.calls[0] == 2 and lockstep.calls[1] == 12      # agreed on rows, then on decode steps
