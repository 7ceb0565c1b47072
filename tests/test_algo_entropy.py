"""Token entropy and the entropy-based token selection (every mode, ties, scope, a loop reference)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from prefixrft_cli.algo import entropy as entropy_module
from prefixrft_cli.algo.entropy import keep_count, select_tokens, token_entropy


def test_entropy_hand_values() -> None:
    logits = torch.tensor([
        [0.0, 0.0, 0.0, 0.0],                      # uniform over 4: ln 4 = 1.3862944
        [0.0, math.log(3.0), -math.inf, -math.inf],  # p = [1/4, 3/4, 0, 0]: 0.25·ln4 + 0.75·ln(4/3) = 0.5623351
        [1000.0, 0.0, 0.0, 0.0],                   # a certain token, huge logits: 0, not nan
        [0.0, -math.inf, -math.inf, -math.inf],    # a single allowed token: 0, not nan
    ])
    assert token_entropy(logits).tolist() == pytest.approx([1.3862944, 0.5623351, 0.0, 0.0], abs=1e-6)


def test_entropy_matches_torch_distributions_and_keeps_leading_shape() -> None:
    logits = torch.randn(3, 5, 11, generator=torch.Generator().manual_seed(0)) * 3
    got = token_entropy(logits)
    assert got.shape == (3, 5) and got.dtype == torch.float32
    assert torch.allclose(got, torch.distributions.Categorical(logits=logits).entropy(), atol=1e-5)
    # bfloat16 logits still give a float32 result
    assert token_entropy(logits.to(torch.bfloat16)).dtype == torch.float32


def test_entropy_chunks_agree_with_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    logits = torch.randn(4, 6, 7, generator=torch.Generator().manual_seed(1))
    whole = token_entropy(logits)
    monkeypatch.setattr(entropy_module, "_CHUNK_ELEMENTS", 3 * 7)   # 3 rows a chunk: 8 chunks
    assert torch.equal(token_entropy(logits), whole)


def test_entropy_is_differentiable() -> None:
    # d H / d z_j = −p_j (log p_j + H); at uniform logits log p_j = −H, so the gradient is 0
    logits = torch.zeros(1, 4, requires_grad=True)
    token_entropy(logits).sum().backward()
    assert torch.allclose(logits.grad, torch.zeros(1, 4), atol=1e-7)


ENTROPY = torch.tensor([[3.0, 1.0, 2.0, 2.0],
                        [0.5, 2.0, 9.0, 0.0]])
CANDIDATES = torch.tensor([[1, 1, 1, 1],
                           [0, 1, 1, 0]], dtype=torch.bool)   # 6 candidates: entropies 3, 1, 2, 2 | 2, 9


def test_top_takes_highest_entropy_with_row_major_ties() -> None:
    # keep ceil(0.5·6) = 3: 9 and 3, then one of the three 2s -> the earliest, row 0 position 2
    got = select_tokens(ENTROPY, CANDIDATES, "top", 0.5)
    assert got.int().tolist() == [[1, 0, 1, 0], [0, 0, 1, 0]]
    # keep ceil(0.2·6) = ceil(1.2) = 2: 9 and 3
    assert select_tokens(ENTROPY, CANDIDATES, "top", 0.2).int().tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]]


def test_bottom_takes_lowest_entropy() -> None:
    # 3 lowest among candidates: 1, then the first two 2s (row 0 positions 2 and 3); the non-candidate
    # 0.5 and 0.0 in row 1 are never chosen
    got = select_tokens(ENTROPY, CANDIDATES, "bottom", 0.5)
    assert got.int().tolist() == [[0, 1, 1, 1], [0, 0, 0, 0]]


def test_all_and_none() -> None:
    assert torch.equal(select_tokens(ENTROPY, CANDIDATES, "all", 0.2), CANDIDATES)
    assert not select_tokens(ENTROPY, CANDIDATES, "none", 0.2).any()


def test_random_subset_size_reproducibility_and_uniformity() -> None:
    got = select_tokens(ENTROPY, CANDIDATES, "random", 0.5, torch.Generator().manual_seed(0))
    assert int(got.sum()) == 3 and not (got & ~CANDIDATES).any()
    again = select_tokens(ENTROPY, CANDIDATES, "random", 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(got, again)
    # each of 6 candidates is kept with probability 3/6 = 0.5; over 2000 draws the share is 0.5 ± 0.011 (1 sd)
    gen = torch.Generator().manual_seed(1)
    counts = sum(select_tokens(ENTROPY, CANDIDATES, "random", 0.5, gen).int() for _ in range(2000))
    shares = counts[CANDIDATES].float() / 2000
    assert torch.allclose(shares, torch.full_like(shares, 0.5), atol=0.05)
    with pytest.raises(ValueError, match="Generator"):
        select_tokens(ENTROPY, CANDIDATES, "random", 0.5)


def test_keep_count_rounding() -> None:
    # 0.7·10 = 7.000000000000001 in floating point: still 7; 0.2·6 = 1.2 -> 2; 1.0·5 = 5; 0.01·3 -> 1
    assert [keep_count(0.7, 10), keep_count(0.2, 6), keep_count(1.0, 5), keep_count(0.01, 3)] == [7, 2, 5, 1]


@pytest.mark.parametrize("mode", ["top", "bottom", "random", "all", "none"])
def test_empty_candidates_select_nothing(mode: str) -> None:
    none = torch.zeros(2, 4, dtype=torch.bool)
    assert not select_tokens(ENTROPY, none, mode, 0.2, torch.Generator().manual_seed(0)).any()


def test_bad_mode_and_ratio() -> None:
    with pytest.raises(ValueError, match="top, bottom, random, all, none"):
        select_tokens(ENTROPY, CANDIDATES, "highest", 0.2)
    with pytest.raises(ValueError, match="keep_ratio"):
        select_tokens(ENTROPY, CANDIDATES, "top", 0.0)


def reference(entropy: list[list[float]], candidates: list[list[bool]], mode: str, ratio: float):
    """Sort (key, row, column) tuples: the position breaks ties, earlier first."""
    items = [(e, i, j) for i, row in enumerate(entropy) for j, e in enumerate(row) if candidates[i][j]]
    keep = math.ceil(round(ratio * len(items), 9))
    sign = -1 if mode == "top" else 1
    items.sort(key=lambda t: (sign * t[0], t[1], t[2]))
    out = [[False] * len(row) for row in entropy]
    for _, i, j in items[:keep]:
        out[i][j] = True
    return out


@pytest.mark.parametrize("mode", ["top", "bottom"])
def test_matches_a_python_loop_on_random_input(mode: str) -> None:
    rng = random.Random(mode)
    for _ in range(50):
        n, t = rng.randint(1, 5), rng.randint(1, 9)
        entropy = [[float(rng.randint(0, 4)) for _ in range(t)] for _ in range(n)]   # many ties
        candidates = [[rng.random() < 0.6 for _ in range(t)] for _ in range(n)]
        ratio = rng.choice([0.1, 0.2, 0.5, 0.8, 1.0])
        got = select_tokens(torch.tensor(entropy), torch.tensor(candidates), mode, ratio)
        assert got.tolist() == reference(entropy, candidates, mode, ratio)
