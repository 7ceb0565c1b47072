"""The method as pure functions: tensors and plain scalars in, tensors out.

schedule.py    prefix-length scheduler (low_t, sampled fractions L)
prefix.py      fraction -> prefix token count
advantages.py  group-relative advantages (Dr. GRPO / GRPO, grouping all / separate)
entropy.py     token entropy and the entropy-based token selection
loss.py        PPO-clip, LUFFY shaping, SFT, k3 KL and the loss aggregation
passk.py       unbiased pass@k
selection.py   selection.mode parsed once into a typed choice (the one mode list)

Shapes (the one legend, STYLE.md): B prompts, G rollouts per prompt, N = B·G responses,
P prompt tokens, L response tokens, V vocabulary.

Imports only the standard library, torch and numpy (tests/test_algo_imports.py checks it).
docs/algorithm.md maps every equation of SPEC §2 to its function here.
"""

import importlib

# name -> the module that defines it; imported on first use, so that torch-free callers (the
# config's check of selection.mode through algo/selection.py) do not import torch.
_HOME = {
    "Advantages": "advantages", "compute_advantages": "advantages", "select_tokens": "entropy",
    "token_entropy": "entropy", "aggregate": "loss", "kl_k3": "loss", "luffy_shaped_loss": "loss",
    "masked_mean": "loss", "ppo_clip_loss": "loss", "sft_token_loss": "loss", "prefix_lengths": "prefix",
    "prefix_len_low": "schedule", "sample_prefix_fractions": "schedule",
}
__all__ = list(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
