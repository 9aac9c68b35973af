"""Which evaluator a config gets: ``train.evaluator`` auto | standard | fast."""
from __future__ import annotations

import torch

from ..config import TrainConfig


def resolve_evaluator(cfg: TrainConfig, device: torch.device) -> str:
    """'fast' or 'standard'; 'auto' is fast on CUDA with the SGD optimiser (the one it implements), else standard."""
    if cfg.evaluator == "auto":
        return "fast" if device.type == "cuda" and cfg.optimizer == "sgd" else "standard"
    return cfg.evaluator


__all__ = ["resolve_evaluator"]
