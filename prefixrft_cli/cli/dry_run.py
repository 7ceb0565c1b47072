"""`prefixrft train --dry-run`: the memory plan of the configured run, per device, without training."""

from __future__ import annotations

import json
import sys

from prefixrft_cli.config import Config
from prefixrft_cli.errors import UserError
from prefixrft_cli.plan import GB, MemoryPlan, ModelShape, estimate, inputs_from_config, read_model_config, \
    world_size_from_env


def show_plan(cfg: Config, gpu_memory_gb: float | None, world_size: int | None, as_json: bool) -> MemoryPlan:
    """Estimate from the model's config.json and print it (a rich table, or JSON on stdout)."""
    if gpu_memory_gb is not None and gpu_memory_gb <= 0:
        raise UserError(f"--gpu-memory-gb {gpu_memory_gb}: must be positive")
    data, where = read_model_config(cfg.model.name_or_path)
    inputs = inputs_from_config(cfg, world_size_from_env(world_size), gpu_memory_gb)
    plan = estimate(ModelShape.from_config(data, where), inputs)
    if as_json:
        record = {"model": cfg.model.name_or_path, "config_json": where, "inputs": inputs.__dict__,
                  "plan": plan.to_json()}
        sys.stdout.write(json.dumps(record, indent=2) + "\n")
        return plan
    from rich.console import Console
    from rich.table import Table

    backend = cfg.distributed.backend + (f" ZeRO-{inputs.zero_stage}" if inputs.backend == "deepspeed" else "")
    table = Table(title=f"{cfg.model.name_or_path}: {plan.parameter_count / 1e9:.3g}B parameters, {cfg.model.dtype}, "
                        f"{backend}, {inputs.world_size} device(s): GiB per device")
    table.add_column("")
    table.add_column("no checkpointing", justify="right")
    table.add_column("gradient checkpointing", justify="right")
    rows = [("parameters", plan.parameters), ("gradients", plan.gradients),
            ("optimizer state", plan.optimizer_state), ("reference model", plan.reference_model)]
    for name, value in rows:
        table.add_row(name, _gb(value), _gb(value))
    table.add_row(f"activations ({inputs.micro_batch_sequences} x {inputs.prompt_tokens}+{inputs.response_tokens} "
                  "tokens)", _gb(plan.activations), _gb(plan.activations_checkpointed))
    rollout = f"KV cache ({inputs.engine}, {inputs.rollout_sequences} rollouts)"
    table.add_row(rollout, _gb(plan.kv_cache), _gb(plan.kv_cache))
    if inputs.engine == "hf":
        table.add_row("sampling logits (hf)", _gb(plan.rollout_logits), _gb(plan.rollout_logits))
    else:
        table.add_row("vLLM reservation (weights + KV)", _gb(plan.vllm_reserved), _gb(plan.vllm_reserved))
    table.add_row("total (peak)", _gb(plan.total), _gb(plan.total_checkpointed), style="bold")
    if plan.gpu_memory is not None:
        table.add_row(f"fits {plan.gpu_memory / GB:.0f} GiB", _yes(plan.fits), _yes(plan.fits_checkpointed))
    console = Console()
    console.print(table)
    for note in plan.notes:
        console.print(f"[yellow]note[/yellow]: {note}")
    console.print("dry run: nothing was trained or written (formulas: docs/scaling.md)")
    return plan


def _gb(value: int) -> str:
    return f"{value / GB:.2f}"


def _yes(flag: bool | None) -> str:
    return "yes" if flag else "[red]no[/red]"
