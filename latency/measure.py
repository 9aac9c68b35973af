"""Timing TFLite models with the LiteRT interpreter (XNNPACK, the default CPU delegate for float).

Only `Interpreter.invoke()` is timed (input set once beforehand), the same span that TFLite's
`benchmark_model` reports, so a phone table and a host table mean the same thing. Several models
are timed round-robin in a batch so that a burst of load from other processes spreads over many
entries instead of ruining one. Each model's runs give median, 10th percentile, min, IQR and std
(which one a table predicts from is `Settings.statistic`).
"""
from __future__ import annotations

import gc
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .runtime import interpreter_class, runtime_version

MIN_SAMPLE_MS = 1e-6  # 1 ns, the resolution times are stored at (latency.table.MIN_MS)
DEFAULT_WINDOW_S = 2.0  # Settings.window_s unless given (read when a Settings is made; tests set it to 0)


@dataclass(frozen=True)
class Timing:
    """Statistics of repeated runs of one model, in milliseconds."""

    median_ms: float
    iqr_ms: float
    std_ms: float
    min_ms: float
    count: int
    p10_ms: float = float("nan")
    cold_p10_ms: float = float("nan")

    def stat(self, name: str) -> float:
        """One statistic by name: `median`, `p10` or `min`."""
        return float(getattr(self, f"{name}_ms"))

    def to_dict(self) -> dict[str, Any]:
        """The table-entry fields (`cold_p10_ms` when the first runs of the visits were timed)."""
        d = {"median_ms": round(self.median_ms, 6), "p10_ms": round(self.p10_ms, 6),
             "min_ms": round(self.min_ms, 6), "iqr_ms": round(self.iqr_ms, 6), "std_ms": round(self.std_ms, 6),
             "count": self.count}
        if np.isfinite(self.cold_p10_ms):
            d["cold_p10_ms"] = round(self.cold_p10_ms, 6)
        return d

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], cold_ms: Sequence[float] = ()) -> Timing:
        """Median, inter-quartile range, std, min, 10th percentile and count of samples; the 10th
        percentile of `cold_ms` (runs whose weights other models had evicted) when given."""
        a = np.asarray(samples_ms, dtype=np.float64)
        # Nothing an interpreter runs takes under a nanosecond (the tables' resolution): such a reading
        # is a clock glitch, and kept it would round to a 0 ms minimum that no table accepts.
        real = a[a >= MIN_SAMPLE_MS]
        if real.size == 0:
            raise RuntimeError(f"every one of {a.size} timed runs read under 1 ns: the clock is not usable")
        a = real
        p10, q1, med, q3 = np.percentile(a, [10, 25, 50, 75])
        c = np.asarray(cold_ms, dtype=np.float64)
        c = c[c >= MIN_SAMPLE_MS]
        cold = float(np.percentile(c, 10)) if c.size else float("nan")
        return cls(float(med), float(q3 - q1), float(a.std()), float(a.min()), int(a.size), float(p10), cold)


@dataclass(frozen=True)
class Settings:
    """How each model is timed: threads, warm-up runs, timed runs, the rounds they are split into.

    `statistic` is what a table predicts from: ``p10`` (default) is the 10th percentile of the
    runs, i.e. the speed of an uncontended run, which on a shared host repeats far better than
    the median (other tenants' bursts push the median around); ``median`` is the usual choice
    on a quiet device. Every entry stores both, plus min, IQR, std and count.

    `window_s`: the visits of one batch go on (past `rounds`) until this many seconds have passed.
    A shared host's speed shifts between levels for fractions of a second to seconds at a time
    (another tenant on the core's sibling thread, the memory bus), so runs packed into a few
    milliseconds can all fall in one slow spell; spread over a few seconds, the low percentile
    sees the calm level in every batch, and entries timed in different batches agree. With
    `rounds` 20 and `window_s` 2, test-retest agreement of whole networks within +-5% rose from
    about 40% to 94-100% on the 2-core host (docs/latency.md). 0 turns it off (tables built
    before it existed read as 0).

    `passes`: a table build (and validation) measures everything this many times, minutes apart
    and next to different neighbours, and keeps the pass with the lowest value:
    a memory-bound probe that happened to run while another tenant saturated the memory bus is
    then measured again in calmer conditions.
    """

    threads: int = 1
    warmup: int = 5
    runs: int = 60
    rounds: int = 20
    pin: bool = True
    statistic: str = "p10"
    passes: int = 2
    window_s: float = field(default_factory=lambda: DEFAULT_WINDOW_S)

    @property
    def clock(self) -> str:
        """`thread_cpu` with one thread (immune to time-slicing by other processes), else `wall`."""
        return "thread_cpu" if self.threads == 1 else "wall"

    def to_dict(self) -> dict[str, Any]:
        """The table's `measurement` metadata."""
        return {"threads": self.threads, "warmup": self.warmup, "runs": self.runs, "rounds": self.rounds,
                "pin": self.pin, "clock": self.clock, "statistic": self.statistic, "passes": self.passes,
                "window_s": self.window_s}


class Runner:
    """One model loaded in an interpreter with a random input set, ready to invoke."""

    def __init__(self, model: bytes, threads: int = 1, seed: int = 0) -> None:
        Interpreter = interpreter_class()
        self.interpreter = Interpreter(model_content=model, num_threads=threads)
        self.interpreter.allocate_tensors()
        rng = np.random.default_rng(seed)
        for d in self.interpreter.get_input_details():
            self.interpreter.set_tensor(d["index"], rng.standard_normal(d["shape"]).astype(np.float32))
        self.invoke = self.interpreter.invoke

    def set_input(self, x: np.ndarray) -> None:
        """Set the (single) input tensor."""
        self.interpreter.set_tensor(self.interpreter.get_input_details()[0]["index"], x)

    def output(self) -> np.ndarray:
        """A copy of the (single) output tensor."""
        return self.interpreter.get_tensor(self.interpreter.get_output_details()[0]["index"]).copy()


def run_model(model: bytes, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Outputs of a model for one NHWC float32 input."""
    r = Runner(model, threads)
    r.set_input(np.ascontiguousarray(x, dtype=np.float32))
    r.invoke()
    return r.output()


LEGACY_WINDOW_S = 0.0  # what a table without `measurement.window_s` was measured with
MAX_VISITS = 2000      # a cap on the visits a window adds, for models far shorter than the window


def time_models(models: Sequence[bytes], settings: Settings | None = None) -> list[Timing]:
    """Time several models round-robin; one Timing per model (statistics of at least `settings.runs`
    invokes, in visits spread over at least `settings.window_s` seconds)."""
    settings = settings or Settings()
    runners = [Runner(m, settings.threads, seed=i) for i, m in enumerate(models)]
    samples: list[list[float]] = [[] for _ in runners]
    cold: list[list[float]] = [[] for _ in runners]
    per_round = [settings.runs // settings.rounds + (1 if r < settings.runs % settings.rounds else 0)
                 for r in range(settings.rounds)]
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed invoke would be charged to that probe
    restore = _pin_thread() if settings.pin and settings.threads == 1 else None
    try:
        for r in runners:
            for _ in range(settings.warmup):
                r.invoke()
        # On a shared machine a wall clock charges other processes' time slices to whichever
        # invoke they interrupt (long invokes more often), which biases a sum of short probes
        # against a long network run. With one thread XNNPACK computes on the calling thread,
        # so that thread's CPU time is the latency an idle device would show.
        clock = time.thread_time_ns if settings.clock == "thread_cpu" else time.perf_counter_ns
        per_visit = max(1, settings.runs // settings.rounds)
        start = time.perf_counter()
        for visit in range(settings.rounds + MAX_VISITS):
            if visit < settings.rounds:
                n = per_round[visit]
            elif time.perf_counter() - start < settings.window_s:
                n = per_visit
            else:
                break
            for r, out, first in zip(runners, samples, cold):
                invoke = r.invoke
                # The first run of a visit finds this model's weights evicted by the models before
                # it, as a block inside a network does: timed apart (`cold_p10_ms`), so that the
                # runs that statistics come from all repeat one another's cache state.
                t0 = clock()
                invoke()
                first.append((clock() - t0) / 1e6)
                for _ in range(n):
                    t0 = clock()
                    invoke()
                    out.append((clock() - t0) / 1e6)
    finally:
        if restore is not None:
            _set_affinity(restore)
        if gc_was_enabled:
            gc.enable()
    return [Timing.from_samples(s, c) for s, c in zip(samples, cold)]


def _set_affinity(cpus: set[int]) -> None:
    try:
        os.sched_setaffinity(0, cpus)
    except (AttributeError, OSError):
        pass


def _pin_thread() -> set[int] | None:
    """Pin the calling thread to one CPU (returns the old set): migrations leave the L2 cold."""
    try:
        old = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return None
    _set_affinity({max(old)})
    return old


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
                    name = line.split(":", 1)[1].strip()
                    if name and not name.isdigit():
                        return name
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def host_metadata(threads: int) -> dict[str, Any]:
    """Device metadata of this host for a table measured here."""
    return {
        "source": "host",
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "runtime": runtime_version(),
        "delegate": "XNNPACK (LiteRT default for float32)",
        "threads": threads,
        "python": sys.version.split()[0],
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
