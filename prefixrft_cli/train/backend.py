"""The training backend: one process, torch DDP, FSDP2 or DeepSpeed ZeRO behind one interface, chosen once.

The loop and the step functions are the same for every backend (`distributed.backend`);
what differs lives here: wrapping the policy and building its optimizer (`prepare`),
backward and the optimizer step (`backward`, `step`), the few collectives a step needs
(`all_sum`, `all_gather`, `broadcast`, and the `Lockstep` of generation on a sharded
policy), which prompts a rank owns (`local_groups`) and the full state dict for the
checkpoint. `make_backend(cfg)` reads the launch (torchrun or the deepspeed launcher set
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; a plain one-process start gets
them filled in) and starts the process group: gloo on CPU, NCCL on CUDA.

World-size invariance (tests/test_distributed.py checks it with two gloo processes):
- `train.prompts_per_step` is global. Rank r owns its contiguous share of every mini-batch,
  each prompt's group of rollouts whole, so group advantages need no communication, and
  the ranks' shares of mini-batch k together are exactly one process's mini-batch k.
- Every rank draws the whole step's random plan (prompts, prefix lengths, demonstrations),
  so the random streams stay the same as in one process; rollouts are sampled from
  per-row seeds (rollout/engine.py) and so do not depend on batch composition.
- Losses are normalised by global counts (responses and tokens of the mini-batch) and
  scaled by world_size, because every backend averages gradients over ranks.
- The entropy top-k of prefix tokens is taken over the whole mini-batch: the candidates'
  entropies are all-gathered (train/step.py).

Departures: selection.scope=micro-batch is per rank (as in the released code, whose
micro-batches are per GPU); a float16 run under fsdp2 is refused (no loss scaler here).
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import socket

import torch
import torch.distributed as dist

from prefixrft_cli.config import Config
from prefixrft_cli.errors import UserError
from prefixrft_cli.train.precision import Precision, make_precision, resolve_device

LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def new_optimizer(params, cfg: Config):
    """AdamW with a linear warm-up to the learning rate, then constant.

    torch's fused AdamW (one kernel over all parameters) where every parameter is on a CPU or
    CUDA device: a third of the per-parameter loop's time on the 30M Llama here
    (bench/optimizer_speed.py, docs/performance.md); the same update up to float rounding.
    """
    o = cfg.optim
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay, fused=fused)
    warmup = max(o.warmup_steps * cfg.train.mini_batches * cfg.train.ppo_epochs, 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: min(1.0, (k + 1) / warmup))
    return optimizer, scheduler


class Backend:
    """One process (`distributed.backend=none`): the policy as it is, collectives that return their input."""

    name = "none"

    def __init__(self, device: torch.device, precision: Precision, rank: int = 0, world_size: int = 1):
        self.device, self.precision = device, precision
        self.rank, self.world_size = rank, world_size
        self._model = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def lockstep(self):
        """The Lockstep generation needs when every forward is a collective (sharded weights), else None."""
        return None

    def local_groups(self, prompts: int, mini_batches: int) -> list[int]:
        """Global indices of the prompts this rank samples, scores and trains on: its share of each mini-batch."""
        per_mini = prompts // mini_batches
        share = per_mini // self.world_size
        return [m * per_mini + self.rank * share + j for m in range(mini_batches) for j in range(share)]

    # ---------------------------------------------------------------- the model
    def prepare(self, policy: torch.nn.Module, cfg: Config):
        """(training model, optimizer, scheduler) for one stage; the policy is wrapped once, at the first stage."""
        if self._model is None:
            self._model = self._wrap(policy, cfg)
        optimizer, scheduler = new_optimizer(self._model.parameters(), cfg)
        return self._model, optimizer, scheduler

    def _wrap(self, policy: torch.nn.Module, cfg: Config) -> torch.nn.Module:
        return policy

    def policy(self, model: torch.nn.Module) -> torch.nn.Module:
        """The plain module inside the training model: it generates and it is saved."""
        return model

    def backward(self, model, loss: torch.Tensor) -> None:
        """Back-propagate a loss normalised by global counts (see the module docstring for the world_size)."""
        self.precision.scale(loss * self.world_size).backward()

    def step(self, model, optimizer, scheduler, clip_norm: float) -> tuple[float, bool]:
        """Clip, then update unless the gradient norm is not finite; (norm before clipping, whether applied)."""
        scaler = self.precision.scaler
        if scaler is not None:
            scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm if clip_norm > 0 else float("inf"))
        norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        applied = math.isfinite(norm)
        if applied and scaler is not None:
            scaler.step(optimizer)
        elif applied:
            optimizer.step()
        if applied:
            scheduler.step()
        if scaler is not None:
            scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return norm, applied

    def full_state_dict(self, model) -> dict | None:
        """The full state dict on rank 0 where the weights are sharded (collective); None: use the policy's own."""
        return None

    # ---------------------------------------------------------------- collectives
    def all_sum(self, values: list[float]) -> list[float]:
        return list(values)

    def all_gather(self, obj) -> list:
        return [obj]

    def broadcast(self, obj):
        return obj

    def barrier(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Distributed(Backend):
    """Collectives over the default process group; tensors travel on the device NCCL wants."""

    def __init__(self, device, precision, rank, world_size, cfg: Config):
        super().__init__(device, precision, rank, world_size)
        self.comm_device = device if dist.get_backend() == "nccl" else torch.device("cpu")
        self.cfg = cfg

    def all_sum(self, values):
        total = torch.tensor(values, dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(total)
        return total.tolist()

    def all_gather(self, obj):
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj):
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self):
        dist.barrier()

    def max_int(self, value: int) -> int:
        top = torch.tensor([value], dtype=torch.long, device=self.comm_device)
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
        return int(top)

    def all_true(self, flag: bool) -> bool:
        return self.max_int(0 if flag else 1) == 0

    def close(self):
        if dist.is_initialized():
            dist.destroy_process_group()


class DDPBackend(_Distributed):
    """torch DistributedDataParallel: a full replica per rank, gradients all-reduced (averaged) in backward."""

    name = "ddp"

    def _wrap(self, policy, cfg):
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(policy, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def policy(self, model):
        return getattr(model, "module", model)


class FSDP2Backend(_Distributed):
    """torch FSDP2 (`fully_shard`): each decoder block and the root sharded over the ranks."""

    name = "fsdp2"

    @property
    def lockstep(self):
        return self if self._model is not None else None

    def _wrap(self, policy, cfg):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(self.device.type, (self.world_size,))
        mixed = MixedPrecisionPolicy(param_dtype=self.precision.dtype, reduce_dtype=torch.float32) \
            if self.precision.name == "bfloat16" else MixedPrecisionPolicy()
        blocks = set(getattr(policy, "_no_split_modules", None) or ())
        for module in policy.modules():
            if type(module).__name__ in blocks:
                fully_shard(module, mesh=mesh, mp_policy=mixed)
        return fully_shard(policy, mesh=mesh, mp_policy=mixed)

    def full_state_dict(self, model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return state if self.is_main else None


class DeepSpeedBackend(_Distributed):
    """DeepSpeed ZeRO 1/2/3 (`distributed.zero_stage`); the engine owns backward, clipping and the step."""

    name = "deepspeed"

    @property
    def lockstep(self):
        return self if self._model is not None and self.cfg.distributed.zero_stage == 3 else None

    def _wrap(self, policy, cfg):
        import deepspeed

        optimizer, scheduler = new_optimizer(policy.parameters(), cfg)
        engine, _, _, _ = deepspeed.initialize(model=policy, optimizer=optimizer, lr_scheduler=scheduler,
                                               config=deepspeed_config(cfg, self.precision.name),
                                               dist_init_required=False)
        return engine

    def prepare(self, policy, cfg):
        if self._model is not None:  # config validation refuses sft-then-rft; this guards library callers
            raise UserError("distributed.backend=deepspeed trains one stage per run; run sft-then-rft as two runs")
        self._model = self._wrap(policy, cfg)
        return self._model, self._model.optimizer, self._model.lr_scheduler

    def policy(self, model):
        return getattr(model, "module", model)

    def backward(self, model, loss):
        model.backward(loss * self.world_size, scale_wrt_gas=False)

    def step(self, model, optimizer, scheduler, clip_norm):
        model.step()  # reduces, checks for inf/nan (skipping the update), clips, steps optimizer and scheduler
        norm = model.get_global_grad_norm()
        norm = float("nan") if norm is None else float(norm)
        return norm, bool(model.was_step_applied())

    def full_state_dict(self, model):
        if self.cfg.distributed.zero_stage < 3:
            return None  # ZeRO 1/2 keep full weights on every rank
        import deepspeed

        params = list(model.module.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            if not self.is_main:
                return None
            return {k: v.detach().cpu().clone() for k, v in model.module.state_dict().items()}


def deepspeed_config(cfg: Config, precision: str) -> dict:
    """The DeepSpeed config of a run: we own batching and accumulation; DeepSpeed owns ZeRO, clipping, casts."""
    return {
        "train_micro_batch_size_per_gpu": 1,   # required by DeepSpeed; batches are ours
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,  # backward() accumulates locally; step() reduces and updates
        "gradient_clipping": cfg.optim.grad_clip_norm,
        "zero_optimization": {"stage": cfg.distributed.zero_stage},
        "bf16": {"enabled": precision == "bfloat16", "check_grad_overflow": True},
        "fp16": {"enabled": precision == "float16"},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2 ** 31 - 1,
        "wall_clock_breakdown": False,
    }


def make_backend(cfg: Config) -> Backend:
    """The backend of `distributed.backend`, its process group started; the choice is made here, once."""
    name = cfg.distributed.backend
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and name == "none":
        raise UserError(f"WORLD_SIZE={world} (a torchrun or deepspeed launch) needs distributed.backend "
                        "ddp, fsdp2 or deepspeed; it is none")
    check_layout(cfg, world)
    if name != "none":
        _fill_launch_env()
    device = resolve_device(cfg.model.device, int(os.environ.get("LOCAL_RANK", "0")))
    # transformers imports DeepSpeed (when installed) to save a checkpoint; name its accelerator so it
    # does not guess aloud
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if device.type == "cuda" else "cpu")
    precision = make_precision(cfg.model.dtype, device, name)
    if name == "none":
        return Backend(device, precision)
    comm = "nccl" if device.type == "cuda" else "gloo"
    timeout = datetime.timedelta(minutes=cfg.distributed.timeout_minutes)
    if name == "deepspeed":
        _import_deepspeed(device).init_distributed(dist_backend=comm, timeout=timeout, verbose=False)
    else:
        dist.init_process_group(comm, timeout=timeout)
    kind = {"ddp": DDPBackend, "fsdp2": FSDP2Backend, "deepspeed": DeepSpeedBackend}[name]
    return kind(device, precision, dist.get_rank(), dist.get_world_size(), cfg)


def check_layout(cfg: Config, world: int) -> None:
    """What a run split over `world` processes needs from its config, each as one line."""
    t, backend = cfg.train, cfg.distributed.backend
    if t.prompts_per_step % (t.mini_batches * world):
        raise UserError(f"train.prompts_per_step={t.prompts_per_step} must be a multiple of train.mini_batches "
                        f"({t.mini_batches}) x the number of processes ({world})")
    if backend != "none" and cfg.rollout.engine != "hf":
        raise UserError(f"rollout.engine={cfg.rollout.engine} runs in one process here; "
                        f"use rollout.engine=hf with distributed.backend={backend}")
    if backend == "deepspeed" and cfg.algo == "sft-then-rft":
        raise UserError("distributed.backend=deepspeed trains one stage per run: run algo sft, then algo rft "
                        "from its checkpoint (--model RUN/checkpoints/final)")


def _fill_launch_env() -> None:
    """A one-process start of a distributed backend gets the variables a launcher would set."""
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(probe.getsockname()[1])
    for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)


def _import_deepspeed(device: torch.device):
    try:
        import deepspeed
        import deepspeed.ops
    except ImportError:
        raise UserError("distributed.backend=deepspeed needs DeepSpeed: pip install 'prefixrft[deepspeed]'") from None
    logging.getLogger("DeepSpeed").setLevel(logging.ERROR)
    if device.type == "cpu":
        # DeepSpeed's CPU shared-memory all-reduce is a C++ op compiled on first use (~40 s); gloo does the job
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    return deepspeed


def single_process() -> Backend:
    """The one-process CPU float32 backend: the default of the step functions when called directly."""
    cpu = torch.device("cpu")
    return Backend(cpu, Precision("float32", cpu, use_autocast=False))
