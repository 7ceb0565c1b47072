"""Where the policy runs and in which precision: the device and the mixed-precision policy, chosen once.

    model.device  auto (cuda:LOCAL_RANK when torch sees CUDA, else cpu) | cpu | cuda
    model.dtype   auto (bfloat16 on CUDA, float32 on CPU) | float32 | bfloat16 | float16

Mixed precision keeps float32 master weights and float32 optimizer state; only the
computation is in 16 bits:

    float32   everything in float32
    bfloat16  forward and backward under torch.autocast(bfloat16). FSDP2 uses its own
              MixedPrecisionPolicy instead (bf16 parameters in compute, float32 gradient
              reduction) and DeepSpeed its bf16 mode (bf16 weights, float32 master copies
              in the optimizer); both then run without autocast.
    float16   as bfloat16 with float16, plus a dynamic loss scale: torch's GradScaler
              (backends none and ddp) or DeepSpeed's fp16 mode. Refused for fsdp2.

A step whose gradient norm is not finite is skipped by the backend (see backend.py); the
GradScaler's own overflow steps count as skipped too.
Test: tests/test_precision.py.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from prefixrft_cli.errors import UserError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device of `model.device` for the process of local rank `local_rank`."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"model.device={name}: torch {torch.__version__} sees no CUDA device; "
                        "use model.device=cpu or install a CUDA build of torch")
    if local_rank >= torch.cuda.device_count():
        raise UserError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices are visible")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def resolve_dtype(name: str, device: torch.device) -> str:
    """`model.dtype` with auto made concrete: bfloat16 on CUDA, float32 on CPU."""
    if name != "auto":
        return name
    return "bfloat16" if device.type == "cuda" else "float32"


@dataclass
class Precision:
    """The compute precision of a run and, for float16, its loss scaler."""

    name: str                     # float32 | bfloat16 | float16
    device: torch.device
    use_autocast: bool            # False where the backend casts itself (FSDP2, DeepSpeed)
    scaler: torch.amp.GradScaler | None = None

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self.name)

    def autocast(self):
        """The forward context: autocast to the compute dtype, or nothing for float32."""
        if self.name == "float32" or not self.use_autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss if self.scaler is None else self.scaler.scale(loss)


def make_precision(dtype: str, device: torch.device, backend: str) -> Precision:
    """The precision policy of `model.dtype` on `device` under `distributed.backend`."""
    name = resolve_dtype(dtype, device)
    if name == "float16" and backend == "fsdp2":
        raise UserError("model.dtype=float16 with distributed.backend=fsdp2 has no loss scaler here; "
                        "use model.dtype=bfloat16")
    own_casting = backend in ("fsdp2", "deepspeed")
    scaler = torch.amp.GradScaler(device.type) if name == "float16" and not own_casting else None
    return Precision(name, device, use_autocast=not own_casting, scaler=scaler)
