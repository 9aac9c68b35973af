"""A candidate's whole training schedule as tables: batch indices, flips, crop offsets and LR per step.

Drawing every random number up front (from a CPU generator seeded by the candidate's seed) makes
the training step free of host work and host RNG, so it can be captured once as a CUDA graph and
replayed; it also makes a candidate's data order independent of which other candidates train
beside it, and the same on every device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import TrainConfig
from ..train import lr_factor, step_count


@dataclass(frozen=True)
class Plan:
    """Per-step tables (first dimension = step) for one candidate's training."""

    index: torch.Tensor   # (steps, batch) int64: training images of each step
    flip: torch.Tensor    # (steps, batch) bool: horizontal flip per image
    offset: torch.Tensor  # (steps, batch, 2) int64: crop offsets (dy, dx) in [0, 2 * pad]
    lr: torch.Tensor      # (steps,) float32: the learning rate of each step
    batch_size: int
    epochs: float

    @property
    def steps(self) -> int:
        """Number of training steps."""
        return int(self.index.shape[0])

    def to(self, device: torch.device) -> Plan:
        """The same plan with its tables on `device`."""
        return Plan(self.index.to(device), self.flip.to(device), self.offset.to(device), self.lr.to(device),
                    self.batch_size, self.epochs)


def make_plan(n: int, cfg: TrainConfig, seed: int) -> Plan:
    """The schedule of cfg.steps (or cfg.epochs) steps over `n` training images, fixed by `seed`."""
    bs, per_epoch, total = step_count(n, cfg)
    gen = torch.Generator().manual_seed(int(seed))
    epochs = math.ceil(total / per_epoch)
    index = torch.cat([torch.randperm(n, generator=gen)[:per_epoch * bs].view(per_epoch, bs)
                       for _ in range(epochs)])[:total]
    flip = torch.rand(total, bs, generator=gen) < 0.5 if cfg.flip else torch.zeros(total, bs, dtype=torch.bool)
    offset = (torch.randint(0, 2 * cfg.crop_pad + 1, (total, bs, 2), generator=gen) if cfg.crop_pad
              else torch.zeros(total, bs, 2, dtype=torch.int64))
    f = lr_factor(cfg.schedule, total, cfg.warmup)
    lr = torch.tensor([cfg.lr * f(s) for s in range(total)], dtype=torch.float32)
    return Plan(index=index, flip=flip, offset=offset, lr=lr, batch_size=bs, epochs=total * bs / n)


__all__ = ["Plan", "make_plan"]
