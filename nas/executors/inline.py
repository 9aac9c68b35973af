"""The default executor: candidates trained in the driver's own process.

One at a time, except where the evaluator trains several at once (the fast GPU evaluator's
``evaluate_many`` with ``train.concurrent``): then the executor has that many slots, so the search
keeps that many asks outstanding, and each `wait` trains the queued jobs together.
"""
from __future__ import annotations

import time
from typing import Any

from .base import Executor


def batch_size(evaluator: Any) -> int:
    """How many candidates the evaluator trains at once in this process (1 unless it is the fast one)."""
    try:
        fast = getattr(evaluator, "kind", "standard") == "fast" and hasattr(evaluator, "evaluate_many")
    except Exception:  # noqa: BLE001 - an evaluator without the fast path
        return 1
    return max(1, int(getattr(getattr(evaluator, "train_cfg", None), "concurrent", 1) or 1)) if fast else 1


class InlineExecutor(Executor):
    """Evaluates queued jobs in the calling process (nothing to lose, so no retries)."""

    def __init__(self, evaluator: Any, batch: int = 1) -> None:
        super().__init__(max_retries=0)
        self.evaluator = evaluator
        self.slots = max(1, batch)

    def _dispatch(self) -> None:
        pass  # jobs run inside `_poll`, in the caller's thread

    def _poll(self, timeout: float | None) -> None:
        batch = [self._queue.popleft() for _ in range(min(self.slots, len(self._queue)))]
        for a in batch:
            self._running[a.job.key] = a
        t0 = time.perf_counter()
        if len(batch) == 1:
            results = [self.evaluator.evaluate(batch[0].job.genotype, batch[0].job.seed)]
        else:
            results = self.evaluator.evaluate_many([a.job.genotype for a in batch], [a.job.seed for a in batch])
        wall = (time.perf_counter() - t0) / len(batch)
        for a, result in zip(batch, results):
            self._finished(a.job.key, result, wall)

    def describe(self) -> str:
        """One line on where jobs run."""
        return "inline (this process, " + ("one at a time)" if self.slots == 1 else f"{self.slots} at once)")
