"""Validate a table: predict random members of its space and compare with end-to-end measurements.

A validation figure is only as good as the measurements it is scored against. Every network is
therefore timed in at least two independent passes (other batch neighbours, later in time), and
the report states the noise of those measurements next to the accuracy: the test-retest spread,
the share of networks whose passes agree (the ceiling any predictor can reach against them) and
how far the machine's speed moved between the passes (the median network's change). A network
whose passes disagree by more than `max_spread`, or that was timed in a batch whose drift
reference read more than `slow_batch` above the run's median (a slow spell that both passes can
share), is timed again (`retries` more passes); if it still lacks two agreeing passes outside
slow batches it is refused: left out of the accuracy figures, counted and named. Too many
refusals, or a machine whose speed moved too far between passes, make the run's verdict "not
trustworthy" instead of a quiet wrong number.

Which reading of the measurements is scored (`reading`; every reading is reported):
- ``measured`` (default): as measured;
- ``run``: as measured, times the calibration's median reference over this run's median
  reference, i.e. at the machine speed the table's scale was fitted at, if the reference
  gauged it (on the 2-core host it did not: docs/latency.md);
- ``batch``: each batch read at its own reference (the legacy per-batch drift correction).
"""
from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from search_space.genotype import parse as parse_genotype
from search_space.space import SearchSpace

from .build import NETWORK_BATCH, SLOW_BATCH, calibration_genotypes, measure_retest, settle, slow_limit, spread
from .errors import LatencyTableError
from .measure import Settings, Timing, host_metadata
from .table import LatencyTable, drift_corrected

NN_METER_WITHIN_10 = 0.99  # nn-Meter, Pixel 4 CPU (TFLite): share of models within +-10%

MAX_SPREAD = 0.05   # passes of one network further apart than this are noise: re-measure, then refuse
RETRIES = 2         # extra passes for a network whose passes disagree
MAX_REFUSED = 0.20  # above this share of refused networks the run's figure is not trustworthy
MAX_DRIFT = 0.15    # ... and so it is when the median network moved more than this between the first two passes
READINGS = ("measured", "run", "batch")


@dataclass
class ErrorStats:
    """Agreement of predictions with measurements."""

    rmse_ms: float
    mape_pct: float
    mean_error_pct: float
    within_5: float
    within_10: float
    networks: int = 0

    @classmethod
    def of(cls, predicted: Sequence[float], measured: Sequence[float]) -> ErrorStats | None:
        """Statistics over paired predictions and measurements (ms); None when there are none."""
        rel = [(p - m) / m for p, m in zip(predicted, measured)]
        n = len(rel)
        if not n:
            return None
        return cls(rmse_ms=math.sqrt(sum((p - m) ** 2 for p, m in zip(predicted, measured)) / n),
                   mape_pct=100 * sum(abs(r) for r in rel) / n, mean_error_pct=100 * sum(rel) / n,
                   within_5=sum(abs(r) <= 0.05 for r in rel) / n, within_10=sum(abs(r) <= 0.10 for r in rel) / n,
                   networks=n)

    def line(self, name: str) -> str:
        """One line of the text report."""
        return (f"{name}: RMSE {self.rmse_ms:.3f} ms, mean abs error {self.mape_pct:.2f}%, mean error "
                f"{self.mean_error_pct:+.2f}%, within +-5% {100 * self.within_5:.1f}%, "
                f"within +-10% {100 * self.within_10:.1f}%")


@dataclass
class NoiseSummary:
    """How repeatable the measurements of one validation run were (spreads as fractions)."""

    networks: int
    passes: int
    median_spread: float
    median_spread_uncorrected: float
    median_spread_corrected: float
    agree_5: float
    agree_10: float
    reference_min_ms: float
    reference_max_ms: float
    remeasured: int
    refused: int
    pass_reference_ms: list[float] = field(default_factory=list)
    run_factor: float | None = None
    network_drift: float = 0.0
    set_aside: int = 0

    @property
    def reference_drift(self) -> float:
        """How far the drift reference moved during the run: the max / min - 1 of its median time in
        each pass (a record; the verdict uses `network_drift`, see latency.drift for why)."""
        refs = [r for r in self.pass_reference_ms if r > 0]
        return max(refs) / min(refs) - 1 if refs else 0.0

    @property
    def refused_share(self) -> float:
        """Share of the networks refused as noise."""
        return self.refused / self.networks if self.networks else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON form (with the derived drift and refused share)."""
        return {**asdict(self), "reference_drift": round(self.reference_drift, 6),
                "refused_share": round(self.refused_share, 6)}


@dataclass
class ValidationReport:
    """Per-network rows, the noise of the measurements, and error statistics on the accepted networks.

    `calibrated` (the headline) and `raw` compare with the measurements as `reading` says;
    `uncorrected`, `corrected` and `run_corrected` give the prediction against the measurements as
    measured, read at each batch's reference, and rescaled to the calibration's speed.
    `including_refused` is what folding the refused networks in would have given: reported
    for comparison, never as the figure.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    calibrated: ErrorStats | None = None
    raw: ErrorStats | None = None
    uncorrected: ErrorStats | None = None
    corrected: ErrorStats | None = None
    run_corrected: ErrorStats | None = None
    including_refused: ErrorStats | None = None
    noise: NoiseSummary | None = None
    table_noise: dict[str, float] | None = None
    reading: str = "measured"
    scale: float = 1.0
    statistic: str = "median"
    thresholds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    anchor: dict[str, Any] | None = None

    @property
    def problems(self) -> list[str]:
        """Why the figure is not trustworthy (empty: it is)."""
        n, t = self.noise, self.thresholds
        if n is None:
            return []
        out = []
        if n.refused == n.networks:
            out.append(f"every one of the {n.networks} networks was refused as noise")
        elif n.refused_share > t.get("max_refused", MAX_REFUSED):
            out.append(f"{100 * n.refused_share:.0f}% of the networks were refused as noise "
                       f"(more than {100 * t.get('max_refused', MAX_REFUSED):.0f}%)")
        if n.network_drift > t.get("max_drift", MAX_DRIFT):
            out.append(f"the median network's time moved by {100 * n.network_drift:.1f}% between the first two "
                       f"passes (more than {100 * t.get('max_drift', MAX_DRIFT):.0f}%): the machine's speed changed")
        return out

    @property
    def trustworthy(self) -> bool:
        """Whether the run was calm enough for its figure to mean something."""
        return not self.problems

    def lines(self) -> list[str]:
        """Human-readable summary."""
        out = list(self.notes)
        kept = [r for r in self.rows if not r["refused"]]
        basis = READING_NAMES[self.reading]
        if kept:
            out.append(f"{len(kept)} networks scored, measured ({self.statistic} of runs, {basis}) "
                       f"{min(r['measured_ms'] for r in kept):.2f}-{max(r['measured_ms'] for r in kept):.2f} ms")
        n = self.noise
        if n is not None:
            out.append(f"noise: test-retest spread of two passes, median {100 * n.median_spread:.1f}% "
                       f"({100 * n.median_spread_uncorrected:.1f}% as measured, "
                       f"{100 * n.median_spread_corrected:.1f}% drift-corrected); passes agree within +-5% for "
                       f"{100 * n.agree_5:.0f}% and within +-10% for {100 * n.agree_10:.0f}% of networks "
                       f"(the ceiling for any predictor); the median network moved {100 * n.network_drift:.1f}% "
                       f"between the first two passes; drift reference between passes "
                       f"{100 * n.reference_drift:.1f}% (pass medians "
                       + ", ".join(f"{r:.3f}" for r in n.pass_reference_ms)
                       + f" ms; single batches {n.reference_min_ms:.3f}-{n.reference_max_ms:.3f} ms)")
            if n.run_factor is not None:
                out.append(f"the drift reference took {100 * (1 / n.run_factor - 1):+.1f}% of its time at the "
                           f"table's calibration (medians); reading 'run' multiplies measurements by "
                           f"{n.run_factor:.4f}")
            ms = 100 * self.thresholds.get("max_spread", MAX_SPREAD)
            retries = int(self.thresholds.get("retries", RETRIES))
            slow = self.thresholds.get("slow_batch", SLOW_BATCH)
            aside = (f"; {n.set_aside} passes set aside, their batch's reference more than {100 * slow:g}% above "
                     "the run's median (a slow spell)" if slow is not None else "")
            out.append(f"re-measured {n.remeasured} of {n.networks} networks (passes more than {ms:g}% apart, or "
                       f"in a slow batch){aside}; refused {n.refused} of {n.networks} networks as noise (still "
                       f"apart after up to {retries} more passes), left out of the figures below")
        tn = self.table_noise
        if tn is not None:
            lo, hi = tn["reference_min_ms"], tn["reference_max_ms"]
            out.append(f"the table's own entries (two passes each, as built): median spread "
                       f"{100 * tn['median_spread']:.1f}%, agree within +-5% for {100 * tn['agree_5']:.0f}% and "
                       f"within +-10% for {100 * tn['agree_10']:.0f}%"
                       + (f"; reference during the build {lo:.3f}-{hi:.3f} ms" if lo > 0 else ""))
            if tn["median_spread"] > self.thresholds.get("max_spread", MAX_SPREAD):
                # not a verdict on this run's figure, which measures the table truthfully, but its likely cause
                out.append("warning: the table itself was measured under noise; a poor figure may be the table's, "
                           "not the prediction model's: rebuild it in a calm period (build --overwrite)")
        for name, s in ((f"prediction (calibration scale {self.scale:.4f})", self.calibrated),
                        ("block sum alone (no calibration)", self.raw),
                        ("prediction vs measurement as measured", self.uncorrected),
                        ("prediction vs measurement at each batch's reference", self.corrected),
                        ("prediction vs measurement at the calibration's speed", self.run_corrected)):
            if s is not None:
                out.append(s.line(name))
        c = self.calibrated
        if c is not None:
            gap = 100 * (c.within_10 - NN_METER_WITHIN_10)
            out.append(f"vs nn-Meter (99.0% within +-10% on a Pixel 4): {100 * c.within_10:.1f}% here "
                       f"({gap:+.1f} points)")
        if n is not None and n.refused and self.including_refused is not None:
            out.append(f"(folding the {n.refused} refused networks in would give "
                       f"{100 * self.including_refused.within_10:.1f}% within +-10%: not a figure to quote)")
        if self.trustworthy:
            out.append("verdict: trustworthy (few networks refused, the machine's speed held between passes)")
        else:
            out.append("verdict: NOT TRUSTWORTHY: " + "; ".join(self.problems)
                       + ". The machine was too noisy for this figure; validate again in a calmer period.")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form: statistics, noise summary, verdict and per-network rows with every pass."""
        def stats(s: ErrorStats | None) -> dict[str, Any] | None:
            return vars(s) if s else None

        return {"scale": self.scale, "statistic": self.statistic, "reading": self.reading,
                "trustworthy": self.trustworthy, "problems": self.problems, "thresholds": self.thresholds,
                "noise": self.noise.to_dict() if self.noise else None, "table_noise": self.table_noise,
                "calibrated": stats(self.calibrated), "raw": stats(self.raw), "corrected": stats(self.corrected),
                "uncorrected": stats(self.uncorrected), "run_corrected": stats(self.run_corrected),
                "including_refused": stats(self.including_refused), "anchor": self.anchor,
                "rows": self.rows}


def table_noise(table: LatencyTable) -> dict[str, float] | None:
    """Test-retest of the table's own entries (first two passes, as measured); None without passes."""
    stat, spreads, refs = table.entry_statistic, [], []
    for e in table.entries.values():
        ps = e.get("passes") or []
        refs += [float(p["ref_ms"]) for p in ps if p.get("ref_ms")]
        vals = [float(p.get(f"{stat}_ms", p.get("median_ms", 0.0))) for p in ps[:2]]
        if len(vals) == 2:
            spreads.append(spread(*vals))
    if not spreads:
        return None
    return {"entries": len(spreads), "median_spread": round(statistics.median(spreads), 6),
            "agree_5": round(sum(s <= 0.05 for s in spreads) / len(spreads), 6),
            "agree_10": round(sum(s <= 0.10 for s in spreads) / len(spreads), 6),
            "reference_min_ms": min(refs, default=0.0), "reference_max_ms": max(refs, default=0.0)}


def table_space(table: LatencyTable) -> SearchSpace:
    """The space recorded in the table's metadata."""
    sp = table.meta.get("space") or {}
    if "spec" not in sp:
        raise LatencyTableError(f"{table.path}: the table records no search space; pass --space")
    return SearchSpace(sp["spec"], source=sp.get("source", "<table>"))


READING_NAMES = {"run": "as measured, rescaled to the calibration's speed by the drift reference",
                 "measured": "as measured, no drift correction", "batch": "read at each batch's drift reference"}


def median_shift(first: Sequence[float], second: Sequence[float]) -> float:
    """How far a set of measurements moved as a whole between two passes: exp(|median log ratio|) - 1.

    A change of the machine's speed moves every network the same way, so the median of 100
    networks' pass-to-pass ratios gauges it far better than one reference network does.
    """
    logs = [math.log(b / a) for a, b in zip(first, second) if a > 0 and b > 0]
    return math.exp(abs(statistics.median(logs))) - 1 if logs else 0.0


def anchored_table(table: LatencyTable, genotypes: Sequence[Any], values: Sequence[Sequence[float]],
                   max_spread: float) -> LatencyTable:
    """A copy of `table` (entries shared) whose calibration is refitted, with the table's kinds, on the
    calibration networks whose passes (`values`, ms) settle within `max_spread`."""
    import copy

    from .build import refit_calibration

    nets = []
    for g, vs in zip(genotypes, values):
        v, _, ok = settle(list(vs), max_spread)
        if ok:
            nets.append({"genotype": g.to_string(), "measured_ms": round(v, 6), "raw_measured_ms": round(v, 6)})
    if len(nets) < max(2, len(genotypes) // 2):
        raise LatencyTableError(f"only {len(nets)} of {len(genotypes)} calibration networks settled within "
                                f"{100 * max_spread:g}%: too noisy to anchor the calibration; validate in a calmer period")
    out = LatencyTable(entries=table.entries, meta=copy.deepcopy(table.meta), path=table.path)
    cal = out.meta.setdefault("calibration", {})
    cal["networks"] = nets
    refit_calibration(out, cal.get("kinds", "one"))  # block sums read from the table, as the build does
    return out


def check_reading(table: LatencyTable, reading: str) -> str:
    """`reading` if this table can give it (`run` needs the calibration's reference time, `batch` a baseline)."""
    if reading not in READINGS:
        raise LatencyTableError(f"reading {reading!r}: expected one of {list(READINGS)}")
    if reading == "run" and not (table.meta.get("calibration") or {}).get("reference_ms"):
        raise LatencyTableError(f"{table.path}: reading 'run' needs calibration.reference_ms, which this table "
                                "lacks (built before it, or without calibration networks)")
    if reading == "batch" and not table.baseline_ms:
        raise LatencyTableError(f"{table.path}: reading 'batch' needs drift.baseline_ms (tables built with "
                                "per-batch drift correction)")
    return reading


def validate(table: LatencyTable, samples: int = 100, space: SearchSpace | None = None,
             settings: Settings | None = None, seed: int = 2024, progress: bool = True,
             max_spread: float = MAX_SPREAD, retries: int = RETRIES, max_refused: float = MAX_REFUSED,
             max_drift: float = MAX_DRIFT, reading: str = "measured",
             slow_batch: float | None = SLOW_BATCH, anchor: bool = False) -> ValidationReport:
    """Measure `samples` random members of the space end to end (test-retest) and compare with the table.

    `reading` picks the headline reading of the measurements (all are reported; module docstring).
    `anchor` times the table's calibration networks in the same passes, shuffled among the sampled
    ones, and predicts with the calibration refitted on them (the table file is left as it is): the
    host's speed moves by several percent within an hour, and a calibration timed minutes before
    the validation already misses by that much on the smallest networks.
    """
    mode = check_reading(table, reading)
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
    # the very networks the table's calibration was fitted on
    cal_gs = [parse_genotype(n["genotype"]) for n in (table.meta.get("calibration") or {}).get("networks", [])
              ] if anchor else []
    if anchor and not cal_gs:
        raise LatencyTableError(f"{table.path}: --anchor needs the table's calibration networks, and it has none "
                                "(build it with --calibration-networks N)")

    stat, base = table.statistic, table.baseline_ms or 1.0

    def batch_read(t: Timing, ref: float) -> float:
        return drift_corrected(t.stat(stat), ref, base)

    # Whether passes agree does not depend on a factor common to the whole run, so only the
    # per-batch reading re-measures differently.
    passes = measure_retest(gs + cal_gs, res, table.num_classes, settings,
                            batch_read if mode == "batch" else (lambda t, ref: t.stat(stat)),
                            max_spread, retries, batch=NETWORK_BATCH, progress=progress, desc="validate",
                            in_channels=table.in_channels, slow_batch=slow_batch)
    passes, cal_passes = passes[:len(gs)], passes[len(gs):]
    n_passes = max(2, settings.passes)  # test-retest needs two
    refs = [ref for ps in passes for _, ref in ps]
    pass_refs = [statistics.median(ps[k][1] for ps in passes) for k in range(n_passes)]
    run_ref = statistics.median(refs)
    if not table.baseline_ms:
        base = run_ref  # the per-batch reading, at this run's typical speed
    cal_ref = (table.meta.get("calibration") or {}).get("reference_ms")
    factor = cal_ref / run_ref if cal_ref and run_ref > 0 else None

    def reading_of(t: Timing, ref: float, how: str) -> float:
        if how == "batch":
            return batch_read(t, ref)
        return t.stat(stat) * (factor if how == "run" and factor else 1.0)

    rep = ValidationReport(scale=table.scale, statistic=stat, notes=notes, reading=mode,
                           thresholds={"max_spread": max_spread, "retries": retries, "max_refused": max_refused,
                                       "max_drift": max_drift, "slow_batch": slow_batch})
    limit = slow_limit(passes + cal_passes, slow_batch)
    if anchor:
        anchored = anchored_table(table, cal_gs, [[reading_of(t, ref, mode) for t, ref in ps if ref <= limit]
                                                  for ps in cal_passes], max_spread)
        preds = [anchored.predict(g, res) for g in gs]
        cal = anchored.meta["calibration"]
        rep.scale = anchored.scale
        rep.anchor = {"networks": len(cal["networks"]), "timed": len(cal_gs), "scale": anchored.scale,
                      "table_scale": table.scale, "per_kind": bool(cal.get("by_kind")),
                      "calibration_networks": cal["networks"]}  # what it was refitted on, to refit otherwise
        rep.notes.append(f"calibration anchored in this run: {len(cal['networks'])} of the table's {len(cal_gs)} "
                         f"calibration networks timed in the same passes (the rest refused as noise), scale "
                         f"{anchored.scale:.4f} (the table's {table.scale:.4f})"
                         + (", per-kind factors refitted" if cal.get("by_kind") else ""))
    rows = []
    for j, (g, p, r) in enumerate(zip(gs, preds, raws)):
        ps = passes[j]
        head = [reading_of(t, ref, mode) for t, ref in ps]
        calm = [k for k, (_, ref) in enumerate(ps) if ref <= limit]
        value, final, ok = settle([head[k] for k in calm], max_spread)
        if not calm:  # every pass ran in a slow batch: the lowest is recorded, the network refused
            value = min(head)
        t, ref = ps[min(calm or range(len(ps)), key=head.__getitem__)]
        unc, cor = [reading_of(t_, r_, "measured") for t_, r_ in ps], [batch_read(t_, r_) for t_, r_ in ps]
        rows.append({
            "genotype": g.to_string(), "predicted_ms": round(p, 6), "block_sum_ms": round(r, 6),
            "measured_ms": round(value, 6), "raw_measured_ms": round(min(unc), 6), "corrected_ms": round(min(cor), 6),
            "run_corrected_ms": round(min(unc) * (factor or 1.0), 6),
            "median_ms": round(t.median_ms, 6), "ref_ms": round(ref, 6), "iqr_ms": round(t.iqr_ms, 6),
            "passes": [{f"{stat}_ms": round(t_.stat(stat), 6), "median_ms": round(t_.median_ms, 6),
                        "ref_ms": round(r_, 6), "corrected_ms": round(c_, 6), "slow_batch": r_ > limit}
                       for (t_, r_), c_ in zip(ps, cor)],
            # the first two passes are the noise estimate; later ones exist only because those disagreed
            "spread": round(spread(head[0], head[1]), 6), "spread_uncorrected": round(spread(unc[0], unc[1]), 6),
            "spread_corrected": round(spread(cor[0], cor[1]), 6), "final_spread": round(final, 6),
            "remeasured": len(ps) - n_passes, "set_aside": sum(r_ > limit for _, r_ in ps), "refused": not ok})
    rep.rows = rows
    rep.table_noise = table_noise(table)
    kept = [r for r in rows if not r["refused"]]
    rep.noise = NoiseSummary(
        networks=len(rows), passes=n_passes,
        median_spread=statistics.median(r["spread"] for r in rows),
        median_spread_uncorrected=statistics.median(r["spread_uncorrected"] for r in rows),
        median_spread_corrected=statistics.median(r["spread_corrected"] for r in rows),
        agree_5=sum(r["spread"] <= 0.05 for r in rows) / len(rows),
        agree_10=sum(r["spread"] <= 0.10 for r in rows) / len(rows),
        reference_min_ms=min(refs), reference_max_ms=max(refs),
        remeasured=sum(r["remeasured"] > 0 for r in rows), refused=len(rows) - len(kept),
        pass_reference_ms=[round(x, 6) for x in pass_refs], run_factor=round(factor, 6) if factor else None,
        set_aside=sum(r["set_aside"] for r in rows),
        network_drift=round(median_shift([r["passes"][0][f"{stat}_ms"] for r in rows],
                                         [r["passes"][1][f"{stat}_ms"] for r in rows]), 6))

    def col(rs: list[dict[str, Any]], k: str) -> list[float]:
        return [r[k] for r in rs]

    rep.calibrated = ErrorStats.of(col(kept, "predicted_ms"), col(kept, "measured_ms"))
    rep.raw = ErrorStats.of(col(kept, "block_sum_ms"), col(kept, "measured_ms"))
    rep.uncorrected = ErrorStats.of(col(kept, "predicted_ms"), col(kept, "raw_measured_ms"))
    rep.corrected = ErrorStats.of(col(kept, "predicted_ms"), col(kept, "corrected_ms"))
    if factor:
        rep.run_corrected = ErrorStats.of(col(kept, "predicted_ms"), col(kept, "run_corrected_ms"))
    rep.including_refused = ErrorStats.of(col(rows, "predicted_ms"), col(rows, "measured_ms"))
    return rep
