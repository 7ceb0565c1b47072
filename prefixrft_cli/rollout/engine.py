"""Rollout engines behind one sampler protocol: token ids in, token ids and log-probs out.

`hf` runs the policy module itself with a KV cache, all prompts of a call in one
left-padded batch (hybrid prompts, which carry a demonstration prefix, sit in the same
batch as ordinary ones), one forward per generated position and no Python loop over
sequences. `vllm` wraps vLLM's offline engine (optional extra, imported lazily) and
copies the trainer's weights into it after each update (`sync_weights`).

The contract (`Sampler`, `Generation`, per-row seeds, `Lockstep`) is rollout/sampler.py, which
both engines import. The hf engine draws one uniform number per row and position from the
row's own torch.Generator (seeded by the row's seed alone) and inverts the cumulative
distribution of the (temperature, top-p) sampling distribution, so a row's tokens do not
depend on the other rows of its batch. Under a `Lockstep` (a sharded policy, where every
forward is a collective) the ranks agree on the number of rows and of decoding steps.
Test: tests/test_engine.py (greedy output equals step-by-step argmax; budgets and eos).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prefixrft_cli.rollout.sampler import Generation, Lockstep, eos_ids, make_sampler, row_seed

__all__ = ["HFSampler", "make_sampler"]  # make_sampler lives in rollout/sampler.py; still importable from here


class HFSampler:
    """Batched sampling from a transformers causal LM with its KV cache."""

    def __init__(self, model: torch.nn.Module, tokenizer, batch_size: int = 256, lockstep: Lockstep | None = None):
        self.model = model
        self.lockstep = lockstep
        self.eos_ids = eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.batch_size = batch_size

    def sync_weights(self, model: torch.nn.Module) -> None:
        self.model = model  # the same module: nothing to copy

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, seed=0, seeds=None) -> Generation:
        budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        seeds = [row_seed(seed, i) for i in range(len(prompts))] if seeds is None else list(seeds)
        if not len(budgets) == len(seeds) == len(prompts):
            raise ValueError("one max_new_tokens and one seed per prompt")
        count = len(prompts)
        prompts = [list(p) for p in prompts]
        if self.lockstep is not None:  # every rank runs as many batches: pad with empty-budget rows
            padded = max(self.lockstep.max_int(count), 1)
            filler = prompts[0] if prompts else [self.pad_id]
            prompts, budgets, seeds = (prompts + [filler] * (padded - count), budgets + [0] * (padded - count),
                                       seeds + [0] * (padded - count))
        out = Generation([], [], [])
        for start in range(0, len(prompts), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            part = self._generate_batch(prompts[chunk], budgets[chunk], temperature, top_p, seeds[chunk])
            out.tokens += part.tokens
            out.logprobs += part.logprobs
            out.truncated += part.truncated
        return Generation(out.tokens[:count], out.logprobs[:count], out.truncated[:count])

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
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)  # [N, P]
        attention = torch.zeros((n, width), dtype=torch.long)               # [N, P]
        for i, prompt in enumerate(prompts):
            input_ids[i, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            attention[i, width - len(prompt):] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)                 # [N, P]
        budget = torch.tensor(budgets, device=device)                       # [N]
        eos = torch.tensor(self.eos_ids, device=device)
        steps = int(budget.max())
        if self.lockstep is not None:
            steps = self.lockstep.max_int(steps)
        uniforms = row_uniforms(seeds, steps).to(device)                              # [N, L]
        tokens = torch.full((n, steps), self.pad_id, dtype=torch.long, device=device)  # [N, L]
        logps = torch.zeros((n, steps), device=device)                                 # [N, L]
        done = budget <= 0                                                             # [N]
        lengths = torch.zeros(n, dtype=torch.long, device=device)                      # [N]
        cache, feed, pos = None, input_ids, positions
        for t in range(steps):
            out = self.model(input_ids=feed, attention_mask=attention, position_ids=pos,
                             past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits = out.logits[:, -1, :].float()                                      # [N, V]
            token, logp = _sample(logits, temperature, top_p, uniforms[:, t])          # [N], [N]
            token = torch.where(done, torch.full_like(token, self.pad_id), token)
            tokens[:, t], logps[:, t] = token, torch.where(done, 0.0, logp)
            lengths += (~done).long()
            done = done | torch.isin(token, eos) | (lengths >= budget)
            finished = bool(done.all())
            if self.lockstep.all_true(finished) if self.lockstep is not None else finished:
                break
            feed = token[:, None]                                                      # [N, 1]
            pos = pos[:, -1:] + 1                                                      # [N, 1]
            attention = torch.cat([attention, torch.ones((n, 1), dtype=attention.dtype, device=device)], 1)
        result = Generation([], [], [])
        for i in range(n):
            k = int(lengths[i])
            ids = tokens[i, :k].tolist()
            result.tokens.append(ids)
            result.logprobs.append(logps[i, :k].tolist())
            result.truncated.append(not (ids and ids[-1] in self.eos_ids))
        return result


def row_uniforms(seeds: Sequence[int], steps: int) -> torch.Tensor:
    """[N, steps] float64 uniforms in [0, 1); row i comes from a torch.Generator seeded by seeds[i] alone."""
    rows = [torch.rand(steps, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in seeds]
    return torch.stack(rows) if rows else torch.zeros((0, steps), dtype=torch.float64)


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
    logp = torch.log_softmax(logits / temperature, -1)                      # [N, V]
    if top_p < 1.0:
        sorted_logp, order = logp.sort(-1, descending=True)                 # [N, V]
        mass_before = sorted_logp.exp().cumsum(-1) - sorted_logp.exp()      # [N, V]
        sorted_logp = sorted_logp.masked_fill(mass_before >= top_p, float("-inf"))
        logp = torch.full_like(logp, float("-inf")).scatter(-1, order, sorted_logp)
        logp = torch.log_softmax(logp, -1)
    cdf = logp.double().exp().cumsum(-1)                                    # [N, V]
    target = (uniform.to(cdf.dtype) * cdf[:, -1])[:, None]                  # [N, 1] scaled to the row's total mass
    token = torch.searchsorted(cdf, target, right=True)[:, 0].clamp(max=logits.shape[-1] - 1)  # [N]
    # a zero-probability token can only be hit through rounding at the top of the cdf: step back
    token = torch.where(torch.isinf(logp.gather(-1, token[:, None])[:, 0]), logp.argmax(-1), token)
    return token, logp.gather(-1, token[:, None])[:, 0]
