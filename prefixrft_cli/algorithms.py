"""The algorithms, one record each: what it is, said once.

`algo` is read here and nowhere below: the loop looks the record up once per stage and
carries it. A record says its step function, its rollout plan, whether it needs
demonstrations, how it weights tokens, and, for a recipe, its stages. A new algorithm
is one new entry here and its tests.

    rollouts   hybrid      m of the n rollouts continue a demonstration prefix (Prefix-RFT)
               shared-prefix  all n rollouts continue one prefix of the prompt's demonstration
                           (the DR-PO variant of the paper's Table 8; prefix tokens frozen)
               whole-demo  one of the n rollouts is a whole demonstration (LUFFY)
               on-policy   all n rollouts are the policy's own (RFT)
               none        no rollouts: the step trains on whole demonstrations (SFT), so its
                           prompts come only from problems that have one

Departures from the paper (docs/algorithm.md, "Variants"):
- drpo: the paper says the prefixes are "not included in the loss" and that the variant
  differs from Prefix-RFT (update all) in that all rollouts share one prefix; we read the
  first sentence as the definition (prefix tokens frozen) and follow the second for sampling.
- relift: ReLIFT's interleaving at toy scale: RL steps; every demonstrated prompt none of
  whose n rollouts earned full reward joins a buffer, and when it holds a step's worth of
  prompts (train.prompts_per_step) one SFT step on their demonstrations follows, with the
  same optimizer. ReLIFT's own schedule and data (fresh solutions for the hard questions)
  are not reproduced.

Test: tests/test_registry.py (every choice has a record), tests/test_train.py (each runs),
tests/test_variants.py (drpo and relift).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from prefixrft_cli.algo.selection import WHOLE_PREFIX, Selection
from prefixrft_cli.registry import Registry, load_target


@dataclass(frozen=True)
class TokenWeighting:
    """How one stage weights response tokens in its policy loss."""

    selection: Selection          # which tokens keep their advantage (selection.mode, unless the algorithm fixes it)
    luffy_shaping: bool = False   # demonstration tokens: p/(p+γ) policy shaping instead of the PPO ratio clip
    sft_term: bool = False        # + λ · cross-entropy on each group's first demonstration (rft-sft-loss)


@dataclass(frozen=True)
class Algorithm:
    """One training algorithm, or a recipe of several in turn (`stages`)."""

    name: str
    step: str = "prefixrft_cli.train.loop:rl_step"   # "module:attr" of the step function, loaded on first use
    rollouts: str = "on-policy"    # hybrid | whole-demo | on-policy | none (see the module docstring)
    needs_demos: bool = False      # the training data must hold demonstrations
    luffy_shaping: bool = False    # see TokenWeighting; also fixes the selection to every demonstration token
    sft_term: bool = False         # see TokenWeighting
    onpolicy_clip: bool = False    # accepts selection.mode=onpolicy-clip (the paper's control for RFT)
    frozen_prefix: bool = False    # prefix tokens never keep their advantage, whatever selection.mode says
    stages: tuple[tuple[str, str], ...] = ()  # a recipe: (algorithm, the config key of its steps) in turn

    def step_fn(self) -> Any:
        return load_target(self.step)

    def stage_plan(self, cfg: Any) -> list[tuple[Algorithm, int]]:
        """(algorithm, steps) of each stage in turn."""
        if not self.stages:
            return [(self, cfg.train.steps)]
        return [(get_algorithm(name), functools.reduce(getattr, key.split("."), cfg)) for name, key in self.stages]

    def weighting(self, selection: Selection) -> TokenWeighting:
        """This algorithm's token weighting under the configured selection."""
        if self.luffy_shaping:
            selection = WHOLE_PREFIX
        elif self.frozen_prefix:
            selection = FROZEN_PREFIX
        return TokenWeighting(selection, self.luffy_shaping, self.sft_term)


FROZEN_PREFIX = Selection("prefix", "none")  # no prefix token keeps its advantage (DR-PO variant)

ALGORITHMS: Registry = Registry("algorithm")
for _record in (  # in the order the docs and error messages list them
    Algorithm("prefix-rft", rollouts="hybrid", needs_demos=True),
    Algorithm("rft", onpolicy_clip=True),
    Algorithm("sft", step="prefixrft_cli.train.loop:sft_step", rollouts="none", needs_demos=True),
    Algorithm("rft-sft-loss", needs_demos=True, sft_term=True),
    Algorithm("luffy", rollouts="whole-demo", needs_demos=True, luffy_shaping=True),
    Algorithm("sft-then-rft", needs_demos=True, stages=(("sft", "train.sft_steps"), ("rft", "train.steps"))),
    Algorithm("drpo", rollouts="shared-prefix", needs_demos=True, frozen_prefix=True),
    Algorithm("relift", step="prefixrft_cli.train.relift:relift_step", needs_demos=True),
):
    ALGORITHMS.register(_record.name, _record)
ALGORITHM_NAMES = tuple(ALGORITHMS.entries)


def get_algorithm(name: str) -> Algorithm:
    return ALGORITHMS.get(name)
