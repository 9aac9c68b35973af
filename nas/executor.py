"""Where evaluations run. Only ``inline`` (in this process) for now; pools and Ray come later."""
from __future__ import annotations

from typing import Any

from search_space import Genotype

from .evaluate import EvalResult, Evaluator


class InlineExecutor:
    """Evaluates one candidate at a time in the calling process."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator

    def evaluate(self, genotype: Genotype, seed: int) -> EvalResult:
        """Train and score one candidate."""
        return self.evaluator.evaluate(genotype, seed)

    def close(self) -> None:
        """Nothing to release."""


def build_executor(config: Any, evaluator: Evaluator) -> InlineExecutor:
    """The executor named by ``config.executor.kind``."""
    kind = config.executor.kind
    if kind == "inline":
        return InlineExecutor(evaluator)
    raise ValueError(f"executor kind {kind!r} is not available yet")
