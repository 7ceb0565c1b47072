"""The policy update (train/step.py) against SPEC §2, on a tiny local Llama (no download).

`reference_loss` below is the slow, obvious version of one mini-batch's loss: one
unpadded forward per sequence, Python loops over tokens, advantages and token selection
written out by hand. Each test runs `rl_update` with an optimizer that records the
gradient it is asked to apply, and compares that gradient (and the reported stats) with
autograd through the reference on an identical copy of the model.

Batch used throughout (B = 2 prompts, G = 4 rollouts, the hybrid one in slot 3):
    group 0 rewards [1, 0, 0, 1]  hybrid prefix 3 tokens
    group 1 rewards [1, 0, 1, 0]  hybrid prefix 4 tokens
    grouping all:      A = [½, −½, −½, ½] and [½, −½, ½, −½] (mean ½ in both groups)
    grouping separate: group 0 ordinary mean ⅓ -> [⅔, −⅓, −⅓], hybrid continuation 1 (raw r),
                       hybrid prefix 1 − ⅓ = ⅔;  group 1 ordinary mean ⅔ -> [⅓, −⅔, ⅓],
                       hybrid continuation 0, hybrid prefix 0 − ⅔ = −⅔
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from prefixrft_cli.algorithms import get_algorithm
from prefixrft_cli.config import load_config, selection_of
from prefixrft_cli.errors import UserError
from prefixrft_cli.protocols import VerifyResult
from prefixrft_cli.records import Problem
from prefixrft_cli.train.rollouts import PromptItem, Rollout, RolloutBatch
from prefixrft_cli.train import packing
from prefixrft_cli.train.packing import Sequences, length_buckets, pack, response_logps
from prefixrft_cli.train.step import demo_nll, rl_update, sft_update

MAX = 9            # rollout.max_response_tokens
PAD = 0
G = 4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A model this small runs faster on one thread (and leaves the other core to other work)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights():
    torch.manual_seed(0)
    return tiny_model().state_dict()


def tiny_model(state=None) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=PAD, eos_token_id=1, bos_token_id=1, initializer_range=0.2)
    model = LlamaForCausalLM(config)
    if state is not None:
        model.load_state_dict(state)
    return model.train()


def config(*overrides: str):
    return load_config(None, [f"rollout.max_response_tokens={MAX}", f"rollout.rollouts_per_prompt={G}",
                              "train.prompts_per_step=2", "optim.grad_clip_norm=0", *overrides])


def item(prompt, demos=()) -> PromptItem:
    return PromptItem(Problem(id="p", problem="p", answer="1"), list(prompt), [list(d) for d in demos])


def make_batch(rewards, responses, prefix_lens, items, whole_demo=()) -> RolloutBatch:
    rollouts = []
    for n, (reward, response, cut) in enumerate(zip(rewards, responses, prefix_lens)):
        result = VerifyResult(reward, "correct" if reward == 1 else "wrong", None)
        rollouts.append(Rollout(items[n // G], list(response), cut, 0.5 if cut else 0.0, False, result=result,
                                whole_demo=n in whole_demo))
    return RolloutBatch(rollouts, len(items), G, 0.5)


DEMO_A = [30, 31, 32, 33, 34, 35, 1]
DEMO_B = [40, 41, 42, 43, 44, 45, 46, 1]
RESPONSES = [[5, 6, 7, 8, 1], [9, 10, 11], [12, 13, 14, 15, 16, 17, 18, 19, 20], DEMO_A[:3] + [21, 22, 1],
             [23, 24], [25, 26, 27, 28, 1], [29, 50, 51, 52, 53, 54, 1], DEMO_B[:4] + [55, 56, 57]]


def prefix_batch(rewards=(1, 0, 0, 1, 1, 0, 1, 0), with_demos=True) -> RolloutBatch:
    items = [item([2, 3, 4], [DEMO_A, DEMO_B[:5]] if with_demos else []),
             item([5, 6, 7, 8, 9], [DEMO_B] if with_demos else [])]
    return make_batch(rewards, RESPONSES, [0, 0, 0, 3, 0, 0, 0, 4], items)


def rft_batch(rewards=(1, 0, 0, 1, 1, 0, 1, 0), demos_of_second=True) -> RolloutBatch:
    items = [item([2, 3, 4], [DEMO_A, DEMO_B]), item([5, 6, 7, 8, 9], [DEMO_B] if demos_of_second else [])]
    return make_batch(rewards, [r[3:] + [58, 59] if n in (3, 7) else r for n, r in enumerate(RESPONSES)],
                      [0] * 8, items)


def luffy_batch(rewards=(1, 0, 0, 1, 1, 0, 1, 0)) -> RolloutBatch:
    items = [item([2, 3, 4], [DEMO_A]), item([5, 6, 7, 8, 9], [DEMO_B])]
    responses = [DEMO_A] + RESPONSES[1:4] + [DEMO_B] + RESPONSES[5:]
    return make_batch(rewards, responses, [7, 0, 0, 0, 8, 0, 0, 0], items, whole_demo=(0, 4))


class Recorder(torch.optim.Optimizer):
    """Plain SGD (lr 0 by default: parameters stay put) that records each gradient it applies."""

    def __init__(self, params, lr=0.0):
        super().__init__(params, {"lr": lr})
        self.grads: list[list[torch.Tensor]] = []

    @torch.no_grad()
    def step(self, closure=None):
        self.grads.append([p.grad.clone() for group in self.param_groups for p in group["params"]])
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(p.grad, alpha=-group["lr"])


def run_update(weights, batch, cfg, lr=0.0, ref_model=None, seed=0):
    model = tiny_model(weights)
    optimizer = Recorder(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0)
    weighting = get_algorithm(cfg.algo).weighting(selection_of(cfg))
    stats = rl_update(model, ref_model, optimizer, scheduler, batch, cfg, PAD, torch.Generator().manual_seed(seed),
                      weighting)
    return stats, optimizer, scheduler


# ---------------------------------------------------------------- the slow, obvious reference

def forward(model, prompt, response):
    """log π(y_k|·) [L] and the entropy of the next-token distribution [L], one unpadded sequence."""
    logits = model(input_ids=torch.tensor([prompt + response])).logits[0, len(prompt) - 1:-1].float()
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all[torch.arange(len(response)), torch.tensor(response)]
    return logp, -(logp_all.exp() * logp_all).sum(-1)


def reference_advantages(batch, grouping, estimator="dr-grpo", eps=1e-6):
    """(response advantage, prefix advantage) per rollout, with Python loops."""
    response, prefix = [], []
    for g in range(batch.groups):
        group = batch.rollouts[g * G:(g + 1) * G]
        r = [x.result.score for x in group]
        mean = sum(r) / G
        scale = 1.0 if estimator == "dr-grpo" else math.sqrt(sum((v - mean) ** 2 for v in r) / (G - 1)) + eps
        if max(r) == min(r):
            response += [0.0] * G
            prefix += [0.0] * G
            continue
        if grouping == "all":
            adv = [(ri - mean) / scale for ri in r]
            response += adv
            prefix += adv
            continue
        ordinary = [x.result.score for x in group if not x.hybrid]
        hybrid = [x.result.score for x in group if x.hybrid]
        for x in group:
            base = x.result.score - sum(ordinary) / len(ordinary)
            if not x.hybrid:
                response.append(base / scale)
                prefix.append(base / scale)
            else:
                lone = len(hybrid) == 1
                response.append((x.result.score if lone else x.result.score - sum(hybrid) / len(hybrid)) / scale)
                prefix.append(base / scale)
    return response, prefix


def test_reference_advantages_match_the_hand_values():
    response, prefix = reference_advantages(prefix_batch(), "all")
    assert response == prefix == [0.5, -0.5, -0.5, 0.5, 0.5, -0.5, 0.5, -0.5]
    response, prefix = reference_advantages(prefix_batch(), "separate")
    assert response == pytest.approx([2 / 3, -1 / 3, -1 / 3, 1.0, 1 / 3, -2 / 3, 1 / 3, 0.0])
    assert prefix == pytest.approx([2 / 3, -1 / 3, -1 / 3, 2 / 3, 1 / 3, -2 / 3, 1 / 3, -2 / 3])
    # grpo: both groups have std sqrt(4·¼/3) = sqrt(⅓), so A = ±½·sqrt(3) = ±0.8660
    response, _ = reference_advantages(prefix_batch(), "all", "grpo", 0.0)
    assert response == pytest.approx([0.8660254, -0.8660254, -0.8660254, 0.8660254,
                                      0.8660254, -0.8660254, 0.8660254, -0.8660254])


def reference_keep(candidates, entropy, mode, ratio, generator):
    """The kept (row, token) pairs among `candidates` (listed in row-major order)."""
    if mode == "all":
        return set(candidates)
    if mode == "none" or not candidates:
        return set()
    k = min(len(candidates), math.ceil(round(ratio * len(candidates), 9)))
    if mode == "random":
        return {candidates[j] for j in torch.randperm(len(candidates), generator=generator)[:k].tolist()}
    sign = -1.0 if mode == "top" else 1.0
    ranked = sorted(candidates, key=lambda c: (sign * entropy[c[0]][c[1]], c))
    order = [entropy[i][t] for i, t in ranked]
    if k < len(ranked):  # the test needs a clear gap at the cut, or float noise could pick another token
        assert abs(order[k - 1] - order[k]) > 1e-4
    return set(ranked[:k])


def scopes_of(cfg, rows):
    micro = cfg.train.micro_batch_responses
    if cfg.selection.scope == "mini-batch" or micro == 0:
        return [rows]
    return [rows[s:s + micro] for s in range(0, len(rows), micro)]


def minibatch_rows(cfg, batch):
    per = batch.groups // cfg.train.mini_batches
    return [list(range(m * per * G, (m + 1) * per * G)) for m in range(cfg.train.mini_batches)]


def reference_selection(cfg, batch, entropy, generator):
    """The kept tokens of the whole batch: prefix tokens (or on-policy ones for onpolicy-clip)."""
    keep, mode = set(), cfg.selection.mode
    if cfg.algo == "luffy":   # LUFFY shapes every demonstration token; it selects none
        return keep
    for rows in minibatch_rows(cfg, batch):
        for scope in scopes_of(cfg, rows):
            if mode == "onpolicy-clip":
                cands = [(i, t) for i in scope for t in range(batch.rollouts[i].prefix_len,
                                                             len(batch.rollouts[i].response_ids))]
                keep |= reference_keep(cands, entropy, "top", cfg.selection.keep_ratio, generator)
            elif not mode.startswith("static:"):
                cands = [(i, t) for i in scope for t in range(batch.rollouts[i].prefix_len)]
                keep |= reference_keep(cands, entropy, mode, cfg.selection.keep_ratio, generator)
    return keep


def ppo(logp, old, adv, cfg):
    ratio = torch.exp(logp - old)
    clipped = torch.clamp(ratio, 1 - cfg.loss.clip_eps_low, 1 + cfg.loss.clip_eps_high)
    return -torch.minimum(ratio * adv, clipped * adv)


def token_loss(cfg, rollout, t, logp, old, a_resp, a_prefix, kept):
    """The loss of token t of one response, by the rules of SPEC §2."""
    if t < rollout.prefix_len:
        if cfg.algo == "luffy":
            p = logp.exp()
            return -(p / (p + cfg.loss.luffy_gamma)) * a_prefix
        if cfg.selection.mode.startswith("static:"):
            return float(cfg.selection.mode.split(":")[1]) * -logp
        if cfg.selection.mode == "onpolicy-clip":
            return ppo(logp, old, 0.0, cfg)
        return ppo(logp, old, a_prefix if kept else 0.0, cfg)
    if cfg.selection.mode == "onpolicy-clip" and cfg.algo != "luffy" and not kept:
        return ppo(logp, old, 0.0, cfg)
    return ppo(logp, old, a_resp, cfg)


def reference_loss(model, cfg, batch, rows, old, keep, ref_logp=None):
    """One mini-batch's scalar loss, differentiable in `model`'s parameters."""
    a_resp, a_prefix = reference_advantages(batch, cfg.advantage.grouping, cfg.advantage.estimator,
                                            cfg.advantage.std_eps)
    total, per_seq, tokens = 0.0, [], 0
    for i in rows:
        r = batch.rollouts[i]
        logp, _ = forward(model, r.item.prompt_ids, r.response_ids)
        seq = 0.0
        for t in range(len(r.response_ids)):
            loss = token_loss(cfg, r, t, logp[t], old[i][t], a_resp[i], a_prefix[i], (i, t) in keep)
            if ref_logp is not None:
                d = ref_logp[i][t] - logp[t]
                loss = loss + cfg.loss.kl_coef * (torch.exp(d) - d - 1)
            seq = seq + loss
        total = total + seq
        per_seq.append(seq / len(r.response_ids))
        tokens += len(r.response_ids)
    aggregation = cfg.loss.aggregation
    value = (total / (MAX * len(rows)) if aggregation == "dr-grpo" else
             total / tokens if aggregation == "token-mean" else sum(per_seq) / len(rows))
    if cfg.algo == "rft-sft-loss":
        demos = [batch.rollouts[g * G].item for g in sorted({i // G for i in rows})]
        demos = [(x.prompt_ids, x.demo_ids[0]) for x in demos if x.demo_ids]
        if demos:
            nll = sum(-forward(model, p, d)[0].sum() for p, d in demos)
            value = value + cfg.loss.sft_coef * nll / sum(len(d) for _, d in demos)
    return value


def old_policy(model, batch):
    with torch.no_grad():
        out = [forward(model, r.item.prompt_ids, r.response_ids) for r in batch.rollouts]
    return [o[0] for o in out], [o[1].tolist() for o in out]


def reference_grads(weights, cfg, batch, seed=0, ref_model=None):
    """(loss, gradient list, kept set, π_old entropies) of each mini-batch, parameters held at θ0."""
    model = tiny_model(weights)
    old, entropy = old_policy(model, batch)
    ref_logp = None if ref_model is None else old_policy(ref_model, batch)[0]
    keep = reference_selection(cfg, batch, entropy, torch.Generator().manual_seed(seed))
    results = []
    for rows in minibatch_rows(cfg, batch):
        model.zero_grad()
        loss = reference_loss(model, cfg, batch, rows, old, keep, ref_logp)
        loss.backward()
        results.append((float(loss.detach()), [p.grad.clone() for p in model.parameters()]))
    return results, keep, entropy


def assert_grads_close(got, expected):
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, atol=2e-6, rtol=1e-4)


# ---------------------------------------------------------------- pack / response_logps

def test_pack_layout():
    # Prompts left-padded to P = 3, responses right-padded to L = 4; prefix 2 tokens on row 0.
    b = pack([[5, 6, 7], [8]], [[20, 21, 22, 23], [30]], [2, 0], PAD)
    assert b.prompt_width == 3
    assert b.input_ids.tolist() == [[5, 6, 7, 20, 21, 22, 23], [0, 0, 8, 30, 0, 0, 0]]
    assert b.attention_mask.tolist() == [[1] * 7, [0, 0, 1, 1, 0, 0, 0]]
    assert b.position_ids.tolist()[1][2:4] == [0, 1]
    assert b.response_mask.tolist() == [[1, 1, 1, 1], [1, 0, 0, 0]]
    assert b.prefix_mask.tolist() == [[True, True, False, False], [False] * 4]


def test_response_logps_equal_unpadded_forwards(weights):
    model = tiny_model(weights)
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12, 13, 14], [15]]
    responses = [[20, 21, 22, 23], [30], [40, 41], [42, 43, 44, 45, 46, 47]]
    batch = pack(prompts, responses, [2, 0, 1, 0], PAD)
    with torch.no_grad():
        logp, entropy = response_logps(model, batch, batch.response_mask.bool())    # [4, 6]
        for i, (p, r) in enumerate(zip(prompts, responses)):
            ref_logp, ref_entropy = forward(model, p, r)
            torch.testing.assert_close(logp[i, :len(r)], ref_logp, atol=1e-5, rtol=0)
            torch.testing.assert_close(entropy[i, :len(r)], ref_entropy, atol=1e-5, rtol=0)
        alone, _ = response_logps(model, pack([prompts[1]], [responses[1]], [0], PAD))
    torch.testing.assert_close(alone[0, :1], logp[1, :1], atol=1e-5, rtol=0)


# ---------------------------------------------------------------- rl_update against the reference

@pytest.mark.parametrize("overrides", [
    ["selection.mode=top"],
    ["selection.mode=bottom"],
    ["selection.mode=random", "selection.keep_ratio=0.5"],
    ["selection.mode=all"],
    ["selection.mode=none"],
    ["selection.mode=top", "advantage.grouping=separate"],
    ["selection.mode=top", "advantage.estimator=grpo"],
    ["selection.mode=static:0.5"],
    ["selection.mode=top", "loss.aggregation=token-mean"],
    ["selection.mode=top", "loss.aggregation=seq-mean"],
])
def test_prefix_rft_update_matches_the_reference(weights, overrides):
    cfg = config(*overrides)
    batch = prefix_batch()
    stats, optimizer, scheduler = run_update(weights, batch, cfg, seed=3)
    [(loss, grads)], keep, entropy = reference_grads(weights, cfg, batch, seed=3)
    assert len(optimizer.grads) == 1 and scheduler.last_epoch == 1
    assert_grads_close(optimizer.grads[0], grads)
    assert stats.loss == pytest.approx(loss, abs=1e-6)
    assert stats.grad_norm == pytest.approx(math.sqrt(sum(float((g ** 2).sum()) for g in grads)), rel=1e-4)
    prefix = [(i, t) for i, r in enumerate(batch.rollouts) for t in range(r.prefix_len)]
    assert stats.prefix_tokens_total == 7                       # 3 + 4 prefix tokens
    assert stats.prefix_tokens_kept == len(keep)
    kept = [entropy[i][t] for i, t in prefix if (i, t) in keep]
    dropped = [entropy[i][t] for i, t in prefix if (i, t) not in keep]
    assert _same(stats.entropy_kept, kept) and _same(stats.entropy_dropped, dropped)
    on_policy = [e for i, r in enumerate(batch.rollouts) for e in entropy[i][r.prefix_len:]]
    assert len(on_policy) == 37 and _same(stats.entropy_response, on_policy)   # 44 − 7 tokens
    assert stats.clip_fraction == 0.0                           # one step from π_old: every ratio is 1


def _same(value: float, entries: list[float]) -> bool:
    if not entries:
        return math.isnan(value)
    return value == pytest.approx(sum(entries) / len(entries), abs=1e-5)


def test_kept_counts_per_mode(weights):
    # 7 prefix tokens: top / bottom 20% keep ceil(1.4) = 2, random 50% keeps ceil(3.5) = 4,
    # all keeps 7, none and static:W keep 0.
    batch = prefix_batch()
    expected = {"top": 2, "bottom": 2, "all": 7, "none": 0, "static:2": 0}
    for mode, count in expected.items():
        stats, _, _ = run_update(weights, batch, config(f"selection.mode={mode}"))
        assert stats.prefix_tokens_kept == count, mode
    stats, _, _ = run_update(weights, batch, config("selection.mode=random", "selection.keep_ratio=0.5"))
    assert stats.prefix_tokens_kept == 4


def test_top_and_bottom_keep_the_highest_and_lowest_entropy_prefix_tokens(weights):
    batch = prefix_batch()
    _, _, entropy = reference_grads(weights, config(), batch)
    values = sorted(entropy[i][t] for i, r in enumerate(batch.rollouts) for t in range(r.prefix_len))
    top, _, _ = run_update(weights, batch, config("selection.mode=top"))
    bottom, _, _ = run_update(weights, batch, config("selection.mode=bottom"))
    assert top.entropy_kept == pytest.approx(sum(values[-2:]) / 2, abs=1e-5)
    assert bottom.entropy_kept == pytest.approx(sum(values[:2]) / 2, abs=1e-5)
    assert top.entropy_dropped == pytest.approx(sum(values[:-2]) / 5, abs=1e-5)


def test_micro_batch_scope_selects_within_each_micro_batch(weights):
    # micro-batches of 3 responses: rows [0,1,2], [3,4,5] (3 prefix tokens), [6,7] (4 prefix tokens).
    # Keep ratio 0.4: mini-batch scope keeps ceil(2.8) = 3 of 7; micro scope ceil(1.2) = 2 of 3 and
    # ceil(1.6) = 2 of 4, so 4 tokens.
    batch = prefix_batch()
    mini = config("selection.keep_ratio=0.4", "train.micro_batch_responses=3")
    micro = config("selection.keep_ratio=0.4", "train.micro_batch_responses=3", "selection.scope=micro-batch")
    stats_mini, opt_mini, _ = run_update(weights, batch, mini)
    stats_micro, opt_micro, _ = run_update(weights, batch, micro)
    [(_, grads_mini)], keep_mini, _ = reference_grads(weights, mini, batch)
    [(_, grads_micro)], keep_micro, _ = reference_grads(weights, micro, batch)
    assert (stats_mini.prefix_tokens_kept, stats_micro.prefix_tokens_kept) == (3, 4)
    assert len(keep_mini) == 3 and len(keep_micro) == 4
    assert_grads_close(opt_mini.grads[0], grads_mini)
    assert_grads_close(opt_micro.grads[0], grads_micro)


@pytest.mark.parametrize("aggregation", ["dr-grpo", "token-mean", "seq-mean"])
def test_micro_batching_gives_the_same_gradient(weights, aggregation):
    batch = prefix_batch()
    whole, opt_whole, _ = run_update(weights, batch, config(f"loss.aggregation={aggregation}"))
    split, opt_split, _ = run_update(weights, batch, config(f"loss.aggregation={aggregation}",
                                                           "train.micro_batch_responses=3"))
    assert_grads_close(opt_split.grads[0], opt_whole.grads[0])
    assert split.loss == pytest.approx(whole.loss, abs=1e-6)
    assert split.prefix_tokens_kept == whole.prefix_tokens_kept == 2


def test_several_mini_batches_are_that_many_optimizer_steps(weights):
    # 2 mini-batches × 2 epochs = 4 steps; each mini-batch is one group, normalised by its
    # own 4 responses and with its own top-20% selection (group 0: ceil(0.6) = 1 of 3 prefix
    # tokens; group 1: ceil(0.8) = 1 of 4).
    cfg = config("train.mini_batches=2", "train.ppo_epochs=2")
    batch = prefix_batch()
    stats, optimizer, scheduler = run_update(weights, batch, cfg)
    reference, keep, _ = reference_grads(weights, cfg, batch)
    assert len(optimizer.grads) == 4 and scheduler.last_epoch == 4
    assert stats.prefix_tokens_kept == len(keep) == 2
    assert {i // G for i, _ in keep} == {0, 1}          # one kept token in each mini-batch
    _, whole_batch, _ = reference_grads(weights, config(), batch)
    assert {i // G for i, _ in whole_batch} == {1}      # a single scope would keep both in group 1
    for step, (_, grads) in enumerate(reference * 2):   # lr 0: the second epoch repeats the first
        assert_grads_close(optimizer.grads[step], grads)
    assert stats.loss == pytest.approx(sum(loss for loss, _ in reference) / 2, abs=1e-6)


def test_second_epoch_keeps_pi_old_and_clips(weights):
    # SGD with a large step so that the second epoch's ratios leave [1 − ε_low, 1 + ε_high] =
    # [0.8, 1.28] on some tokens (asymmetric, so swapping the two would show).
    cfg = config("selection.mode=all", "train.ppo_epochs=2", "loss.clip_eps_low=0.2", "loss.clip_eps_high=0.28")
    batch = prefix_batch()
    lr = 20.0
    stats, optimizer, _ = run_update(weights, batch, cfg, lr=lr)
    [(_, first)], keep, _ = reference_grads(weights, cfg, batch)
    assert_grads_close(optimizer.grads[0], first)
    model = tiny_model(weights)
    old, _ = old_policy(model, batch)
    with torch.no_grad():
        for p, g in zip(model.parameters(), first):
            p.add_(g, alpha=-lr)
    loss = reference_loss(model, cfg, batch, list(range(8)), old, keep)
    loss.backward()
    assert_grads_close(optimizer.grads[1], [p.grad for p in model.parameters()])
    a_resp, _ = reference_advantages(batch, "all")      # mode all: prefix tokens carry A too
    clipped, tokens = 0, 0
    with torch.no_grad():
        for i, r in enumerate(batch.rollouts):
            ratio = torch.exp(forward(model, r.item.prompt_ids, r.response_ids)[0] - old[i])
            assert bool(((ratio - 0.8).abs() > 1e-4).all() and ((ratio - 1.28).abs() > 1e-4).all())
            clipped += int(((a_resp[i] > 0) & (ratio > 1.28)).sum() + ((a_resp[i] < 0) & (ratio < 0.8)).sum())
            tokens += len(r.response_ids)
    assert clipped > 0
    assert stats.clip_fraction == pytest.approx(clipped / (2 * tokens))   # epoch 1 clips nothing


def test_onpolicy_clip_filters_on_policy_tokens_of_plain_rft(weights):
    # rft: 8 ordinary responses with 5+3+9+5+2+5+7+6 = 42 tokens; top 30% keeps ceil(12.6) = 13.
    cfg = config("algo=rft", "selection.mode=onpolicy-clip", "selection.keep_ratio=0.3")
    batch = rft_batch()
    stats, optimizer, _ = run_update(weights, batch, cfg)
    [(loss, grads)], keep, _ = reference_grads(weights, cfg, batch)
    assert len(keep) == 13
    assert_grads_close(optimizer.grads[0], grads)
    assert stats.loss == pytest.approx(loss, abs=1e-6)
    assert stats.prefix_tokens_total == 0 and stats.prefix_tokens_kept == 0
    _, opt_plain, _ = run_update(weights, batch, config("algo=rft"))
    [(_, plain_grads)], _, _ = reference_grads(weights, config("algo=rft"), batch)
    assert_grads_close(opt_plain.grads[0], plain_grads)
    assert not torch.allclose(opt_plain.grads[0][0], optimizer.grads[0][0])


@pytest.mark.parametrize("mode", ["top", "static:0.5", "bottom"])
def test_luffy_shapes_the_whole_demonstration_with_no_selection(weights, mode):
    # Every one of the 7 + 8 demonstration tokens is shaped by p/(p+γ), whatever selection.mode says.
    cfg = config("algo=luffy", f"selection.mode={mode}")
    batch = luffy_batch()
    stats, optimizer, _ = run_update(weights, batch, cfg)
    [(loss, grads)], _, _ = reference_grads(weights, cfg, batch)
    assert_grads_close(optimizer.grads[0], grads)
    assert stats.loss == pytest.approx(loss, abs=1e-6)
    assert stats.prefix_tokens_total == stats.prefix_tokens_kept == 15


def test_rft_sft_loss_adds_lambda_times_token_mean_ce_on_group_demonstrations(weights):
    # Group 0's prompt has demonstrations [DEMO_A, DEMO_B]: the first (7 tokens) is used;
    # group 1's prompt has none. λ = 0.3.
    cfg = config("algo=rft-sft-loss", "loss.sft_coef=0.3")
    batch = rft_batch(demos_of_second=False)
    stats, optimizer, _ = run_update(weights, batch, cfg)
    [(loss, grads)], _, _ = reference_grads(weights, cfg, batch)
    assert_grads_close(optimizer.grads[0], grads)
    assert stats.loss == pytest.approx(loss, abs=1e-6)
    # Two mini-batches: the demonstration goes with its own group's mini-batch only.
    split_cfg = config("algo=rft-sft-loss", "loss.sft_coef=0.3", "train.mini_batches=2")
    _, split, _ = run_update(weights, batch, split_cfg)
    reference, _, _ = reference_grads(weights, split_cfg, batch)
    for got, (_, expected) in zip(split.grads, reference, strict=True):
        assert_grads_close(got, expected)
    model = tiny_model(weights)
    with torch.no_grad():
        nll = float(-forward(model, [2, 3, 4], DEMO_A)[0].mean())
        rl = float(reference_loss(model, config("algo=rft"), batch, list(range(8)), old_policy(model, batch)[0], set()))
    assert stats.loss == pytest.approx(rl + 0.3 * nll, abs=1e-6)


def test_kl_term_against_the_reference_model(weights):
    cfg = config("loss.kl_coef=0.5")
    batch = prefix_batch()
    ref_model = tiny_model(weights).eval().requires_grad_(False)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(5)
        for p in ref_model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    stats, optimizer, _ = run_update(weights, batch, cfg, ref_model=ref_model)
    [(loss, grads)], _, _ = reference_grads(weights, cfg, batch, ref_model=ref_model)
    assert_grads_close(optimizer.grads[0], grads)
    assert stats.loss == pytest.approx(loss, abs=1e-6)
    # stats.kl: the token mean of k3 = exp(ref − logp) − (ref − logp) − 1 over all 44 response tokens
    policy = tiny_model(weights)
    logp, _ = old_policy(policy, batch)
    ref_logp, _ = old_policy(ref_model, batch)
    d = torch.cat([r - p for r, p in zip(ref_logp, logp)])
    assert d.numel() == 44
    assert stats.kl == pytest.approx(float((torch.exp(d) - d - 1).mean()), rel=1e-4)
    split, _, _ = run_update(weights, batch, config("loss.kl_coef=0.5", "train.micro_batch_responses=3"),
                             ref_model=ref_model)
    assert split.kl == pytest.approx(stats.kl, rel=1e-4)


@pytest.mark.parametrize("overrides, batch_of", [
    (["selection.mode=all"], prefix_batch),
    (["selection.mode=top", "advantage.grouping=separate"], prefix_batch),
    (["algo=luffy"], luffy_batch),
    (["algo=rft", "selection.mode=onpolicy-clip"], rft_batch),
])
def test_zero_variance_groups_give_no_gradient(weights, overrides, batch_of):
    # Every reward 1 in both groups: every advantage is 0, and so is the RL gradient.
    stats, optimizer, _ = run_update(weights, batch_of(rewards=(1,) * 8), config(*overrides))
    assert all(float(g.abs().max()) == 0.0 for g in optimizer.grads[0])
    assert stats.loss == 0.0 and stats.grad_norm == 0.0


def test_zero_variance_group_adds_nothing_next_to_a_live_one(weights):
    # Group 1 all-zero rewards: the gradient is group 0's alone, still normalised by all 8 responses.
    cfg = config("selection.mode=all")
    batch = prefix_batch(rewards=(1, 0, 0, 1, 0, 0, 0, 0))
    _, optimizer, _ = run_update(weights, batch, cfg)
    [(_, grads)], _, _ = reference_grads(weights, cfg, batch)
    assert_grads_close(optimizer.grads[0], grads)
    assert reference_advantages(batch, "all")[0][4:] == [0.0] * 4


# ---------------------------------------------------------------- sft_update

def test_sft_update_is_token_mean_cross_entropy(weights):
    prompts, demos = [[2, 3, 4], [5, 6]], [DEMO_A, DEMO_B]
    cfg = config("train.micro_batch_responses=1")
    model = tiny_model(weights)
    optimizer = Recorder(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0)
    stats = sft_update(model, optimizer, scheduler, prompts, demos, PAD, cfg)
    reference = tiny_model(weights)
    loss = sum(-forward(reference, p, d)[0].sum() for p, d in zip(prompts, demos)) / 15   # 7 + 8 tokens
    loss.backward()
    assert stats.loss == pytest.approx(float(loss.detach()), abs=1e-6)
    assert_grads_close(optimizer.grads[0], [p.grad for p in reference.parameters()])


# ---------------------------------------------------------------- length-bucketed packing

def test_length_buckets_sort_by_length_and_cut_by_rows():
    # lengths 5 2 9 2 7: sorted (stable) -> positions 1 3 0 4 2; ceil(5/2) = 3 runs of 2, 2, 1 rows;
    # 7 rows in runs of at most 3: 3 runs of 3, 2, 2 (never a lone row when it can be avoided).
    assert length_buckets([5, 2, 9, 2, 7], 2) == [[1, 3], [0, 4], [2]]
    assert length_buckets([1, 2, 3, 4, 5, 6, 7], 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert length_buckets([5, 2, 9], 10) == [[1, 0, 2]]
    assert length_buckets([], 4) == []


def test_buckets_pack_each_run_to_its_own_widths():
    seqs = Sequences([[5, 6, 7], [8], [9, 10]], [[20, 21, 22, 23], [30], [31, 32]], [2, 0, 1], PAD)
    short, long_ = seqs.buckets([0, 1, 2], 2, torch.device("cpu"))
    # row 1 (1 + 1 tokens) and row 2 (2 + 2) share a bucket: P = 2, L = 2; row 0 alone: P = 3, L = 4.
    assert short.rows.tolist() == [1, 2] and long_.rows.tolist() == [0]
    assert short.tokens.input_ids.tolist() == [[0, 8, 30, 0], [9, 10, 31, 32]]
    assert (short.tokens.prompt_width, short.length, long_.length) == (2, 2, 4)
    response_mask, prefix_mask = seqs.masks()                               # [3, 4] each
    assert short.take(prefix_mask).tolist() == [[False, False], [True, False]]
    assert torch.equal(long_.take(response_mask), long_.tokens.response_mask)


def run_with_rows(weights, batch, cfg, rows: int, monkeypatch, lr=1.0):
    """rl_update with buckets of `rows` rows (train.micro_batch_responses 0), SGD steps of `lr`."""
    monkeypatch.setattr(packing, "AUTO_BUCKET_ROWS", rows)
    model = tiny_model(weights)
    optimizer = Recorder(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0)
    weighting = get_algorithm(cfg.algo).weighting(selection_of(cfg))
    stats = rl_update(model, None, optimizer, scheduler, batch, cfg, PAD, torch.Generator().manual_seed(1), weighting)
    return stats, optimizer.grads, model.state_dict()


@pytest.mark.parametrize("aggregation", ["dr-grpo", "token-mean", "seq-mean"])
@pytest.mark.parametrize("algo, batch_of, extra", [
    ("prefix-rft", prefix_batch, ["selection.mode=top", "selection.keep_ratio=0.4"]),
    ("rft", rft_batch, []),
    ("luffy", luffy_batch, []),
    ("rft-sft-loss", rft_batch, ["loss.sft_coef=0.3"]),
])
@pytest.mark.parametrize("schedule", [[], ["train.ppo_epochs=2", "train.mini_batches=2"]])
def test_bucketed_update_trains_as_one_forward_of_the_whole_batch(weights, monkeypatch, aggregation, algo,
                                                                   batch_of, extra, schedule):
    # Buckets of 3 rows (length-sorted: rows of different groups share a forward) against one bucket
    # holding the whole batch (the layout before bucketing): the same loss, the same gradient at
    # every optimizer step and, after SGD steps of lr 1, the same weights. The first schedule is the
    # single-update shortcut (grad forwards kept until one backward), the second the π_old pass and
    # 2 epochs × 2 mini-batches = 4 steps (the later ones from moved weights, so clipping acts).
    cfg = config(f"algo={algo}", f"loss.aggregation={aggregation}", *extra, *schedule)
    whole, whole_grads, whole_weights = run_with_rows(weights, batch_of(), cfg, 1000, monkeypatch)
    split, split_grads, split_weights = run_with_rows(weights, batch_of(), cfg, 3, monkeypatch)
    # Float32 rounding: the buckets share their prompts' forwards in other shapes than the whole
    # batch (index-add of the rows' prompt gradients, other matmul sizes), up to ~4e-6 on the
    # later steps from moved weights; in float64 the shared and full-row forwards agree exactly
    # (tests/test_shared_prompt.py).
    assert len(split_grads) == len(whole_grads) == (4 if schedule else 1)
    for got, expected in zip(split_grads, whole_grads):
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4)
    assert split.loss == pytest.approx(whole.loss, rel=1e-5, abs=1e-7)
    assert split.prefix_tokens_kept == whole.prefix_tokens_kept
    assert split.clip_fraction == pytest.approx(whole.clip_fraction)
    moved = max(float((whole_weights[k] - weights[k]).abs().max()) for k in weights)
    assert moved > 1e-2                                       # the steps moved the weights by far more than
    for key in weights:                                       # the bucketed run differs from the whole batch
        torch.testing.assert_close(split_weights[key], whole_weights[key], atol=1e-5, rtol=1e-5)


def test_a_step_without_diagnostics_skips_the_on_policy_entropies_only(weights):
    # diagnostics off: top selection still ranks the 7 prefix tokens by entropy (same kept tokens,
    # same gradient, same kept / dropped means); entropy_on_policy is not computed (NaN -> null).
    cfg = config("selection.mode=top")
    batch = prefix_batch()
    full, opt_full, _ = run_update(weights, batch, cfg)
    model = tiny_model(weights)
    optimizer = Recorder(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0)
    weighting = get_algorithm(cfg.algo).weighting(selection_of(cfg))
    lean = rl_update(model, None, optimizer, scheduler, batch, cfg, PAD, torch.Generator().manual_seed(0), weighting,
                     diagnostics=False)
    assert_grads_close(optimizer.grads[0], opt_full.grads[0])
    assert lean.prefix_tokens_kept == full.prefix_tokens_kept == 2
    assert lean.entropy_kept == pytest.approx(full.entropy_kept, abs=1e-6)
    assert lean.entropy_dropped == pytest.approx(full.entropy_dropped, abs=1e-6)
    assert math.isnan(lean.entropy_response) and not math.isnan(full.entropy_response)
    # selection all ranks nothing by entropy: without diagnostics no entropy at all is computed
    model = tiny_model(weights)
    every = get_algorithm("prefix-rft").weighting(selection_of(config("selection.mode=all")))
    lean_all = rl_update(model, None, Recorder(model.parameters()), scheduler, batch, config("selection.mode=all"),
                         PAD, torch.Generator().manual_seed(0), every, diagnostics=False)
    assert math.isnan(lean_all.entropy_kept) and lean_all.prefix_tokens_kept == 7


def test_demo_nll_is_the_token_mean_of_the_demonstrations_nll(weights, monkeypatch):
    # 7 + 8 demonstration tokens, in buckets of one row each: the token mean over both.
    monkeypatch.setattr(packing, "AUTO_BUCKET_ROWS", 1)
    model = tiny_model(weights)
    with torch.no_grad():
        expected = float(sum(-forward(model, p, d)[0].sum() for p, d in [([2, 3, 4], DEMO_A), ([5, 6], DEMO_B)]) / 15)
        assert demo_nll(model, [[2, 3, 4], [5, 6]], [DEMO_A, DEMO_B], PAD, 0) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("sets, message", [
    (["train.compile=true", "distributed.backend=ddp"],
     "override 'train.compile=true': train.compile=true is tested with distributed.backend=none only, not ddp "
     "(drop one of the two)"),
    (["train.compile=true", "train.gradient_checkpointing=true"],
     "override 'train.compile=true': train.compile=true is not tested with train.gradient_checkpointing=true "
     "(drop one of the two)"),
])
def test_compile_is_refused_where_it_is_not_tested(sets, message):
    with pytest.raises(UserError) as err:
        config(*sets)
    assert str(err.value) == message


@pytest.mark.slow
@pytest.mark.parametrize("schedule", [["train.ppo_epochs=2"], []])
def test_compiled_update_trains_as_the_eager_one(weights, schedule):
    # train.compile=true (inductor, dynamic shapes; ~40-80 CPU s to compile each graph). 2 epochs,
    # SGD lr 1 (the no-grad π_old forward, then two steps, the second from moved weights), and
    # the single-update shortcut (grad forwards kept until one backward).
    batch = prefix_batch()
    eager, eager_opt, _ = run_update(weights, batch, config("selection.mode=top", *schedule), lr=1.0)
    compiled, compiled_opt, _ = run_update(weights, batch, config("selection.mode=top", *schedule,
                                                                  "train.compile=true"), lr=1.0)
    assert compiled.loss == pytest.approx(eager.loss, rel=1e-5)
    assert compiled.clip_fraction == pytest.approx(eager.clip_fraction)
    assert compiled.entropy_kept == pytest.approx(eager.entropy_kept, rel=1e-5)
    assert len(compiled_opt.grads) == len(eager_opt.grads) == (2 if schedule else 1)
    for got, expected in zip(compiled_opt.grads, eager_opt.grads, strict=True):
        assert_grads_close(got, expected)
