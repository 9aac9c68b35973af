"""Several candidates training at once on one GPU: one CUDA stream each, work issued in bounded chunks.

Small networks leave most of an H100/H200 idle even as graph replays (each kernel fills a few SMs),
so kernels of other candidates on other streams fill the gaps. One host thread drives every slot:
it starts a candidate (build, eager warm-up, capture), which is host-heavy, while the queued
replays of the other slots keep the GPU busy; each slot keeps at most `max_inflight` chunks queued
so the host never blocks on a full launch queue while it could be starting the next candidate.
On CPU the same loop runs the chunks synchronously.
"""
from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .runner import CandidateRun

CHUNK = 32          # steps issued per slot per round
MAX_INFLIGHT = 4    # chunks a slot may have queued on the GPU


@dataclass
class _Slot:
    job: int
    run: CandidateRun
    stream: Any
    start: float
    events: deque = field(default_factory=deque)
    error: BaseException | None = None

    def pending(self) -> int:
        """Queued chunks not yet finished on the GPU (drops finished ones)."""
        while self.events and self.events[0].query():
            self.events.popleft()
        return len(self.events)


def run_jobs(n_jobs: int, start: Callable[[int], CandidateRun],
             finish: Callable[[int, CandidateRun, float], None], fail: Callable[[int, BaseException], None],
             concurrent: int, device: torch.device, chunk: int = CHUNK, max_inflight: int = MAX_INFLIGHT) -> None:
    """Train jobs 0..n_jobs-1, `concurrent` at a time; `start` builds a run, `finish` scores it, `fail` records errors."""
    cuda = device.type == "cuda"
    if cuda:
        # Streams start after everything already queued (data upload) on the current stream.
        origin = torch.cuda.current_stream(device)
        streams = [torch.cuda.Stream(device) for _ in range(max(1, concurrent))]
        for s in streams:
            s.wait_stream(origin)
    else:
        streams = [None] * max(1, concurrent)

    def on(stream: Any) -> Any:
        return torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()

    todo = deque(range(n_jobs))
    free = list(streams)
    active: list[_Slot] = []
    while todo or active:
        progressed = False
        if todo and free:  # one start per round, so the new run's first chunk is queued before the next start
            job, stream = todo.popleft(), free.pop()
            t0 = time.perf_counter()
            try:
                with on(stream):
                    run = start(job)
                active.append(_Slot(job, run, stream, t0))
            except Exception as e:  # noqa: BLE001 - a candidate that cannot start fails alone
                fail(job, e)
                free.append(stream)
            progressed = True
        for slot in active:
            if slot.run.remaining and (not cuda or slot.pending() < max_inflight):
                try:
                    with on(slot.stream):
                        slot.run.run(chunk)
                        if cuda:
                            ev = torch.cuda.Event()
                            ev.record(slot.stream)
                            slot.events.append(ev)
                except Exception as e:  # noqa: BLE001 - e.g. out of memory in an eager step
                    slot.error = e
                    slot.run.done = slot.run.plan.steps
                progressed = True
        for slot in list(active):
            if slot.run.remaining == 0 and (not cuda or slot.pending() == 0):
                active.remove(slot)
                free.append(slot.stream)
                try:
                    if slot.error is not None:
                        raise slot.error
                    with on(slot.stream):
                        finish(slot.job, slot.run, time.perf_counter() - slot.start)
                except Exception as e:  # noqa: BLE001
                    fail(slot.job, e)
                finally:
                    slot.run.release()
                progressed = True
        if not progressed and active:
            # Nothing to issue: wait for the oldest queued chunk instead of spinning.
            waiting = [s for s in active if s.events]
            if waiting:
                waiting[0].events[0].synchronize()


__all__ = ["run_jobs", "CHUNK", "MAX_INFLIGHT"]
