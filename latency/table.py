"""The latency lookup table: JSON load/save (atomic), entries by key, and network prediction.

A network's latency is predicted as::

    scale * (invoke + sum over stem, blocks, head of (entry - invoke))

where `invoke` is the time of a trivial model, i.e. the fixed cost every `invoke()` pays once
(each probe was a separate model and paid it, a network pays it once), and `scale` is the
calibration factor fitted on a few whole networks at build time (1.0 when there is none).
An entry's time is its `measurement.statistic` (default median), drift-corrected when the
table has a baseline (see `latency.drift`).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

from search_space.genotype import Genotype

from .errors import LatencyTableError
from .keys import INVOKE_KEY, genotype_keys

FORMAT = "hwnas-latency-table"
SCHEMA_VERSION = 1
ENTRY_FIELDS = ("median_ms", "count")


class LatencyTable:
    """Entries keyed by canonical block keys (see `latency.keys`) plus metadata; see module doc."""

    def __init__(self, entries: Mapping[str, Mapping[str, Any]] | None = None,
                 meta: Mapping[str, Any] | None = None, path: str | Path | None = None) -> None:
        self.entries: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (entries or {}).items()}
        self.meta: dict[str, Any] = dict(meta or {})
        self.path = Path(path) if path is not None else None

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
    def overhead_ms(self) -> float:
        """Per-invoke overhead (the `invoke` entry), 0 when the table has none."""
        return self.value(INVOKE_KEY) if INVOKE_KEY in self.entries else 0.0

    @property
    def scale(self) -> float:
        """Calibration factor on the block sum (1.0 when uncalibrated)."""
        return float((self.meta.get("calibration") or {}).get("scale", 1.0))

    # ---- entries ---------------------------------------------------------------------------
    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def set(self, key: str, entry: Mapping[str, Any]) -> None:
        """Add or replace an entry (must have at least median_ms and count)."""
        _check_entry(key, entry, "<memory>")
        self.entries[key] = dict(entry)

    def median(self, key: str) -> float:
        """The entry's median in ms, as stored; LatencyTableError naming the key when missing."""
        try:
            return float(self.entries[key]["median_ms"])
        except KeyError:
            raise LatencyTableError(f"latency table has no entry for {key!r}") from None

    def value(self, key: str) -> float:
        """The time predictions use for an entry (ms): its `statistic`, drift-corrected (see `latency.drift`)."""
        e = self.entries.get(key)
        if e is None:
            raise LatencyTableError(f"latency table{self._where()} has no entry for block {key!r}; "
                                    "rebuild or resume the table for this space, or ask for measure_missing")
        v = float(e.get(f"{self.statistic}_ms", e["median_ms"]))
        base, ref = (self.meta.get("drift") or {}).get("baseline_ms"), e.get("ref_ms")
        return v * base / ref if base and ref else v

    # ---- prediction ------------------------------------------------------------------------
    def keys_for(self, g: Genotype, resolution: int | None = None, num_classes: int | None = None) -> list[str]:
        """Entry keys of a genotype at the table's resolution (or a given one)."""
        res = resolution or self.resolution or g.resolution
        return genotype_keys(g, res, num_classes or self.num_classes, self.in_channels)

    def missing(self, g: Genotype, resolution: int | None = None, num_classes: int | None = None) -> list[str]:
        """Keys a genotype needs that the table lacks."""
        return [k for k in self.keys_for(g, resolution, num_classes) if k not in self.entries]

    def sum_keys(self, keys: Iterable[str], calibrated: bool = True) -> float:
        """Predicted latency (ms) of a network made of these entries (see module doc)."""
        o = self.overhead_ms
        total = o
        value = self.value
        for k in keys:
            total += value(k) - o
        return total * self.scale if calibrated else total

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
    def from_dict(cls, doc: Any, source: str = "<dict>") -> "LatencyTable":
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
        return cls(entries, meta)

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        """Load a table file; missing, corrupt or foreign files are a LatencyTableError."""
        p = Path(path)
        if not p.is_file():
            raise LatencyTableError(f"latency table {str(p)!r} does not exist")
        try:
            doc = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LatencyTableError(f"{p}: corrupt latency table ({e})") from None
        t = cls.from_dict(doc, str(p))
        t.path = p
        return t

    def save(self, path: str | Path | None = None) -> Path:
        """Write the JSON atomically (temp file + rename), so a crash never leaves half a table."""
        p = Path(path) if path is not None else self.path
        if p is None:
            raise LatencyTableError("no path to save the latency table to")
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=p.name + ".", suffix=".tmp", dir=p.parent)
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a table is an ordinary file
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_dict(), f, indent=1, sort_keys=False)
                f.write("\n")
            os.replace(tmp, p)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self.path = p
        return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_entry(key: Any, e: Any, source: str) -> None:
    if not isinstance(key, str) or not isinstance(e, Mapping):
        raise LatencyTableError(f"{source}: entry {key!r} must map a key string to an object")
    for f in ENTRY_FIELDS:
        if f not in e:
            raise LatencyTableError(f"{source}: entry {key!r} lacks field {f!r}")
    m = e["median_ms"]
    if not isinstance(m, (int, float)) or isinstance(m, bool) or not math.isfinite(m) or m < 0:
        raise LatencyTableError(f"{source}: entry {key!r} has a bad median_ms {m!r}")
