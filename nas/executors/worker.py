"""The worker's side of the process pool and of Ray: rebuild the evaluator, run jobs, report back.

This module runs in fresh (spawned) processes, so it imports nothing heavy at the top: the GPU a
worker may see is set in its environment before torch can initialise CUDA.
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
from typing import Any

# Test hook: a folder of marker files. Before each job a worker removes one file named
# ``kill-*`` from it (os.remove succeeds for exactly one process) and, if it got one, kills itself
# with SIGKILL, the way an out-of-memory killer or a lost node would.
FAULT_ENV = "HWNAS_FAULT_DIR"


def fault_hook() -> None:
    """Kill this process if the fault-injection folder still holds a ``kill-*`` marker (tests only)."""
    folder = os.environ.get(FAULT_ENV)
    if not folder or not os.path.isdir(folder):
        return
    for name in sorted(os.listdir(folder)):
        if name.startswith("kill-"):
            try:
                os.remove(os.path.join(folder, name))
            except FileNotFoundError:
                continue  # another worker took this one
            os.kill(os.getpid(), signal.SIGKILL)


def is_device_failure(result: Any) -> bool:
    """A CUDA error (other than out-of-memory) leaves the context unusable: the worker must be replaced."""
    if result.status != "error" or not str(getattr(result, "device", "")).startswith("cuda"):
        return False
    reason = result.reason.lower()
    return any(s in reason for s in ("cuda error", "cudnn", "cublas", "device-side assert", "illegal memory",
                                     "nccl", "acceleratorerror"))


def load_evaluator(payload: bytes, threads: int | None) -> Any:
    """Unpickle the evaluator and give it this worker's thread count (unless the config fixed one)."""
    import dataclasses

    evaluator = pickle.loads(payload)
    cfg = getattr(evaluator, "train_cfg", None)
    if threads and cfg is not None and dataclasses.is_dataclass(cfg) and getattr(cfg, "threads", 0) is None:
        evaluator.train_cfg = dataclasses.replace(cfg, threads=threads)
    if threads:
        import torch

        torch.set_num_threads(threads)
    return evaluator


def _exit_with_parent(parent: int) -> None:
    # A driver killed with SIGKILL cannot stop its workers: they notice and leave, freeing the GPU.
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(1)


def serve(conn: Any, payload: bytes, env: dict[str, str], threads: int | None) -> None:
    """A pool worker's main loop: ("job", key, genotype, seed) in, ("done"|"lost", key, ...) out."""
    os.environ.update(env)  # before torch sees CUDA: the pinned GPU is this process's cuda:0
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle; it stops us
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    evaluator = load_evaluator(payload, threads)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        _, key, genotype, seed = msg
        fault_hook()
        t0 = time.perf_counter()
        result = evaluator.evaluate(genotype, seed)
        if is_device_failure(result):
            conn.send(("lost", key, f"CUDA failure in pid {os.getpid()}: {result.reason}"))
            sys.exit(3)  # a fresh process gets a fresh CUDA context
        conn.send(("done", key, (result.to_dict(), time.perf_counter() - t0)))


class RayWorker:
    """A Ray actor's body: one evaluator per actor, data loaded once, one job at a time."""

    def __init__(self, payload: bytes, threads: int | None) -> None:
        self.evaluator = load_evaluator(payload, threads)

    def evaluate(self, genotype: str, seed: int) -> tuple[dict[str, Any], float]:
        """Train one candidate (result dict, wall seconds); a CUDA failure ends this actor so it is replaced."""
        fault_hook()
        t0 = time.perf_counter()
        result = self.evaluator.evaluate(genotype, seed)
        if is_device_failure(result):
            sys.stderr.write(f"CUDA failure: {result.reason}\n")
            os._exit(3)
        return result.to_dict(), time.perf_counter() - t0

    def pid(self) -> int:
        """The actor's process id (tests kill it)."""
        return os.getpid()
