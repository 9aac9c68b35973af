"""The result of evaluating one candidate, the seed rule and failure classification.

A leaf module: every estimator (standard, fast, supernet), every executor and the journal import
it, and it imports nothing of the project, so no evaluator needs another's private helpers.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

STATUSES = ("ok", "diverged", "oom", "error")


@dataclass(frozen=True)
class EvalResult:
    """The outcome of evaluating one candidate."""

    accuracy: float
    train_time_s: float
    status: str = "ok"
    reason: str = ""
    steps: int = 0
    epochs: float = 0.0
    final_loss: float | None = None
    eval_time_s: float = 0.0
    device: str = "cpu"
    seed: int = 0

    @property
    def ok(self) -> bool:
        """Whether training finished normally."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return asdict(self)


class Diverged(RuntimeError):
    """Training produced a NaN or infinite loss (or non-finite outputs), after `steps` steps."""

    def __init__(self, message: str, steps: int = 0, epochs: float = 0.0) -> None:
        super().__init__(message)
        self.steps, self.epochs = steps, epochs  # the journal records how far training got


def eval_seed(search_seed: int, genotype: str) -> int:
    """The training seed of a genotype: a stable hash of the search seed and its string (order-free)."""
    digest = hashlib.sha256(f"{search_seed}:{genotype}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def is_oom(e: BaseException) -> bool:
    """Whether an exception is an out-of-memory error (CUDA or host)."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    msg = str(e).lower()
    return isinstance(e, oom_type) or "out of memory" in msg or "can't allocate memory" in msg


def one_line(e: BaseException, limit: int = 300) -> str:
    """An exception as one short line: its type and its message with whitespace collapsed."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:limit]}"


def failure(e: BaseException, device: str, seed: int, steps: int = 0, epochs: float = 0.0,
            train_time_s: float = 0.0) -> EvalResult:
    """The result of a candidate whose evaluation raised: accuracy 0, status diverged, oom or error, one line why."""
    if isinstance(e, Diverged):
        status, reason = "diverged", str(e)
        steps, epochs = max(steps, e.steps), max(epochs, e.epochs)
    else:
        status, reason = ("oom" if is_oom(e) else "error"), one_line(e)
    return EvalResult(accuracy=0.0, train_time_s=train_time_s, status=status, reason=reason, steps=steps,
                      epochs=epochs, device=device, seed=seed)


__all__ = ["Diverged", "EvalResult", "STATUSES", "eval_seed", "failure", "is_oom", "one_line"]
