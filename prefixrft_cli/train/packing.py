"""Rows of (prompt, response) token ids packed for the training forward, and the forward itself.

`pack` lays rows out as one tensor: prompts left-padded to the widest prompt P, responses
right-padded to the longest response L, so response token k of every row sits in column P+k.
`Sequences.buckets` is how an update packs: it sorts the rows by length (prompt + response)
and cuts them into micro-batches of at most `cap` rows, each packed to its own widths, so a
forward pays for little padding (the whole batch packed at once is ~18-30% padding on the toy
task). A bucket's [n, L_b] tensors are its rows of the update's [N, L] tensors cut to its
own L_b columns (`Bucket.take`; the columns past L_b are padding in every one of its rows).
The split changes only which rows share a forward: every loss is normalised by totals over
the mini-batch (algo/loss.py `aggregate`), so the sum over buckets is the mini-batch's loss.

The number of buckets depends only on the number of rows, never on their lengths, so every
rank of a sharded run makes the same number of forwards.

`response_logps` is the forward: log π of each response token and, on the tokens asked for,
the entropy of π's next-token distribution. `compiled` is `train.compile`: torch.compile
(inductor, dynamic shapes) of the training forward and backward, one compiled handle per module.

Shapes: N rows, n rows of a bucket, P prompt tokens, L response tokens, V vocabulary.
Test: tests/test_train_step.py (the bucketed update against one forward, and a per-sequence reference).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prefixrft_cli.algo.entropy import token_entropy

# Rows a bucket holds when train.micro_batch_responses is 0 ("the whole mini-batch"): the
# mini-batch is still one optimizer step, forwarded in length-sorted buckets of this many rows.
AUTO_BUCKET_ROWS = 16


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


def length_buckets(lengths: list[int], cap: int) -> list[list[int]]:
    """Positions 0..N-1 sorted by length (ties keep their order), cut into ceil(N / cap) runs of
    near-equal size (at most `cap`; sizes differ by at most one, larger first)."""
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

    def buckets(self, rows: list[int], cap: int, device: torch.device) -> list[Bucket]:
        """`rows` sorted by length and cut into buckets of at most `cap` rows, each packed on `device`."""
        lengths = [len(self.prompts[i]) + len(self.responses[i]) for i in rows]
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
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                use_cache=False)
    p = batch.prompt_width
    logits = out.logits[:, p - 1:-1, :].float()                       # [n, L, V] predicts tokens p..p+L-1
    targets = batch.input_ids[:, p:]                                  # [n, L]
    logp = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]  # [n, L]
    if entropy_mask is None:
        return logp, None
    with torch.no_grad():
        entropy = torch.full(logp.shape, float("nan"), device=logp.device)     # [n, L]
        mask = entropy_mask.to(logp.device, torch.bool)                          # [n, L]
        entropy[mask] = token_entropy(logits.detach()[mask])                     # [C] of the asked tokens
    return logp, entropy


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
