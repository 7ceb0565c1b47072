"""prefixrft: Prefix-RFT and its baselines for verifiable tasks, from a laptop CPU to a GPU cluster."""

__version__ = "0.1.0"
