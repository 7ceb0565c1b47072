"""The policy update of one step: π_old, advantages, token weights, PPO epochs, SFT steps.

Reads next to SPEC §2: `rl_update` evaluates π_old on every response token (prefix
included) with its entropies, computes group advantages, gives on-policy tokens the
response advantage and prefix tokens the prefix advantage, keeps it only on the prefix
tokens that the selection mode picks (per mini-batch, or per micro-batch), and runs
PPO-clip over `ppo_epochs` × `mini_batches`. What each token gets comes from the stage's
`TokenWeighting` (algorithms.py), chosen once: LUFFY's keeps every token of its
whole-demonstration rollout under p/(p+γ) shaping, whatever selection.mode says.
`sft_update` is plain cross-entropy on demonstrations. All math comes from prefixrft_cli.algo.

Distributed (`dist`, a train/backend.py Backend; one process when omitted): each rank holds
its share of every mini-batch; losses are normalised by the mini-batch's global response and
token counts, the entropy selection runs over the global mini-batch (all-gathered candidate
entropies, so ties and `random` draw as in one process), and the statistics are summed over
ranks before they are returned.

Shapes: N responses, P prompt tokens, L response tokens, V vocabulary.
Test: tests/test_train_step.py (against a slow per-sequence reference on a tiny local Llama).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prefixrft_cli.algo.advantages import compute_advantages
from prefixrft_cli.algo.entropy import select_tokens, token_entropy
from prefixrft_cli.algo.loss import aggregate, kl_k3, luffy_shaped_loss, ppo_clip_loss, sft_token_loss
from prefixrft_cli.algorithms import TokenWeighting
from prefixrft_cli.config import Config
from prefixrft_cli.train.backend import Backend, single_process
from prefixrft_cli.train.rollouts import RolloutBatch


@dataclass
class TokenBatch:
    """Prompts left-padded to P, responses right-padded to L, in one [N, P+L] tensor."""

    input_ids: torch.Tensor       # [N, P+L]
    attention_mask: torch.Tensor  # [N, P+L]
    position_ids: torch.Tensor    # [N, P+L]
    response_mask: torch.Tensor   # [N, L] float, 1 on response tokens
    prefix_mask: torch.Tensor     # [N, L] bool, 1 on off-policy (demonstration) tokens
    prompt_width: int             # P

    def rows(self, index: torch.Tensor) -> TokenBatch:
        return TokenBatch(self.input_ids[index], self.attention_mask[index], self.position_ids[index],
                          self.response_mask[index], self.prefix_mask[index], self.prompt_width)

    def to(self, device: torch.device) -> TokenBatch:
        return TokenBatch(self.input_ids.to(device), self.attention_mask.to(device), self.position_ids.to(device),
                          self.response_mask.to(device), self.prefix_mask.to(device), self.prompt_width)


def pack(prompts: list[list[int]], responses: list[list[int]], prefix_lens: list[int], pad_id: int) -> TokenBatch:
    n = len(prompts)
    width, length = max(map(len, prompts)), max(1, max(map(len, responses)))
    ids = torch.full((n, width + length), pad_id, dtype=torch.long)   # [N, P+L]
    attention = torch.zeros((n, width + length), dtype=torch.long)     # [N, P+L]
    response_mask = torch.zeros((n, length))                           # [N, L]
    prefix_mask = torch.zeros((n, length), dtype=torch.bool)           # [N, L]
    for i, (prompt, response, cut) in enumerate(zip(prompts, responses, prefix_lens)):
        ids[i, width - len(prompt):width] = torch.tensor(prompt, dtype=torch.long)
        ids[i, width:width + len(response)] = torch.tensor(response, dtype=torch.long)
        attention[i, width - len(prompt):width + len(response)] = 1
        response_mask[i, :len(response)] = 1.0
        prefix_mask[i, :cut] = True
    positions = (attention.cumsum(-1) - 1).clamp(min=0)                # [N, P+L]
    return TokenBatch(ids, attention, positions, response_mask, prefix_mask, width)


def response_logps(model, batch: TokenBatch, with_entropy: bool = False):
    """log π(y_k | ·) [N, L] of the response tokens, and their entropies [N, L] when asked."""
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                use_cache=False)
    p = batch.prompt_width
    logits = out.logits[:, p - 1:-1, :].float()                       # [N, L, V] predicts tokens p..p+L-1
    targets = batch.input_ids[:, p:]                                  # [N, L]
    logp = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]  # [N, L]
    if not with_entropy:
        return logp, None
    with torch.no_grad():
        return logp, token_entropy(logits.detach())                   # [N, L], [N, L]


def micro_slices(n: int, micro: int) -> list[torch.Tensor]:
    size = micro if micro > 0 else n
    return [torch.arange(s, min(s + size, n)) for s in range(0, n, size)]


@dataclass
class UpdateStats:
    loss: float = 0.0
    clip_fraction: float = 0.0
    grad_norm: float = 0.0
    prefix_tokens_kept: int = 0
    prefix_tokens_total: int = 0
    entropy_kept: float = float("nan")     # mean π_old entropy of kept prefix tokens
    entropy_dropped: float = float("nan")  # mean π_old entropy of dropped prefix tokens
    entropy_response: float = float("nan") # mean π_old entropy of on-policy tokens
    kl: float = 0.0
    updates: int = 0                       # optimizer steps taken or skipped
    skipped_updates: int = 0               # of them, skipped for a non-finite gradient norm


def rl_update(model, ref_model, optimizer, scheduler, batch: RolloutBatch, cfg: Config, pad_id: int,
              generator: torch.Generator, weighting: TokenWeighting, dist: Backend | None = None) -> UpdateStats:
    """PPO-clip epochs over one rollout batch (this rank's share); returns what the log shows."""
    dist = dist or single_process()
    tokens = pack([r.item.prompt_ids for r in batch.rollouts], [r.response_ids for r in batch.rollouts],
                  [r.prefix_len for r in batch.rollouts], pad_id).to(dist.device)
    micro = cfg.train.micro_batch_responses
    # With one optimizer step per rollout batch and no micro-batching, π_old is π_θ itself: one
    # forward with grad gives both the loss's log-probs and (detached) π_old and its entropies.
    single = cfg.train.ppo_epochs == 1 and cfg.train.mini_batches == 1 and micro == 0
    current_logp = None
    if single:
        current_logp, entropy = response_logps(model, tokens, with_entropy=True)          # [N, L] each
        old_logp = current_logp.detach()
    else:
        with torch.no_grad():
            old = [response_logps(model, tokens.rows(ix), with_entropy=True)
                   for ix in micro_slices(len(batch.rollouts), micro)]
            old_logp, entropy = torch.cat([o[0] for o in old]), torch.cat([o[1] for o in old])  # [N, L] each
    ref_logp = None
    if ref_model is not None:
        with torch.no_grad():
            ref_logp = torch.cat([response_logps(ref_model, tokens.rows(ix))[0]
                                  for ix in micro_slices(len(batch.rollouts), micro)])   # [N, L]
    adv = compute_advantages(batch.rewards(), batch.hybrid_mask(), cfg.advantage.estimator,
                             cfg.advantage.grouping, cfg.advantage.std_eps)
    prefix_mask, entropy = tokens.prefix_mask.cpu(), entropy.cpu()                      # [N, L] each
    on_policy = tokens.response_mask.cpu().bool() & ~prefix_mask                         # [N, L]
    token_adv = torch.where(prefix_mask, adv.prefix.reshape(-1, 1), adv.response.reshape(-1, 1))  # [N, L]
    token_adv = token_adv * tokens.response_mask.cpu()                                  # [N, L]
    groups = torch.arange(batch.groups).chunk(cfg.train.mini_batches)
    minis = [torch.cat([torch.arange(g * batch.group_size, (g + 1) * batch.group_size) for g in part.tolist()])
             for part in groups]
    keep = torch.zeros_like(prefix_mask)                                                 # [N, L]
    selection = weighting.selection
    # the paper's scope, the mini-batch, spans every rank's share; a micro-batch is one rank's
    across = dist if cfg.selection.scope == "mini-batch" else single_process()
    for rows in minis:
        scopes = [rows] if cfg.selection.scope == "mini-batch" else [rows[ix] for ix in micro_slices(len(rows), micro)]
        for scope in scopes:
            candidates = on_policy[scope] if selection.candidates == "on-policy" else prefix_mask[scope]
            keep[scope] = select_across_ranks(entropy[scope], candidates, selection.mode, cfg.selection.keep_ratio,
                                              generator, across)
    if selection.candidates == "on-policy":  # the paper's control: the entropy filter on plain RFT tokens
        token_adv = token_adv * keep                                                    # [N, L]
    else:
        token_adv = torch.where(prefix_mask, token_adv * keep, token_adv)               # [N, L]
    token_adv = token_adv.to(dist.device)
    demos = _group_demos(batch, pad_id) if weighting.sft_term else None
    counters = {"loss": 0.0, "clipped": 0.0, "tokens": 0.0, "norm": 0.0, "kl": 0.0, "updates": 0, "skipped": 0}
    for _ in range(cfg.train.ppo_epochs):
        for part, rows in zip(groups, minis):
            demo_part = None if demos is None else _demo_rows(demos, part)
            _minibatch_step(model, optimizer, scheduler, tokens.rows(rows), old_logp[rows], token_adv[rows],
                            None if ref_logp is None else ref_logp[rows], demo_part, cfg, weighting, counters,
                            dist, current_logp)
    return _rl_stats(counters, entropy, prefix_mask, on_policy, keep, dist)


def select_across_ranks(entropy, candidates, mode: str, keep_ratio: float, generator, dist: Backend) -> torch.Tensor:
    """select_tokens over the candidates [n, L] of every rank's share, as one process holding them all would.

    The ranks' shares of a mini-batch are consecutive rows of one process's mini-batch, so the
    candidates' entropies in row-major order, concatenated in rank order, are that process's
    candidates in its own row-major order: ties, counts and `random` draws come out the same.
    """
    if dist.world_size == 1:
        return select_tokens(entropy, candidates, mode, keep_ratio, generator)
    local = entropy[candidates]                                                         # [C_r]
    shares = dist.all_gather(local.tolist())
    values = torch.tensor([v for share in shares for v in share], dtype=torch.float32)  # [C]
    chosen = select_tokens(values[None], torch.ones_like(values, dtype=torch.bool)[None], mode, keep_ratio,
                           generator)[0]                                               # [C]
    start = sum(len(share) for share in shares[:dist.rank])
    keep = torch.zeros_like(candidates, dtype=torch.bool)                              # [n, L]
    keep[candidates] = chosen[start:start + local.numel()]
    return keep


def _rl_stats(counters: dict, entropy, prefix_mask, on_policy, keep, dist: Backend) -> UpdateStats:
    """The update's statistics, summed over ranks (the gradient norm is already global)."""
    kept, dropped = prefix_mask & keep, prefix_mask & ~keep                              # [N, L] each
    sums = dist.all_sum([counters["loss"], counters["clipped"], counters["tokens"], counters["kl"],
                         float(prefix_mask.sum()), float(kept.sum()), float(entropy[kept].sum()),
                         float(dropped.sum()), float(entropy[dropped].sum()),
                         float(on_policy.sum()), float(entropy[on_policy].sum())])
    loss, clipped, tokens, kl, total, n_kept, h_kept, n_dropped, h_dropped, n_on, h_on = sums
    updates = max(counters["updates"], 1)
    nan = float("nan")
    return UpdateStats(loss=loss / updates, clip_fraction=clipped / max(tokens, 1.0),
                       grad_norm=counters["norm"] / updates, prefix_tokens_kept=int(n_kept),
                       prefix_tokens_total=int(total), entropy_kept=h_kept / n_kept if n_kept else nan,
                       entropy_dropped=h_dropped / n_dropped if n_dropped else nan,
                       entropy_response=h_on / n_on if n_on else 0.0, kl=kl / updates,
                       updates=counters["updates"], skipped_updates=counters["skipped"])


def _minibatch_step(model, optimizer, scheduler, tokens: TokenBatch, old_logp, token_adv, ref_logp,
                    demos: TokenBatch | None, cfg: Config, weighting: TokenWeighting, counters: dict, dist: Backend,
                    current_logp: torch.Tensor | None = None) -> None:
    """One optimizer step on one mini-batch, accumulating over micro-batches.

    `current_logp` [n, L], when given, is this mini-batch's log-probs already computed with grad
    (the single-update shortcut of rl_update) and is used instead of a second forward.
    """
    rows = tokens.input_ids.shape[0]
    n, total_tokens = dist.all_sum([rows, float(tokens.response_mask.sum())])  # the global mini-batch's counts
    n = int(n)
    weight = weighting.selection.static_weight
    for ix in micro_slices(rows, cfg.train.micro_batch_responses):
        part = tokens.rows(ix)
        logp = current_logp if current_logp is not None else response_logps(model, part)[0]  # [n, L]
        token_loss, clipped = ppo_clip_loss(logp, old_logp[ix], token_adv[ix],
                                            cfg.loss.clip_eps_low, cfg.loss.clip_eps_high)  # [n, L]
        if weighting.luffy_shaping:  # LUFFY: off-policy tokens are shaped by p/(p+γ), not ratio-clipped
            shaped = luffy_shaped_loss(logp, token_adv[ix], cfg.loss.luffy_gamma)       # [n, L]
            token_loss = torch.where(part.prefix_mask, shaped, token_loss)
            clipped = clipped & ~part.prefix_mask
        if weight is not None:  # static:W: prefix tokens get W · SFT loss, no advantage
            token_loss = torch.where(part.prefix_mask, weight * sft_token_loss(logp), token_loss)
        if ref_logp is not None:
            kl = kl_k3(logp, ref_logp[ix])                                              # [n, L]
            token_loss = token_loss + cfg.loss.kl_coef * kl
            counters["kl"] += float((kl.detach() * part.response_mask).sum()) / max(total_tokens, 1.0)  # token mean
        loss = aggregate(token_loss, part.response_mask, cfg.loss.aggregation, cfg.rollout.max_response_tokens,
                         total_responses=n, total_tokens=total_tokens)
        dist.backward(model, loss)
        counters["loss"] += float(loss.detach())
        counters["clipped"] += float((clipped.float() * part.response_mask).sum())
        counters["tokens"] += float(part.response_mask.sum())
    if demos is not None:  # RFT w/ SFT loss: + λ · cross-entropy on this mini-batch's demonstrations
        sft = _sft_loss(model, demos.to(dist.device), cfg.train.micro_batch_responses, cfg.loss.sft_coef, dist)
        counters["loss"] += sft
    norm, applied = dist.step(model, optimizer, scheduler, cfg.optim.grad_clip_norm)
    counters["norm"] += norm
    counters["updates"] += 1
    counters["skipped"] += not applied


def _group_demos(batch: RolloutBatch, pad_id: int) -> tuple[TokenBatch, dict[int, int]] | None:
    """The first demonstration of each group's prompt, packed, and group index -> row."""
    items = [(g, batch.rollouts[g * batch.group_size].item) for g in range(batch.groups)]
    items = [(g, item) for g, item in items if item.demo_ids]
    if not items:
        return None
    tokens = pack([item.prompt_ids for _, item in items], [item.demo_ids[0] for _, item in items],
                  [0] * len(items), pad_id)
    return tokens, {g: row for row, (g, _) in enumerate(items)}


def _demo_rows(demos: tuple[TokenBatch, dict[int, int]], groups: torch.Tensor) -> TokenBatch | None:
    tokens, row_of = demos
    rows = [row_of[g] for g in groups.tolist() if g in row_of]
    return tokens.rows(torch.tensor(rows)) if rows else None


def _sft_loss(model, tokens: TokenBatch, micro: int, coef: float, dist: Backend) -> float:
    """Back-propagate coef · token-mean cross-entropy on `tokens` (global token count); returns this rank's part."""
    total_tokens, value = dist.all_sum([float(tokens.response_mask.sum())])[0], 0.0
    for ix in micro_slices(tokens.input_ids.shape[0], micro):
        part = tokens.rows(ix)
        logp, _ = response_logps(model, part)
        loss = coef * aggregate(sft_token_loss(logp), part.response_mask, "token-mean", 1, total_tokens=total_tokens)
        dist.backward(model, loss)
        value += float(loss.detach())
    return value


def sft_update(model, optimizer, scheduler, prompts: list[list[int]], demos: list[list[int]], pad_id: int,
               cfg: Config, dist: Backend | None = None) -> UpdateStats:
    """One optimizer step of cross-entropy on full demonstrations (token mean over all ranks' tokens)."""
    dist = dist or single_process()
    tokens = pack(prompts, demos, [0] * len(demos), pad_id).to(dist.device)
    loss = dist.all_sum([_sft_loss(model, tokens, cfg.train.micro_batch_responses, 1.0, dist)])[0]
    norm, applied = dist.step(model, optimizer, scheduler, cfg.optim.grad_clip_norm)
    return UpdateStats(loss=loss, grad_norm=norm, updates=1, skipped_updates=int(not applied))


def demo_nll(model, prompts: list[list[int]], demos: list[list[int]], pad_id: int, micro: int,
             dist: Backend | None = None) -> float:
    """Mean per-token NLL of demonstrations under the current policy (the paper's Fig. 3 'SFT loss'), all ranks."""
    dist = dist or single_process()
    total, count = 0.0, 0.0
    if demos:
        tokens = pack(prompts, demos, [0] * len(demos), pad_id).to(dist.device)
        with torch.no_grad():
            total = sum(float((sft_token_loss(response_logps(model, tokens.rows(ix))[0])
                               * tokens.response_mask[ix]).sum()) for ix in micro_slices(len(demos), micro))
        count = float(tokens.response_mask.sum())
    total, count = dist.all_sum([total, count])
    return total / count if count else float("nan")
