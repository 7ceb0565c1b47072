"""pass@k against a brute-force enumeration, exact big-integer binomials, and closed forms."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest

from prefixrft_cli.algo.passk import k_values, mean_pass_at_k, pass_at_k


def brute_force(n: int, c: int, k: int) -> Fraction:
    """Share of the k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return Fraction(sum(any(i < c for i in s) for s in subsets), len(subsets))


@pytest.mark.parametrize("n", range(1, 9))
def test_matches_enumeration_for_small_n(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(float(brute_force(n, c, k)), abs=1e-12)


def test_hand_derived_values() -> None:
    # n=4, c=1, k=2: C(3,2)/C(4,2) = 3/6 -> pass@2 = 0.5
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5, abs=1e-15)
    # n=5, c=2, k=2: C(3,2)/C(5,2) = 3/10 -> pass@2 = 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7, abs=1e-15)
    # n=10, c=3, k=3: C(7,3)/C(10,3) = 35/120 -> 1 - 7/24 = 17/24
    assert pass_at_k(10, 3, 3) == pytest.approx(17 / 24, abs=1e-15)


@pytest.mark.parametrize("n", [1, 7, 32, 1000, 4096])
def test_closed_forms(n: int) -> None:
    for c in sorted({0, 1, n // 3, n - 1, n} & set(range(n + 1))):
        assert pass_at_k(n, c, 1) == pytest.approx(c / n, abs=1e-12)     # k=1 -> c/n
        assert pass_at_k(n, c, n) == (1.0 if c > 0 else 0.0)            # k=n -> 1 if any correct
    for k in k_values(n):
        assert pass_at_k(n, 0, k) == 0.0                                 # c=0 -> 0
        assert pass_at_k(n, n, k) == 1.0                                 # c=n -> 1
        c = n - k + 1                                                    # n-c < k -> 1
        if c <= n:
            assert pass_at_k(n, c, k) == 1.0


def test_stable_for_n_4096_against_exact_binomials() -> None:
    # math.comb is exact with Python integers; C(4096, 2048) has ~1230 digits, far beyond a double.
    n = 4096
    for c in (1, 2, 5, 40, 400, 2000, 4000):
        for k in (1, 2, 16, 256, 2048, 4096):
            if n - c < k:
                continue
            exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
            got = pass_at_k(n, c, k)
            assert got == pytest.approx(float(exact), rel=1e-12, abs=1e-300)
    # tiny probabilities keep their relative precision: n=4096, c=1, k=1 -> 1/4096
    assert pass_at_k(n, 1, 1) == pytest.approx(1 / 4096, rel=1e-14)


def test_mean_and_k_values() -> None:
    # two problems: (4 samples, 1 correct) and (4, 4): pass@2 = (0.5 + 1) / 2 = 0.75
    assert mean_pass_at_k([(4, 1), (4, 4)], 2) == pytest.approx(0.75)
    assert k_values(1) == [1]
    assert k_values(32) == [1, 2, 4, 8, 16, 32]
    assert k_values(12) == [1, 2, 4, 8, 12]
    assert k_values(4096)[-1] == 4096 and len(k_values(4096)) == 13


@pytest.mark.parametrize("bad", [(0, 0, 1), (4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5)])
def test_rejects_impossible_arguments(bad: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        pass_at_k(*bad)
