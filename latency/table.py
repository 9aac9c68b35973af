"""The latency lookup table: JSON load/save (atomic), entries by key, and network prediction.

A network's latency is predicted as::

    scale * (invoke + sum over stem, blocks, head of (entry - invoke))

where `invoke` is the time of a trivial model, i.e. the fixed cost every `invoke()` pays once
(each probe was a separate model and paid it, a network pays it once), and `scale` is the
calibration factor fitted on a few whole networks at build time (1.0 when there is none).
A table built with `--calibration-kinds` may instead carry `calibration.by_kind` (kept only
when it predicted the calibration networks left out of its fit better)::

    overhead_fit + sum over stem, blocks, head of factor[kind(entry)] * (entry - invoke)
                 [+ ms_per_mparam * the network's millions of weights, kinds ending in `+weights`]

with kinds from `latency.kinds` and the factors fitted by `latency.calibrate`.
An entry's time is its `measurement.entry_statistic` when the table names one (`cold_p10`: the
probe's runs with its weights evicted, as inside a network), else its `measurement.statistic`
(default median), drift-corrected when the table has a baseline (see `latency.drift`).
"""
from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from search_space.files import atomic_write_text, read_json
from search_space.genotype import Genotype
from search_space.vocab import MAX_RESOLUTION

from .errors import LatencyTableError
from .keys import INVOKE_KEY, genotype_keys, key_params, space_specs
from .kinds import KINDS, kind_function, parent_kind
from .measure import MIN_SAMPLE_MS

FORMAT = "hwnas-latency-table"
SCHEMA_VERSION = 1
ENTRY_FIELDS = ("median_ms", "count")
# Times are stored rounded to 1 ns, so a positive one is at least 1e-6 ms; nothing a table
# times takes 1000 s. Outside these bounds a number is corruption, not a measurement.
MIN_MS, MAX_MS = MIN_SAMPLE_MS, 1e6
SPREAD_FIELDS = ("iqr_ms", "std_ms")  # spreads of the runs: zero is a real value
# Calibration ratios and drift factors are a few percent to tens of percent from 1.
MIN_FACTOR, MAX_FACTOR = 1e-3, 1e3
STATISTICS = ("p10", "median", "min", "mean")
# What an entry may be read at besides `statistic`: the 10th percentile of each visit's first run,
# which other models' runs had evicted from the cache (latency.measure).
ENTRY_STATISTICS = (*STATISTICS, "cold_p10")
MAX_COUNT = 10**9
MAX_WINDOW_S = 3600.0  # the longest measuring window a table may record (seconds)
OVERHEAD_LIMIT = 10.0  # an empty model's time above this many typical probes is not noise


class LatencyTable:
    """Entries keyed by canonical block keys (see `latency.keys`) plus metadata; see module doc."""

    def __init__(self, entries: Mapping[str, Mapping[str, Any]] | None = None,
                 meta: Mapping[str, Any] | None = None, path: str | Path | None = None) -> None:
        self.entries: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (entries or {}).items()}
        self.meta: dict[str, Any] = dict(meta or {})
        self.path = Path(path) if path is not None else None
        self._overhead: tuple[tuple[Any, ...], float] | None = None
        self._factor_cache: tuple[Mapping[str, Any], dict[str, float]] | None = None

    # ---- metadata --------------------------------------------------------------------------
    @property
    def resolution(self) -> int | None:
        """Input resolution the table was built for (None when unknown, e.g. an imported table)."""
        r = self.meta.get("resolution")
        return int(r) if r is not None else None

    @property
    def num_classes(self) -> int:
        """Classifier width of the head entries."""
        return int(self.meta.get("num_classes", 1000))

    @property
    def in_channels(self) -> int:
        """Input channels of the stem entries."""
        return int(self.meta.get("in_channels", 3))

    @property
    def device(self) -> dict[str, Any]:
        """Device metadata (CPU, runtime, threads, date, ...)."""
        return dict(self.meta.get("device", {}))

    @property
    def statistic(self) -> str:
        """Which stored statistic predictions use (`median` unless the table says otherwise)."""
        return str((self.meta.get("measurement") or {}).get("statistic") or "median")

    @property
    def entry_statistic(self) -> str:
        """Which stored statistic entries are read at: `measurement.entry_statistic`, else `statistic`."""
        return str((self.meta.get("measurement") or {}).get("entry_statistic") or self.statistic)

    @property
    def overhead_ms(self) -> float:
        """Per-invoke overhead: the `invoke` entry capped at the fastest entry, 0 when the table has none.

        Every probe paid the overhead of an empty model, so a probe faster than the measured overhead
        shows the measurement ran high (one preempted batch on a busy host); the cap keeps each entry's
        share (entry - overhead) non-negative, so no prediction can be negative.
        """
        if INVOKE_KEY not in self.entries:
            return 0.0
        stamp = (len(self.entries), self.entry_statistic, self.baseline_ms, id(self.entries))
        if self._overhead is None or self._overhead[0] != stamp:
            value = self.value
            self._overhead = (stamp, min(value(k) for k in self.entries))
        return self._overhead[1]

    def _kind_factors(self) -> tuple[Callable[[str], float], float, float] | None:
        """(key -> factor, fitted overhead, ms per million weights) of a per-kind calibration; None for one scale."""
        cal = self.meta.get("calibration") or {}
        by_kind = cal.get("by_kind")
        if not by_kind:
            return None
        factors = by_kind["factors"]
        if self._factor_cache is None or self._factor_cache[0] is not factors:
            self._factor_cache = (factors, {})
        cache = self._factor_cache[1]
        kind_of = kind_function(by_kind["kinds"])
        scale = self.scale

        def factor(key: str) -> float:
            f = cache.get(key)
            if f is None:
                kind = kind_of(key)
                # A kind none of the calibration networks had: its op and kernel's factor, else the one scale.
                f = cache[key] = float(factors.get(kind, factors.get(parent_kind(kind), scale)))
            return f

        return factor, float(by_kind.get("overhead_ms", 0.0)), float(by_kind.get("weights_ms_per_mparam", 0.0))

    @property
    def scale(self) -> float:
        """Calibration factor on the block sum (1.0 when uncalibrated)."""
        return float((self.meta.get("calibration") or {}).get("scale", 1.0))

    @property
    def baseline_ms(self) -> float | None:
        """The drift reference's typical time (None: no drift correction)."""
        return (self.meta.get("drift") or {}).get("baseline_ms")

    # ---- entries ---------------------------------------------------------------------------
    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def set(self, key: str, entry: Mapping[str, Any], source: str | None = None) -> None:
        """Add or replace an entry (median_ms and count at least; every number sane); `source` names it in errors."""
        _check_entry(key, entry, source or (str(self.path) if self.path else "<memory>"))
        self.entries[key] = dict(entry)
        self._overhead = None

    def median(self, key: str) -> float:
        """The entry's median in ms, as stored; LatencyTableError naming the key when missing."""
        try:
            return float(self.entries[key]["median_ms"])
        except KeyError:
            raise LatencyTableError(f"latency table has no entry for {key!r}") from None

    def value(self, key: str) -> float:
        """The time predictions use for an entry (ms): its `entry_statistic`, drift-corrected (see `latency.drift`)."""
        e = self.entries.get(key)
        if e is None:
            raise LatencyTableError(f"latency table{self._where()} has no entry for block {key!r}; "
                                    "rebuild or resume the table for this space, or ask for measure_missing")
        stat = self.entry_statistic
        if stat == "cold_p10" and "cold_p10_ms" not in e:
            raise LatencyTableError(f"latency table{self._where()} reads entries cold but {key!r} has no "
                                    "'cold_p10_ms' (measured before it existed): rebuild the table")
        return drift_corrected(float(e.get(f"{stat}_ms", e["median_ms"])), e.get("ref_ms"), self.baseline_ms)

    # ---- prediction ------------------------------------------------------------------------
    def keys_for(self, g: Genotype, resolution: int | None = None, num_classes: int | None = None) -> list[str]:
        """Entry keys of a genotype at the table's resolution (or a given one)."""
        res = resolution or self.resolution or g.resolution
        return genotype_keys(g, res, num_classes or self.num_classes, self.in_channels)

    def missing(self, g: Genotype, resolution: int | None = None, num_classes: int | None = None) -> list[str]:
        """Keys a genotype needs that the table lacks."""
        return [k for k in self.keys_for(g, resolution, num_classes) if k not in self.entries]

    def uncovered(self, space: Any, resolution: int | None = None, num_classes: int | None = None,
                  in_channels: int | None = None) -> list[str]:
        """Keys of stems, blocks and heads the space can produce that the table lacks, in network order."""
        specs = space_specs(space, resolution or self.resolution, num_classes or self.num_classes,
                            in_channels or self.in_channels)
        return [s.key for s in specs if s.key != INVOKE_KEY and s.key not in self.entries]

    def sum_keys(self, keys: Iterable[str], calibrated: bool = True) -> float:
        """Predicted latency (ms) of a network made of these entries (see module doc)."""
        o = self.overhead_ms
        value = self.value
        per_kind = self._kind_factors() if calibrated else None
        if per_kind is not None:
            factor, total, per_mparam = per_kind
            for k in keys:
                total += factor(k) * (value(k) - o)
            if per_mparam:
                total += per_mparam * sum(key_params(k) for k in keys) / 1e6
        else:
            total = o
            for k in keys:
                total += value(k) - o
            if calibrated:
                total *= self.scale
        if not 0.0 < total <= MAX_MS:  # load-time checks make this unreachable; never hand out such a number
            raise LatencyTableError(f"latency table{self._where()} predicts {total!r} ms for a network; "
                                    "the table is corrupt")
        return total

    def breakdown(self, keys: Iterable[str], kind_of: Callable[[str], str]) -> dict[str, float]:
        """Per-kind parts of the uncalibrated prediction (ms); they add up to `sum_keys(keys, calibrated=False)`.

        Each entry contributes its value less the invoke overhead to `kind_of(key)`; the overhead
        itself, paid once per network, is the part named `invoke`. Device calibration fits one
        factor per kind on these parts (see `latency.calibrate`).
        """
        o = self.overhead_ms
        parts: dict[str, float] = {INVOKE_KEY: o}
        value = self.value
        for k in keys:
            kind = kind_of(k)
            parts[kind] = parts.get(kind, 0.0) + value(k) - o
        return parts

    def predict(self, g: Genotype, resolution: int | None = None, num_classes: int | None = None,
                calibrated: bool = True) -> float:
        """Predicted latency in ms of a genotype; a missing entry is a LatencyTableError naming it."""
        return self.sum_keys(self.keys_for(g, resolution, num_classes), calibrated)

    def _where(self) -> str:
        return f" {str(self.path)!r}" if self.path else ""

    # ---- (de)serialization -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        doc = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "units": "ms"}
        doc.update({k: v for k, v in self.meta.items() if k not in doc and k != "entries"})
        doc["entries"] = {k: self.entries[k] for k in self.entries}
        return doc

    @classmethod
    def from_dict(cls, doc: Any, source: str = "<dict>") -> LatencyTable:
        """Read a JSON document; anything of another format or schema is a LatencyTableError."""
        if not isinstance(doc, Mapping):
            raise LatencyTableError(f"{source}: not a latency table (expected a JSON object)")
        if doc.get("format") != FORMAT:
            raise LatencyTableError(f"{source}: not a latency table (format {doc.get('format')!r}, "
                                    f"expected {FORMAT!r})")
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise LatencyTableError(f"{source}: latency table schema_version {doc.get('schema_version')!r} is "
                                    f"not supported (this code reads {SCHEMA_VERSION}); rebuild or convert it")
        entries = doc.get("entries")
        if not isinstance(entries, Mapping):
            raise LatencyTableError(f"{source}: 'entries' must be an object of key -> entry")
        for k, e in entries.items():
            _check_entry(k, e, source)
        meta = {k: v for k, v in doc.items() if k not in ("format", "schema_version", "units", "entries")}
        _check_meta(meta, source)
        t = cls(entries, meta)
        _check_values(t, source)
        return t

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Load a table file; missing, corrupt or foreign files are a LatencyTableError."""
        p = Path(path)
        t = cls.from_dict(read_json(p, LatencyTableError, "latency table"), str(p))
        t.path = p
        return t

    def save(self, path: str | Path | None = None) -> Path:
        """Write the JSON atomically (temp file + rename), so a crash never leaves half a table."""
        p = Path(path) if path is not None else self.path
        if p is None:
            raise LatencyTableError("no path to save the latency table to")
        atomic_write_text(p, json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n")
        self.path = p
        return p


def drift_corrected(value_ms: float, ref_ms: float | None, baseline_ms: float | None) -> float:
    """A time measured next to the drift reference, read at the baseline speed: value * baseline / ref.

    The one drift formula (see `latency.drift`); baseline 1.0 gives the baseline-free ratio that
    compares passes. Without a reference or a baseline the value stands as measured.
    """
    return value_ms * baseline_ms / ref_ms if baseline_ms and ref_ms else value_ms


def _bad(source: str, where: str, value: Any, want: str) -> LatencyTableError:
    shown = repr(value)
    if len(shown) > 40:  # a 400-digit integer or a long string still makes one readable line
        shown = shown[:36] + "..."
    return LatencyTableError(f"{source}: {where} is {shown}; expected {want}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_range(source: str, where: str, v: Any, lo: float, hi: float, integer: bool = False) -> None:
    ok = (isinstance(v, int) and not isinstance(v, bool)) if integer else _is_number(v)
    if not (ok and lo <= v <= hi and math.isfinite(v)):  # compare first: isfinite(10**400) overflows
        raise _bad(source, where, v, f"{'an integer' if integer else 'a number'} from {lo:g} to {hi:g}")


def _check_time(source: str, where: str, v: Any) -> None:
    _check_range(source, where, v, MIN_MS, MAX_MS)


def _check_fields(source: str, where: str, e: Mapping[str, Any]) -> None:
    """Every number of an entry (or of a pass or a calibration network) is a sane time or count."""
    for f, v in e.items():
        if f == "count":
            _check_range(source, f"{where} field 'count'", v, 0, MAX_COUNT, integer=True)
        elif f in SPREAD_FIELDS:
            _check_range(source, f"{where} field {f!r}", v, 0.0, MAX_MS)
        elif f.endswith("_ms"):
            _check_time(source, f"{where} field {f!r}", v)
        elif _is_number(v):
            _check_range(source, f"{where} field {f!r}", v, 0.0, MAX_MS)


def _check_entry(key: Any, e: Any, source: str) -> None:
    if not isinstance(key, str) or not isinstance(e, Mapping):
        raise LatencyTableError(f"{source}: entry {key!r} must map a key string to an object")
    for f in ENTRY_FIELDS:
        if f not in e:
            raise LatencyTableError(f"{source}: entry {key!r} lacks field {f!r}")
    _check_fields(source, f"entry {key!r}", e)
    passes = e.get("passes")
    if passes is not None:
        if not isinstance(passes, list) or not all(isinstance(p, Mapping) for p in passes):
            raise _bad(source, f"entry {key!r} field 'passes'", passes, "a list of objects")
        for i, p in enumerate(passes):
            _check_fields(source, f"entry {key!r} passes[{i}]", p)


def _section(meta: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    sec = meta.get(name)
    if sec is None:
        return {}
    if not isinstance(sec, Mapping):
        raise _bad(source, f"{name!r}", sec, "an object")
    return sec


def _check_meta(meta: Mapping[str, Any], source: str) -> None:
    """The numbers predictions and resumes rely on: shape, calibration, drift, measurement, device."""
    for name, hi in (("resolution", MAX_RESOLUTION), ("num_classes", 10**6), ("in_channels", 4096)):
        if meta.get(name) is not None:
            _check_range(source, repr(name), meta[name], 1, hi, integer=True)
    cal = _section(meta, "calibration", source)
    if "scale" in cal:
        _check_range(source, "'calibration.scale'", cal["scale"], MIN_FACTOR, MAX_FACTOR)
    by_kind = _section(cal, "by_kind", source)
    if by_kind:
        if by_kind.get("kinds") not in KINDS:
            raise _bad(source, "'calibration.by_kind.kinds'", by_kind.get("kinds"), f"one of {list(KINDS)}")
        factors = by_kind.get("factors")
        if not isinstance(factors, Mapping) or not factors:
            raise _bad(source, "'calibration.by_kind.factors'", factors, "an object of kind: factor")
        for kind, f in factors.items():
            _check_range(source, f"'calibration.by_kind.factors.{kind}'", f, MIN_FACTOR, MAX_FACTOR)
        _check_range(source, "'calibration.by_kind.overhead_ms'", by_kind.get("overhead_ms", 0.0), 0.0, MAX_MS)
        _check_range(source, "'calibration.by_kind.weights_ms_per_mparam'", by_kind.get("weights_ms_per_mparam", 0.0),
                     0.0, MAX_MS)
    nets = cal.get("networks", [])
    if not isinstance(nets, list) or not all(isinstance(n, Mapping) for n in nets):
        raise _bad(source, "'calibration.networks'", nets, "a list of objects")
    for i, n in enumerate(nets):
        _check_fields(source, f"calibration network {i}", n)
    drift = _section(meta, "drift", source)
    for f in ("baseline_ms", "reference_ms"):
        if f in drift:
            _check_time(source, f"'drift.{f}'", drift[f])
    if cal.get("reference_ms") is not None:
        _check_time(source, "'calibration.reference_ms'", cal["reference_ms"])
    m = _section(meta, "measurement", source)
    if m.get("statistic") is not None and m["statistic"] not in STATISTICS:
        raise _bad(source, "'measurement.statistic'", m["statistic"], f"one of {list(STATISTICS)}")
    if m.get("entry_statistic") is not None:
        if m["entry_statistic"] not in ENTRY_STATISTICS:
            raise _bad(source, "'measurement.entry_statistic'", m["entry_statistic"],
                       f"one of {list(ENTRY_STATISTICS)}")
    for f in ("threads", "runs", "rounds", "passes", "warmup"):
        if m.get(f) is not None:
            _check_range(source, f"'measurement.{f}'", m[f], 0 if f == "warmup" else 1, MAX_COUNT, integer=True)
    if m.get("window_s") is not None:
        _check_range(source, "'measurement.window_s'", m["window_s"], 0.0, MAX_WINDOW_S)
    dev = _section(meta, "device", source)
    for f in ("threads", "cores"):
        if dev.get(f) is not None:
            _check_range(source, f"'device.{f}'", dev[f], 1, MAX_COUNT, integer=True)
    for f, v in _section(meta, "build", source).items():
        if _is_number(v):
            _check_range(source, f"'build.{f}'", v, 0.0, 1e9)


def _check_values(t: LatencyTable, source: str) -> None:
    """Cross-entry checks on the values predictions use, so no prediction is NaN, negative or huge."""
    base = t.baseline_ms
    if base:
        for k, e in t.entries.items():
            if e.get("ref_ms") and not MIN_FACTOR <= base / e["ref_ms"] <= MAX_FACTOR:
                raise _bad(source, f"entry {k!r} field 'ref_ms'", e["ref_ms"],
                           f"within a factor {MAX_FACTOR:g} of drift.baseline_ms {base!r}")
    if INVOKE_KEY in t.entries and len(t.entries) > 1:
        # Noise can put the measured overhead a little above tiny probes (`overhead_ms` caps it at the
        # fastest entry), but an empty model timed far above the typical probe is corruption.
        o = t.value(INVOKE_KEY)
        typical = statistics.median(t.value(k) for k in t.entries if k != INVOKE_KEY)
        if o > OVERHEAD_LIMIT * typical:
            raise _bad(source, "entry 'invoke' (the per-invoke overhead)", o,
                       f"at most {OVERHEAD_LIMIT:g} x the median entry, {typical:.6g} ms")
