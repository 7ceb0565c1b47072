"""Unbiased pass@k (Chen et al., 2021): the chance that at least one of k samples is correct.

With n samples of a problem of which c are correct, drawing k of them without replacement,

    pass@k = 1 - C(n-c, k) / C(n, k)
           = 1 - prod_{j=n-c+1}^{n} (1 - k/j)          (product form, no binomials)

The product is summed in log space (log1p) and turned back with expm1, so it stays exact
to a few ulps for n in the thousands (the paper samples 2048 per AIME problem) where the
binomials themselves would overflow a double. A benchmark's pass@k is the mean over its
problems.

Leaves out: reading samples and choosing which samples count as correct (evaluate/passk_report.py).
Test: tests/test_passk_algo.py (brute-force enumeration for small n, closed forms, n = 4096).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with n samples, c of them correct (0 <= c <= n, 1 <= k <= n)."""
    if n < 1 or not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs n >= 1, 0 <= c <= n and 1 <= k <= n; got n={n} c={c} k={k}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    if c == 0:
        return 0.0
    j = np.arange(n - c + 1, n + 1, dtype=np.float64)   # (c,) the factors' denominators
    log_all_wrong = float(np.log1p(-k / j).sum())      # log C(n-c,k)/C(n,k)
    return -math.expm1(log_all_wrong)                    # 1 - exp(...) without cancellation


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean pass@k over problems given as (n, c) pairs; every n must be at least k."""
    if not counts:
        raise ValueError("mean_pass_at_k needs at least one problem")
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def k_values(n: int) -> list[int]:
    """The k of a pass@k curve: 1, 2, 4, ... up to n, and n itself when it is not a power of two."""
    if n < 1:
        raise ValueError(f"k_values needs n >= 1, got {n}")
    ks = [1 << i for i in range(n.bit_length()) if 1 << i <= n]
    if ks[-1] != n:
        ks.append(n)
    return ks
