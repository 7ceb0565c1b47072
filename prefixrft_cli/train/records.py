"""The typed records a run writes: one step's numbers (metrics.jsonl) and the run summary (summary.json).

Fields carry their units in their names; `to_json` writes the keys the files have always had
(`reward`, `response_length`, `seconds`, ...), so readers of old run folders keep working.
An SFT step has no rollouts: its line leaves the rollout fields out, as it always did.
Test: tests/test_train.py reads both files back; tests/test_train_records.py checks the keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _json(key: str, rollouts: bool = True) -> Any:
    """A field written under `key`; `rollouts` marks the fields only an RL step has."""
    return {"json": key, "rollouts": rollouts}


@dataclass
class StepRecord:
    """One training step: what metrics.jsonl, the live view and the metric sinks show."""

    has_rollouts: bool                      # RL step (True) or SFT step (False); not written
    loss: float | None                      # None when no update of the step had a finite loss
    grad_norm: float | None                 # global norm before clipping; None when every update was skipped
    updates: int = 1                        # optimizer steps of this step, taken or skipped
    skipped_updates: int = 0                # of them, skipped for a non-finite gradient (never reach the weights)
    phase_seconds: dict[str, float] = field(default_factory=dict, metadata=_json("seconds", False))  # rollout / verify / update
    sft_loss_demos: float | None = field(default=None, metadata=_json("sft_loss_demos", False))  # nats per demo token
    sft_interleaved_loss: float | None = field(default=None, metadata=_json("sft_interleaved_loss"))  # relift's SFT step, when one ran
    sft_interleaved_prompts: int = field(default=0, metadata=_json("sft_interleaved_prompts"))  # its prompts (0: none ran)
    reward_mean: float | None = field(default=None, metadata=_json("reward"))
    reward_hybrid_mean: float | None = field(default=None, metadata=_json("reward_hybrid"))
    reward_on_policy_mean: float | None = field(default=None, metadata=_json("reward_on_policy"))
    prefix_len_low: float | None = field(default=None, metadata=_json("prefix_len_low"))  # low_t, a fraction
    prefix_fraction_mean: float | None = field(default=None, metadata=_json("prefix_fraction_mean"))
    prefix_fractions: list[float] = field(default_factory=list, metadata=_json("prefix_fractions"))  # every sampled L, one per hybrid rollout
    prefix_tokens_kept: int = field(default=0, metadata=_json("prefix_tokens_kept"))
    prefix_tokens_total: int = field(default=0, metadata=_json("prefix_tokens_total"))
    entropy_kept_nats: float | None = field(default=None, metadata=_json("entropy_kept"))
    entropy_dropped_nats: float | None = field(default=None, metadata=_json("entropy_dropped"))
    entropy_on_policy_nats: float | None = field(default=None, metadata=_json("entropy_on_policy"))
    kl: float = field(default=0.0, metadata=_json("kl"))
    response_length_tokens: float | None = field(default=None, metadata=_json("response_length"))
    truncation_rate: float | None = field(default=None, metadata=_json("truncation_rate"))
    clip_fraction: float | None = field(default=None, metadata=_json("clip_fraction"))
    reasons: dict[str, int] = field(default_factory=dict, metadata=_json("reasons"))  # verifier reason -> rollouts
    stage: str = ""                         # the stage's algorithm name
    step: int = 0                           # 0-based step within the stage
    lr: float = 0.0                         # learning rate after this step's scheduler steps
    elapsed_seconds: float = 0.0            # since the run started

    def to_json(self) -> dict[str, Any]:
        """The metrics.jsonl line: the keys run folders have always had."""
        order = ("reward_mean", "reward_hybrid_mean", "reward_on_policy_mean", "prefix_len_low", "prefix_fraction_mean",
                 "prefix_fractions", "prefix_tokens_kept", "prefix_tokens_total", "entropy_kept_nats",
                 "entropy_dropped_nats", "entropy_on_policy_nats", "sft_loss_demos", "sft_interleaved_loss",
                 "sft_interleaved_prompts", "loss", "kl", "response_length_tokens", "truncation_rate", "clip_fraction",
                 "grad_norm", "updates", "skipped_updates", "reasons", "phase_seconds", "stage", "step", "lr",
                 "elapsed_seconds")
        fields = {f.name: f for f in dataclasses.fields(self)}
        out = {}
        for name in order:
            meta = fields[name].metadata
            if meta.get("rollouts") and not self.has_rollouts:
                continue
            out[meta.get("json", name)] = getattr(self, name)
        return out


@dataclass
class RunSummary:
    """What a run ends with: summary.json, and what `prefixrft train` prints."""

    algo: str
    domain: str
    model: str
    accuracy_before: float                  # avg@k at eval.temperature, a fraction of 1
    accuracy_after: float
    greedy_accuracy_before: float | None    # None when eval.greedy is off
    greedy_accuracy_after: float | None
    eval_samples: int                       # k of avg@k
    eval_temperature: float
    eval_problems: int
    steps: int                              # steps done, all stages together
    steps_planned: int                      # train.steps (+ train.sft_steps for sft-then-rft)
    stopped_early_by_time_limit: bool       # train.max_wall_minutes stopped it, with a checkpoint
    wall_seconds: float                     # over every process of the run (a resume adds its own)
    checkpoint: str                         # the final from_pretrained folder
    run_dir: str
    resume_command: str | None = None       # what continues the run, when the time limit stopped it
    backend: str = "none"                   # distributed.backend
    world_size: int = 1                     # processes the run was split over
    device: str = "cpu"                     # rank 0's device
    precision: str = "float32"              # the compute precision model.dtype resolved to

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
