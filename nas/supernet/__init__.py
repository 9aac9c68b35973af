"""One-shot architecture search: a weight-sharing supernet of any space (docs/supernet.md).

- `SuperNet` (`nas.supernet.net`): every member of a `configs/space_*.yaml` in one module;
  `forward(x, genotype)` runs a member, `extract(genotype)` returns it as the builder's network
  with the shared weights copied in.
- `python -m nas.supernet train CONFIG`: sandwich-rule training with in-place distillation
  (BigNAS) or uniform single-path sampling (SPOS), resumable, on one or several devices.
- `train.evaluator: supernet` (`SupernetScorer`): a candidate is scored by extraction, BatchNorm
  recalibration and validation accuracy, in seconds instead of a training run.
- `python -m nas.supernet extract CHECKPOINT GENOTYPE --out weights.pt` for `python -m scaling`.
"""
from __future__ import annotations

from .net import SuperNet, build_supernet

__all__ = ["SuperNet", "build_supernet"]
