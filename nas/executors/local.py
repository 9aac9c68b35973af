"""A pool of worker processes on this machine, each pinned to a GPU or to a share of the CPU threads.

Hand-rolled on purpose: every worker is a spawned process with its own pipe, so the driver sees
exactly which worker died (its process sentinel fires) and which job it held, replaces that one
worker and retries that one job. (concurrent.futures' pool breaks as a whole when any worker dies.)
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_any
from typing import Any

from .base import DriverThreads, Executor, ExecutorError, result_from_dict
from .worker import serve

# A worker that dies before it is ready this many times in a row means it cannot start at all.
MAX_START_FAILURES = 3


@dataclass(frozen=True)
class WorkerSpec:
    """Where one worker runs: a label (``cuda:1``, ``cpu``), extra environment, torch threads."""

    label: str
    env: dict[str, str] = field(default_factory=dict)
    threads: int | None = None


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan_workers(gpus: list[int], workers: int | None, workers_per_gpu: int) -> list[WorkerSpec]:
    """One spec per worker: `workers_per_gpu` on each GPU (or `workers` dealt round-robin), else CPU workers."""
    cores = usable_cores()
    if gpus:
        # Indices count the GPUs this process sees, so an outer CUDA_VISIBLE_DEVICES is respected.
        visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        names = {g: visible[g] if g < len(visible) else str(g) for g in gpus}
        order = [g for g in gpus for _ in range(workers_per_gpu)] if workers is None else \
            [gpus[i % len(gpus)] for i in range(workers)]
        threads = max(1, cores // len(order))
        return [WorkerSpec(f"cuda:{g}", {"CUDA_VISIBLE_DEVICES": names[g]}, threads) for g in sorted(order)]
    n = workers or cores
    return [WorkerSpec("cpu", {}, max(1, cores // n)) for _ in range(n)]


@dataclass
class _Worker:
    spec: WorkerSpec
    process: Any
    conn: Any
    ready: bool = False
    key: str | None = None     # the job it is running
    gone: bool = False         # its pipe broke; the sentinel will tell how it ended


def _death(w: _Worker) -> str:
    code = w.process.exitcode
    what = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 and
            -code in signal.valid_signals() else f"exit code {code}")
    return f"worker pid {w.process.pid} on {w.spec.label} died ({what})"


class LocalExecutor(Executor):
    """Worker processes (spawned) fed over one pipe each; dead workers are replaced, their jobs retried."""

    def __init__(self, evaluator: Any, specs: list[WorkerSpec], max_retries: int = 2) -> None:
        super().__init__(max_retries)
        if not specs:
            raise ValueError("a local executor needs at least one worker")
        self.specs = list(specs)
        self.slots = len(self.specs)
        self._payload = pickle.dumps(evaluator)
        self._ctx = mp.get_context("spawn")  # fork would copy CUDA state and the driver's threads
        self._workers: list[_Worker] = []
        self._start_failures = 0
        self._driver = DriverThreads()

    def describe(self) -> str:
        """One line on where jobs run."""
        labels: dict[str, int] = {}
        for s in self.specs:
            labels[s.label] = labels.get(s.label, 0) + 1
        where = ", ".join(f"{n} on {k}" for k, n in labels.items())
        n = self.specs[0].threads
        return f"local: {self.slots} worker processes ({where}), {n} torch thread{'' if n == 1 else 's'} each"

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (tests kill them)."""
        return [w.process.pid for w in self._workers]

    # ---- workers ------------------------------------------------------------------------------
    def _start(self, spec: WorkerSpec) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        p = self._ctx.Process(target=serve, args=(child, self._payload, spec.env, spec.threads), daemon=True,
                              name=f"hwnas-worker-{spec.label}")
        p.start()
        child.close()  # only the worker holds its end, so its death reads as EOF here
        return _Worker(spec, p, parent)

    def _replace(self, i: int) -> None:
        w = self._workers[i]
        reason = _death(w)
        if w.key is not None:
            self._lost(w.key, reason)
        if not w.ready:
            self._start_failures += 1
            if self._start_failures >= MAX_START_FAILURES:
                self.close()
                raise ExecutorError(f"local executor: workers keep dying before they are ready ({reason}); "
                                    f"see the messages above")
        w.conn.close()
        self._workers[i] = self._start(w.spec)

    def _dispatch(self) -> None:
        if not self._workers:
            self._driver.enter()
            self._workers = [self._start(s) for s in self.specs]
        for w in self._workers:
            if not self._queue:
                return
            if w.ready and w.key is None and not w.gone:
                a = self._queue.popleft()
                try:
                    w.conn.send(("job", a.job.key, a.job.genotype, a.job.seed))
                except OSError:
                    self._queue.appendleft(a)  # never reached the worker: not a lost try
                    w.gone = True
                    continue
                w.key = a.job.key
                self._running[a.job.key] = a

    def _poll(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            by_obj: dict[Any, tuple[int, str]] = {}
            for i, w in enumerate(self._workers):
                if not w.gone:
                    by_obj[w.conn] = (i, "msg")
                by_obj[w.process.sentinel] = (i, "exit")
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait_any(list(by_obj), left)
            # Messages first: a worker may have sent its result just before it exited.
            for obj in sorted(ready, key=lambda o: by_obj[o][1] != "msg"):
                i, kind = by_obj[obj]
                w = self._workers[i]
                if kind == "msg":
                    self._read(w)
                elif not w.process.is_alive():
                    while not w.gone and w.conn.poll():
                        self._read(w)
                    self._replace(i)
            self._dispatch()  # lost jobs go back out, new workers get work
            if self._done or not (self._running or self._queue):
                return
            if deadline is not None and time.monotonic() >= deadline:
                return

    def _read(self, w: _Worker) -> None:
        """Handle one message from a worker."""
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            w.gone = True  # the process sentinel follows
            return
        kind = msg[0]
        if kind == "ready":
            w.ready = True
            self._start_failures = 0
            return
        _, key, payload = msg
        w.key = None
        if kind == "done":
            result, wall_s = payload
            self._finished(key, result_from_dict(result), wall_s)
        else:  # "lost": the worker hit a CUDA failure and is exiting
            self._lost(key, payload)
            w.gone = True

    def close(self) -> None:
        """Stop every worker (busy ones are terminated: their jobs are the driver's to resubmit)."""
        for w in self._workers:
            if w.process.is_alive():
                try:
                    if w.key is None and not w.gone:
                        w.conn.send(("stop",))
                    else:
                        w.process.terminate()
                except OSError:
                    w.process.terminate()
        for w in self._workers:
            w.process.join(timeout=5)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
            w.conn.close()
        self._workers = []
        self._driver.exit()
