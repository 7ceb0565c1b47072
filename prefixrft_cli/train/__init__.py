"""Training: `run_training(cfg)` runs one configured algorithm and leaves a run folder."""

from prefixrft_cli.train.loop import run_training

__all__ = ["run_training"]
