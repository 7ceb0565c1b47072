"""Cutting a demonstration prefix (SPEC §2): from a length fraction L to a prefix token count.

    |p| = floor(L·|y*|), clamped to [1, |y*| − 1]

so a hybrid rollout always has at least one off-policy prefix token and leaves at least one
token for the policy to write. A demonstration shorter than 2 tokens cannot satisfy both and
is rejected (the caller should filter such demonstrations out when it loads the data).

Rounding: L arrives as float32 (schedule.py), and float32(0.7) = 0.699999988…, so a plain
floor(0.7·10) would give 6. A product within the float rounding of L of an integer
(|y*|·eps(dtype of L)) counts as that integer, so L = 0.7 on 10 tokens cuts 7.

Leaves out: tokenising the demonstration and building the hybrid prompt (the rollout code).
Test: tests/test_algo_prefix.py.
"""

from __future__ import annotations

import torch


def prefix_lengths(fractions: torch.Tensor, demo_lengths: torch.Tensor) -> torch.Tensor:
    """Prefix token counts [M] long: floor(L·|y*|) clamped to [1, |y*| − 1]."""
    if fractions.shape != demo_lengths.shape or fractions.dim() != 1:
        raise ValueError(f"fractions {tuple(fractions.shape)} and demo_lengths {tuple(demo_lengths.shape)} "
                         "must be 1-D tensors of the same length")
    if demo_lengths.numel() and int(demo_lengths.min()) < 2:
        short = int(torch.argmin(demo_lengths))
        raise ValueError(f"demonstration {short} has {int(demo_lengths[short])} tokens; a prefix needs "
                         "at least 2 (>= 1 prefix token and >= 1 left for the policy)")
    eps = torch.finfo(fractions.dtype).eps if fractions.is_floating_point() else 0.0
    n = demo_lengths.to(torch.float64)  # [M]
    raw = fractions.to(torch.float64) * n  # [M] L·|y*|
    cut = torch.floor(raw + n * eps).to(torch.long)  # [M] floor, forgiving L's float rounding
    return torch.minimum(torch.clamp(cut, min=1), demo_lengths.to(torch.long) - 1)  # [M] in [1, |y*|-1]
