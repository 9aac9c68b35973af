"""Where evaluations run: ``inline`` (this process), ``local`` (worker processes), ``ray`` (a cluster).

    >>> with build_executor(cfg.executor, evaluator, device=cfg.train.device) as ex:
    ...     ex.submit(Job("a", genotype_string, seed))
    ...     for done in ex.wait(): print(done.job.key, done.result.accuracy)

Every executor takes jobs ``(key, genotype, seed)`` and hands back `Done` jobs; the search loop
keeps as many submitted as the executor has slots. See docs/scale_out.md.
"""
from __future__ import annotations

import importlib.util
from typing import Any

from ..schema import ConfigError
from .base import FAILED, Done, Executor, ExecutorError, Job
from .inline import InlineExecutor, batch_size


def visible_gpus() -> int:
    """How many CUDA devices this process sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_gpus(gpus: list[int] | str | None, device: str) -> list[int]:
    """The GPU indices a local pool uses: the listed ones, all for "all", all visible for null unless on CPU."""
    if gpus == "all" or (gpus is None and device != "cpu"):
        return list(range(visible_gpus()))
    return list(gpus or [])


def check_executor(ex: Any, device: str, src: str = "config") -> None:
    """Cross-field checks of an executor section (GPU indices, CPU-only training, Ray installed)."""
    if ex.kind == "local":
        if isinstance(ex.gpus, str) and ex.gpus != "all":
            raise ConfigError(f"{src}: key 'executor.gpus': {ex.gpus!r} must be a list of GPU indices or 'all'")
        if ex.gpus and device == "cpu":
            raise ConfigError(f"{src}: key 'executor.gpus': {ex.gpus!r} but train.device is 'cpu'; drop gpus "
                              f"(CPU workers: executor.workers) or set train.device to auto/cuda")
        if ex.gpus and ex.workers is not None:
            raise ConfigError(f"{src}: key 'executor.workers': with executor.gpus the number of workers is "
                              f"len(gpus) x workers_per_gpu; set executor.workers_per_gpu instead")
        # (gpus unset on a GPU machine: `workers`, when given, are dealt round-robin over the GPUs.)
        if ex.gpus:
            n = visible_gpus()
            bad = [g for g in (range(n) if ex.gpus == "all" else ex.gpus) if not 0 <= g < n]
            if ex.gpus == "all" and n == 0 or bad:
                raise ConfigError(f"{src}: key 'executor.gpus': {ex.gpus!r} but this machine has {n} visible CUDA "
                                  f"device(s)")
    if ex.kind == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError(f"{src}: key 'executor.kind': 'ray' needs Ray, which is not installed: "
                          f"pip install 'hwnas[ray]' (or pip install ray)")


def build_executor(ex: Any, evaluator: Any, device: str | None = None) -> Executor:
    """The executor an ``executor`` section describes, around a picklable evaluator."""
    train_cfg = getattr(evaluator, "train_cfg", None)
    device = device or getattr(train_cfg, "device", "auto")
    if ex.kind == "inline":
        return InlineExecutor(evaluator, batch=batch_size(evaluator))
    if ex.kind == "local":
        from .local import LocalExecutor, plan_workers

        specs = plan_workers(resolve_gpus(ex.gpus, device), ex.workers, ex.workers_per_gpu)
        return LocalExecutor(evaluator, specs, max_retries=ex.max_retries)
    if ex.kind == "ray":
        from .ray_pool import RayExecutor

        return RayExecutor(evaluator, address=ex.address, workers=ex.workers, num_cpus=ex.num_cpus,
                           num_gpus=ex.num_gpus, max_retries=ex.max_retries, runtime_env=ex.runtime_env,
                           threads=getattr(train_cfg, "threads", None))
    raise ValueError(f"unknown executor kind {ex.kind!r}")


__all__ = ["Executor", "ExecutorError", "InlineExecutor", "Job", "Done", "FAILED", "build_executor",
           "check_executor", "resolve_gpus", "visible_gpus"]
