"""Rows of (prompt, response) token ids packed for the training forward, and the forward itself.

`pack` lays a bucket's rows out with each distinct prompt once, left-padded to the widest
prompt P ([U, P]), and the responses right-padded to the longest response L ([n, L]);
`TokenBatch.input_ids` etc. give the full-row layout ([n, P+L], response token k of every
row in column P+k). `Sequences.buckets` is how an update packs: rows that share a prompt are
sorted next to each other (a rollout group, split only by `last`), the groups by their
longest response, and the sorted rows cut into micro-batches of at most `cap` rows, each
packed to its own widths. A bucket's [n, L_b] tensors are its rows of the update's [N, L]
tensors cut to its own L_b columns (`Bucket.take`; the columns past L_b are padding in every
one of its rows). The split changes only which rows share a forward: every loss is normalised
by totals over the mini-batch (algo/loss.py `aggregate`), so the sum over buckets is the
mini-batch's loss. The number of buckets depends only on the number of rows, never on their
lengths or prompts, so every rank of a sharded run makes the same number of forwards.

`response_logps` is the forward: log π of each response token and, on the tokens asked for,
the entropy of π's next-token distribution. Where some rows of a bucket share a prompt, the
distinct prompts are forwarded once into a cache, its keys and values (with their graph)
indexed out to the rows, and the responses forwarded on top; the first response token's
log-prob comes from the prompt's last position. One backward through both reaches the prompt
positions as a full-row forward does: the same loss and gradients to float rounding. Logits
are computed for the response positions only. A bucket whose rows all have their own prompt
(demonstrations; prefix-rft's hybrid rows, bucketed last) runs the full-row forward, as does
every bucket under activation checkpointing with grad (transformers turns the cache off
there: a checkpointed layer would append to it again on the backward replay) and a model
whose forward takes no cache. The same forward serves π_θ, π_old, the reference model,
`demo_nll`, the SFT loss and the compiled handle, and works through DDP, FSDP2 and
DeepSpeed (two forwards before one backward). `compiled` is `train.compile`: torch.compile
(inductor, dynamic shapes) of the training forward and backward, one compiled handle per module.

Shapes: N rows, n rows of a bucket, U distinct prompts of a bucket, P prompt tokens, L response
tokens, V vocabulary, H key/value heads, D head width.
Test: tests/test_train_step.py (the bucketed update against one forward, and a per-sequence
reference), tests/test_shared_prompt.py (the shared-prompt forward against full rows).
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from prefixrft_cli.algo.entropy import token_entropy
from prefixrft_cli.rollout.engine import ForwardOptions, distinct_prompts, forward_options

# Rows a bucket holds when train.micro_batch_responses is 0 ("the whole mini-batch"): the
# mini-batch is still one optimizer step, forwarded in length-sorted buckets of this many rows.
AUTO_BUCKET_ROWS = 16


@dataclass
class TokenBatch:
    """Rows of (prompt, response): each distinct prompt once, left-padded to P; responses right-padded to L.

    Row i's prompt is `prompt_ids[prompt_of[i]]`. The rows' full layout ([n, P+L], response token
    k of every row in column P+k) is what the plain forward runs (`input_ids`, ...).
    """

    prompt_ids: torch.Tensor      # [U, P] the distinct prompts, left-padded
    prompt_mask: torch.Tensor     # [U, P] 1 on prompt tokens
    prompt_of: torch.Tensor       # [n] long, each row's prompt
    response_ids: torch.Tensor    # [n, L] right-padded
    response_mask: torch.Tensor   # [n, L] float, 1 on response tokens
    prefix_mask: torch.Tensor     # [n, L] bool, 1 on off-policy (demonstration) tokens

    @property
    def prompt_width(self) -> int:
        return self.prompt_ids.shape[1]   # P

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.prompt_ids[self.prompt_of], self.response_ids], 1)                 # [n, P+L]

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.prompt_mask[self.prompt_of], self.response_mask.long()], 1)        # [n, P+L]

    @property
    def position_ids(self) -> torch.Tensor:
        return (self.attention_mask.cumsum(-1) - 1).clamp(min=0)                                   # [n, P+L]

    def response_positions(self) -> torch.Tensor:
        """Position ids [n, L] of the response tokens: row i's token k sits at its prompt length + k."""
        lengths = self.prompt_mask.sum(1)[self.prompt_of]                                          # [n]
        return lengths[:, None] + torch.arange(self.response_ids.shape[1], device=lengths.device)  # [n, L]

    def to(self, device: torch.device) -> TokenBatch:
        return TokenBatch(*(getattr(self, f.name).to(device) for f in dataclasses.fields(self)))


def pack(prompts: list[list[int]], responses: list[list[int]], prefix_lens: list[int], pad_id: int) -> TokenBatch:
    distinct, copy_of = distinct_prompts(prompts)                  # [U] prompts, [n] -> U
    n, width, length = len(prompts), max(map(len, distinct)), max(1, max(map(len, responses)))
    prompt_ids = torch.full((len(distinct), width), pad_id, dtype=torch.long)   # [U, P]
    prompt_mask = torch.zeros((len(distinct), width), dtype=torch.long)         # [U, P]
    for u, prompt in enumerate(distinct):
        prompt_ids[u, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        prompt_mask[u, width - len(prompt):] = 1
    response_ids = torch.full((n, length), pad_id, dtype=torch.long)            # [n, L]
    response_mask = torch.zeros((n, length))                                    # [n, L]
    prefix_mask = torch.zeros((n, length), dtype=torch.bool)                    # [n, L]
    for i, (response, cut) in enumerate(zip(responses, prefix_lens)):
        response_ids[i, :len(response)] = torch.tensor(response, dtype=torch.long)
        response_mask[i, :len(response)] = 1.0
        prefix_mask[i, :cut] = True
    prompt_of = torch.tensor(copy_of, dtype=torch.long)                         # [n]
    return TokenBatch(prompt_ids, prompt_mask, prompt_of, response_ids, response_mask, prefix_mask)


def length_buckets(lengths: list, cap: int) -> list[list[int]]:
    """Positions 0..N-1 sorted by length (ties keep their order), cut into ceil(N / cap) runs of
    near-equal size (at most `cap`; sizes differ by at most one, larger first). A length may be
    any sortable key, e.g. (group, length)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    count = -(-len(order) // cap)
    size, extra = divmod(len(order), max(count, 1))
    out, start = [], 0
    for k in range(count):
        end = start + size + (1 if k < extra else 0)
        out.append(order[start:end])
        start = end
    return out


def bucket_rows(micro_batch_responses: int) -> int:
    """Rows per forward: train.micro_batch_responses, or AUTO_BUCKET_ROWS when it is 0."""
    return micro_batch_responses if micro_batch_responses > 0 else AUTO_BUCKET_ROWS


@dataclass
class Bucket:
    """Some rows of an update, packed to their own widths."""

    rows: torch.Tensor            # [n] long, indices into the update's N rows
    tokens: TokenBatch            # those rows: [n, P_b+L_b], masks [n, L_b]

    @property
    def length(self) -> int:
        return self.tokens.response_mask.shape[1]   # L_b

    def take(self, values: torch.Tensor) -> torch.Tensor:
        """This bucket's rows of an [N, L] tensor (L >= L_b), cut to its L_b columns: [n, L_b]."""
        return values[self.rows.to(values.device), :self.length]


@dataclass
class Sequences:
    """The rows of an update as token ids: prompt, response (prefix + continuation), prefix length."""

    prompts: list[list[int]]
    responses: list[list[int]]
    prefix_lens: list[int]
    pad_id: int

    def masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(response_mask [N, L] float, prefix_mask [N, L] bool) of every row, L the longest response."""
        length = max(1, max(map(len, self.responses)))
        response_mask = torch.zeros((len(self.responses), length))      # [N, L]
        prefix_mask = torch.zeros((len(self.responses), length), dtype=torch.bool)  # [N, L]
        for i, (response, cut) in enumerate(zip(self.responses, self.prefix_lens)):
            response_mask[i, :len(response)] = 1.0
            prefix_mask[i, :cut] = True
        return response_mask, prefix_mask

    def buckets(self, rows: list[int], cap: int, device: torch.device, last: set[int] | None = None) -> list[Bucket]:
        """`rows` cut into ceil(len(rows) / cap) buckets of at most `cap` rows, each packed on `device`.

        Rows that share a prompt (on the same side of `last`) are sorted next to each other, the
        groups by their longest response, then prompt length, the rows of a group by length: a
        bucket holds whole groups where the cut allows, and forwards their prompt once. The rows in
        `last`, if given, are sorted after all the others (as many buckets either way).
        """
        last = last or set()
        keys = [(i in last, tuple(self.prompts[i])) for i in rows]
        longest, first = {}, {}
        for j, (i, key) in enumerate(zip(rows, keys)):
            longest[key] = max(longest.get(key, 0), len(self.responses[i]))
            first.setdefault(key, j)
        lengths = [(key[0], longest[key], len(key[1]), first[key], len(self.responses[i]))
                   for i, key in zip(rows, keys)]
        out = []
        for run in length_buckets(lengths, cap):
            chosen = [rows[j] for j in run]
            tokens = pack([self.prompts[i] for i in chosen], [self.responses[i] for i in chosen],
                          [self.prefix_lens[i] for i in chosen], self.pad_id)
            out.append(Bucket(torch.tensor(chosen, dtype=torch.long), tokens.to(device)))
        return out


def scatter(parts: list[torch.Tensor], buckets: list[Bucket], shape: tuple[int, int], fill: float = 0.0,
            device: torch.device | None = None) -> torch.Tensor:
    """The [N, L] tensor whose bucket rows are `parts` ([n, L_b] each); `fill` elsewhere."""
    device = device or (parts[0].device if parts else None)
    out = torch.full(shape, fill, dtype=torch.float32, device=device)          # [N, L]
    for part, bucket in zip(parts, buckets):
        out[bucket.rows.to(out.device), :bucket.length] = part.to(out.device, torch.float32)
    return out


def response_logps(model, batch: TokenBatch, entropy_mask: torch.Tensor | None = None):
    """(log π(y_k | ·) [n, L], entropies [n, L] of the tokens in `entropy_mask` (NaN elsewhere), or None)."""
    options = _cache_options(model)
    if options is not None and batch.prompt_ids.shape[0] < batch.response_ids.shape[0]:   # some rows share a prompt
        logits = _shared_prompt_logits(model, batch, options).float()                     # [n, L, V]
    else:
        logits = _full_row_logits(model, batch).float()                                   # [n, L, V]
    logp = torch.log_softmax(logits, -1).gather(-1, batch.response_ids[..., None])[..., 0]    # [n, L]
    if entropy_mask is None:
        return logp, None
    with torch.no_grad():
        entropy = torch.full(logp.shape, float("nan"), device=logp.device)     # [n, L]
        mask = entropy_mask.to(logp.device, torch.bool)                          # [n, L]
        entropy[mask] = token_entropy(logits.detach()[mask])                     # [C] of the asked tokens
    return logp, entropy


def _full_row_logits(model, batch: TokenBatch) -> torch.Tensor:
    """Logits [n, L, V] predicting each response token, from one forward of every row's prompt + response."""
    length = batch.response_ids.shape[1]
    keep = {"logits_to_keep": length + 1} if _takes(model, "logits_to_keep") else {}
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                use_cache=False, **keep)
    return out.logits[:, -length - 1:-1]                                 # [n, L, V] predicts tokens P..P+L-1


def _shared_prompt_logits(model, batch: TokenBatch, options: ForwardOptions) -> torch.Tensor:
    """Logits [n, L, V] predicting each response token, each distinct prompt forwarded once.

    The prompts' forward fills a cache; its keys and values (with their graph) are indexed out to
    the rows ([U, ...] -> [n, ...] per layer) and the responses run on top of them, at positions
    prompt length + k, their attention mask the row's prompt mask then its response mask. The
    prompt's last position predicts response token 0; the response forward the tokens after it.
    One backward through both sends each row's gradient into its prompt's positions, as the
    full-row forward does.
    """
    cache = DynamicCache()
    keyword = options.cache_keyword
    head = model(input_ids=batch.prompt_ids, attention_mask=batch.prompt_mask,
                 position_ids=(batch.prompt_mask.cumsum(-1) - 1).clamp(min=0), **{keyword: cache}, **options.extra)
    cache.batch_select_indices(batch.prompt_of)                           # [U, H, P, D] -> [n, H, P, D]
    tail = model(input_ids=batch.response_ids, attention_mask=batch.attention_mask,
                 position_ids=batch.response_positions(), use_cache=True, **{keyword: cache})
    first = head.logits[:, -1:][batch.prompt_of]                          # [n, 1, V] predicts token P
    return torch.cat([first, tail.logits[:, :-1]], 1)                     # [n, L, V]


def _cache_options(model) -> ForwardOptions | None:
    """How the prompts' forward is called (the cache keyword; use_cache, logits of the last position)
    where a prompt can be shared through a cache; None where the forward takes no cache, or where
    activation checkpointing recomputes layers in backward (transformers then turns the cache off)."""
    inner = _unwrapped(model)
    if not (_takes(inner, "cache") or _takes(inner, "past_key_values")):
        return None
    if torch.is_grad_enabled() and inner.training and any(getattr(m, "gradient_checkpointing", False)
                                                          for m in inner.modules()):
        return None
    return forward_options(inner)


def _takes(model, keyword: str) -> bool:
    return keyword in inspect.signature(_unwrapped(model).forward).parameters


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a compiled handle, a DDP wrapper or a DeepSpeed engine (FSDP2 wraps in place)."""
    while isinstance(inner := getattr(model, "_orig_mod", None) or getattr(model, "module", None), torch.nn.Module):
        model = inner
    return model


_COMPILED: list[tuple[torch.nn.Module, torch.nn.Module]] = []   # (module, its compiled handle): the last one


def compiled(model: torch.nn.Module) -> torch.nn.Module:
    """torch.compile(model) (inductor, dynamic shapes), made once per module and reused every step.

    Dynamic shapes from the first call: a bucket's widths change every step, and a static graph
    per shape would recompile each time. The module's own parameters are shared, not copied.
    Only the last module's handle is kept (a run trains one policy).
    """
    if not _COMPILED or _COMPILED[0][0] is not model:
        _COMPILED[:] = [(model, torch.compile(model, dynamic=True))]
    return _COMPILED[0][1]
