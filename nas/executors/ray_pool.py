"""The same pool on a Ray cluster: one actor per slot, each with the trial's resources.

Ray is an optional extra (``pip install 'hwnas[ray]'``) and is imported only here. Actors, not
tasks: an actor loads the data once and keeps it for every candidate it trains. Ray's own retries
are off (``max_restarts=0``): a dead actor (node lost, process killed, CUDA failure) is replaced
by this driver and its job retried up to ``max_retries`` times, the same rule as the local pool.
"""
from __future__ import annotations

import math
import pickle
from typing import Any

from .base import DriverThreads, Executor, ExecutorError, result_from_dict
from .worker import RayWorker

# Actors that die before finishing any job this many times in a row cannot run at all.
MAX_START_FAILURES = 3


def import_ray() -> Any:
    """The ray module, or a clear error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ExecutorError("executor 'ray' needs Ray, which is not installed: pip install 'hwnas[ray]' "
                            "(or pip install ray)") from None
    return ray


def _lost_errors(ray: Any) -> tuple[type, ...]:
    ex = ray.exceptions
    names = ("RayActorError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OwnerDiedError",
             "LocalRayletDiedError", "OutOfMemoryError", "ActorUnavailableError")
    return tuple(getattr(ex, n) for n in names if hasattr(ex, n))


class RayExecutor(Executor):
    """Ray actors fed one job each; a lost actor is replaced and its job retried."""

    def __init__(self, evaluator: Any, address: str | None = None, workers: int | None = None,
                 num_cpus: float = 1.0, num_gpus: float = 0.0, max_retries: int = 2,
                 runtime_env: dict[str, Any] | None = None, threads: int | None = None) -> None:
        super().__init__(max_retries)
        ray = self._ray = import_ray()
        self._owns = False
        if not ray.is_initialized():
            try:
                ray.init(address=address, runtime_env=runtime_env, include_dashboard=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise ExecutorError(f"executor 'ray': cannot connect to {address or 'a new local cluster'}: "
                                    f"{' '.join(str(e).split())}") from None
            self._owns = True  # we started it (or joined it): we disconnect at close
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.slots = workers or self._capacity()
        self._payload = pickle.dumps(evaluator)
        threads = threads or max(1, int(num_cpus))
        self._threads = threads
        self._actor_cls = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=0,
                                     max_task_retries=0)(RayWorker)
        self._actors: list[Any] = []
        self._served: list[int] = []
        self._calls: dict[Any, tuple[int, str]] = {}  # object ref -> (actor slot, job key)
        self._start_failures = 0
        self._driver = DriverThreads()

    def _capacity(self) -> int:
        """As many trials as the cluster's CPUs and GPUs allow at the per-trial resources."""
        res = self._ray.cluster_resources()
        fits = []
        if self.num_cpus > 0:
            fits.append(math.floor(res.get("CPU", 0) / self.num_cpus + 1e-9))
        if self.num_gpus > 0:
            fits.append(math.floor(res.get("GPU", 0) / self.num_gpus + 1e-9))
        n = min(fits) if fits else 1
        if n < 1:
            raise ExecutorError(f"executor 'ray': the cluster ({res.get('CPU', 0)} CPUs, {res.get('GPU', 0)} GPUs) "
                                f"cannot fit one trial of num_cpus={self.num_cpus}, num_gpus={self.num_gpus}")
        return n

    def describe(self) -> str:
        """One line on where jobs run."""
        return (f"ray: {self.slots} actors of num_cpus={self.num_cpus}, num_gpus={self.num_gpus} "
                f"({self._threads} torch threads each)")

    def actors(self) -> list[Any]:
        """The live actor handles (tests kill them with ray.kill)."""
        return list(self._actors)

    def _new_actor(self) -> Any:
        return self._actor_cls.remote(self._payload, self._threads)

    def _dispatch(self) -> None:
        if not self._actors:
            self._driver.enter()
            self._actors = [self._new_actor() for _ in range(self.slots)]
            self._served = [0] * self.slots
        busy = {slot for slot, _ in self._calls.values()}
        for i, actor in enumerate(self._actors):
            if not self._queue:
                return
            if i in busy:
                continue
            a = self._queue.popleft()
            ref = actor.evaluate.remote(a.job.genotype, a.job.seed)
            self._calls[ref] = (i, a.job.key)
            self._running[a.job.key] = a

    def _poll(self, timeout: float | None) -> None:
        ray = self._ray
        lost_types = _lost_errors(ray)
        if not self._calls:
            return
        ready, _ = ray.wait(list(self._calls), num_returns=1, timeout=timeout)
        for ref in ready:
            slot, key = self._calls.pop(ref)
            try:
                out = ray.get(ref)
            except lost_types as e:
                self._replace(slot, key, f"ray actor lost: {type(e).__name__}: {' '.join(str(e).split())[:300]}")
                continue
            except ray.exceptions.RayError as e:  # raised inside evaluate: trying again would fail again
                self._lost(key, f"{type(e).__name__}: {' '.join(str(e).split())[:300]}", retry=False)
                continue
            self._served[slot] += 1
            self._start_failures = 0
            result, wall_s = out
            self._finished(key, result_from_dict(result), wall_s)

    def _replace(self, slot: int, key: str, reason: str) -> None:
        if self._served[slot] == 0:
            self._start_failures += 1
        self._lost(key, reason)
        try:
            self._ray.kill(self._actors[slot], no_restart=True)
        except Exception:  # noqa: BLE001 - it is gone already
            pass
        if self._start_failures >= MAX_START_FAILURES:
            self.close()
            raise ExecutorError(f"executor 'ray': actors keep dying before finishing a job ({reason})")
        self._actors[slot] = self._new_actor()
        self._served[slot] = 0

    def close(self) -> None:
        """Kill the actors; disconnect from (or stop) the cluster this executor started."""
        for actor in self._actors:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead
                pass
        self._actors, self._calls = [], {}
        self._driver.exit()
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
            self._owns = False
