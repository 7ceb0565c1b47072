"""Prefix cutting: floor(L·|y*|) clamped to [1, |y*| − 1], at the boundaries and on random input."""

from __future__ import annotations

import math

import pytest
import torch

from prefixrft_cli.algo.prefix import prefix_lengths


def cut(fractions: list[float], lengths: list[int], dtype: torch.dtype = torch.float32) -> list[int]:
    return prefix_lengths(torch.tensor(fractions, dtype=dtype), torch.tensor(lengths)).tolist()


def test_boundaries() -> None:
    # L = 0 on 10 tokens: floor(0) = 0 -> clamped up to 1
    # L = 1 on 10 tokens: floor(10) = 10 -> clamped down to 9 (one token left for the policy)
    # L = 0.25 on 8 tokens: 2 exactly
    # L = 0.55 on 10 tokens: floor(5.5) = 5
    assert cut([0.0, 1.0, 0.25, 0.55], [10, 10, 8, 10]) == [1, 9, 2, 5]


def test_exact_integer_products_survive_float32_rounding() -> None:
    # float32(0.7) = 0.69999998…, float32(0.3)·10 = 3.0000001: both must cut exactly 7 and 3 tokens
    assert cut([0.7, 0.3, 0.9, 0.6], [10, 10, 10, 5]) == [7, 3, 9, 3]
    assert cut([0.7], [1000], dtype=torch.float64) == [700]


def test_two_token_demonstration_always_gets_one() -> None:
    # |y*| = 2 leaves exactly one valid prefix length, 1: floor(0)=0->1, floor(1.98)=1, floor(2)=2->1
    assert cut([0.0, 0.99, 1.0], [2, 2, 2]) == [1, 1, 1]


def test_short_demonstration_and_bad_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="demonstration 1 has 1 tokens"):
        cut([0.5, 0.5], [10, 1])
    with pytest.raises(ValueError):
        prefix_lengths(torch.tensor([0.5, 0.5]), torch.tensor([10]))


def test_empty_input() -> None:
    out = prefix_lengths(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    assert out.shape == (0,) and out.dtype == torch.long


def test_matches_a_python_loop_on_random_input() -> None:
    gen = torch.Generator().manual_seed(0)
    fractions = torch.rand(500, generator=gen, dtype=torch.float64)
    lengths = torch.randint(2, 5000, (500,), generator=gen)
    expected = [min(max(math.floor(f * n), 1), n - 1) for f, n in zip(fractions.tolist(), lengths.tolist())]
    assert prefix_lengths(fractions, lengths).tolist() == expected
