"""The shared-prompt training forward (train/packing.py) against the plain full-row forward.

A bucket's rows that share a prompt run it once: the prompts' forward fills a cache whose keys
and values are indexed out to the rows, and the responses run on top of it. These tests check
that it gives the full-row forward's log-probs, entropies and parameter gradients (to float
rounding), with prompts left-padded to different lengths, several groups, a row alone with its
prompt (a hybrid row), an empty and a 1-token response; that activation checkpointing falls back
to full rows; and that the bucket plan keeps a group's rows together.
"""

from __future__ import annotations

import pytest
import torch
from transformers.models.llama.modeling_llama import LlamaRMSNorm
from test_train_step import PAD, forward, tiny_model, weights  # noqa: F401

from prefixrft_cli.train import packing
from prefixrft_cli.train.packing import Sequences, pack, response_logps

# Three groups and a lone row: prompts of 3, 5 and 1 tokens (left-padded to P = 5), a hybrid row
# with its own prompt, responses of 0 to 6 tokens (L = 6).
PROMPTS = [[2, 3, 4]] * 3 + [[5, 6, 7, 8, 9]] * 2 + [[10]] * 2 + [[11, 12]]
RESPONSES = [[20, 21, 22, 23], [24], [25, 26, 27, 28, 29, 1], [30, 31], [], [40, 41, 42], [43, 44], [50, 51, 52, 1]]
PREFIX_LENS = [0, 0, 0, 0, 0, 0, 0, 2]


def full_rows(monkeypatch) -> None:
    """Make response_logps run the plain full-row forward (as where the forward takes no cache)."""
    monkeypatch.setattr(packing, "_cache_options", lambda model: None)


def logps_and_grads(model, batch, weights_of_tokens):
    logp, entropy = response_logps(model, batch, batch.response_mask.bool())      # [n, L] x 2
    model.zero_grad()
    (logp * weights_of_tokens * batch.response_mask).sum().backward()
    return logp.detach(), entropy, [p.grad.clone() for p in model.parameters()]


def test_pack_keeps_each_distinct_prompt_once():
    batch = pack(PROMPTS, RESPONSES, PREFIX_LENS, PAD)
    assert batch.prompt_ids.tolist() == [[0, 0, 2, 3, 4], [5, 6, 7, 8, 9], [0, 0, 0, 0, 10], [0, 0, 0, 11, 12]]
    assert batch.prompt_of.tolist() == [0, 0, 0, 1, 1, 2, 2, 3]
    assert batch.input_ids[4].tolist() == [5, 6, 7, 8, 9] + [PAD] * 6               # the empty response
    # response token k of row i sits at position (its prompt length) + k
    assert batch.response_positions()[0, :4].tolist() == batch.position_ids[0, 5:9].tolist() == [3, 4, 5, 6]
    assert batch.response_positions()[5, :3].tolist() == [1, 2, 3]


def test_shared_prompt_forward_equals_the_full_row_forward(weights, monkeypatch):
    batch = pack(PROMPTS, RESPONSES, PREFIX_LENS, PAD)
    token_weights = torch.randn(batch.response_ids.shape, generator=torch.Generator().manual_seed(0))  # [n, L]
    shared = logps_and_grads(tiny_model(weights), batch, token_weights)
    full_rows(monkeypatch)
    plain = logps_and_grads(tiny_model(weights), batch, token_weights)
    mask = batch.response_mask.bool()
    torch.testing.assert_close(shared[0][mask], plain[0][mask], atol=1e-5, rtol=0)
    torch.testing.assert_close(shared[1][mask], plain[1][mask], atol=1e-5, rtol=0)
    for got, expected in zip(shared[2], plain[2]):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert max(float(g.abs().max()) for g in plain[2]) > 1e-2      # the gradients compared are not ~0
    # and both are the unpadded forward of each sequence alone
    with torch.no_grad():
        model = tiny_model(weights)
        for i, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
            if response:
                torch.testing.assert_close(shared[0][i, :len(response)], forward(model, prompt, response)[0],
                                           atol=1e-5, rtol=0)


def rms_norm_in_its_own_dtype(self, hidden):
    """LlamaRMSNorm without its float32 cast, so that a float64 model computes in float64 throughout."""
    return self.weight * (hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


def test_in_float64_the_two_forwards_are_the_same_math(weights, monkeypatch):
    # the logits of both forwards and the gradients through them, in float64: equal to ~1e-15,
    # so the float32 differences above (and in the bucketed-update tests) are rounding. (Llama's
    # RMSNorm computes in float32 whatever the model's dtype; in float64 it would round the
    # gradient a group's rows send to their one prompt differently from n separate rows.)
    monkeypatch.setattr(LlamaRMSNorm, "forward", rms_norm_in_its_own_dtype)
    batch = pack(PROMPTS, RESPONSES, PREFIX_LENS, PAD)
    mask = batch.response_mask.bool()
    token_weights = torch.randn((*batch.response_ids.shape, 64), generator=torch.Generator().manual_seed(0),
                                dtype=torch.float64)                                  # [n, L, V]
    results = []
    for logits_of in (lambda m: packing._shared_prompt_logits(m, batch, packing._cache_options(m)),
                      lambda m: packing._full_row_logits(m, batch)):
        model = tiny_model(weights).double()
        logits = logits_of(model)                                                     # [n, L, V]
        (logits * token_weights)[mask].sum().backward()
        results.append((logits.detach()[mask], [p.grad for p in model.parameters()]))
    (shared, shared_grads), (plain, plain_grads) = results
    torch.testing.assert_close(shared, plain, atol=1e-12, rtol=0)
    for got, expected in zip(shared_grads, plain_grads):
        torch.testing.assert_close(got, expected, atol=1e-11, rtol=0)


def test_the_shared_forward_runs_each_distinct_prompt_once(weights):
    model, widths = tiny_model(weights), []
    model.model.embed_tokens.register_forward_hook(lambda module, args, out: widths.append(tuple(args[0].shape)))
    with torch.no_grad():
        response_logps(model, pack(PROMPTS, RESPONSES, PREFIX_LENS, PAD))
        response_logps(model, pack(PROMPTS[-2:], RESPONSES[-2:], PREFIX_LENS[-2:], PAD))   # nothing shared
    assert widths == [(4, 5), (8, 6), (2, 6)]   # U = 4 prompts × P, then n = 8 responses × L; full rows [2, P+L]


def test_activation_checkpointing_takes_the_full_row_forward(weights):
    # transformers turns the cache off under checkpointing: the rows run whole, with the same result.
    batch = pack(PROMPTS, RESPONSES, PREFIX_LENS, PAD)
    token_weights = torch.ones(batch.response_ids.shape)
    model = tiny_model(weights)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert packing._cache_options(model) is None
    with torch.no_grad():
        assert packing._cache_options(model) is not None   # no backward to replay: the cache is kept
    checkpointed = logps_and_grads(model, batch, token_weights)
    shared = logps_and_grads(tiny_model(weights), batch, token_weights)
    mask = batch.response_mask.bool()
    torch.testing.assert_close(checkpointed[0][mask], shared[0][mask], atol=1e-5, rtol=0)
    for got, expected in zip(checkpointed[2], shared[2]):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("last, expected, distinct", [
    # groups by their longest response: b (4 tokens), a (5), c (6); a group's rows by length
    (None, [[1, 4, 7], [0, 3, 6], [5, 8, 2]], [1, 1, 1]),
    # row 2 after all the others: c's other two rows are a group of longest response 1, first
    ({2}, [[5, 8, 1], [4, 7, 0], [3, 6, 2]], [2, 2, 2]),
])
def test_buckets_keep_the_rows_of_a_prompt_together(last, expected, distinct):
    # prompts a, b, c interleaved, 3 rows each; responses of a: 1, 4, 5 tokens, b: 2, 3, 4, c: 6, 1, 1
    prompts = [[2], [3, 3], [4, 4, 4]] * 3
    seqs = Sequences(prompts, [[7] * n for n in (1, 2, 6, 4, 3, 1, 5, 4, 1)], [0] * 9, PAD)
    buckets = seqs.buckets(list(range(9)), 3, torch.device("cpu"), last)
    assert [b.rows.tolist() for b in buckets] == expected
    assert [b.tokens.prompt_ids.shape[0] for b in buckets] == distinct
