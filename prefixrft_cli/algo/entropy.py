"""Entropy-based clipping of prefix tokens (SPEC §2): token entropy and the token selection.

    H_k = −Σ_v π_old(v | ·)_k log π_old(v | ·)_k            (entropy of the next-token distribution)

`select_tokens` decides which candidate tokens keep their advantage; the others get zero:

    top      the ceil(keep_ratio·count) candidates of highest entropy (the paper's default, 20%)
    bottom   the same number of lowest entropy
    random   the same number, a uniform random subset (drawn from the caller's generator)
    all      every candidate (Prefix-RFT "update all")
    none     no candidate (Prefix-RFT "freeze prefix")

The scope is whatever the caller passes: all prefix tokens of a mini-batch (the paper) or of
a micro-batch (the released code); for `onpolicy-clip` the candidates are on-policy tokens.
Ties in entropy are broken by position in row-major order (earlier response, then earlier
token, wins), so the selection is deterministic. `count` is the number of candidates and
keep_ratio·count is rounded to 9 decimals before the ceiling, so 0.7·10 keeps 7, not 8.

Leaves out: static:W (an SFT weight instead of the advantage, assembled by the training loop
from loss.sft_token_loss); the typed parse of selection.mode is algo/selection.py. Test: tests/test_algo_entropy.py.
"""

from __future__ import annotations

import math

import torch

from prefixrft_cli.algo.selection import ENTROPY_MODES

# Rows of logits handled at once by token_entropy: bounds the temporaries to about
# a few times _CHUNK_ELEMENTS float32 values (64 MiB each) whatever the batch; at V = 150k
# that is 111 rows a chunk.
_CHUNK_ELEMENTS = 1 << 24


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy [...] float32 of softmax(logits [..., V]), computed through log_softmax.

    Works in chunks of rows so that each float32 temporary stays under 64 MiB, instead
    of materialising [..., V] float32 copies of a large batch. Differentiable, though callers
    normally wrap it in torch.no_grad().
    """
    vocab = logits.shape[-1]
    rows = logits.reshape(-1, vocab)  # [R,V]
    step = max(1, _CHUNK_ELEMENTS // max(vocab, 1))
    parts = []
    for start in range(0, rows.shape[0], step):
        logp = torch.log_softmax(rows[start:start + step], dim=-1, dtype=torch.float32)  # [r,V]
        # -inf log-probs (masked vocabulary) have p = 0; clamp so 0·log 0 reads as 0, not nan.
        finite = logp.clamp(min=torch.finfo(torch.float32).min)  # [r,V]
        parts.append(-(logp.exp() * finite).sum(dim=-1))  # [r]
    if not parts:
        return torch.zeros(logits.shape[:-1], dtype=torch.float32, device=logits.device)
    return torch.cat(parts).reshape(logits.shape[:-1])  # [...]


def keep_count(keep_ratio: float, count: int) -> int:
    """ceil(keep_ratio·count), with the product rounded to 9 decimals first (0.7·10 -> 7)."""
    return min(count, math.ceil(round(keep_ratio * count, 9)))


def select_tokens(entropy: torch.Tensor, candidates: torch.Tensor, mode: str, keep_ratio: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Which candidate tokens [N, L] bool keep their advantage; always a subset of `candidates`."""
    if mode not in ENTROPY_MODES:
        raise ValueError(f"unknown token selection mode {mode!r}; valid: {', '.join(ENTROPY_MODES)}")
    if entropy.shape != candidates.shape:
        raise ValueError(f"entropy {tuple(entropy.shape)} and candidates {tuple(candidates.shape)} differ in shape")
    candidates = candidates.to(torch.bool)  # [N, L]
    if mode == "all":
        return candidates.clone()  # [N, L]
    selected = torch.zeros_like(candidates)  # [N, L]
    if mode == "none":
        return selected
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    positions = candidates.reshape(-1).nonzero().squeeze(1)  # [C] flat indices, row-major order
    keep = keep_count(keep_ratio, positions.numel())
    if keep == 0:
        return selected
    if mode == "random":
        if generator is None:
            raise ValueError("select_tokens mode 'random' needs a seeded torch.Generator")
        chosen = torch.randperm(positions.numel(), generator=generator)[:keep]  # [k]
    else:
        values = entropy.reshape(-1)[positions].to(torch.float32)  # [C]
        # Stable sort keeps row-major order among equal entropies: earlier tokens win ties.
        order = torch.sort(values, descending=(mode == "top"), stable=True).indices  # [C]
        chosen = order[:keep]  # [k]
    selected.view(-1)[positions[chosen]] = True  # [N, L]
    return selected
