"""The method as pure functions: tensors and plain scalars in, tensors out.

schedule.py    prefix-length scheduler (low_t, sampled fractions L)
prefix.py      fraction -> prefix token count
advantages.py  group-relative advantages (Dr. GRPO / GRPO, grouping all / separate)
entropy.py     token entropy and the entropy-based token selection
loss.py        PPO-clip, LUFFY shaping, SFT, k3 KL and the loss aggregation
passk.py       unbiased pass@k

Imports only the standard library, torch and numpy (tests/test_algo_imports.py checks it).
docs/algorithm.md maps every equation of SPEC §2 to its function here.
"""

from prefixrft_cli.algo.advantages import Advantages, compute_advantages
from prefixrft_cli.algo.entropy import select_tokens, token_entropy
from prefixrft_cli.algo.loss import aggregate, kl_k3, luffy_shaped_loss, masked_mean, ppo_clip_loss, sft_token_loss
from prefixrft_cli.algo.prefix import prefix_lengths
from prefixrft_cli.algo.schedule import prefix_len_low, sample_prefix_fractions

__all__ = [
    "Advantages", "compute_advantages", "select_tokens", "token_entropy", "aggregate", "kl_k3",
    "luffy_shaped_loss", "masked_mean", "ppo_clip_loss", "sft_token_loss", "prefix_lengths",
    "prefix_len_low", "sample_prefix_fractions",
]
