"""Optional metric sinks (`train.report_to`): Weights & Biases or TensorBoard, imported lazily."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from prefixrft_cli.config import Config, to_dict
from prefixrft_cli.errors import UserError


class Reporter(Protocol):
    def log(self, record: dict) -> None:
        """Send one metrics.jsonl record (its numeric leaves) to the sink."""
        ...


def make_reporter(cfg: Config, run_dir: Path) -> Reporter | None:
    """None for report_to=none; otherwise the sink."""
    if cfg.train.report_to == "none":
        return None
    if cfg.train.report_to == "wandb":
        try:
            import wandb
        except ImportError:
            raise UserError("train.report_to=wandb needs wandb: pip install 'prefixrft[wandb]'") from None
        return _Wandb(wandb.init(project="prefixrft", dir=str(run_dir), config=to_dict(cfg)))
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("train.report_to=tensorboard needs tensorboard: pip install 'prefixrft[tensorboard]'") from None
    return _TensorBoard(SummaryWriter(log_dir=str(run_dir / "tensorboard")))


def scalars(record: dict, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a metrics record, flattened with '/'."""
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(scalars(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[prefix + key] = float(value)
    return out


class _Wandb:
    def __init__(self, run):
        self.run = run
        self.step = 0

    def log(self, record: dict) -> None:
        self.step += 1
        self.run.log(scalars(record), step=self.step)


class _TensorBoard:
    def __init__(self, writer):
        self.writer = writer
        self.step = 0

    def log(self, record: dict) -> None:
        self.step += 1
        for key, value in scalars(record).items():
            self.writer.add_scalar(key, value, self.step)
        self.writer.flush()
