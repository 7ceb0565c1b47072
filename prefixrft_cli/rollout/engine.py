"""Rollout engines behind one sampler protocol: token ids in, token ids and log-probs out.

`hf` runs the policy module itself, one forward per generated position and no Python loop
over sequences. `vllm` wraps vLLM's offline engine (optional extra, imported lazily) and
copies the trainer's weights into it after each update (`sync_weights`).

How the hf engine decodes a `generate` call (shapes: N rows of a decode batch, P its
left-padded context width, L its decoding steps, C = P + L, H heads, D head size):
- **Prefill by context length.** The prompts are sorted by length and prefilled in groups
  (`length_groups`) whose padding stays under `PADDING_SHARE` of their tokens, so an on-policy
  prompt is not padded to the width of the hybrid contexts (prompt + up to 95% of a
  demonstration). The groups' keys and values are then laid out left-padded in one cache and
  decoded as one batch: one forward per step whatever the mix of lengths. Results come back
  in input order.
- **A preallocated KV cache** (`DecodeCache`): one [N, H, C, D] key and value buffer per
  layer, written in place, instead of a torch.cat of the whole cache per layer per position.
  A model with sliding-window layers (Mistral, Gemma 2) gets transformers' own DynamicCache
  instead, which knows its windows (and is prefilled in one group).
- **A shared prompt is prefilled once.** The n rows of a group carry the same prompt: each
  distinct prompt goes through the prefill once and its keys, values and last logits are
  copied to every row that carries it (`distinct_prompts`; the cache's `batch_select_indices`
  with repeated rows, for DecodeCache and transformers' DynamicCache alike).
- **Finished rows leave the forward.** A row that emitted eos or spent its budget stays in
  the batch until finished rows make up `COMPACT_SHARE` of it; then the live rows' cache,
  attention mask, positions and next tokens are index-selected (one copy per compaction, not
  per step), and the left-pad columns no live row needs are cut off with them (the hybrid
  rows, whose budgets are short, take their width with them when they finish).

The contract (`Sampler`, `Generation`, per-row seeds, `Lockstep`) is rollout/sampler.py, which
both engines import. The hf engine draws one uniform number per row and position from the
row's own torch.Generator (seeded by the row's seed alone) and inverts the cumulative
distribution of the (temperature, top-p) sampling distribution, so a row's tokens do not
depend on the other rows of its batch, nor on how rows are batched, up to float rounding of
the logits (a uniform number within ~1e-6 of a cdf step could land on the neighbouring
token; tests/test_engine.py checks the engine against a one-row, no-cache reference). Under a
`Lockstep` (a sharded policy, where every forward is a collective) the ranks agree on the
number of decode batches and, per batch, on the number of prefill groups and of decoding
steps: a rank whose rows all finished keeps forwarding one row until every rank is done.

The model's forward takes the cache as `cache=` from transformers 5.24 and as
`past_key_values=` before (the old name is removed in 5.40); the name is read once from the
forward's signature. Test: tests/test_engine.py; speed: bench/rollout_speed.py.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from prefixrft_cli.rollout.sampler import Generation, Lockstep, eos_ids, make_sampler, row_seed

__all__ = ["HFSampler", "make_sampler"]  # make_sampler lives in rollout/sampler.py; still importable from here

PADDING_SHARE = 0.25   # a decode batch's pad tokens stay under this share of its context tokens
COMPACT_SHARE = 0.125  # finished rows are dropped from the forward once they are this share of it


class HFSampler:
    """Batched sampling from a transformers causal LM with a preallocated KV cache."""

    def __init__(self, model: torch.nn.Module, tokenizer, batch_size: int = 256, lockstep: Lockstep | None = None):
        self.lockstep = lockstep
        self.eos_ids = eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.batch_size = batch_size
        self.sync_weights(model)

    def sync_weights(self, model: torch.nn.Module) -> None:
        self.model = model  # the same module: nothing to copy
        self.forward_options = forward_options(model)

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, seed=0, seeds=None) -> Generation:
        budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        seeds = [row_seed(seed, i) for i in range(len(prompts))] if seeds is None else list(seeds)
        if not len(budgets) == len(seeds) == len(prompts):
            raise ValueError("one max_new_tokens and one seed per prompt")
        prompts = [list(p) for p in prompts]
        batches = length_groups([len(p) for p in prompts], self.batch_size, padding_share=float("inf"))
        if self.lockstep is not None:  # every rank runs as many batches: pad with one empty-budget row each
            batches += [[]] * (self.lockstep.max_int(len(batches)) - len(batches))
        out = Generation([[]] * len(prompts), [[]] * len(prompts), [True] * len(prompts))
        for rows in batches:
            part = self._generate_batch([prompts[i] for i in rows] or [[self.pad_id]],
                                        [budgets[i] for i in rows] or [0], temperature, top_p,
                                        [seeds[i] for i in rows] or [0])
            for i, tokens, logprobs, truncated in zip(rows, part.tokens, part.logprobs, part.truncated):
                out.tokens[i], out.logprobs[i], out.truncated[i] = tokens, logprobs, truncated
        return out

    @torch.no_grad()
    def _generate_batch(self, prompts, budgets, temperature, top_p, seeds) -> Generation:
        was_training = self.model.training
        self.model.eval()
        try:
            return self._decode(prompts, budgets, temperature, top_p, seeds)
        finally:
            self.model.train(was_training)

    def _decode(self, prompts, budgets, temperature, top_p, seeds) -> Generation:
        device = next(self.model.parameters()).device
        n, width = len(prompts), max(len(p) for p in prompts)
        budget = torch.tensor(budgets, device=device)                                  # [N]
        steps = int(budget.max())
        if self.lockstep is not None:
            steps = self.lockstep.max_int(steps)
        uniforms = row_uniforms(seeds, steps).to(device)                               # [N, L]
        tokens = torch.full((n, steps), self.pad_id, dtype=torch.long, device=device)  # [N, L]
        logps = torch.zeros((n, steps), device=device)                                 # [N, L]
        lengths = torch.zeros(n, dtype=torch.long, device=device)                      # [N]
        eos = torch.tensor(self.eos_ids, device=device)
        live = (budget > 0).nonzero()[:, 0] if bool((budget > 0).any()) else budget.new_zeros(1)  # [R] rows in the forward
        rows_prompts = [prompts[i] for i in live.tolist()]
        distinct, copy_of = distinct_prompts(rows_prompts)                             # [U] prompts, [R] -> U
        logits, cache = self._prefill(distinct, width, steps, device)                 # [U, V]
        if len(distinct) < len(rows_prompts):  # a group's n rows share one prompt: prefilled once, copied n times
            source = torch.tensor(copy_of, device=device)
            cache.batch_select_indices(source)
            logits = logits[source]                                                    # [R, V]
        attention = left_pad(rows_prompts, self.pad_id, steps, device)[1]              # [R, C]
        pos = torch.tensor([[len(p) - 1] for p in rows_prompts], device=device)        # [R, 1] last prompt position
        done = budget[live] <= 0                                   # [R] finished rows still in the forward
        trimmed = 0                                                # left-pad columns no live row needs any more
        for t in range(steps):
            if t > 0:
                logits = self._forward(feed, attention[:, :width + t - trimmed], pos, cache)  # [R, V]
            token, logp = _sample(logits, temperature, top_p, uniforms[live, t])       # [R], [R]
            rows = live[~done]
            tokens[rows, t], logps[rows, t] = token[~done], logp[~done]
            lengths[rows] += 1
            done = done | torch.isin(token, eos) | (lengths[live] >= budget[live])
            finished = bool(done.all())
            if self.lockstep.all_true(finished) if self.lockstep is not None else finished:
                break
            feed, pos = token[:, None], pos + 1                                        # [R, 1]
            if float(done.float().mean()) >= COMPACT_SHARE and not (finished and len(live) == 1):
                # drop finished rows (a rank done before the others keeps one row to forward with),
                # and the left-pad columns that only the dropped (longer) contexts needed
                keep = (~done).nonzero()[:, 0] if not finished else done.new_zeros(1, dtype=torch.long)
                drop = int(attention[keep, :width - trimmed].any(0).int().argmax()) \
                    if isinstance(cache, DecodeCache) else 0
                cache.batch_select_indices(keep, drop) if drop else cache.batch_select_indices(keep)
                feed, pos, attention = feed[keep], pos[keep], attention[keep, drop:]
                live, done, trimmed = live[keep], done[keep], trimmed + drop
        return self._result(tokens, logps, lengths)

    def _prefill(self, prompts, width: int, steps: int, device) -> tuple[torch.Tensor, Cache]:
        """Last-position logits [R, V] of the prompts and their cache, laid out left-padded to `width`.

        The prompts go through the model in groups of similar length (`length_groups`), each
        padded to its own width, and their keys and values are copied into one cache of
        capacity width + steps: a short prompt does not pay a long one's padding in the prefill,
        and the decode that follows is one batch (one forward per step). A sliding-window model
        prefills in one group, straight into transformers' cache.
        """
        cache = new_cache(self.model.config, width + steps)
        groups = length_groups([len(p) for p in prompts], len(prompts)) if isinstance(cache, DecodeCache) \
            else [list(range(len(prompts)))]
        if self.lockstep is not None:   # as many prefill forwards as the other ranks
            groups += [[]] * (self.lockstep.max_int(len(groups)) - len(groups))
        logits = None
        for rows in groups:
            ids, mask = left_pad([prompts[i] for i in rows] or [[self.pad_id]], self.pad_id, 0, device)  # [G, W]
            part = DecodeCache(len(cache), mask.shape[1]) if isinstance(cache, DecodeCache) else cache
            out = self._forward(ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), part)  # [G, V]
            if rows:
                logits = out.new_empty((len(prompts), out.shape[-1])) if logits is None else logits
                logits[rows] = out
                if part is not cache:
                    cache.place(torch.tensor(rows, device=device), part, len(prompts), width)
        return logits, cache

    def _forward(self, feed, attention, pos, cache) -> torch.Tensor:
        """Next-token logits [N, V] (float32) of one forward that appends `feed` [N, S] to `cache`."""
        out = self.model(input_ids=feed, attention_mask=attention, position_ids=pos,
                         **{self.forward_options.cache_keyword: cache}, **self.forward_options.extra)
        return out.logits[:, -1, :].float()

    def _result(self, tokens, logps, lengths) -> Generation:
        result = Generation([], [], [])
        for i, k in enumerate(lengths.tolist()):
            ids = tokens[i, :k].tolist()
            result.tokens.append(ids)
            result.logprobs.append(logps[i, :k].tolist())
            result.truncated.append(not (ids and ids[-1] in self.eos_ids))
        return result


class ForwardOptions:
    """How this model's forward is called while decoding: the cache's keyword and the extra keywords."""

    def __init__(self, cache_keyword: str, extra: dict):
        self.cache_keyword, self.extra = cache_keyword, extra


def forward_options(model: torch.nn.Module) -> ForwardOptions:
    """`cache=` where the forward takes it (transformers >= 5.24), else `past_key_values=`; logits of the last position only."""
    parameters = inspect.signature(model.forward).parameters
    extra = {"use_cache": True}
    if "logits_to_keep" in parameters:
        extra["logits_to_keep"] = 1
    return ForwardOptions("cache" if "cache" in parameters else "past_key_values", extra)


def distinct_prompts(prompts: Sequence[Sequence[int]]) -> tuple[list[Sequence[int]], list[int]]:
    """The distinct prompts in first-seen order, and for each input row the index of its prompt among them."""
    index: dict[tuple[int, ...], int] = {}
    copy_of = [index.setdefault(tuple(p), len(index)) for p in prompts]
    return [list(key) for key in index], copy_of   # a dict keeps first-seen order: key k is prompt k


def length_groups(lengths: Sequence[int], batch_size: int, padding_share: float = PADDING_SHARE) -> list[list[int]]:
    """Row indices cut into groups of at most `batch_size` rows, by context length.

    Rows are taken shortest first; a row starts a new group when left-padding the group to its
    length would make pad tokens more than `padding_share` of the group's context tokens.
    """
    batches, tokens = [], 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if batches and len(batches[-1]) < batch_size:
            padded = lengths[i] * (len(batches[-1]) + 1)
            if padded - (tokens + lengths[i]) <= padding_share * padded:
                batches[-1].append(i)
                tokens += lengths[i]
                continue
        batches.append([i])
        tokens = lengths[i]
    return batches


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, steps: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids [N, P], left-padded, and the attention mask [N, P + steps] (ones after the prompt)."""
    n, width = len(prompts), max(len(p) for p in prompts)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.ones((n, width + steps), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        input_ids[i, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        attention[i, :width - len(prompt)] = 0
    return input_ids.to(device), attention.to(device)


class _BufferLayer(DynamicLayer):
    """One layer's keys and values in [N, H, capacity, D] buffers; `keys`/`values` view the filled part."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.length = capacity, 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        n, heads, _, _ = key_states.shape
        self.dtype, self.device = key_states.dtype, key_states.device
        self.key_buffer = key_states.new_empty((n, heads, self.capacity, key_states.shape[-1]))
        self.value_buffer = value_states.new_empty((n, value_states.shape[1], self.capacity, value_states.shape[-1]))
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        self.key_buffer[:, :, self.length:end].copy_(key_states)
        self.value_buffer[:, :, self.length:end].copy_(value_states)
        self.length = end
        self.keys, self.values = self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def place(self, rows: torch.Tensor, part: _BufferLayer, batch: int, width: int) -> None:
        """Copy `part`'s positions into rows `rows` (of `batch`), ending at position `width` (left padding).

        The buffers start as zeros: a row's positions before its group's width are masked out,
        and a masked zero (unlike uninitialised memory) cannot turn into NaN in the attention.
        """
        if not self.is_initialized:
            self.dtype, self.device, self.is_initialized = part.dtype, part.device, True
            self.key_buffer, self.value_buffer = (
                like.new_zeros((batch, like.shape[1], self.capacity, like.shape[-1]))
                for like in (part.key_buffer, part.value_buffer))
        self.key_buffer[rows, :, width - part.length:width] = part.keys
        self.value_buffer[rows, :, width - part.length:width] = part.values
        self.length = width
        self.keys, self.values = self.key_buffer[:, :, :width], self.value_buffer[:, :, :width]

    def batch_select_indices(self, rows: torch.Tensor, drop: int = 0) -> None:
        """Keep only batch rows `rows` and the positions after the first `drop` (one copy of the filled part)."""
        if not self.is_initialized:
            return
        self.capacity, self.length = self.capacity - drop, self.length - drop
        for name in ("key_buffer", "value_buffer"):
            old = getattr(self, name)
            new = old.new_empty((len(rows), old.shape[1], self.capacity, old.shape[-1]))
            new[:, :, :self.length] = old[rows, :, drop:drop + self.length]
            setattr(self, name, new)
        self.keys, self.values = self.key_buffer[:, :, :self.length], self.value_buffer[:, :, :self.length]


class DecodeCache(Cache):
    """A transformers Cache of `layers` full-attention layers, each holding up to `capacity` positions."""

    def __init__(self, layers: int, capacity: int):
        super().__init__(layers=[_BufferLayer(capacity) for _ in range(layers)])

    def batch_select_indices(self, rows: torch.Tensor, drop: int = 0) -> None:
        """Keep only batch rows `rows` (transformers' name, as on DynamicCache), and drop the first `drop` positions."""
        for layer in self.layers:
            layer.batch_select_indices(rows, drop)

    def place(self, rows: torch.Tensor, part: DecodeCache, batch: int, width: int) -> None:
        """Copy a prefill group's cache `part` into rows `rows`, left-padded to `width` positions."""
        for layer, part_layer in zip(self.layers, part.layers):
            layer.place(rows, part_layer, batch, width)


def new_cache(config, capacity: int) -> Cache:
    """A DecodeCache when every layer attends to all positions; transformers' DynamicCache otherwise (sliding windows)."""
    text = config.get_text_config()
    full = set(getattr(text, "layer_types", None) or ["full_attention"]) == {"full_attention"}
    if full and getattr(text, "sliding_window", None) is None:
        return DecodeCache(text.num_hidden_layers, capacity)
    return DynamicCache(config=config)


def row_uniforms(seeds: Sequence[int], steps: int) -> torch.Tensor:
    """[N, steps] float64 uniforms in [0, 1); row i comes from a torch.Generator seeded by seeds[i] alone."""
    rows = [torch.rand(steps, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in seeds]
    return torch.stack(rows) if rows else torch.zeros((0, steps), dtype=torch.float64)


def sampling_logprobs(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Log-probs [N, V] of the (temperature > 0, top-p) sampling distribution; -inf outside the nucleus."""
    logp = torch.log_softmax(logits / temperature, -1)                      # [N, V]
    if top_p < 1.0:
        sorted_logp, order = logp.sort(-1, descending=True)                 # [N, V]
        mass_before = sorted_logp.exp().cumsum(-1) - sorted_logp.exp()      # [N, V]
        sorted_logp = sorted_logp.masked_fill(mass_before >= top_p, float("-inf"))
        logp = torch.full_like(logp, float("-inf")).scatter(-1, order, sorted_logp)
        logp = torch.log_softmax(logp, -1)
    return logp


def _sample(logits: torch.Tensor, temperature: float, top_p: float,
            uniform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token [N] and its log-prob [N] under the (temperature, top-p) sampling distribution.

    Sampling is inverse-CDF: the first token whose cumulative probability exceeds the row's
    uniform number `uniform` [N], so a row's draw depends on its own logits and number only.
    """
    if temperature <= 0:
        logp = torch.log_softmax(logits, -1)                                # [N, V]
        token = logits.argmax(-1)                                           # [N]
        return token, logp.gather(-1, token[:, None])[:, 0]
    logp = sampling_logprobs(logits, temperature, top_p)                    # [N, V]
    cdf = logp.double().exp().cumsum(-1)                                    # [N, V]
    target = (uniform.to(cdf.dtype) * cdf[:, -1])[:, None]                  # [N, 1] scaled to the row's total mass
    token = torch.searchsorted(cdf, target, right=True)[:, 0].clamp(max=logits.shape[-1] - 1)  # [N]
    # a zero-probability token can only be hit through rounding at the top of the cdf: step back
    token = torch.where(torch.isinf(logp.gather(-1, token[:, None])[:, 0]), logp.argmax(-1), token)
    return token, logp.gather(-1, token[:, None])[:, 0]
