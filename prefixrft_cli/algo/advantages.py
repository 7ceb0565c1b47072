"""Group-relative advantages (SPEC §2): one scalar per response, shared by its tokens.

For a prompt's group of G rollouts with rewards r_1..r_G (hybrid rollouts included):

    dr-grpo (default, Dr. GRPO)   A_i = r_i − mean_j r_j                  (no std division)
    grpo                          A_i = (r_i − mean_j r_j) / (std_j r_j + eps)

std is the unbiased (Bessel-corrected, n − 1) standard deviation of all G rewards of the
group, as `torch.std` and TRL's GRPOTrainer use; with `grouping: separate` the grpo
division still uses the std of all G rewards.

Grouping decides which rollouts form the baseline:

    all (the paper's text)   every token of rollout i gets A_i over the whole group.
    separate (the released   ordinary rollout i:        r_i − mean(ordinary rollouts)
      code)                  hybrid continuation:       r_i − mean(hybrid rollouts),
                                                        or the raw r_i when the group has one hybrid
                             hybrid prefix tokens:      r_i − mean(ordinary rollouts)

    separate-released        the released code's `compute_dr_grpo_prefix_outcome_advantage` as it
      (an option)            stands: the group is split by prefix, and a subgroup of one has
                             baseline 0 (std 1); here every hybrid rollout has its own prefix, so
                             hybrid continuation:       the raw r_i (also with several hybrids)
                             hybrid prefix tokens:      r_i − mean(ordinary rollouts)
                             ordinary rollout i:        r_i − mean(ordinary), the raw r_i when alone
                             and no group is zeroed for having equal rewards (std 0 divides nothing:
                             its r_i − mean is 0 already, but a lone hybrid keeps its raw reward).

Under `all` and `separate`, a group whose G rewards are all equal gets zero advantage
everywhere (it carries no learning signal, and under `separate` a lone hybrid would
otherwise keep its raw reward). Rows without a hybrid rollout are plain RFT groups.

Leaves out: which tokens keep the advantage (entropy.py) and the loss (loss.py).
Test: tests/test_algo_advantages.py (hand-worked groups and a Python-loop reference).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ESTIMATORS = ("dr-grpo", "grpo")
GROUPINGS = ("all", "separate", "separate-released")


@dataclass
class Advantages:
    """Per-response advantages; the training loop broadcasts them over tokens."""

    response: torch.Tensor  # [B,G] advantage for on-policy tokens (ordinary rollouts and hybrid continuations)
    prefix: torch.Tensor    # [B,G] advantage for the off-policy prefix tokens of hybrid rollouts
    #                         (equal to response under grouping=all, and on ordinary rollouts)


def _masked_group_mean(rewards: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
    """Mean reward over the members of each group; 0 where a group has no member."""
    count = member.sum(dim=1, keepdim=True)  # [B,1]
    total = (rewards * member).sum(dim=1, keepdim=True)  # [B,1]
    return total / count.clamp(min=1)  # [B,1]


def _check_ordinary(hybrid: torch.Tensor, grouping: str) -> None:
    lacking = hybrid.any(dim=1) & hybrid.all(dim=1)  # [B]
    if bool(lacking.any()):
        raise ValueError(f"grouping {grouping!r} needs an ordinary rollout in every group with a hybrid one; "
                         f"group {int(lacking.nonzero()[0])} has only hybrid rollouts")


def _separate_released(r: torch.Tensor, hybrid: torch.Tensor, estimator: str, std_eps: float) -> Advantages:
    """grouping separate-released (see the module docstring): per-prefix subgroups, no zeroing of flat groups."""
    _check_ordinary(hybrid, "separate-released")
    ordinary = ~hybrid  # [B,G]
    count = ordinary.sum(dim=1, keepdim=True)  # [B,1]
    alone = count <= 1  # [B,1] a subgroup of one: baseline 0, std 1
    mean_ordinary = torch.where(alone, torch.zeros_like(count, dtype=r.dtype), _masked_group_mean(r, ordinary))
    spread = ((r - mean_ordinary) ** 2 * ordinary).sum(dim=1, keepdim=True) / (count - 1).clamp(min=1)  # [B,1]
    std_ordinary = torch.where(alone, torch.ones_like(spread), spread.sqrt())  # [B,1] unbiased, as torch.std
    baseline = torch.where(hybrid, torch.zeros_like(r), mean_ordinary.expand_as(r))  # [B,G] hybrids: 0
    scale = torch.where(hybrid, torch.ones_like(r), std_ordinary.expand_as(r))  # [B,G] hybrids: 1
    response = r - baseline if estimator == "dr-grpo" else (r - baseline) / (scale + std_eps)  # [B,G]
    prefix = torch.where(hybrid, response - mean_ordinary, response)  # [B,G] p = (continuation adv) − mean(ordinary)
    return Advantages(response=response, prefix=prefix)


def compute_advantages(rewards: torch.Tensor, hybrid: torch.Tensor, estimator: str = "dr-grpo",
                       grouping: str = "all", std_eps: float = 1e-6) -> Advantages:
    """Advantages for rewards [B,G] and hybrid flags [B,G] (True = starts from a demonstration prefix)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {estimator!r}; valid: {', '.join(ESTIMATORS)}")
    if grouping not in GROUPINGS:
        raise ValueError(f"unknown advantage grouping {grouping!r}; valid: {', '.join(GROUPINGS)}")
    if rewards.dim() != 2 or hybrid.shape != rewards.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and hybrid {tuple(hybrid.shape)} must both be [B,G]")
    r = rewards.to(torch.float32)  # [B,G]
    hybrid = hybrid.to(torch.bool)  # [B,G]
    ordinary = ~hybrid  # [B,G]

    if grouping == "separate-released":
        return _separate_released(r, hybrid, estimator, std_eps)
    if grouping == "all":
        response = r - r.mean(dim=1, keepdim=True)  # [B,G] r_i - mean_j r_j
        prefix = response  # [B,G]
    else:
        _check_ordinary(hybrid, grouping)
        mean_ordinary = _masked_group_mean(r, ordinary)  # [B,1]
        mean_hybrid = _masked_group_mean(r, hybrid)  # [B,1]
        lone_hybrid = hybrid.sum(dim=1, keepdim=True) == 1  # [B,1]
        continuation = torch.where(lone_hybrid, r, r - mean_hybrid)  # [B,G] (used on hybrid rows)
        response = torch.where(hybrid, continuation, r - mean_ordinary)  # [B,G]
        prefix = torch.where(hybrid, r - mean_ordinary, response)  # [B,G]

    if estimator == "grpo":
        # Unbiased std over all G rewards; a group with G = 1 has zero variance and is zeroed below.
        std = r.std(dim=1, keepdim=True) if r.shape[1] > 1 else torch.zeros_like(r[:, :1])  # [B,1]
        response = response / (std + std_eps)  # [B,G]
        prefix = prefix / (std + std_eps)  # [B,G]

    flat = (r.amax(dim=1, keepdim=True) == r.amin(dim=1, keepdim=True))  # [B,1] zero-variance groups
    zero = torch.zeros((), dtype=r.dtype)
    return Advantages(response=torch.where(flat, zero, response),  # [B,G]
                      prefix=torch.where(flat, zero, prefix))  # [B,G]
