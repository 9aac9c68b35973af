"""The drift reference: a fixed network timed next to every batch, a record of the machine's speed.

On a shared machine (other tenants on the other core contend for the L3 and memory bandwidth;
the host itself shares the CPU) the speed of the whole machine drifts by 10-30% for minutes at a
time, and thread CPU time cannot see it. Every batch of probes (and of validation or calibration
networks) is timed round-robin together with one fixed reference network, and its entries
remember the reference's time `ref_ms`.

One batch's reference reading is a poor gauge of the machine's speed: the reference shares
the cache with its batch (64 small probes evict it differently from 32 networks) and a single
reading has a 10-15% spread of its own. Read at it, the same networks disagreed more between
passes than read as measured. Tables therefore keep their entries as measured, each one spread
over a window of seconds (`Settings.window_s`), which is what makes entries timed minutes apart
agree. The reference is still timed with every batch, as a record: the table notes its median
(`drift.reference_ms`), the calibration the median over its networks
(`calibration.reference_ms`), and `validate --reading run` rescales its measurements by the
calibration's over its own run's median. On the 2-core host that rescaling missed by 20-25%
where the networks themselves had not moved (docs/latency.md), so it is not the default.

Tables built before that read every entry at its batch's reference, ``value * baseline /
ref_ms`` with ``baseline`` the reference's median over the table (`drift.baseline_ms`); they
keep doing so, and so do entries added to them.

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
    return {k: e[k] for k in ("p10_ms", "median_ms", "cold_p10_ms", "ref_ms") if k in e}


def _value(e: Mapping[str, Any], statistic: str) -> float:
    """An entry's `statistic` as measured (its median for entries that lack it)."""
    return float(e.get(f"{statistic}_ms", e["median_ms"]))


def _relative(e: Mapping[str, Any], statistic: str) -> float:
    """An entry's value relative to its reference (baseline-free, so passes compare directly)."""
    return drift_corrected(_value(e, statistic), e.get("ref_ms"), 1.0)


def merge_pass(old: Mapping[str, Any] | None, new: Mapping[str, Any], statistic: str,
               per_batch: bool = False) -> dict[str, Any]:
    """Add a pass to an entry: keep the pass with the lowest value (read at its batch's reference with
    `per_batch`), list every pass."""
    if old is None:
        return {**new, "passes": [_summary(new)]}
    passes = list(old.get("passes") or [_summary(old)]) + [_summary(new)]

    value = _relative if per_batch else _value
    best = old if value(old, statistic) <= value(new, statistic) else new
    merged = {k: v for k, v in best.items() if k != "passes"}
    colds = [p["cold_p10_ms"] for p in passes if "cold_p10_ms" in p]
    if len(colds) == len(passes):
        # The cold reading's calmest pass, which need not be the warm one's (contention only slows).
        merged["cold_p10_ms"] = min(colds)
    else:
        merged.pop("cold_p10_ms", None)  # a pass without it: resumed from a table measured before it existed
    return {**merged, "passes": passes}


def passes_done(e: Mapping[str, Any] | None) -> int:
    """How many passes an entry holds (an entry without the list counts as one)."""
    if e is None:
        return 0
    return len(e.get("passes") or [None])


def rebase(table: LatencyTable, act: str, resolution: int, per_batch: bool = False) -> float:
    """Record the median reference time over the table's entries: its baseline with `per_batch`, else a note."""
    refs = [e["ref_ms"] for e in table.entries.values() if e.get("ref_ms")]
    if not refs:
        return 0.0
    base = statistics.median(refs)
    if per_batch:
        table.meta["drift"] = {"reference": reference_genotype(act, resolution), "baseline_ms": round(base, 6),
                               "method": "value = entry[statistic] * baseline_ms / entry.ref_ms"}
    else:
        table.meta["drift"] = {"reference": reference_genotype(act, resolution), "reference_ms": round(base, 6),
                               "method": "entries as measured; ref_ms and this median are a record "
                                         "(validate --reading run rescales by calibration.reference_ms)"}
    return base
