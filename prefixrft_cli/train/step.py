"""The policy update of one step: π_old, advantages, token weights, PPO epochs, SFT steps.

Reads next to SPEC §2: `rl_update` evaluates π_old on every response token (prefix
included), with its entropy where the selection ranks by it or the step logs diagnostics
(train.diagnostics_every), computes group advantages, gives on-policy tokens the
response advantage and prefix tokens the prefix advantage, keeps it only on the prefix
tokens that the selection mode picks (per mini-batch, or per micro-batch), and runs
PPO-clip over `ppo_epochs` × `mini_batches`. What each token gets comes from the stage's
`TokenWeighting` (algorithms.py), chosen once: LUFFY's keeps every token of its
whole-demonstration rollout under p/(p+γ) shaping, whatever selection.mode says.
`sft_update` is plain cross-entropy on demonstrations. All math comes from prefixrft_cli.algo.
Every forward runs on buckets of rows packed to their own widths, a group's rows together and
its prompt forwarded once for them (train/packing.py); the per-row tensors here are [N, L]
over the whole rollout batch.

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
from prefixrft_cli.algo.entropy import select_tokens
from prefixrft_cli.algo.loss import aggregate, kl_k3, luffy_shaped_loss, ppo_clip_loss, sft_token_loss
from prefixrft_cli.algorithms import TokenWeighting
from prefixrft_cli.config import Config
from prefixrft_cli.train.backend import Backend, single_process
from prefixrft_cli.train.packing import Bucket, Sequences, bucket_rows, compiled, response_logps, scatter
from prefixrft_cli.train.rollouts import RolloutBatch


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
              generator: torch.Generator, weighting: TokenWeighting, dist: Backend | None = None,
              diagnostics: bool = True) -> UpdateStats:
    """PPO-clip epochs over one rollout batch (this rank's share); returns what the log shows.

    `diagnostics`: also compute the π_old entropy of every response token (entropy_on_policy);
    without it, entropies are computed only where the selection ranks by them (top / bottom).
    """
    dist = dist or single_process()
    seqs = Sequences([r.item.prompt_ids for r in batch.rollouts], [r.response_ids for r in batch.rollouts],
                     [r.prefix_len for r in batch.rollouts], pad_id)
    response_mask, prefix_mask = seqs.masks()                                            # [N, L] each
    on_policy = response_mask.bool() & ~prefix_mask                                      # [N, L]
    micro, cap = cfg.train.micro_batch_responses, bucket_rows(cfg.train.micro_batch_responses)
    train = compiled(model) if cfg.train.compile else model
    groups = torch.arange(batch.groups).chunk(cfg.train.mini_batches)
    minis = [torch.cat([torch.arange(g * batch.group_size, (g + 1) * batch.group_size) for g in part.tolist()])
             for part in groups]
    selection = weighting.selection
    wanted = _entropy_tokens(selection.ranks_by_entropy, selection.candidates, prefix_mask, on_policy, diagnostics)
    candidates = on_policy if selection.candidates == "on-policy" else prefix_mask      # [N, L]
    # With one optimizer step per rollout batch and no micro-batching, π_old is π_θ itself: the
    # forwards with grad give both the loss's log-probs and (detached) π_old and its entropies.
    # A bucket whose token weights the selection cannot change (no candidate on any rank) is
    # back-propagated at once; the others' graphs are kept until the selection has run. The rows
    # with candidates are bucketed last, so that few buckets hold their graphs (less memory).
    single = cfg.train.ppo_epochs == 1 and cfg.train.mini_batches == 1 and micro == 0
    last = set(torch.nonzero(candidates.any(1))[:, 0].tolist()) if single else None
    plans = [seqs.buckets(rows.tolist(), cap, dist.device, last) for rows in minis]    # each mini-batch's buckets
    everything = plans[0] if single else seqs.buckets(list(range(len(seqs.prompts))), cap, dist.device)
    ref_logp = None
    if ref_model is not None:
        with torch.no_grad():
            ref_logp = scatter([response_logps(ref_model, b.tokens)[0] for b in everything], everything,
                               tuple(wanted.shape), device=dist.device)                  # [N, L]
    adv = compute_advantages(batch.rewards(), batch.hybrid_mask(), cfg.advantage.estimator,
                             cfg.advantage.grouping, cfg.advantage.std_eps)
    token_adv = torch.where(prefix_mask, adv.prefix.reshape(-1, 1), adv.response.reshape(-1, 1))  # [N, L]
    token_adv = token_adv * response_mask                                               # [N, L]
    counters = {"loss": 0.0, "clipped": 0.0, "tokens": 0.0, "norm": 0.0, "kl": 0.0, "updates": 0, "skipped": 0}
    settle = None
    if single:
        settled = dist.all_sum([float(b.take(candidates).sum()) for b in everything])  # candidates a bucket, all ranks
        early = _Early(model, everything, [c == 0 for c in settled], token_adv.to(dist.device), ref_logp, cfg,
                       weighting, counters, dist)
        settle = early.settle
    old_logp, entropy, current_logp = _old_policy(train, everything, wanted, single, dist.device, settle)  # [N, L] x 2
    keep = torch.zeros_like(prefix_mask)                                                 # [N, L]
    # the paper's scope, the mini-batch, spans every rank's share; a micro-batch is one rank's
    # consecutive rows (whatever buckets the forwards use)
    across = dist if cfg.selection.scope == "mini-batch" else single_process()
    for rows in minis:
        scopes = [rows] if cfg.selection.scope == "mini-batch" else [rows[ix] for ix in micro_slices(len(rows), micro)]
        for scope in scopes:
            keep[scope] = select_across_ranks(entropy[scope], candidates[scope], selection.mode,
                                              cfg.selection.keep_ratio, generator, across)
    if selection.candidates == "on-policy":  # the paper's control: the entropy filter on plain RFT tokens
        token_adv = token_adv * keep                                                    # [N, L]
    else:
        token_adv = torch.where(prefix_mask, token_adv * keep, token_adv)               # [N, L]
    token_adv = token_adv.to(dist.device)
    demos = _group_demos(batch, pad_id) if weighting.sft_term else None
    for _ in range(cfg.train.ppo_epochs):
        for part, buckets in zip(groups, plans):
            demo_part = None if demos is None else _demo_rows(demos, part)
            _minibatch_step((model, train), optimizer, scheduler, buckets, old_logp, token_adv, ref_logp, demo_part,
                            cfg, weighting, counters, dist, current_logp)
    return _rl_stats(counters, entropy, prefix_mask, on_policy, keep, dist)


def _old_policy(train, buckets: list[Bucket], wanted: torch.Tensor, with_grad: bool, device: torch.device,
                settle=None):
    """(π_old log-probs [N, L] on `device`, entropies [N, L] on the CPU where `wanted`, NaN elsewhere,
    each bucket's log-probs with grad when `with_grad` (the single-update shortcut) else None).

    `settle(k, logp)`, when given, is called on bucket k's log-probs with grad right after its
    forward; where it returns True it has back-propagated them and that bucket's entry is None.
    """
    asked = bool(wanted.any())
    out, graphs = [], []
    with torch.set_grad_enabled(with_grad):
        for k, b in enumerate(buckets):
            logp, h = response_logps(train, b.tokens, b.take(wanted) if asked else None)
            out.append((logp.detach(), h))
            graphs.append(None if settle is not None and settle(k, logp) else logp)
    shape = tuple(wanted.shape)
    old_logp = scatter([logp for logp, _ in out], buckets, shape, device=device)                    # [N, L]
    entropy = scatter([h for _, h in out] if asked else [], buckets, shape, float("nan"), torch.device("cpu"))
    return old_logp, entropy, graphs if with_grad else None


class _Early:
    """The single-update shortcut's buckets that need no selection: loss and backward right after the forward."""

    def __init__(self, model, buckets, settled: list[bool], token_adv, ref_logp, cfg: Config,
                 weighting: TokenWeighting, counters: dict, dist: Backend):
        self.model, self.buckets, self.settled = model, buckets, settled
        self.token_adv, self.ref_logp = token_adv, ref_logp
        self.cfg, self.weighting, self.counters, self.dist = cfg, weighting, counters, dist
        self.totals = _totals(buckets, dist)

    def settle(self, k: int, logp: torch.Tensor) -> bool:
        if not self.settled[k]:
            return False
        bucket = self.buckets[k]
        loss = _bucket_loss(logp, logp.detach(), bucket, self.token_adv, self.ref_logp, self.cfg, self.weighting,
                            self.counters, self.totals)
        self.dist.backward(self.model, loss)
        return True


def _entropy_tokens(ranks_by_entropy: bool, candidates: str, prefix_mask, on_policy, diagnostics: bool):
    """Which tokens [N, L] bool need a π_old entropy: the selection's candidates when it ranks by
    entropy, and every response token on a diagnostics step (the logged entropy statistics)."""
    if diagnostics:
        return prefix_mask | on_policy                                                  # [N, L]
    if ranks_by_entropy:
        return on_policy if candidates == "on-policy" else prefix_mask                  # [N, L]
    return torch.zeros_like(prefix_mask)                                                 # [N, L]


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


def _minibatch_step(models, optimizer, scheduler, buckets: list[Bucket], old_logp, token_adv, ref_logp,
                    demos: tuple[Sequences, list[int]] | None, cfg: Config, weighting: TokenWeighting, counters: dict,
                    dist: Backend, current_logp: list[torch.Tensor] | None = None) -> None:
    """One optimizer step on one mini-batch (its `buckets`), accumulating over them.

    `models` is (the training handle, what runs its forward: itself or its compiled handle);
    `old_logp`, `token_adv`, `ref_logp` are [N, L] over the whole rollout batch. `current_logp`,
    when given, is each bucket's log-probs already computed with grad (the single-update shortcut
    of rl_update): one backward then runs through all of them.
    """
    model, train = models
    totals = _totals(buckets, dist)
    kept_graphs = []
    for k, bucket in enumerate(buckets):
        if current_logp is not None and current_logp[k] is None:
            continue  # settled by the shortcut: already back-propagated and counted
        logp = current_logp[k] if current_logp is not None else response_logps(train, bucket.tokens)[0]  # [n, L_b]
        loss = _bucket_loss(logp, bucket.take(old_logp), bucket, token_adv, ref_logp, cfg, weighting, counters, totals)
        if current_logp is None:
            dist.backward(model, loss)
        else:
            kept_graphs.append(loss)
    if kept_graphs:
        dist.backward(model, torch.stack(kept_graphs).sum())
    if demos is not None:  # RFT w/ SFT loss: + λ · cross-entropy on this mini-batch's demonstrations
        counters["loss"] += _sft_loss(models, *demos, bucket_rows(cfg.train.micro_batch_responses),
                                      cfg.loss.sft_coef, dist)
    norm, applied = dist.step(model, optimizer, scheduler, cfg.optim.grad_clip_norm)
    counters["norm"] += norm
    counters["updates"] += 1
    counters["skipped"] += not applied


def _totals(buckets: list[Bucket], dist: Backend) -> tuple[int, float]:
    """(responses, response tokens) of a mini-batch's buckets over all ranks: what its losses are normalised by."""
    n, tokens = dist.all_sum([sum(len(b.rows) for b in buckets),
                              sum(float(b.tokens.response_mask.sum()) for b in buckets)])
    return int(n), tokens


def _bucket_loss(logp, old_logp, bucket: Bucket, token_adv, ref_logp, cfg: Config, weighting: TokenWeighting,
                 counters: dict, totals: tuple[int, float]) -> torch.Tensor:
    """The PPO-clip (LUFFY / static:W / KL) loss of one bucket [n, L_b] log-probs, its share of the
    mini-batch's aggregate; counts its loss, clipped tokens and KL into `counters`."""
    n, total_tokens = totals
    part = bucket.tokens
    weight = weighting.selection.static_weight
    adv = bucket.take(token_adv)                                                        # [n, L_b]
    token_loss, clipped = ppo_clip_loss(logp, old_logp, adv, cfg.loss.clip_eps_low, cfg.loss.clip_eps_high)  # [n, L_b]
    if weighting.luffy_shaping:  # LUFFY: off-policy tokens are shaped by p/(p+γ), not ratio-clipped
        shaped = luffy_shaped_loss(logp, adv, cfg.loss.luffy_gamma)                     # [n, L_b]
        token_loss = torch.where(part.prefix_mask, shaped, token_loss)
        clipped = clipped & ~part.prefix_mask
    if weight is not None:  # static:W: prefix tokens get W · SFT loss, no advantage
        token_loss = torch.where(part.prefix_mask, weight * sft_token_loss(logp), token_loss)
    if ref_logp is not None:
        kl = kl_k3(logp, bucket.take(ref_logp))                                         # [n, L_b]
        token_loss = token_loss + cfg.loss.kl_coef * kl
        counters["kl"] += float((kl.detach() * part.response_mask).sum()) / max(total_tokens, 1.0)  # token mean
    loss = aggregate(token_loss, part.response_mask, cfg.loss.aggregation, cfg.rollout.max_response_tokens,
                     total_responses=n, total_tokens=total_tokens)
    counters["loss"] += float(loss.detach())
    counters["clipped"] += float((clipped.float() * part.response_mask).sum())
    counters["tokens"] += float(part.response_mask.sum())
    return loss


def _group_demos(batch: RolloutBatch, pad_id: int) -> tuple[Sequences, dict[int, int]] | None:
    """The first demonstration of each group's prompt, and group index -> its row."""
    items = [(g, batch.rollouts[g * batch.group_size].item) for g in range(batch.groups)]
    items = [(g, item) for g, item in items if item.demo_ids]
    if not items:
        return None
    seqs = Sequences([item.prompt_ids for _, item in items], [item.demo_ids[0] for _, item in items],
                     [0] * len(items), pad_id)
    return seqs, {g: row for row, (g, _) in enumerate(items)}


def _demo_rows(demos: tuple[Sequences, dict[int, int]], groups: torch.Tensor) -> tuple[Sequences, list[int]] | None:
    seqs, row_of = demos
    rows = [row_of[g] for g in groups.tolist() if g in row_of]
    return (seqs, rows) if rows else None


def _sft_loss(models, seqs: Sequences, rows: list[int], cap: int, coef: float, dist: Backend) -> float:
    """Back-propagate coef · token-mean cross-entropy on `rows` of `seqs` (global token count); this rank's part."""
    model, train = models
    total_tokens = dist.all_sum([float(sum(len(seqs.responses[i]) for i in rows))])[0]
    value = 0.0
    for bucket in seqs.buckets(rows, cap, dist.device):
        logp, _ = response_logps(train, bucket.tokens)                                   # [n, L_b]
        loss = coef * aggregate(sft_token_loss(logp), bucket.tokens.response_mask, "token-mean", 1,
                                total_tokens=total_tokens)
        dist.backward(model, loss)
        value += float(loss.detach())
    return value


def sft_update(model, optimizer, scheduler, prompts: list[list[int]], demos: list[list[int]], pad_id: int,
               cfg: Config, dist: Backend | None = None) -> UpdateStats:
    """One optimizer step of cross-entropy on full demonstrations (token mean over all ranks' tokens)."""
    dist = dist or single_process()
    train = compiled(model) if cfg.train.compile else model
    seqs = Sequences(prompts, demos, [0] * len(demos), pad_id)
    loss = dist.all_sum([_sft_loss((model, train), seqs, list(range(len(demos))),
                                   bucket_rows(cfg.train.micro_batch_responses), 1.0, dist)])[0]
    norm, applied = dist.step(model, optimizer, scheduler, cfg.optim.grad_clip_norm)
    return UpdateStats(loss=loss, grad_norm=norm, updates=1, skipped_updates=int(not applied))


def demo_nll(model, prompts: list[list[int]], demos: list[list[int]], pad_id: int, micro: int,
             dist: Backend | None = None) -> float:
    """Mean per-token NLL of demonstrations under the current policy (the paper's Fig. 3 'SFT loss'), all ranks."""
    dist = dist or single_process()
    total, count = 0.0, 0.0
    if demos:
        seqs = Sequences(prompts, demos, [0] * len(demos), pad_id)
        with torch.no_grad():
            for bucket in seqs.buckets(list(range(len(demos))), bucket_rows(micro), dist.device):
                logp, _ = response_logps(model, bucket.tokens)                            # [n, L_b]
                total += float((sft_token_loss(logp) * bucket.tokens.response_mask).sum())
        count = float(sum(map(len, demos)))
    total, count = dist.all_sum([total, count])
    return total / count if count else float("nan")
