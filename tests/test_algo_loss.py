"""Losses: each PPO clip case with its gradient, LUFFY shaping, SFT, k3 KL, every aggregation,
micro-batch additivity, and loop references."""

from __future__ import annotations

import math
import random

import pytest
import torch

from prefixrft_cli.algo.loss import aggregate, kl_k3, luffy_shaped_loss, masked_mean, ppo_clip_loss, sft_token_loss

# (advantage, ratio, expected loss, clipped branch taken, d loss / d logp) with ε_low = ε_high = 0.2
# d loss / d logp = −ρ·A on the unclipped branch, 0 on the clipped one.
CLIP_CASES = [
    # A > 0, ρ above 1+ε: min(1.5, 1.2) = 1.2 -> loss −1.2, clipped, no gradient
    (1.0, 1.5, -1.2, True, 0.0),
    # A > 0, ρ below 1−ε: min(0.5, 0.8) = 0.5 -> loss −0.5, not clipped (PPO keeps pushing it up)
    (1.0, 0.5, -0.5, False, -0.5),
    # A < 0, ρ above 1+ε: min(−1.5, −1.2) = −1.5 -> loss 1.5, not clipped
    (-1.0, 1.5, 1.5, False, 1.5),
    # A < 0, ρ below 1−ε: min(−0.5, −0.8) = −0.8 -> loss 0.8, clipped, no gradient
    (-1.0, 0.5, 0.8, True, 0.0),
    # inside [0.8, 1.2]: A = 2, ρ = 1.1 -> loss −2.2; A = −2, ρ = 0.9 -> loss 1.8
    (2.0, 1.1, -2.2, False, -2.2),
    (-2.0, 0.9, 1.8, False, 1.8),
    # A = 0: loss 0 whatever ρ, never "clipped"
    (0.0, 3.0, 0.0, False, 0.0),
]


@pytest.mark.parametrize(("advantage", "ratio", "loss", "clipped", "grad"), CLIP_CASES)
def test_ppo_clip_cases(advantage: float, ratio: float, loss: float, clipped: bool, grad: float) -> None:
    old = torch.tensor([[-1.0]])
    logp = (old + math.log(ratio)).requires_grad_(True)
    got, was_clipped = ppo_clip_loss(logp, old, torch.tensor([[advantage]]), 0.2, 0.2)
    assert got.item() == pytest.approx(loss, abs=1e-6)
    assert was_clipped.item() is clipped
    got.sum().backward()
    assert logp.grad.item() == pytest.approx(grad, abs=1e-6)


def test_ppo_asymmetric_epsilons() -> None:
    # ε_high = 0.28 (DAPO's clip-higher): A = 1, ρ = 1.5 -> min(1.5, 1.28) -> −1.28;
    # ε_low = 0.1: A = −1, ρ = 0.85 -> min(−0.85, −0.9) = −0.9 -> 0.9, clipped
    old = torch.zeros(1, 2)
    logp = torch.log(torch.tensor([[1.5, 0.85]]))
    loss, clipped = ppo_clip_loss(logp, old, torch.tensor([[1.0, -1.0]]), 0.1, 0.28)
    assert loss.tolist()[0] == pytest.approx([-1.28, 0.9], abs=1e-6)
    assert clipped.tolist() == [[True, True]]


def test_ppo_matches_a_python_loop() -> None:
    rng = random.Random(0)
    logp = [[rng.uniform(-3, 0) for _ in range(7)] for _ in range(5)]
    old = [[x + rng.uniform(-0.5, 0.5) for x in row] for row in logp]
    adv = [[rng.choice([-1.0, -0.3, 0.0, 0.4, 1.0])] * 7 for _ in range(5)]
    loss, clipped = ppo_clip_loss(torch.tensor(logp), torch.tensor(old), torch.tensor(adv), 0.2, 0.28)
    for i in range(5):
        for k in range(7):
            rho = math.exp(logp[i][k] - old[i][k])
            a = adv[i][k]
            plain, clip = rho * a, min(max(rho, 0.8), 1.28) * a
            assert loss[i, k].item() == pytest.approx(-min(plain, clip), abs=1e-5)
            assert clipped[i, k].item() == (clip < plain)


def test_luffy_shaping() -> None:
    # p = 0.5, γ = 0.1: f = 0.5/0.6 = 0.8333333; A = 2 -> loss −1.6666667
    # d loss / d logp = −A·γ·p/(p+γ)² = −2·0.1·0.5/0.36 = −0.2777778
    logp = torch.tensor([[math.log(0.5)]], requires_grad=True)
    loss = luffy_shaped_loss(logp, torch.tensor([[2.0]]), gamma=0.1)
    assert loss.item() == pytest.approx(-1.6666667, abs=1e-6)
    loss.sum().backward()
    assert logp.grad.item() == pytest.approx(-0.2777778, abs=1e-6)
    # p = 0.01: f = 0.01/0.11 = 0.0909091 (a low-probability token keeps a sizeable weight); A = −1 -> +0.0909091
    assert luffy_shaped_loss(torch.tensor([[math.log(0.01)]]), torch.tensor([[-1.0]]), 0.1).item() == \
        pytest.approx(0.0909091, abs=1e-6)
    with pytest.raises(ValueError):
        luffy_shaped_loss(logp, torch.tensor([[2.0]]), gamma=0.0)


def test_sft_and_kl() -> None:
    # SFT: −ln 0.25 = 1.3862944
    assert sft_token_loss(torch.tensor([[math.log(0.25)]])).item() == pytest.approx(1.3862944, abs=1e-6)
    # k3 with π = 0.5, π_ref = 0.25: d = ln(0.25/0.5) = −0.6931472; e^d − d − 1 = 0.5 + 0.6931472 − 1 = 0.1931472
    # and 0 when the policies agree
    logp = torch.tensor([[math.log(0.5), -2.0]])
    ref = torch.tensor([[math.log(0.25), -2.0]])
    assert kl_k3(logp, ref).tolist()[0] == pytest.approx([0.1931472, 0.0], abs=1e-6)


LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def test_aggregations_hand_values() -> None:
    # masked sum 1 + 2 + 4 = 7 over 3 tokens, 2 responses, max_response_tokens 4
    # dr-grpo: 7 / (4·2) = 0.875;  token-mean: 7/3 = 2.3333333;  seq-mean: ((1+2)/2 + 4/1)/2 = 2.75
    assert aggregate(LOSS, MASK, "dr-grpo", 4).item() == pytest.approx(0.875)
    assert aggregate(LOSS, MASK, "token-mean", 4).item() == pytest.approx(7 / 3)
    assert aggregate(LOSS, MASK, "seq-mean", 4).item() == pytest.approx(2.75)


def test_aggregations_with_an_empty_response() -> None:
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    # seq-mean: row 0 mean 1.5, row 1 contributes 0 -> 1.5/2 = 0.75; token-mean 3/2 = 1.5; dr-grpo 3/8
    assert aggregate(LOSS, mask, "seq-mean", 4).item() == pytest.approx(0.75)
    assert aggregate(LOSS, mask, "token-mean", 4).item() == pytest.approx(1.5)
    assert aggregate(LOSS, mask, "dr-grpo", 4).item() == pytest.approx(0.375)
    # no token at all: every aggregation is 0, not nan
    for mode in ("dr-grpo", "token-mean", "seq-mean"):
        assert aggregate(LOSS, torch.zeros(2, 3), mode, 4).item() == 0.0


def test_masked_mean() -> None:
    assert masked_mean(LOSS, MASK).item() == pytest.approx(7 / 3)
    assert masked_mean(LOSS, MASK, dim=1).tolist() == pytest.approx([1.5, 4.0])
    assert masked_mean(LOSS, torch.zeros(2, 3), dim=1).tolist() == [0.0, 0.0]


def test_bad_aggregation_input() -> None:
    with pytest.raises(ValueError, match="dr-grpo, token-mean, seq-mean"):
        aggregate(LOSS, MASK, "sum", 4)
    with pytest.raises(ValueError):
        aggregate(LOSS, MASK[:1], "dr-grpo", 4)


def reference_aggregate(loss: list[list[float]], mask: list[list[float]], mode: str, max_tokens: int) -> float:
    total = sum(l * m for row_l, row_m in zip(loss, mask) for l, m in zip(row_l, row_m))
    if mode == "dr-grpo":
        return total / (max_tokens * len(loss))
    if mode == "token-mean":
        count = sum(sum(row) for row in mask)
        return total / count if count else 0.0
    means = []
    for row_l, row_m in zip(loss, mask):
        count = sum(row_m)
        means.append(sum(l * m for l, m in zip(row_l, row_m)) / count if count else 0.0)
    return sum(means) / len(loss)


@pytest.mark.parametrize("mode", ["dr-grpo", "token-mean", "seq-mean"])
def test_aggregate_matches_a_python_loop(mode: str) -> None:
    rng = random.Random(mode)
    for _ in range(20):
        n, t = rng.randint(1, 6), rng.randint(1, 10)
        loss = [[rng.uniform(-2, 2) for _ in range(t)] for _ in range(n)]
        mask = [[float(rng.random() < 0.7) for _ in range(t)] for _ in range(n)]
        got = aggregate(torch.tensor(loss, dtype=torch.float64), torch.tensor(mask, dtype=torch.float64), mode, 12)
        assert got.item() == pytest.approx(reference_aggregate(loss, mask, mode, 12), abs=1e-12)


@pytest.mark.parametrize("mode", ["dr-grpo", "token-mean", "seq-mean"])
def test_micro_batches_add_up_to_the_mini_batch(mode: str) -> None:
    gen = torch.Generator().manual_seed(0)
    logp = torch.randn(6, 9, generator=gen, dtype=torch.float64).requires_grad_(True)
    mask = (torch.rand(6, 9, generator=gen) < 0.6).double()
    whole = aggregate(logp * 1.5, mask, mode, 16)
    whole_grad, = torch.autograd.grad(whole, logp)
    pieces, grads = [], torch.zeros_like(logp)
    for rows in (slice(0, 2), slice(2, 5), slice(5, 6)):   # unequal micro-batches
        part = aggregate(logp[rows] * 1.5, mask[rows], mode, 16, total_responses=6, total_tokens=float(mask.sum()))
        grads += torch.autograd.grad(part, logp)[0]
        pieces.append(part.item())
    assert sum(pieces) == pytest.approx(whole.item(), abs=1e-12)
    assert torch.allclose(grads, whole_grad, atol=1e-12)
