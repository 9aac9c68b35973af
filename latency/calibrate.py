"""Device calibration: a host table turned into a device table with per-kind factors fitted on whole networks.

A host table predicts a network as the sum of its entries; `LatencyTable.breakdown` splits that
sum into parts by kind. Entries are whole blocks (an MBConv block is timed as one probe), so a
kind is what a key says about a whole block, not a split of it into depthwise and pointwise
convs, which no probe measures apart. The default kinds (`kernel-se`) are the stem, the head,
and blocks by op and kernel, with or without SE (``ir-k3``, ``ir-k5-se``, ...). The device time
of a network is modelled as::

    device_ms(net) = sum over kinds of factor_kind * host_part_kind(net)  [+ overhead_ms]

and the factors are fitted on K networks timed whole on the device: non-negative least squares
on relative errors, with ridge shrinkage of every factor toward the plain one-scale fit (so a
kind that few of the K networks use keeps the global scale) and of the overhead toward zero.
Kinds ending in `+weights` add one more term, ms per million weights of the network (a
network streams its weights from memory, a probe finds them in cache), shrunk toward 0.
The shrinkage strength, and whether the constant overhead (and the weights term) are fitted,
are chosen by leave-one-out over the K networks unless given. The reported leave-one-out error repeats that whole choice
without the held-out network, so it is what a new network can expect.

The device table has the host table's keys and format: each entry is `factor * (host - invoke)`
(+ overhead, stored as the `invoke` entry), so `LatencyTable.predict` and `nas.search`
(`objective.lut`) use it unchanged.
"""
from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from search_space.files import atomic_write_text, read_json
from search_space.genotype import Genotype, GenotypeError
from search_space.genotype import parse as parse_genotype

from .errors import LatencyTableError
from .keys import INVOKE_KEY, genotype_keys, key_params
from .kinds import DEFAULT_KINDS, WEIGHTS, kind_function, parent_kind, split_kinds
from .table import FORMAT, MAX_MS, MIN_MS, LatencyTable

MEASUREMENTS_FORMAT = "hwnas-latency-measurements"
MEASUREMENTS_VERSION = 1
MIN_NETWORKS = 3  # two to fit on and one to hold out: leave-one-out needs at least this many
# Shrinkage strengths tried by leave-one-out (relative squared error per network vs squared
# relative deviation of a factor from the one scale); inf is the one scale itself.
RIDGE_GRID = (1e-6, 1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, math.inf)
# A factor is kept above this share of the one scale: a kind at 0 would predict 0 ms for its blocks.
FACTOR_FLOOR = 0.1
CALIBRATION_SEED = 13

# ---- measurements ------------------------------------------------------------------------------------
@dataclass
class Measurements:
    """Whole networks timed on a device: genotype strings and milliseconds, with what they ran on."""

    networks: list[dict[str, Any]]
    device: dict[str, Any] = field(default_factory=dict)
    measurement: dict[str, Any] = field(default_factory=dict)
    resolution: int | None = None
    num_classes: int | None = None
    in_channels: int | None = None
    source: str = "<memory>"

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (`hwnas-latency-measurements`)."""
        return {"format": MEASUREMENTS_FORMAT, "schema_version": MEASUREMENTS_VERSION, "units": "ms",
                "device": self.device, "measurement": self.measurement, "resolution": self.resolution,
                "num_classes": self.num_classes, "in_channels": self.in_channels, "networks": self.networks}

    def save(self, path: str | Path) -> Path:
        """Write the JSON atomically."""
        p = Path(path)
        atomic_write_text(p, json.dumps(self.to_dict(), indent=1) + "\n")
        return p


def load_measurements(path: str | Path) -> Measurements:
    """Read device measurements: an `ingest` measurements file, an ingested table's calibration networks,
    or a JSON list of {"genotype", "measured_ms"}; anything else is a LatencyTableError."""
    p = Path(path)
    doc = read_json(p, LatencyTableError, "device measurements")
    if isinstance(doc, list):
        return Measurements(_check_networks(doc, str(p)), source=str(p))
    if not isinstance(doc, Mapping):
        raise LatencyTableError(f"{p}: device measurements must be a JSON object or a list of networks")
    fmt = doc.get("format")
    if fmt == FORMAT:  # a table ingested from a kit with probes: its calibration networks
        t = LatencyTable.from_dict(doc, str(p))
        nets = (t.meta.get("calibration") or {}).get("networks") or []
        return Measurements(_check_networks(nets, str(p)), device=t.device, measurement=t.meta.get("measurement", {}),
                            resolution=t.resolution, num_classes=t.num_classes, in_channels=t.in_channels, source=str(p))
    if fmt != MEASUREMENTS_FORMAT:
        raise LatencyTableError(f"{p}: not device measurements (format {fmt!r}, expected {MEASUREMENTS_FORMAT!r} "
                                f"from `python -m latency ingest`, or {FORMAT!r})")
    if doc.get("schema_version") != MEASUREMENTS_VERSION:
        raise LatencyTableError(f"{p}: measurements schema_version {doc.get('schema_version')!r} is not supported "
                                f"(this code reads {MEASUREMENTS_VERSION})")

    def opt_int(name: str) -> int | None:
        v = doc.get(name)
        if v is None:
            return None
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise LatencyTableError(f"{p}: {name!r} is {v!r}; expected a positive integer")
        return v

    return Measurements(_check_networks(doc.get("networks"), str(p)), device=dict(doc.get("device") or {}),
                        measurement=dict(doc.get("measurement") or {}), resolution=opt_int("resolution"),
                        num_classes=opt_int("num_classes"), in_channels=opt_int("in_channels"), source=str(p))


def _check_networks(nets: Any, source: str) -> list[dict[str, Any]]:
    if not isinstance(nets, list):
        raise LatencyTableError(f"{source}: 'networks' must be a list of {{genotype, measured_ms}}")
    out = []
    for i, n in enumerate(nets):
        if not isinstance(n, Mapping) or not isinstance(n.get("genotype"), str):
            raise LatencyTableError(f"{source}: network {i} must be an object with a 'genotype' string")
        ms = n.get("measured_ms")
        if not (isinstance(ms, (int, float)) and not isinstance(ms, bool) and MIN_MS <= ms <= MAX_MS):
            raise LatencyTableError(f"{source}: network {i} 'measured_ms' is {ms!r}; expected a time in ms "
                                    f"from {MIN_MS:g} to {MAX_MS:g}")
        out.append(dict(n))
    return out


# ---- the fit -------------------------------------------------------------------------------------
@dataclass
class Fit:
    """Per-kind factors and overhead, and how they were chosen.

    A `weights` column among the kinds holds millions of weights, not ms: its factor is ms per
    million weights (0 when the weights term was not chosen).
    """

    kinds: list[str]
    factors: np.ndarray
    overhead_ms: float
    scale: float  # the plain one-scale fit on the same networks
    ridge: float
    with_overhead: bool
    with_weights: bool = False

    def predict(self, parts: np.ndarray) -> np.ndarray:
        """Device ms of networks given their host parts (rows: networks, columns: `kinds`)."""
        return parts @ self.factors + self.overhead_ms

    def factor_map(self) -> dict[str, float]:
        """Factors by kind (the weights term apart: `weights_ms_per_mparam`)."""
        return {k: float(f) for k, f in zip(self.kinds, self.factors) if k != WEIGHTS}

    @property
    def weights_ms_per_mparam(self) -> float:
        """ms per million weights of the network (0 without the term)."""
        return float(self.factors[self.kinds.index(WEIGHTS)]) if WEIGHTS in self.kinds else 0.0


def one_scale(totals: np.ndarray, measured: np.ndarray) -> float:
    """The single factor s minimizing the relative squared error of s * host total vs measured."""
    r = totals / measured
    return float(r.sum() / (r * r).sum())


def fit(parts: np.ndarray, measured: np.ndarray, kinds: Sequence[str], ridge: float, overhead: bool,
        weights: bool = False) -> Fit:
    """Non-negative least squares on relative errors with ridge toward the one-scale fit (see module doc).

    With a `weights` column among `kinds`, `weights` fits its term (ridge toward 0) or leaves it at 0.
    """
    kinds = list(kinds)
    if WEIGHTS in kinds:
        jw = kinds.index(WEIGHTS)
        f = _fit(np.delete(parts, jw, axis=1), measured, [k for k in kinds if k != WEIGHTS], ridge, overhead,
                 parts[:, jw] if weights else None)
        coef = f.factors[-1] if weights else 0.0
        factors = np.insert(f.factors[:-1] if weights else f.factors, jw, coef)
        return Fit(kinds, factors, f.overhead_ms, f.scale, ridge, overhead, weights)
    return _fit(parts, measured, kinds, ridge, overhead, None)


def _fit(parts: np.ndarray, measured: np.ndarray, kinds: list[str], ridge: float, overhead: bool,
         extra: np.ndarray | None) -> Fit:
    """The fit of `fit` on ms parts; `extra` (a column per network, fitted last among the factors) for the weights term."""
    from scipy.optimize import nnls

    n, p = parts.shape
    s0 = one_scale(parts.sum(axis=1), measured)
    e = 0 if extra is None else 1
    kinds_out = kinds + ([WEIGHTS] if e else [])
    # The extra term's coefficient in units of the mean network: its penalty row says "a share of
    # the mean network's time", like the overhead's.
    e_unit = float(extra.mean()) / float(measured.mean()) if e and float(extra.mean()) > 0 else 1.0
    if math.isinf(ridge):
        if not overhead and not e:
            return Fit(kinds_out, np.full(p, s0), 0.0, s0, ridge, False)
        # One scale, [the extra term], [an overhead]: their columns under the same NNLS.
        cols = [parts.sum(axis=1)] + ([extra] if e else []) + ([np.ones(n)] if overhead else [])
        a = np.stack(cols, axis=1) / measured[:, None]
        floor = FACTOR_FLOOR * s0
        theta, _ = nnls(a, 1.0 - a[:, 0] * floor)
        factors = np.concatenate([np.full(p, theta[0] + floor), theta[1:1 + e]])
        return Fit(kinds_out, factors, float(theta[-1]) if overhead else 0.0, s0, ridge, overhead)
    # Columns: the factors, then one factor per parent kind (op and kernel, e.g. ir-k7 for
    # ir-k7-se), then [the extra term], then [the overhead]. A fine kind shrinks toward its parent
    # and a parent (or a kind without one) toward the one scale, so K networks too few to tell
    # ir-k7-se from ir-k7 apart still learn what they show about k7; parents appear in no data
    # row, only in shrinkage rows. The extra term and the overhead shrink toward 0.
    parent = [parent_kind(k) for k in kinds]
    parents = sorted({q for k, q in zip(kinds, parent) if q != k})
    q = len(parents)
    m = p + q + e + (1 if overhead else 0)
    a = np.zeros((n, m))
    a[:, :p] = parts / measured[:, None]
    if e:
        a[:, p + q] = extra / measured
    if overhead:
        a[:, -1] = 1.0 / measured
    w = math.sqrt(n * max(ridge, 1e-12))
    pen, target = [], []
    for j, (k, par) in enumerate(zip(kinds, parent)):
        row = np.zeros(m)
        row[j] = w / s0
        if par != k:
            row[p + parents.index(par)] = -w / s0
            target.append(0.0)
        else:
            target.append(w)
        pen.append(row)
    for i in range(q):
        row = np.zeros(m)
        row[p + i] = w / s0
        pen.append(row)
        target.append(w)
    if e:
        row = np.zeros(m)
        row[p + q] = w * e_unit
        pen.append(row)
        target.append(0.0)
    if overhead:  # the overhead toward 0, in units of the mean network
        row = np.zeros(m)
        row[-1] = w / float(measured.mean())
        pen.append(row)
        target.append(0.0)
    big_a = np.concatenate([a, np.array(pen)])
    big_b = np.concatenate([np.ones(n), np.array(target)])
    # Factors live above FACTOR_FLOOR * s0: solve for the excess over that floor, non-negative.
    lower = np.zeros(m)
    lower[:p + q] = FACTOR_FLOOR * s0
    theta, _ = nnls(big_a, big_b - big_a @ lower, maxiter=50 * m)
    theta += lower
    factors = np.concatenate([theta[:p], theta[p + q:p + q + e]])
    return Fit(kinds_out, factors, float(theta[-1]) if overhead else 0.0, s0, ridge, overhead)


Choice = tuple[float, bool, bool]


def _choices(ridge: float | None, overhead: bool | None, weights: bool) -> list[Choice]:
    """Candidate (ridge, overhead, weights) choices, simplest first: strongest shrinkage, no overhead, no weights."""
    ridges = sorted(RIDGE_GRID, reverse=True) if ridge is None else [ridge]
    overheads = [False, True] if overhead is None else [overhead]
    with_weights = [False, True] if weights else [False]
    return [(r, o, ww) for ww in with_weights for r in ridges for o in overheads]


def _loo_predictions(parts: np.ndarray, measured: np.ndarray, kinds: Sequence[str], choice: Choice) -> np.ndarray:
    out = np.empty(len(measured))
    idx = np.arange(len(measured))
    for i in idx:
        keep = idx != i
        out[i] = fit(parts[keep], measured[keep], kinds, *choice).predict(parts[i:i + 1])[0]
    return out


def _mean_abs_rel(pred: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(pred / measured - 1.0)))


def select_and_fit(parts: np.ndarray, measured: np.ndarray, kinds: Sequence[str], ridge: float | None = None,
                   overhead: bool | None = None) -> Fit:
    """Fit with `ridge` and `overhead` given, or each chosen (None) by the lowest leave-one-out mean abs error.

    With a `weights` column among `kinds`, whether to fit its term is chosen the same way. A more
    complex choice must beat a simpler one by more than 1e-9 (ties go to shrinkage, no overhead, no weights).
    """
    options = _choices(ridge, overhead, WEIGHTS in kinds)
    if len(options) > 1 and len(measured) >= 2:
        best_err, best = math.inf, options[0]
        for c in options:
            err = _mean_abs_rel(_loo_predictions(parts, measured, kinds, c), measured)
            if err < best_err - 1e-9:
                best_err, best = err, c
        options = [best]
    return fit(parts, measured, kinds, *options[0])


def loo(parts: np.ndarray, measured: np.ndarray, kinds: Sequence[str], ridge: float | None = None,
        overhead: bool | None = None) -> np.ndarray:
    """Leave-one-out predictions of the whole procedure: each network predicted by a fit (choice included) without it."""
    out = np.empty(len(measured))
    idx = np.arange(len(measured))
    for i in idx:
        keep = idx != i
        f = select_and_fit(parts[keep], measured[keep], kinds, ridge, overhead)
        out[i] = f.predict(parts[i:i + 1])[0]
    return out


def loo_one_scale(totals: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Leave-one-out predictions of the plain host table with one scale."""
    idx = np.arange(len(measured))
    return np.array([one_scale(totals[idx != i], measured[idx != i]) * totals[i] for i in idx])


# ---- from tables and genotypes ------------------------------------------------------------------------
def design(table: LatencyTable, key_lists: Sequence[Sequence[str]], kinds: str = DEFAULT_KINDS
           ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Kinds, the parts matrix (networks x kinds, ms) and the host totals (uncalibrated) of networks given by keys.

    Kinds ending in `+weights` add a last column `weights`: each network's millions of weights.
    """
    kind_of = kind_function(kinds)
    rows = [table.breakdown(keys, kind_of) for keys in key_lists]
    names = sorted({k for r in rows for k in r} - {INVOKE_KEY})
    parts = np.array([[r.get(k, 0.0) for k in names] for r in rows], dtype=float).reshape(len(rows), len(names))
    totals = np.array([sum(r.values()) for r in rows], dtype=float)
    if split_kinds(kinds)[1]:
        mparams = np.array([sum(key_params(k) for k in keys) / 1e6 for keys in key_lists], dtype=float)
        names, parts = names + [WEIGHTS], np.concatenate([parts, mparams[:, None]], axis=1)
    return names, parts, totals


def error_stats(pred: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """Mean abs %, mean %, share within +-5% and +-10%, RMSE (ms)."""
    rel = pred / measured - 1.0
    return {"mape_pct": round(100 * float(np.mean(np.abs(rel))), 4), "mean_error_pct": round(100 * float(np.mean(rel)), 4),
            "within_5": round(float(np.mean(np.abs(rel) <= 0.05)), 4),
            "within_10": round(float(np.mean(np.abs(rel) <= 0.10)), 4),
            "rmse_ms": round(float(np.sqrt(np.mean((pred - measured) ** 2))), 6)}


@dataclass
class CalibrationReport:
    """What `calibrate` fitted and how well it holds out."""

    fit: Fit
    networks: list[dict[str, Any]]
    loo: dict[str, float]
    loo_one_scale: dict[str, float]
    holdout: dict[str, float] | None = None
    holdout_one_scale: dict[str, float] | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary."""
        f = self.fit
        out = list(self.notes)
        n = sum(1 for r in self.networks if r["fitted"])
        over = f", overhead {f.overhead_ms:.4f} ms" if f.with_overhead else ", no overhead"
        out.append(f"fitted on {n} networks: one scale {f.scale:.4f}; ridge {f.ridge:g} toward it{over}")
        out += [f"  {k:<16} x{v:.4f}" for k, v in f.factor_map().items()]

        def line(name: str, s: dict[str, float]) -> str:
            return (f"{name}: mean abs error {s['mape_pct']:.2f}%, mean error {s['mean_error_pct']:+.2f}%, "
                    f"within +-5% {100 * s['within_5']:.0f}%, within +-10% {100 * s['within_10']:.0f}%")

        out.append(line("leave-one-out, per-kind factors", self.loo))
        out.append(line("leave-one-out, one scale       ", self.loo_one_scale))
        if self.holdout is not None and self.holdout_one_scale is not None:
            m = len(self.networks) - n
            out.append(line(f"held out ({m}), per-kind factors", self.holdout))
            out.append(line(f"held out ({m}), one scale       ", self.holdout_one_scale))
        return out


def calibrate(host: LatencyTable, meas: Measurements, kinds: str = DEFAULT_KINDS, ridge: float | None = None,
              overhead: bool | None = None, fit_networks: int | None = None, space: Any = None
              ) -> tuple[LatencyTable, CalibrationReport]:
    """The device table and its report from a host table and whole-network device measurements.

    `fit_networks` = K fits on the first K measurements and scores the others as held out; every
    network must be a member of the host table's space (or `space`) with all its entries in the table.
    """
    src = meas.source
    for name, have, want in (("resolution", meas.resolution, host.resolution),
                             ("classes", meas.num_classes, host.num_classes),
                             ("input channels", meas.in_channels, host.in_channels)):
        if have is not None and want is not None and have != want:
            raise LatencyTableError(f"{src}: measured at {name} {have}, the host table {host.path or ''} is for {want}")
    if space is None and "spec" in (host.meta.get("space") or {}):
        from search_space.space import SearchSpace

        space = SearchSpace(host.meta["space"]["spec"], source=host.meta["space"].get("source", "<table>"))
    nets, notes = _merge_duplicates(meas.networks)
    n = len(nets)
    if n < MIN_NETWORKS:
        raise LatencyTableError(f"{src}: {n} distinct network measurement(s); calibration needs at least "
                                f"{MIN_NETWORKS} (export more with `export-probes --calibration K`)")
    k_fit = n if fit_networks is None else fit_networks
    if not MIN_NETWORKS <= k_fit <= n:
        raise LatencyTableError(f"--networks {k_fit}: expected {MIN_NETWORKS} to the {n} networks measured in {src}")
    key_lists = []
    for i, net in enumerate(nets):
        try:
            g = parse_genotype(net["genotype"])
        except GenotypeError as e:
            raise LatencyTableError(f"{src}: network {i}: {e}") from None
        if space is not None and not space.contains(g):
            raise LatencyTableError(f"{src}: network {i} ({net['genotype'][:60]}...) is not in the host table's space "
                                    f"{getattr(space, 'source', '')}; calibrate with a host table of the measured space")
        keys = host.keys_for(g)
        miss = [k for k in keys if k not in host]
        if miss:
            raise LatencyTableError(f"{src}: network {i} needs {miss[0]!r}, which the host table lacks "
                                    f"({len(miss)} missing); measured for another space or resolution")
        key_lists.append(keys)
    names, parts, totals = design(host, key_lists, kinds)
    y = np.array([float(net["measured_ms"]) for net in nets])
    fp, fy, ft = parts[:k_fit], y[:k_fit], totals[:k_fit]
    final = select_and_fit(fp, fy, names, ridge, overhead)
    loo_pred = loo(fp, fy, names, ridge, overhead)
    loo_one = loo_one_scale(ft, fy)
    pred = final.predict(parts)
    rows = [{"genotype": net["genotype"], "measured_ms": round(float(m), 6), "host_ms": round(float(t), 6),
             "predicted_ms": round(float(p), 6), "fitted": i < k_fit}
            for i, (net, m, t, p) in enumerate(zip(nets, y, totals, pred))]
    for r, lp in zip(rows, loo_pred):
        r["loo_ms"] = round(float(lp), 6)
    rep = CalibrationReport(final, rows, error_stats(loo_pred, fy), error_stats(loo_one, fy), notes=notes)
    if k_fit < n:
        rep.holdout = error_stats(pred[k_fit:], y[k_fit:])
        rep.holdout_one_scale = error_stats(final.scale * totals[k_fit:], y[k_fit:])
    return device_table(host, final, kinds, meas, rep), rep


def _merge_duplicates(nets: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per genotype (the mean of repeats): a repeat left in would leak into its own leave-one-out."""
    by: dict[str, list[dict[str, Any]]] = {}
    for n in nets:
        by.setdefault(n["genotype"], []).append(n)
    out = [dict(v[0], measured_ms=sum(x["measured_ms"] for x in v) / len(v)) for v in by.values()]
    rep = sum(len(v) - 1 for v in by.values())
    return out, ([f"note: {rep} repeated measurement(s) of the same network averaged"] if rep else [])


def device_table(host: LatencyTable, f: Fit, kinds: str, meas: Measurements, rep: CalibrationReport) -> LatencyTable:
    """The host table's entries times their kind's factor, the overhead as `invoke`; provenance in the metadata."""
    kind_of = kind_function(kinds)
    o = host.overhead_ms
    factors = f.factor_map()
    per_mparam = f.weights_ms_per_mparam  # additive per block, so it folds into each entry
    entries: dict[str, dict[str, Any]] = {}
    for key in host.entries:
        if key == INVOKE_KEY:
            continue
        kind = kind_of(key)
        fac = factors.get(kind, f.scale)  # a kind none of the networks used keeps the one scale
        host_ms = host.value(key)
        # A probe a hair under the invoke overhead (noise) would give a negative part: count it as 0.
        ms = max(fac * max(host_ms - o, 0.0) + f.overhead_ms + per_mparam * key_params(key) / 1e6, MIN_MS)
        entries[key] = {"median_ms": round(ms, 9), "count": 0, "host_ms": round(host_ms, 9), "kind": kind,
                        "factor": round(fac, 6)}
    if f.overhead_ms > 0:
        entries[INVOKE_KEY] = {"median_ms": round(f.overhead_ms, 9), "count": 0, "kind": "overhead"}
    dev = dict(meas.device)
    dev.setdefault("source", "calibrated")
    meta: dict[str, Any] = {
        "device": dev,
        "measurement": {"tool": "latency.calibrate", "statistic": "median",
                        "threads": (meas.measurement or {}).get("threads") or dev.get("threads")},
        "resolution": host.resolution, "num_classes": host.num_classes, "in_channels": host.in_channels,
    }
    if host.meta.get("space"):
        meta["space"] = host.meta["space"]
    meta["calibration"] = {
        "scale": 1.0,
        "method": "per-kind factors on the host table's parts, NNLS on relative error, ridge toward one scale",
        "kinds": kinds, "factors": {k: round(v, 6) for k, v in factors.items()},
        "overhead_ms": round(f.overhead_ms, 6), "weights_ms_per_mparam": round(per_mparam, 6),
        "one_scale": round(f.scale, 6), "ridge": f.ridge if math.isfinite(f.ridge) else "inf",
        "loo": rep.loo, "loo_one_scale": rep.loo_one_scale,
        "holdout": rep.holdout, "holdout_one_scale": rep.holdout_one_scale,
        "host_table": {"path": str(host.path) if host.path else None, "device": host.device,
                       "statistic": host.statistic},
        "measurements": meas.source,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "networks": rep.networks,
    }
    return LatencyTable(entries, meta)


# ---- which networks to time -------------------------------------------------------------------------
def spread_genotypes(space: Any, k: int, resolution: int | None = None, num_classes: int = 1000,
                     in_channels: int = 3, seed: int = CALIBRATION_SEED, pool: int | None = None) -> list[Genotype]:
    """K distinct members of a space spread over size and block kinds (greedy farthest point over a random pool).

    Features: log MACs and the share of blocks of each kind (kernel, SE); the first two picks are the
    smallest and largest networks of the pool, so the size range is always covered.
    """
    from search_space.cost import cost

    if k < 1:
        return []
    res = int(resolution or space.resolution)
    rng = random.Random(seed)
    size = pool or min(max(256, 40 * k), max(k, 4096))
    seen: dict[str, Genotype] = {}
    dry = 0
    while len(seen) < size and dry < 1000:  # a small space runs dry of new members: stop there
        g = space.sample(rng)
        dry = dry + 1 if g.to_string() in seen else 0
        seen.setdefault(g.to_string(), g)
    gs = list(seen.values())
    if len(gs) < k:
        raise LatencyTableError(f"--calibration {k}: the space {getattr(space, 'source', '')} has only "
                                f"{len(gs)} distinct networks")
    kind_of = kind_function(DEFAULT_KINDS)
    rows = []
    for g in gs:
        keys = genotype_keys(g, res, num_classes, in_channels)[1:-1]
        counts: dict[str, float] = {}
        for key in keys:
            counts[kind_of(key)] = counts.get(kind_of(key), 0.0) + 1.0 / max(len(keys), 1)
        rows.append((math.log(cost(g, res, in_channels=in_channels, num_classes=num_classes).macs), counts))
    names = sorted({c for _, cs in rows for c in cs})
    x = np.array([[m] + [cs.get(c, 0.0) for c in names] for m, cs in rows])
    sd = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    chosen = [int(np.argmin(x[:, 0]))]
    if k > 1:
        chosen.append(int(np.argmax(x[:, 0])))
    dist = np.min([np.sum((x - x[c]) ** 2, axis=1) for c in chosen], axis=0)
    while len(chosen) < k:
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.sum((x - x[nxt]) ** 2, axis=1))
    return [gs[i] for i in chosen[:k]]
