"""What every executor shares: jobs, finished jobs, and the retry bookkeeping of worker pools.

An executor runs evaluations ``(genotype string, seed) -> EvalResult`` somewhere (this process,
worker processes, a Ray cluster). The driver submits jobs and waits for finished ones; it never
learns which worker ran a job, because a result depends only on the genotype and its seed. A
worker that dies takes its job with it: pools put the job back at the front of the queue and,
after ``max_retries`` retries, hand it back as ``status: failed`` with the reasons, so one bad
node or a CUDA crash never ends a search.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import UserError
from ..results import EvalResult

FAILED = "failed"  # the status of a job whose worker died on every try


class ExecutorError(UserError):
    """Workers cannot be started at all (a broken install, no such GPU, an unreachable cluster)."""


@dataclass(frozen=True)
class Job:
    """One evaluation to run: a key unique among running jobs, the genotype string and its seed."""

    key: str
    genotype: str
    seed: int


@dataclass
class Done:
    """A finished job: its result (``status: failed`` when every try lost its worker) and tries used."""

    job: Job
    result: EvalResult
    tries: int = 1
    wall_s: float = 0.0  # the last try's wall time on its worker (data loading on a new worker included)


@dataclass
class Attempt:
    """A job with the reasons its earlier tries were lost."""

    job: Job
    lost: list[str] = field(default_factory=list)


def failed_result(job: Job, reasons: list[str]) -> EvalResult:
    """The EvalResult of a job whose worker died on each of its tries (accuracy 0)."""
    tries = len(reasons)
    reason = f"gave up after {tries} {'try' if tries == 1 else 'tries'}; last: {reasons[-1]}"
    return EvalResult(accuracy=0.0, train_time_s=0.0, status=FAILED, reason=reason, seed=job.seed, device="")


def result_from_dict(d: dict[str, Any]) -> EvalResult:
    """An EvalResult from its `to_dict` form (keys this version does not know are dropped)."""
    known = {f.name for f in fields(EvalResult)}
    return EvalResult(**{k: v for k, v in d.items() if k in known})


class DriverThreads:
    """While a pool trains elsewhere, the driver's own torch work (the controller) runs on one thread.

    With its default of one thread per core the driver's OpenMP threads spin between the
    controller's small ops and steal the cores the workers train on (measured: a 2-worker search
    on 2 cores ran 3x slower). Restored when the pool closes.
    """

    def __init__(self) -> None:
        self._saved: int | None = None

    def enter(self) -> None:
        """Use one intra-op thread in this process."""
        if self._saved is None:
            import torch

            self._saved = torch.get_num_threads()
            torch.set_num_threads(1)

    def exit(self) -> None:
        """Restore the thread count."""
        if self._saved is not None:
            import torch

            torch.set_num_threads(self._saved)
            self._saved = None


class Executor(ABC):
    """Runs jobs; `submit` never blocks (extra jobs queue), `wait` returns finished ones."""

    #: how many jobs run at once
    slots: int = 1

    def __init__(self, max_retries: int = 2) -> None:
        self.max_retries = max_retries
        self._queue: deque[Attempt] = deque()
        self._done: deque[Done] = deque()
        self._running: dict[str, Attempt] = {}  # job key -> attempt on a worker

    # ---- the driver's side --------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        """Queue a job; it starts as soon as a worker is free."""
        if job.key in self._running or any(a.job.key == job.key for a in self._queue):
            raise ValueError(f"job {job.key!r} is already submitted")
        self._queue.append(Attempt(job))

    def pending(self) -> int:
        """Jobs submitted and not yet handed back by `wait` (queued, running or finished)."""
        return len(self._queue) + len(self._running) + len(self._done)

    def running(self) -> int:
        """Jobs on a worker now."""
        return len(self._running)

    def free(self) -> int:
        """Slots with nothing submitted for them: the driver may submit this many more at once."""
        return self.slots - self.pending()

    def wait(self, timeout: float | None = None) -> list[Done]:
        """Block until at least one job finishes (or `timeout` passes); returns the finished jobs."""
        self._dispatch()
        if not self._done and (self._running or self._queue):
            self._poll(timeout)
            self._dispatch()
        out = list(self._done)
        self._done.clear()
        return out

    def close(self) -> None:  # noqa: B027 - executors without workers have nothing to stop
        """Stop the workers; queued and running jobs are dropped."""

    def describe(self) -> str:
        """One line on where jobs run (for logs)."""
        return f"{type(self).__name__}({self.slots} slots)"

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- for pools --------------------------------------------------------------------------
    @abstractmethod
    def _dispatch(self) -> None:
        """Start queued jobs on free workers."""

    @abstractmethod
    def _poll(self, timeout: float | None) -> None:
        """Wait for worker events and turn them into `_finished` / `_lost` calls."""

    def _finished(self, key: str, result: Any, wall_s: float = 0.0) -> None:
        a = self._running.pop(key)
        self._done.append(Done(a.job, result, len(a.lost) + 1, wall_s))

    def _lost(self, key: str, reason: str, retry: bool = True) -> None:
        """The worker running `key` died: retry the job first in line, or fail it after max_retries."""
        a = self._running.pop(key)
        a.lost.append(reason)
        if not retry or len(a.lost) > self.max_retries:
            self._done.append(Done(a.job, failed_result(a.job, a.lost), len(a.lost)))
        else:
            self._queue.appendleft(a)
