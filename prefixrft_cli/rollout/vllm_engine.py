"""The `vllm` rollout engine: vLLM's offline `LLM`, colocated with the trainer on one GPU.

Token ids in (`TokensPrompt`), token ids and sampling log-probs out, one request per
prompt with its own budget and seed. After each optimizer step `sync_weights` copies
the trainer's state dict into vLLM's model with the model's own `load_weights` and
resets the prefix cache. vLLM's engine core is kept in this process
(VLLM_ENABLE_V1_MULTIPROCESSING=0) so its model object can be reached directly;
tensor parallelism is therefore 1.

Not exercised on the development machines (no GPU): install with
`pip install 'prefixrft[vllm]'` on a CUDA machine and run `prefixrft train --set rollout.engine=vllm`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence

import torch

from prefixrft_cli.errors import UserError
from prefixrft_cli.rollout.sampler import Generation, row_seed

# attribute paths from the LLM object to the torch module, newest vLLM first
_MODEL_PATHS = (
    "llm_engine.model_executor.driver_worker.worker.model_runner.model",
    "llm_engine.engine_core.engine_core.model_executor.driver_worker.worker.model_runner.model",
    "llm_engine.model_executor.driver_worker.model_runner.model",
)


class VLLMSampler:
    def __init__(self, model: torch.nn.Module, tokenizer, gpu_memory_utilization: float = 0.5):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        try:
            from vllm import LLM
        except ImportError:
            raise UserError("rollout.engine=vllm needs vLLM on a CUDA machine: pip install 'prefixrft[vllm]'") from None
        if not torch.cuda.is_available():
            raise UserError("rollout.engine=vllm needs a CUDA GPU; use rollout.engine=hf on this machine")
        self._folder = tempfile.TemporaryDirectory(prefix="prefixrft-vllm-")
        model.save_pretrained(self._folder.name)   # vLLM starts from the trainer's current weights
        tokenizer.save_pretrained(self._folder.name)
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        self.llm = LLM(model=self._folder.name, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                       enable_prefix_caching=True, tensor_parallel_size=1)

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens, temperature: float = 1.0,
                 top_p: float = 1.0, seed: int = 0, seeds: Sequence[int] | None = None) -> Generation:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        seeds = [row_seed(seed, i) for i in range(len(prompts))] if seeds is None else list(seeds)
        params = [SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max(1, b), seed=s,
                                 logprobs=0) for b, s in zip(budgets, seeds)]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params,
                                    use_tqdm=False)
        result = Generation([], [], [])
        for out in outputs:
            sample = out.outputs[0]
            ids = list(sample.token_ids)
            result.tokens.append(ids)
            result.logprobs.append([float(step[token].logprob) for step, token in zip(sample.logprobs or [], ids)])
            result.truncated.append(sample.finish_reason == "length")
        return result

    def sync_weights(self, model: torch.nn.Module) -> None:
        target = self._vllm_model()
        with torch.no_grad():
            target.load_weights(((name, tensor.detach()) for name, tensor in model.state_dict().items()))
        self.llm.reset_prefix_cache()

    def _vllm_model(self) -> torch.nn.Module:
        for path in _MODEL_PATHS:
            node = self.llm
            try:
                for part in path.split("."):
                    node = getattr(node, part)
            except AttributeError:
                continue
            return node
        raise UserError("this vLLM version hides its model object; pin a vLLM release listed in docs/performance.md")
