"""The hf sampler: the same tokens as a slow one-row reference, budgets and eos, seeds, lockstep, batching.

The reference (`_reference`) is the algorithm the engine replaced, run the slow way: one row
at a time, no cache, no padding, a full forward per generated token, the same inverse-CDF draw
with the row's own uniform numbers. The engine must sample the same tokens with log-probs
within 1e-5. The one case where a token may differ: the logits of a batched, cached forward
differ from the reference's by float rounding (~1e-6), so a draw whose uniform number sits
within that distance of a cdf step (or, greedy, two top logits that close; or top-p mass at
the nucleus edge) can land on the neighbouring token. `_knife_edge` measures that distance;
the comparison allows a difference only there, and a test shows such a draw flipping.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import transformers

from prefixrft_cli.models import load_policy
from prefixrft_cli.rollout.engine import (COMPACT_SHARE, HFSampler, _sample, length_groups, forward_options,
                                          new_cache, row_uniforms, sampling_logprobs)
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


def _reference(model, prompt, budget, temperature, top_p, seed, eos_ids):
    """Tokens, log-probs and each step's (logits, uniform) of one row, decoded the slow way."""
    uniforms = row_uniforms([seed], budget)[0]
    ids, tokens, logps, draws = list(prompt), [], [], []
    with torch.no_grad():
        for t in range(budget):
            logits = model(input_ids=torch.tensor([ids])).logits[:, -1].float()   # [1, V]
            token, logp = _sample(logits, temperature, top_p, uniforms[t:t + 1])
            tokens.append(int(token))
            logps.append(float(logp))
            draws.append((logits, uniforms[t:t + 1]))
            ids.append(int(token))
            if int(token) in eos_ids:
                break
    return tokens, logps, draws


def _knife_edge(logits, temperature, top_p, uniform) -> float:
    """How far this draw is from changing: the distance of u·Z to the nearest cdf step (greedy: the top-2 logit gap)."""
    if temperature <= 0:
        top = logits[0].topk(2).values
        return float(top[0] - top[1])
    logp = sampling_logprobs(logits, temperature, top_p)[0]
    cdf = logp.double().exp().cumsum(-1)
    distance = float((cdf - uniform.double() * cdf[-1]).abs().min())
    if top_p < 1.0:   # a token at the nucleus edge: its mass-before is within rounding of top_p
        probs = torch.log_softmax(logits[0] / temperature, -1).exp().sort(descending=True).values
        distance = min(distance, float(((probs.cumsum(-1) - probs) - top_p).abs().min()))
    return distance


def _mixed_rows(tokenizer):
    """Short on-policy prompts and long 'hybrid' contexts (prompt + part of a worked answer), varied budgets."""
    short = [tokenizer.encode(t) for t in ("Compute 5 + 7.\n", "Compute 1.\n", "Compute 12 - 3 * 4 + 30.\n")]
    long = [tokenizer.encode(p + a) for p, a in (("Compute 8 * 9 + 4.\n", "8 * 9 = 72, 72 + 4 = "),
                                                ("Compute 30 - 4 * 2.\n", "4 * 2 = 8, then 30 - 8 = 2"),
                                                ("Write a Python function add_3(x) that returns x plus 3.\n",
                                                 "def add_3(x):\n    return"))]
    prompts = [short[0], long[0], short[1], short[2], long[1], short[0], long[2], short[1]]
    budgets = [40, 12, 1, 40, 6, 3, 20, 40]
    return prompts, budgets, [11 * i + 5 for i in range(len(prompts))]


@pytest.mark.parametrize("temperature, top_p, batch_size, dtype, tolerance", [
    (1.0, 1.0, 256, torch.float64, 1e-5), (0.0, 1.0, 256, torch.float64, 1e-5), (0.8, 0.7, 3, torch.float64, 1e-5),
    # float32: a cached forward and a full one round differently, by up to ~1.4e-5 in a log-prob on
    # these rows (the engine this one replaced differed from the reference by the same amounts)
    (1.0, 1.0, 256, torch.float32, 5e-5)])
def test_the_engine_samples_what_the_one_row_reference_samples(temperature, top_p, batch_size, dtype, tolerance):
    model, tokenizer = load_policy("toy")
    model.to(dtype)
    sampler = HFSampler(model, tokenizer, batch_size=batch_size)
    prompts, budgets, seeds = _mixed_rows(tokenizer)
    out = sampler.generate(prompts, budgets, temperature=temperature, top_p=top_p, seeds=seeds)
    ended_early = 0
    for prompt, budget, seed, tokens, logps, truncated in zip(prompts, budgets, seeds, out.tokens, out.logprobs,
                                                              out.truncated):
        ref_tokens, ref_logps, draws = _reference(model, prompt, budget, temperature, top_p, seed, sampler.eos_ids)
        differ = next((t for t, (a, b) in enumerate(zip(tokens, ref_tokens)) if a != b), None)
        if differ is not None:   # allowed only where the draw is within float rounding of changing
            logits, uniform = draws[differ]
            assert _knife_edge(logits, temperature, top_p, uniform) < 1e-5
            tokens, ref_tokens, logps, ref_logps = tokens[:differ], ref_tokens[:differ], logps[:differ], ref_logps[:differ]
        else:
            assert len(tokens) == len(ref_tokens) <= budget
            assert truncated == (tokens[-1] not in sampler.eos_ids)
            ended_early += len(tokens) < budget
        assert logps == pytest.approx(ref_logps, abs=tolerance)
    assert ended_early >= 2   # the batch really had rows that stopped at eos before their budget


def test_a_draw_at_a_cdf_step_is_where_rounding_can_change_the_token():
    # Two tokens of probability 1/2 and u = 1/2: u·Z sits exactly on the first cdf step, so the
    # draw is the second token; raising the first logit by 1e-6 moves the step past u·Z and the
    # draw becomes the first token. This is the only way a batched forward's rounding can change
    # a sampled token, and _knife_edge reports it (distance 0 here, > 1e-3 for a plain draw).
    logits, nudged, u = torch.tensor([[0.0, 0.0]]), torch.tensor([[1e-6, 0.0]]), torch.tensor([0.5], dtype=torch.float64)
    assert int(_sample(logits, 1.0, 1.0, u)[0]) == 1 and int(_sample(nudged, 1.0, 1.0, u)[0]) == 0
    assert _knife_edge(logits, 1.0, 1.0, u) == 0.0
    assert _knife_edge(logits, 1.0, 1.0, torch.tensor([0.3], dtype=torch.float64)) > 1e-3


def test_length_groups_keep_short_rows_out_of_long_rows_padding():
    # 6 prompts of 10 tokens and 2 hybrid contexts of 60: one batch would be 8 x 60 = 480 slots
    # for 180 tokens (62% padding); the split puts the 60s apart. Equal lengths never split
    # unless the batch is full; input order comes back through the indices.
    lengths = [60, 10, 10, 10, 60, 10, 10, 10]
    assert length_groups(lengths, 256) == [[1, 2, 3, 5, 6, 7], [0, 4]]
    assert length_groups([10, 12, 11, 13], 256) == [[0, 2, 1, 3]]   # 52 slots, 46 tokens: 12% padding
    assert length_groups([10] * 5, 2) == [[0, 1], [2, 3], [4]]
    assert length_groups([], 4) == []


def test_finished_rows_leave_the_forward_and_the_cache_is_written_in_place():
    model, tokenizer = load_policy("toy")
    sampler = HFSampler(model, tokenizer)
    prompts = [tokenizer.encode(f"Compute 5 + {k}.") for k in range(8)]   # distinct, of one length
    assert len({len(p) for p in prompts}) == 1
    seen = []   # (rows in the forward, address of layer 0's key buffer) per forward

    def record(module, args, kwargs, output):
        cache = kwargs[forward_options(model).cache_keyword]
        seen.append((kwargs["input_ids"].shape[0], cache.layers[0].key_buffer.data_ptr()))

    handle = model.register_forward_hook(record, with_kwargs=True)
    try:
        out = sampler.generate(prompts, [1] * 7 + [30], temperature=0.0)
    finally:
        handle.remove()
    assert [len(t) for t in out.tokens[:7]] == [1] * 7 and len(out.tokens[7]) > 2
    assert 7 / 8 >= COMPACT_SHARE
    assert seen[0][0] == 8 and all(rows == 1 for rows, _ in seen[1:])   # 7 finished rows left after one forward
    assert len({address for _, address in seen[1:]}) == 1                # one buffer, written in place
    assert out.tokens[7] == _argmax_reference(model, prompts[7], 30, tokenizer.eos_token_id)


def test_a_shared_prompt_is_prefilled_once_and_its_rows_sample_as_alone():
    # A group's 4 rows share a prompt, next to one other prompt: the prefill forwards 2 rows,
    # and every row's tokens and log-probs are those it gets when generated alone.
    model, tokenizer = load_policy("toy")
    sampler = HFSampler(model, tokenizer)
    shared, other = tokenizer.encode("Compute 5 + 7."), tokenizer.encode("Compute 12 + 30.")
    prompts, seeds = [shared] * 4 + [other], [11, 12, 13, 14, 15]
    prefill_rows = []

    def record(module, args, kwargs, output):
        if kwargs["input_ids"].shape[1] > 1:
            prefill_rows.append(kwargs["input_ids"].shape[0])

    handle = model.register_forward_hook(record, with_kwargs=True)
    try:
        out = sampler.generate(prompts, 24, temperature=1.0, seeds=seeds)
    finally:
        handle.remove()
    assert sum(prefill_rows) == 2
    for prompt, seed, tokens, logprobs in zip(prompts, seeds, out.tokens, out.logprobs):
        alone = sampler.generate([prompt], 24, temperature=1.0, seeds=[seed])
        assert tokens == alone.tokens[0]
        assert torch.allclose(torch.tensor(logprobs), torch.tensor(alone.logprobs[0]), atol=1e-5)


def test_the_cache_goes_by_the_forwards_current_name():
    model, tokenizer = load_policy("toy")
    expected = "cache" if "cache" in __import__("inspect").signature(model.forward).parameters else "past_key_values"
    assert forward_options(model).cache_keyword == expected
    if tuple(int(x) for x in transformers.__version__.split(".")[:2]) >= (5, 24):
        assert expected == "cache"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_sampler("hf", model, tokenizer).generate([tokenizer.encode("Compute 5 + 7.")], 4, temperature=1.0)
    assert not [w for w in caught if "past_key_values" in str(w.message)]


class _FakeLockstep:
    """Other ranks with more decode batches, prefill groups and steps: this rank must keep pace.

    `others[k]` is the other ranks' value at this rank's k-th agreement.
    """

    def __init__(self, others: list[int]):
        self.others, self.calls = others, []

    def max_int(self, value: int) -> int:
        self.calls.append(value)
        return max(value, self.others[len(self.calls) - 1])

    def all_true(self, flag: bool) -> bool:
        return False   # another rank is never done first


def test_lockstep_runs_as_many_batches_and_forwards_as_the_slowest_rank():
    model, tokenizer = load_policy("toy")
    prompts = [tokenizer("Compute 5 + 7.\n")["input_ids"]] * 2
    plain = make_sampler("hf", model, tokenizer).generate(prompts, 12, temperature=1.0, seeds=[1, 2])
    # the others: 3 decode batches; batch 1: 20 steps, 2 prefill groups; batches 2 and 3: 20 steps, 1 group
    lockstep = _FakeLockstep([3, 20, 2, 20, 1, 20, 1])
    sampler = make_sampler("hf", model, tokenizer)
    sampler.lockstep = lockstep
    forwards = []
    handle = model.register_forward_hook(lambda *args: forwards.append(1))
    try:
        out = sampler.generate(prompts, 12, temperature=1.0, seeds=[1, 2])
    finally:
        handle.remove()
    assert out.tokens == plain.tokens and len(out.tokens) == 2   # padding batches are dropped, real rows unchanged
    assert lockstep.calls == [1, 12, 1, 0, 1, 0, 1]   # batches, then per batch: steps and prefill groups
    # a batch makes (prefill groups) + (steps - 1) forwards, the first token coming from the prefill
    assert len(forwards) == (2 + 19) + (1 + 19) + (1 + 19)


def test_a_sliding_window_model_gets_transformers_cache_and_the_same_tokens():
    # Mistral with a 6-token window: the engine must not use its full-attention DecodeCache
    from transformers import AutoConfig, AutoModelForCausalLM

    _, tokenizer = load_policy("toy")
    config = AutoConfig.for_model("mistral", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                  sliding_window=6, pad_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()
    assert type(new_cache(model.config, 8)).__name__ == "DynamicCache"
    prompts, budgets, seeds = _mixed_rows(tokenizer)
    out = HFSampler(model, tokenizer).generate(prompts, budgets, temperature=1.0, seeds=seeds)
    for prompt, budget, seed, tokens in zip(prompts, budgets, seeds, out.tokens):
        assert tokens == _reference(model, prompt, budget, 1.0, 1.0, seed, [0])[0]
