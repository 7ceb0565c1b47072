"""The prefix-length scheduler (SPEC §2): how long a demonstration prefix a hybrid rollout gets.

At step t of T the length fraction of a hybrid rollout is drawn as L ~ U(low_t, high):

    cosine  (the paper's default)  low_t = low_end + ½(high − low_end)(1 + cos(π·t/T))
    linear                          low_t = high − (high − low_end)·t/T
    uniform (the paper's ablation) low_t = low_end at every step
    fixed                           L = `fixed` for every hybrid rollout (no sampling)

so with the defaults (high 0.95, low_end 0.05) cosine and linear start with prefixes of
nearly the whole demonstration and end spread over [0.05, 0.95].

Progress t/T: t is clamped to [0, T]; when T <= 0 (a run with a single step, or no
schedule length known) the schedule is taken to be finished, t/T = 1, so low_t = low_end.

Leaves out: turning a fraction into a token count (prefix.py) and logging (the training loop
logs low_t and every sampled L). Test: tests/test_algo_schedule.py.
"""

from __future__ import annotations

import math

import torch

SCHEDULERS = ("cosine", "linear", "uniform", "fixed")


def _check_scheduler(scheduler: str) -> None:
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown prefix-length scheduler {scheduler!r}; valid: {', '.join(SCHEDULERS)}")


def _check_bounds(high: float, low_end: float, fixed: float) -> None:
    if not 0.0 <= low_end <= high <= 1.0:
        raise ValueError(f"prefix length bounds need 0 <= low_end <= high <= 1, got low_end={low_end}, high={high}")
    if not 0.0 <= fixed <= 1.0:
        raise ValueError(f"fixed prefix length fraction must be in [0, 1], got {fixed}")


def schedule_progress(step: int, total_steps: int) -> float:
    """t/T in [0, 1] with t clamped to [0, T]; 1.0 when T <= 0 (the schedule is over)."""
    if total_steps <= 0:
        return 1.0
    return min(max(step, 0), total_steps) / total_steps


def prefix_len_low(scheduler: str, step: int, total_steps: int, high: float = 0.95,
                   low_end: float = 0.05, fixed: float = 0.5) -> float:
    """low_t, the lower end of U(low_t, high) at this step (for `fixed`: the fixed L itself)."""
    _check_scheduler(scheduler)
    _check_bounds(high, low_end, fixed)
    progress = schedule_progress(step, total_steps)  # t/T
    if scheduler == "cosine":
        return low_end + 0.5 * (high - low_end) * (1.0 + math.cos(math.pi * progress))
    if scheduler == "linear":
        return high - (high - low_end) * progress
    if scheduler == "uniform":
        return low_end
    return fixed


def sample_prefix_fractions(scheduler: str, step: int, total_steps: int, count: int,
                            generator: torch.Generator, high: float = 0.95, low_end: float = 0.05,
                            fixed: float = 0.5) -> tuple[torch.Tensor, float]:
    """(L [count] float32 ~ U(low_t, high), low_t); for `fixed` every L equals `fixed`.

    Draws `count` numbers from `generator` (none for `fixed`), so a seeded generator makes
    the run reproducible and its state can be checkpointed.
    """
    low = prefix_len_low(scheduler, step, total_steps, high=high, low_end=low_end, fixed=fixed)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if scheduler == "fixed":
        return torch.full((count,), fixed, dtype=torch.float32), low  # [count]
    u = torch.rand(count, generator=generator, dtype=torch.float32)  # [count] ~ U[0, 1)
    return low + (high - low) * u, low  # [count] ~ U[low_t, high)
