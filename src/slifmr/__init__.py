"""slifmr: SLIF-MR and its baselines on PyTorch Lightning + Hydra."""

__version__ = "0.1.0"
