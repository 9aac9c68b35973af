"""Drift correction: time a fixed reference network next to every batch and rescale by it.

On a shared machine (other tenants on the other core contend for the L3 and memory bandwidth;
the host itself shares the CPU) the speed of the whole machine drifts by 10-20% for minutes at a
time, and thread CPU time cannot see it. Every batch of probes (and of validation or calibration
networks) is timed round-robin together with one fixed reference network, and its entries
remember the reference's time `ref_ms`. A table's values are then read as
``value * baseline / ref_ms``, where ``baseline`` is the reference's median `ref_ms` over the
whole table, i.e. every batch is expressed at the table's typical machine speed. Raw measurements
stay in the file; on a quiet device the factor is close to 1.

The reference is MobileNetV2-shaped (with the table's activation) at the table's resolution, so
it stresses memory the way the measured networks do; a single small block in cache does not.
"""
from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from search_space.genotype import parse
from search_space.references import MOBILENET_V2

from .measure import Settings, Timing, time_models
from .table import LatencyTable, drift_corrected


def reference_genotype(act: str, resolution: int) -> str:
    """The reference network's genotype string (MobileNetV2 with the table's activation and resolution)."""
    return parse(MOBILENET_V2).replace(activation=act, resolution=resolution).to_string()


@lru_cache(maxsize=4)
def _reference_model(act: str, resolution: int, num_classes: int) -> bytes:
    from .emit import genotype_tflite

    return genotype_tflite(parse(reference_genotype(act, resolution)), resolution, num_classes, seed=12345)


def time_with_reference(models: Sequence[bytes], settings: Settings, act: str, resolution: int,
                        num_classes: int = 1000) -> tuple[list[Timing], float]:
    """Timings of `models` and the reference's `settings.statistic` (ms), measured interleaved."""
    ts = time_models([*models, _reference_model(act, resolution, num_classes)], settings)
    return ts[:-1], ts[-1].stat(settings.statistic)


def entry_with_reference(t: Timing, ref_ms: float) -> dict[str, Any]:
    """A table entry: the raw statistics plus the reference time of its batch."""
    e: dict[str, Any] = t.to_dict()
    e["ref_ms"] = round(ref_ms, 6)
    return e


def _summary(e: Mapping[str, Any]) -> dict[str, Any]:
    return {k: e[k] for k in ("p10_ms", "median_ms", "ref_ms") if k in e}


def _relative(e: Mapping[str, Any], statistic: str) -> float:
    """An entry's value relative to its reference (baseline-free, so passes compare directly)."""
    return drift_corrected(float(e.get(f"{statistic}_ms", e["median_ms"])), e.get("ref_ms"), 1.0)


def merge_pass(old: Mapping[str, Any] | None, new: Mapping[str, Any], statistic: str) -> dict[str, Any]:
    """Add a pass to an entry: keep the pass with the lowest corrected value, list every pass."""
    if old is None:
        return {**new, "passes": [_summary(new)]}
    passes = list(old.get("passes") or [_summary(old)]) + [_summary(new)]
    best = old if _relative(old, statistic) <= _relative(new, statistic) else new
    return {**{k: v for k, v in best.items() if k != "passes"}, "passes": passes}


def passes_done(e: Mapping[str, Any] | None) -> int:
    """How many passes an entry holds (an entry without the list counts as one)."""
    if e is None:
        return 0
    return len(e.get("passes") or [None])


def rebase(table: LatencyTable, act: str, resolution: int) -> float:
    """Set the table's baseline to the median reference time over its entries."""
    refs = [e["ref_ms"] for e in table.entries.values() if e.get("ref_ms")]
    if not refs:
        return 0.0
    base = statistics.median(refs)
    table.meta["drift"] = {"reference": reference_genotype(act, resolution), "baseline_ms": round(base, 6),
                           "method": "value = entry[statistic] * baseline_ms / entry.ref_ms"}
    return base
