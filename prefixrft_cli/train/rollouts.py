"""The rollout phase: n responses per prompt, m of them hybrid, scored by the verifier.

A hybrid rollout takes a demonstration of the prompt (one at random when there are
several), cuts a prefix of L·|y*| of its token ids (algo.prefix), and asks the sampler
to continue `prompt ⊕ prefix` as token ids — never decoded and re-encoded — in the same
generate call as the ordinary rollouts. LUFFY's whole-demonstration rollout is the
same record with the prefix being the entire demonstration, flagged `whole_demo`, and
nothing sampled. The DR-PO variant (`shared_prefix`) cuts one prefix per prompt and starts
all n rollouts from it.

Shapes: B prompts, G rollouts per prompt, N = B·G responses, P prompt tokens, L response tokens.
Test: tests/test_train_rollouts.py (a recording fake sampler, no model).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from prefixrft_cli.algo.prefix import prefix_lengths
from prefixrft_cli.algo.schedule import sample_prefix_fractions
from prefixrft_cli.protocols import VerifyResult
from prefixrft_cli.records import Problem


@dataclass
class PromptItem:
    """A training problem with its prompt and demonstrations already in token ids."""

    problem: Problem
    prompt_ids: list[int]
    demo_ids: list[list[int]]     # each demonstration, ending with eos; only those of >= 2 tokens


@dataclass
class Rollout:
    """One response: `prefix_len` off-policy demonstration tokens, then the policy's own."""

    item: PromptItem
    response_ids: list[int]
    prefix_len: int               # 0 for an ordinary rollout
    prefix_fraction: float        # the sampled L (0 for an ordinary rollout)
    truncated: bool
    text: str = ""
    result: VerifyResult | None = None
    whole_demo: bool = False      # LUFFY: the entire response is a demonstration, nothing is sampled

    @property
    def hybrid(self) -> bool:
        return self.prefix_len > 0


@dataclass
class RolloutBatch:
    """B groups of G rollouts, in group order (rollout b*G + g belongs to prompt b)."""

    rollouts: list[Rollout]
    groups: int                   # B
    group_size: int               # G
    prefix_len_low: float = float("nan")  # low_t of the scheduler at this step
    seconds: dict[str, float] = field(default_factory=dict)

    def rewards(self) -> torch.Tensor:
        return torch.tensor([r.result.score for r in self.rollouts]).view(self.groups, self.group_size)  # [B, G]

    def hybrid_mask(self) -> torch.Tensor:
        return torch.tensor([r.hybrid for r in self.rollouts]).view(self.groups, self.group_size)  # [B, G]


@dataclass
class RolloutPlan:
    """How many rollouts of each kind per prompt, and how prefixes are drawn."""

    group_size: int               # G = n
    hybrid_per_group: int         # m (0 for plain RFT)
    whole_demo_per_group: int     # 1 for LUFFY, else 0
    max_response_tokens: int
    scheduler: str
    prefix_len_high: float
    prefix_len_low_end: float
    prefix_len_fixed: float
    shared_prefix: bool = False   # DR-PO variant: one prefix per prompt, shared by its hybrid rollouts


def plan_rollouts(items: list[PromptItem], plan: RolloutPlan, step: int, total_steps: int,
                  generator: torch.Generator, rng: random.Random) -> tuple[list[Rollout], list[list[int]], float]:
    """The rollouts of one step before sampling: their prefixes, and what the sampler must continue."""
    hybrid_slots = [(i, j) for i, item in enumerate(items) if item.demo_ids
                    for j in range(plan.group_size - plan.hybrid_per_group, plan.group_size)]
    last = plan.group_size - 1
    owner = (lambda slot: (slot[0], last)) if plan.shared_prefix else (lambda slot: slot)  # whose prefix a slot uses
    draws = list(dict.fromkeys(owner(slot) for slot in hybrid_slots))  # one prefix each
    fractions, low_t = sample_prefix_fractions(
        plan.scheduler, step, total_steps, len(draws), generator,
        plan.prefix_len_high, plan.prefix_len_low_end, plan.prefix_len_fixed)   # [M]
    chosen = {draw: rng.choice(items[draw[0]].demo_ids) for draw in draws}
    demo_lengths = torch.tensor([len(chosen[draw]) for draw in draws], dtype=torch.long)  # [M]
    cuts = prefix_lengths(fractions, demo_lengths).tolist() if draws else []
    cut_of = {draw: (cut, float(frac)) for draw, cut, frac in zip(draws, cuts, fractions.tolist())}
    cut_of.update({slot: cut_of[owner(slot)] for slot in hybrid_slots})
    chosen.update({slot: chosen[owner(slot)] for slot in hybrid_slots})
    rollouts, contexts = [], []
    for i, item in enumerate(items):
        for j in range(plan.group_size):
            if (i, j) in cut_of:
                cut, frac = cut_of[(i, j)]
                prefix = chosen[(i, j)][:min(cut, plan.max_response_tokens - 1)]
                rollouts.append(Rollout(item, list(prefix), len(prefix), frac, False))
            elif j < plan.whole_demo_per_group and item.demo_ids:
                demo = rng.choice(item.demo_ids)
                kept = demo[:plan.max_response_tokens]
                rollouts.append(Rollout(item, list(kept), len(kept), 1.0, len(demo) > len(kept), whole_demo=True))
            else:
                rollouts.append(Rollout(item, [], 0, 0.0, False))
            contexts.append(item.prompt_ids + rollouts[-1].response_ids)
    return rollouts, contexts, low_t


def sample_continuations(rollouts: list[Rollout], contexts: list[list[int]], sampler, plan: RolloutPlan,
                         temperature: float, top_p: float, seeds: list[int]) -> None:
    """Fill in every rollout that is not a whole demonstration, in one generate call; rollout k from seeds[k]."""
    todo = [k for k, r in enumerate(rollouts) if not r.whole_demo]
    if not todo:
        return
    budgets = [plan.max_response_tokens - rollouts[k].prefix_len for k in todo]
    out = sampler.generate([contexts[k] for k in todo], budgets, temperature=temperature, top_p=top_p,
                           seeds=[seeds[k] for k in todo])
    for k, tokens, truncated in zip(todo, out.tokens, out.truncated):
        rollouts[k].response_ids = rollouts[k].response_ids + tokens
        rollouts[k].truncated = truncated


def score_rollouts(rollouts: list[Rollout], tokenizer, verifier) -> None:
    """Decode each full response (prefix ⊕ continuation) and let the verifier score it."""
    texts = tokenizer.batch_decode([r.response_ids for r in rollouts], skip_special_tokens=True)
    results = verifier.verify_batch(texts, [r.item.problem for r in rollouts])
    for rollout, text, result in zip(rollouts, texts, results):
        rollout.text, rollout.result = text, result
