"""Memory plan of a training run, per device, from the model's config.json alone (no weights).

`estimate(shape, inputs)` adds up, in bytes on one device: parameters, gradients and
optimizer state (sharded as the backend shards them), activations of one micro-batch
(with and without gradient checkpointing), the rollout engine's memory (KV cache), and
says whether the total fits a GPU. Formulas and their sources: docs/scaling.md,
"Planning memory (--dry-run)". `prefixrft train --dry-run` prints it.

Leaves out: allocator fragmentation, CUDA context (~0.5-1 GB), DDP's gradient buckets
(a second copy of the gradients unless `gradient_as_bucket_view`), the one layer that
ZeRO-3 / FSDP2 gathers at a time, and mixture-of-experts models (refused).
Test: tests/test_plan.py (a Qwen2.5-7B config against hand-derived numbers).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from prefixrft_cli.config import Config, max_sequence_tokens
from prefixrft_cli.errors import UserError

GB = 1024 ** 3
DTYPE_BYTES = {"auto": 2, "float32": 4, "bfloat16": 2, "float16": 2}   # compute precision; auto = bf16 on a GPU
HF_GENERATION_BATCH = 256   # sequences the hf engine decodes at once (make_sampler's batch_size)


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a dense decoder (Llama / Qwen2 / Mistral family) that memory depends on."""

    hidden_size: int           # H
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int     # I, the SwiGLU width
    vocab_size: int            # V
    tied_embeddings: bool
    attention_bias: bool       # q/k/v projections carry a bias (Qwen2)
    max_position_embeddings: int

    @classmethod
    def from_config(cls, data: dict, where: str) -> ModelShape:
        if any(key in data for key in ("num_experts", "num_local_experts", "n_routed_experts")):
            raise UserError(f"{where}: a mixture-of-experts model; --dry-run estimates dense decoders only")
        missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                               "vocab_size") if not isinstance(data.get(k), int)]
        if missing:
            raise UserError(f"{where}: no integer {missing[0]!r}; --dry-run needs a decoder's config.json")
        heads = data["num_attention_heads"]
        bias = data.get("attention_bias", data.get("model_type") == "qwen2")
        return cls(data["hidden_size"], data["num_hidden_layers"], heads, data.get("num_key_value_heads") or heads,
                   data.get("head_dim") or data["hidden_size"] // heads, data["intermediate_size"],
                   data["vocab_size"], bool(data.get("tie_word_embeddings", False)), bool(bias),
                   int(data.get("max_position_embeddings") or 0))

    def layer_parameters(self) -> int:
        h, q, kv = self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        attention = h * q + 2 * h * kv + q * h + ((q + 2 * kv) if self.attention_bias else 0)
        return attention + 3 * h * self.intermediate_size + 2 * h      # + gate/up/down, two RMSNorms

    def parameters(self) -> int:
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)
        return embeddings + self.num_layers * self.layer_parameters() + self.hidden_size  # + final norm

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype_bytes   # K and V, every layer


@dataclass(frozen=True)
class PlanInputs:
    """What the run asks of one device."""

    backend: str                   # none | ddp | fsdp2 | deepspeed
    zero_stage: int                # 1 | 2 | 3 (deepspeed)
    world_size: int
    dtype: str                     # model.dtype
    micro_batch_sequences: int     # sequences in one forward/backward on this device
    prompt_tokens: int             # P: data.max_prompt_tokens
    response_tokens: int           # L: the larger of the rollout and evaluation budgets
    engine: str                    # hf | vllm
    rollout_sequences: int         # rollouts this device generates per step
    vllm_gpu_memory_utilization: float
    reference_model: bool          # loss.kl_coef > 0 keeps a frozen copy
    gpu_memory_bytes: int | None   # None = no fit check


@dataclass
class MemoryPlan:
    """Bytes per device; `total` without, `total_checkpointed` with gradient checkpointing."""

    parameter_count: int
    parameters: int
    gradients: int
    optimizer_state: int
    reference_model: int
    activations: int
    activations_checkpointed: int
    kv_cache: int
    rollout_logits: int            # hf: the last position's [N, V] logits and the sampler's fp32/fp64 copies; vllm: 0
    vllm_reserved: int             # vllm: gpu_memory_utilization x GPU memory, held all run; hf: 0
    total: int
    total_checkpointed: int
    gpu_memory: int | None
    fits: bool | None
    fits_checkpointed: bool | None
    notes: list[str]

    def to_json(self) -> dict:
        return asdict(self)


def sharding(backend: str, zero_stage: int, world_size: int) -> tuple[int, int, int]:
    """How many devices share (parameters, gradients, optimizer state): ZeRO's stages (Rajbhandari et al. 2020)."""
    n = world_size
    if backend == "fsdp2":
        return n, n, n
    if backend == "deepspeed":
        return (n if zero_stage >= 3 else 1), (n if zero_stage >= 2 else 1), n
    return 1, 1, 1                                                        # none, ddp: every rank holds it all


def state_bytes_per_parameter(backend: str, dtype: str) -> tuple[int, int, int]:
    """(parameter, gradient, optimizer) bytes per parameter with AdamW, as train/precision.py keeps them."""
    if backend == "deepspeed" and DTYPE_BYTES[dtype] == 2:
        return 2, 2, 12                    # DeepSpeed bf16/fp16: 16-bit weights and grads; fp32 master + m + v
    # float32 weights and gradients, m + v in float32; autocast (none, ddp) also keeps a 16-bit copy of
    # every weight for the forward and backward (added in `estimate`); FSDP2 casts one layer at a time
    return 4, 4, 8


def activation_bytes_per_token(shape: ModelShape, dtype_bytes: int) -> int:
    """What autograd keeps for one token in one decoder layer (SDPA: no [s, s] score matrix)."""
    h, kv, inter = shape.hidden_size, shape.num_kv_heads * shape.head_dim, shape.intermediate_size
    # two RMSNorm inputs and outputs (4H), q/k/v after projection (H + 2kv) and after RoPE (H + kv),
    # the attention output (H), and SwiGLU's gate, up, silu(gate) and product (4I)
    return dtype_bytes * (7 * h + 3 * kv + 4 * inter)


def estimate(shape: ModelShape, inputs: PlanInputs) -> MemoryPlan:
    b = DTYPE_BYTES[inputs.dtype]
    count = shape.parameters()
    per_param, per_grad, per_optim = state_bytes_per_parameter(inputs.backend, inputs.dtype)
    split_p, split_g, split_o = sharding(inputs.backend, inputs.zero_stage, inputs.world_size)
    params, grads, optim = count * per_param // split_p, count * per_grad // split_g, count * per_optim // split_o
    reference = params if inputs.reference_model else 0
    if inputs.backend in ("none", "ddp") and b == 2:
        params += count * b                                               # autocast's cached 16-bit weights
    tokens = inputs.micro_batch_sequences * (inputs.prompt_tokens + inputs.response_tokens)
    per_layer = activation_bytes_per_token(shape, b)
    # logits of every position in the model dtype, then the response positions' fp32 copy and log-softmax
    logits = inputs.micro_batch_sequences * shape.vocab_size * (
        (inputs.prompt_tokens + inputs.response_tokens) * b + 2 * inputs.response_tokens * 4)
    activations = tokens * per_layer * shape.num_layers + logits
    # checkpointing keeps each layer's input (H) and recomputes one layer at a time in the backward
    checkpointed = tokens * (shape.hidden_size * b * shape.num_layers + per_layer) + logits
    max_len = inputs.prompt_tokens + inputs.response_tokens
    kv = inputs.rollout_sequences * max_len * shape.kv_bytes_per_token(b)
    notes: list[str] = []
    gpu = inputs.gpu_memory_bytes
    states = params + grads + optim + reference
    if inputs.engine == "hf":
        batch = min(inputs.rollout_sequences, HF_GENERATION_BATCH)
        kv = batch * max_len * shape.kv_bytes_per_token(b)
        # the forward keeps one position's logits (logits_to_keep=1); sampling adds fp32 logits, log-probs, fp64 cdf
        rollout_logits, reserved = batch * shape.vocab_size * (b + 4 + 4 + 8), 0
        # generation and the update do not overlap in time: the peak is the larger of the two
        total = states + max(activations, kv + rollout_logits)
        total_ckpt = states + max(checkpointed, kv + rollout_logits)
    else:
        rollout_logits = 0
        vllm_weights = count * b
        reserved = int(inputs.vllm_gpu_memory_utilization * gpu) if gpu else vllm_weights + kv
        if gpu and reserved - vllm_weights < max_len * shape.kv_bytes_per_token(b):
            notes.append(f"vLLM's share ({reserved / GB:.1f} GB) minus its weights leaves no room for one "
                         f"{max_len}-token sequence's KV cache: raise rollout.vllm_gpu_memory_utilization")
        total, total_ckpt = states + activations + reserved, states + checkpointed + reserved
    if shape.max_position_embeddings and max_len > shape.max_position_embeddings:
        notes.append(f"prompt + response budget {max_len} exceeds the model's max_position_embeddings "
                     f"{shape.max_position_embeddings}")
    return MemoryPlan(count, params, grads, optim, reference, activations, checkpointed, kv, rollout_logits,
                      reserved, total, total_ckpt, gpu, None if gpu is None else total <= gpu,
                      None if gpu is None else total_ckpt <= gpu, notes)


def inputs_from_config(cfg: Config, world_size: int, gpu_memory_gb: float | None) -> PlanInputs:
    """The per-device workload of `cfg` on `world_size` devices (prompts are split evenly across ranks)."""
    t, r = cfg.train, cfg.rollout
    rollouts = t.prompts_per_step * r.rollouts_per_prompt
    per_device = max(1, rollouts // world_size)
    micro = t.micro_batch_responses or max(1, per_device // t.mini_batches)
    return PlanInputs(cfg.distributed.backend, cfg.distributed.zero_stage, world_size, cfg.model.dtype,
                      micro, cfg.data.max_prompt_tokens, max_sequence_tokens(cfg) - cfg.data.max_prompt_tokens,
                      r.engine, per_device, r.vllm_gpu_memory_utilization, cfg.loss.kl_coef > 0,
                      None if gpu_memory_gb is None else int(gpu_memory_gb * GB))


def read_model_config(name_or_path: str) -> tuple[dict, str]:
    """(config.json as a dict, where it came from): a local folder, 'toy', or a hub id's cached config.json."""
    from prefixrft_cli.models import resolve_model_path

    source = resolve_model_path(name_or_path)
    path = Path(source) / "config.json"
    if not Path(source).is_dir():
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(source, "config.json"))
        except Exception as err:  # offline, unknown repo, gated: one line either way
            raise UserError(f"--model {name_or_path}: cannot fetch its config.json ({type(err).__name__}); "
                            "give a local model folder") from None
    if not path.is_file():
        raise UserError(f"--model {name_or_path}: {path} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8")), str(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None


def world_size_from_env(explicit: int | None) -> int:
    """--world-size, else the launcher's WORLD_SIZE, else 1."""
    value = explicit if explicit is not None else int(os.environ.get("WORLD_SIZE", "1"))
    if value < 1:
        raise UserError(f"--world-size {value}: must be at least 1")
    return value
