"""Token-level losses and their aggregation (SPEC §2).

    PPO-clip      ℓ_k = −min(ρ_k·A_k, clip(ρ_k, 1−ε_low, 1+ε_high)·A_k),  ρ_k = exp(log π_θ − log π_old)
    LUFFY shaping ℓ_k = −f(π_θ(y_k))·A_k,  f(p) = p / (p + γ)   (off-policy tokens, no ratio, no clip)
    SFT           ℓ_k = −log π_θ(y_k)
    KL (k3)       k_k = exp(log π_ref − log π_θ) − (log π_ref − log π_θ) − 1

and `aggregate`, which turns masked per-token losses into the scalar that is back-propagated:

    dr-grpo     Σ ℓ·m / (max_response_tokens · responses)    (Dr. GRPO: a constant normaliser)
    token-mean  Σ ℓ·m / Σ m
    seq-mean    Σ_i (Σ_k ℓ_ik·m_ik / Σ_k m_ik) / responses    (a response with no token adds 0)

When a mini-batch is split into micro-batches, pass the mini-batch's `total_responses` /
`total_tokens` so the micro-batch losses add up to the mini-batch loss (gradient accumulation
then needs no extra scaling).

Leaves out: which tokens carry which advantage (the training loop, from advantages.py and
entropy.py) and the optimizer. Test: tests/test_algo_loss.py, tests/test_algo_trl_crosscheck.py.
"""

from __future__ import annotations

import torch

AGGREGATIONS = ("dr-grpo", "token-mean", "seq-mean")


def ppo_clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                  clip_eps_low: float, clip_eps_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token loss [N, L], clipped [N, L] bool: the clipped branch was taken by the min).

    The clipped branch wins, and the token's gradient is zero, exactly when
    A > 0 and ρ > 1+ε_high, or A < 0 and ρ < 1−ε_low.
    """
    ratio = torch.exp(logp - old_logp)  # [N, L] ρ
    unclipped = ratio * advantages  # [N, L] ρ·A
    clipped = torch.clamp(ratio, 1.0 - clip_eps_low, 1.0 + clip_eps_high) * advantages  # [N, L]
    loss = -torch.minimum(unclipped, clipped)  # [N, L]
    return loss, (clipped < unclipped).detach()  # [N, L], [N, L] bool


def luffy_shaped_loss(logp: torch.Tensor, advantages: torch.Tensor, gamma: float) -> torch.Tensor:
    """LUFFY's policy shaping on off-policy tokens: −f(p)·A, f(p) = p/(p+γ), p = exp(logp) [N, L].

    As in LUFFY (Yan et al. 2025, "Learning to Reason under Off-Policy Guidance",
    arXiv:2504.14945, §3 "policy shaping"; released code `luffy/verl/verl/mix_src/mix_core_alg.py`,
    `compute_token_on_off_policy_loss` with `off_policy_reshape="p_div_p_0.1"`): f is applied to
    the current probability itself, not detached, not divided by an old probability, not
    normalised and not clipped, so ∇ℓ = −A·γ/(p+γ)²·p·∇log p, which re-weights low-probability
    tokens up relative to the plain importance weight p.
    """
    if gamma <= 0:
        raise ValueError(f"LUFFY gamma must be > 0, got {gamma}")
    p = torch.exp(logp)  # [N, L]
    return -(p / (p + gamma)) * advantages  # [N, L]


def sft_token_loss(logp: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the given tokens: −log π_θ(y_k) [N, L]."""
    return -logp  # [N, L]


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(π_θ ‖ π_ref) per token [N, L] (Schulman's, non-negative, unbiased)."""
    log_ratio = ref_logp - logp  # [N, L] log π_ref/π_θ
    return torch.exp(log_ratio) - log_ratio - 1.0  # [N, L]


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ x·m / Σ m over `dim` (all when None); 0 where Σ m = 0."""
    mask = mask.to(x.dtype)
    total = (x * mask).sum() if dim is None else (x * mask).sum(dim=dim)
    count = mask.sum() if dim is None else mask.sum(dim=dim)
    return total / torch.where(count == 0, torch.ones_like(count), count)


def aggregate(token_loss: torch.Tensor, mask: torch.Tensor, mode: str, max_response_tokens: int,
              total_responses: int | None = None, total_tokens: float | None = None) -> torch.Tensor:
    """The scalar loss [] from per-token losses [N, L] and a float mask [N, L].

    total_responses defaults to N and total_tokens to mask.sum(); a caller that splits a
    mini-batch into micro-batches passes the mini-batch totals. A total of 0 tokens gives 0.
    """
    if mode not in AGGREGATIONS:
        raise ValueError(f"unknown loss aggregation {mode!r}; valid: {', '.join(AGGREGATIONS)}")
    if token_loss.shape != mask.shape:
        raise ValueError(f"token_loss {tuple(token_loss.shape)} and mask {tuple(mask.shape)} differ in shape")
    mask = mask.to(token_loss.dtype)  # [N, L]
    responses = token_loss.shape[0] if total_responses is None else total_responses
    if responses <= 0:
        raise ValueError(f"total_responses must be >= 1, got {responses}")
    if mode == "dr-grpo":
        if max_response_tokens <= 0:
            raise ValueError(f"max_response_tokens must be >= 1, got {max_response_tokens}")
        return (token_loss * mask).sum() / (max_response_tokens * responses)  # []
    if mode == "token-mean":
        tokens = mask.sum() if total_tokens is None else torch.as_tensor(total_tokens, dtype=token_loss.dtype,
                                                                        device=token_loss.device)
        return (token_loss * mask).sum() / torch.where(tokens == 0, torch.ones_like(tokens), tokens)  # []
    per_response = masked_mean(token_loss, mask, dim=1)  # [N]
    return per_response.sum() / responses  # []
