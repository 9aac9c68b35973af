"""Validate a table: predict random members of its space and compare with end-to-end measurements."""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from search_space.space import SearchSpace

from .build import calibration_genotypes, measure_networks
from .errors import LatencyTableError
from .measure import Settings, host_metadata
from .table import LatencyTable, drift_corrected

NN_METER_WITHIN_10 = 0.99  # nn-Meter, Pixel 4 CPU (TFLite): share of models within +-10%


@dataclass
class ErrorStats:
    """Agreement of predictions with measurements."""

    rmse_ms: float
    mape_pct: float
    mean_error_pct: float
    within_5: float
    within_10: float

    @classmethod
    def of(cls, predicted: Sequence[float], measured: Sequence[float]) -> ErrorStats:
        """Statistics over paired predictions and measurements (ms)."""
        rel = [(p - m) / m for p, m in zip(predicted, measured)]
        n = len(rel)
        return cls(rmse_ms=math.sqrt(sum((p - m) ** 2 for p, m in zip(predicted, measured)) / n),
                   mape_pct=100 * sum(abs(r) for r in rel) / n, mean_error_pct=100 * sum(rel) / n,
                   within_5=sum(abs(r) <= 0.05 for r in rel) / n, within_10=sum(abs(r) <= 0.10 for r in rel) / n)


@dataclass
class ValidationReport:
    """Per-network rows plus error statistics, calibrated and raw."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    calibrated: ErrorStats | None = None
    raw: ErrorStats | None = None
    uncorrected: ErrorStats | None = None
    scale: float = 1.0
    statistic: str = "median"
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary."""
        out = list(self.notes) + [f"{len(self.rows)} networks, measured ({self.statistic} of runs) "
               f"{min(r['measured_ms'] for r in self.rows):.2f}-{max(r['measured_ms'] for r in self.rows):.2f} ms"]
        for name, s in ((f"prediction (calibration scale {self.scale:.4f})", self.calibrated),
                        ("block sum alone (no calibration)", self.raw),
                        ("prediction vs measurement without drift correction", self.uncorrected)):
            if s is None:
                continue
            out.append(f"{name}: RMSE {s.rmse_ms:.3f} ms, mean abs error {s.mape_pct:.2f}%, mean error "
                       f"{s.mean_error_pct:+.2f}%, within +-5% {100 * s.within_5:.1f}%, "
                       f"within +-10% {100 * s.within_10:.1f}%")
        c = self.calibrated
        if c is not None:
            gap = 100 * (c.within_10 - NN_METER_WITHIN_10)
            out.append(f"vs nn-Meter (99.0% within +-10% on a Pixel 4): {100 * c.within_10:.1f}% here "
                       f"({gap:+.1f} points)")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"scale": self.scale, "statistic": self.statistic,
                "calibrated": vars(self.calibrated) if self.calibrated else None,
                "raw": vars(self.raw) if self.raw else None,
                "uncorrected": vars(self.uncorrected) if self.uncorrected else None, "rows": self.rows}


def table_space(table: LatencyTable) -> SearchSpace:
    """The space recorded in the table's metadata."""
    sp = table.meta.get("space") or {}
    if "spec" not in sp:
        raise LatencyTableError(f"{table.path}: the table records no search space; pass --space")
    return SearchSpace(sp["spec"], source=sp.get("source", "<table>"))


def validate(table: LatencyTable, samples: int = 100, space: SearchSpace | None = None,
             settings: Settings | None = None, seed: int = 2024, progress: bool = True) -> ValidationReport:
    """Measure `samples` random members of the space end to end and compare with the table."""
    space = space or table_space(table)
    if table.resolution is None:
        raise LatencyTableError(f"{table.path}: the table has no resolution; cannot build networks for it")
    if settings is None:
        from .predictor import table_settings

        settings = table_settings(table)
    host = host_metadata(settings.threads)
    notes = []
    if table.device.get("cpu") != host["cpu"] or table.device.get("source") != "host":
        notes.append(f"note: the table was measured on {table.device.get('model') or table.device.get('cpu')!r}"
                     f" ({table.device.get('source')}); this validation measures on {host['cpu']!r}")
    skip = {g.to_string() for g in calibration_genotypes(space, len((table.meta.get("calibration") or {})
                                                                    .get("networks", [])))}
    rng = random.Random(seed)
    gs = []
    while len(gs) < samples:
        g = space.sample(rng)
        if g.to_string() not in skip:  # never validate on a calibration network
            gs.append(g)
    res = table.resolution
    preds = [table.predict(g, res) for g in gs]  # fails early, before any timing, on a missing entry
    raws = [table.predict(g, res, calibrated=False) for g in gs]
    timings = measure_networks(gs, res, table.num_classes, settings, batch=10, progress=progress, desc="validate",
                               in_channels=table.in_channels)
    stat = table.statistic
    meas = [drift_corrected(t.stat(stat), ref, table.baseline_ms) for t, ref in timings]
    raw_meas = [t.stat(stat) for t, _ in timings]
    rep = ValidationReport(scale=table.scale, statistic=stat, notes=notes)
    rep.rows = [{"genotype": g.to_string(), "measured_ms": round(m, 6), "raw_measured_ms": round(t.stat(stat), 6),
                 "median_ms": round(t.median_ms, 6), "ref_ms": round(ref, 6), "iqr_ms": round(t.iqr_ms, 6),
                 "predicted_ms": round(p, 6), "block_sum_ms": round(r, 6)}
                for g, m, (t, ref), p, r in zip(gs, meas, timings, preds, raws)]
    rep.calibrated = ErrorStats.of(preds, meas)
    rep.raw = ErrorStats.of(raws, meas)
    rep.uncorrected = ErrorStats.of(preds, raw_meas)
    return rep
