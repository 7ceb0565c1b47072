"""Rollout engines behind one sampler protocol: token ids in, token ids and log-probs out.

`hf` runs the policy module itself with a KV cache, all prompts of a call in one
left-padded batch (hybrid prompts, which carry a demonstration prefix, sit in the same
batch as ordinary ones), one forward per generated position and no Python loop over
sequences. `vllm` wraps vLLM's offline engine (optional extra, imported lazily) and
copies the trainer's weights into it after each update (`sync_weights`).

The contract (`Sampler`, `Generation`) is rollout/sampler.py, which both engines import.
Test: tests/test_engine.py (greedy output equals step-by-step argmax; budgets and eos).
"""

from __future__ import annotations

import torch

from prefixrft_cli.rollout.sampler import Generation, eos_ids, make_sampler

__all__ = ["HFSampler", "make_sampler"]  # make_sampler lives in rollout/sampler.py; still importable from here

class HFSampler:
    """Batched sampling from a transformers causal LM with its KV cache."""

    def __init__(self, model: torch.nn.Module, tokenizer, batch_size: int = 256):
        self.model = model
        self.eos_ids = eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.batch_size = batch_size

    def sync_weights(self, model: torch.nn.Module) -> None:
        self.model = model  # the same module: nothing to copy

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, seed=0) -> Generation:
        budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        if len(budgets) != len(prompts):
            raise ValueError("one max_new_tokens per prompt")
        generator = torch.Generator().manual_seed(seed)
        out = Generation([], [], [])
        for start in range(0, len(prompts), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            part = self._generate_batch(prompts[chunk], budgets[chunk], temperature, top_p, generator)
            out.tokens += part.tokens
            out.logprobs += part.logprobs
            out.truncated += part.truncated
        return out

    @torch.no_grad()
    def _generate_batch(self, prompts, budgets, temperature, top_p, generator) -> Generation:
        was_training = self.model.training
        self.model.eval()
        try:
            return self._decode(prompts, budgets, temperature, top_p, generator)
        finally:
            self.model.train(was_training)

    def _decode(self, prompts, budgets, temperature, top_p, generator) -> Generation:
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
            token, logp = _sample(logits, temperature, top_p, generator)               # [N], [N]
            token = torch.where(done, torch.full_like(token, self.pad_id), token)
            tokens[:, t], logps[:, t] = token, torch.where(done, 0.0, logp)
            lengths += (~done).long()
            done = done | torch.isin(token, eos) | (lengths >= budget)
            if bool(done.all()):
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


def _sample(logits: torch.Tensor, temperature: float, top_p: float,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token [N] and its log-prob [N] under the (temperature, top-p) sampling distribution."""
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
    probs = logp.exp().cpu()
    token = torch.multinomial(probs, 1, generator=generator)[:, 0].to(logits.device)  # [N]
    return token, logp.gather(-1, token[:, None])[:, 0]
