"""Read TFLite `benchmark_model` logs (from the phone kit) into a latency table."""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from search_space.files import read_json
from search_space.genotype import parse as parse_genotype

from .build import set_calibration
from .calibrate import Measurements
from .errors import LatencyTableError
from .keys import genotype_keys, parse_key
from .probes import LOGS_DIR, MANIFEST_FORMAT
from .table import LatencyTable

_TIMINGS = re.compile(r"Inference timings in us:\s*(?P<body>.*)")
_TIMING_ITEM = re.compile(r"(?P<name>[A-Za-z][A-Za-z ()]*?):\s*(?P<value>[-+0-9.eE]+)")
_STAT_ITEM = re.compile(r"\b(?P<name>count|first|curr|min|max|avg|std|median|p5|p50|p95)=(?P<value>[-+0-9.eE]+)")
_THREADS = re.compile(r"Num threads:\s*\[(\d+)\]")


@dataclass
class BenchmarkResult:
    """What one benchmark_model log says about its timed runs, in microseconds."""

    inference_avg_us: float
    warmup_avg_us: float | None = None
    first_us: float | None = None
    init_us: float | None = None
    count: int | None = None
    std_us: float | None = None
    min_us: float | None = None
    median_us: float | None = None
    threads: int | None = None

    def entry(self) -> dict[str, Any]:
        """A table entry: the median when the tool printed one, else its average."""
        centre = self.median_us if self.median_us is not None else self.inference_avg_us
        e: dict[str, Any] = {"median_ms": round(centre / 1000, 6), "count": int(self.count or 0),
                             "mean_ms": round(self.inference_avg_us / 1000, 6),
                             "statistic": "median" if self.median_us is not None else "mean"}
        if self.std_us is not None:
            e["std_ms"] = round(self.std_us / 1000, 6)
        if self.min_us is not None:
            e["min_ms"] = round(self.min_us / 1000, 6)
        return e


def parse_benchmark_log(text: str) -> BenchmarkResult | None:
    """Parse a benchmark_model log; None when it has no `Inference timings` line (a failed run)."""
    m = None
    for m in _TIMINGS.finditer(text):  # noqa: B007 - the last match is the one wanted
        pass
    if m is None:
        return None
    items = {it["name"].strip().lower(): float(it["value"]) for it in _TIMING_ITEM.finditer(m["body"])}
    avg = items.get("inference (avg)")
    if avg is None:
        return None
    # The last `count=...` line before the summary is the timed runs (the one before it: warm-up).
    stats: dict[str, float] = {}
    for line in text[:m.start()].splitlines():
        found = {s["name"]: float(s["value"]) for s in _STAT_ITEM.finditer(line)}
        if "count" in found and "avg" in found:
            stats = found
    t = _THREADS.search(text)
    median = stats.get("median", stats.get("p50"))
    return BenchmarkResult(
        inference_avg_us=avg, warmup_avg_us=items.get("warmup (avg)"), first_us=items.get("first inference"),
        init_us=items.get("init"), count=int(stats["count"]) if "count" in stats else None,
        std_us=stats.get("std"), min_us=stats.get("min"), median_us=median,
        threads=int(t.group(1)) if t else None)


@dataclass
class IngestReport:
    """What ingest found: entries read, calibration networks, logs skipped or failed."""

    entries: int = 0
    networks: int = 0
    logs: int = 0
    failed: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary."""
        out = [f"{self.entries} entries, {self.networks} calibration networks"]
        if self.failed:
            out.append(f"{len(self.failed)} logs without timings (failed runs), e.g. {self.failed[0]}")
        if self.unknown:
            out.append(f"{len(self.unknown)} logs not named after a probe key, skipped, e.g. {self.unknown[0]}")
        if self.missing:
            out.append(f"{len(self.missing)} probes of the manifest have no log yet, e.g. {self.missing[0]}")
        return out


def _collect(paths: Iterable[str | Path]) -> tuple[list[Path], Path | None, Path | None]:
    """Log files, plus a manifest and a device.txt found beside them."""
    logs: list[Path] = []
    manifest = device = None
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            if (p / "manifest.json").is_file():
                manifest = manifest or p / "manifest.json"
            d = p / LOGS_DIR if (p / LOGS_DIR).is_dir() else p
            logs += sorted(d.glob("*.log"))
            if (d / "device.txt").is_file():
                device = device or d / "device.txt"
        elif p.is_file():
            logs.append(p)
            for cand in (p.parent / "device.txt",):
                if cand.is_file():
                    device = device or cand
            if (p.parent.parent / "manifest.json").is_file():
                manifest = manifest or p.parent.parent / "manifest.json"
        else:
            raise LatencyTableError(f"{p}: no such log file or folder")
    if not logs:
        raise LatencyTableError(f"no benchmark_model logs (*.log) found in {', '.join(map(str, paths))}")
    return logs, manifest, device


def _read_manifest(path: Path) -> dict[str, Any]:
    doc = read_json(path, LatencyTableError, "manifest")
    fmt = doc.get("format") if isinstance(doc, Mapping) else None
    if fmt != MANIFEST_FORMAT:
        raise LatencyTableError(f"{path}: not a probe-kit manifest (format {fmt!r})")
    return dict(doc)


def _read_device_txt(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(errors="replace").splitlines():
        k, sep, v = line.partition("=")
        if sep and v.strip():
            out[k.strip()] = v.strip()
    return out


def _read_kit(paths: Iterable[str | Path], manifest: str | Path | None, device: Mapping[str, Any] | None,
              threads: int | None) -> tuple[LatencyTable, IngestReport, dict[str, Any], dict[str, dict[str, Any]]]:
    """Probe entries in a metadata-less table, the report, the manifest, and each network log's entry by name."""
    paths = list(paths)
    logs, found_manifest, device_txt = _collect(paths)
    man = _read_manifest(Path(manifest)) if manifest else (_read_manifest(found_manifest) if found_manifest else {})
    networks = {n["name"]: n for n in man.get("networks", [])}
    rep = IngestReport()
    table = LatencyTable()
    net_entries: dict[str, dict[str, Any]] = {}
    seen_threads: set[int] = set()
    for log in logs:
        name = log.stem
        res = parse_benchmark_log(log.read_text(errors="replace"))
        if name in networks:
            if res is None:
                rep.failed.append(log.name)
            else:
                net_entries[name] = res.entry()
                if res.threads is not None:
                    seen_threads.add(res.threads)
            continue
        try:
            parse_key(name)
        except ValueError:
            rep.unknown.append(log.name)
            continue
        if res is None:
            rep.failed.append(log.name)
            continue
        table.set(name, res.entry(), str(log))
        if res.threads is not None:
            seen_threads.add(res.threads)
    rep.entries = len(table)
    rep.logs = len(logs)
    rep.missing = [p["key"] for p in man.get("probes", []) if p["key"] not in table]
    dev: dict[str, Any] = {"source": "benchmark_model"}
    if device_txt:
        dev.update(_read_device_txt(device_txt))
    dev.update({k: v for k, v in (device or {}).items() if v is not None})
    bench = man.get("benchmark", {})
    th = threads or (seen_threads.pop() if len(seen_threads) == 1 else None) or bench.get("threads")
    dev["threads"] = int(th) if th is not None else None
    dev.setdefault("date", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    table.meta = {
        "device": dev,
        "measurement": {"tool": "benchmark_model", "threads": dev["threads"], "runs": bench.get("runs"),
                        "warmup": bench.get("warmup"), "clock": "wall", "statistic": "median"},
        "resolution": man.get("resolution", _infer_resolution(table)),
        "num_classes": man.get("num_classes", _infer_num_classes(table)),
        "in_channels": man.get("in_channels", _infer_in_channels(table)),
    }
    if "space" in man:
        table.meta["space"] = man["space"]
    nets = {name: dict(e, genotype=networks[name]["genotype"]) for name, e in net_entries.items()}
    return table, rep, man, nets


def ingest(paths: Iterable[str | Path], manifest: str | Path | None = None,
           device: Mapping[str, Any] | None = None, threads: int | None = None) -> tuple[LatencyTable, IngestReport]:
    """A table from benchmark_model logs: a kit folder, a logs folder, or log files named `<key>.log`.

    Device metadata comes from the kit's logs/device.txt, then `device` overrides it.
    """
    table, rep, _, nets = _read_kit(paths, manifest, device, threads)
    if not table.entries:  # a 0-entry table would only fail later, in the search
        why = "; ".join(rep.lines()[1:]) or "only calibration networks' logs"
        if nets:
            why += ("; a calibration-only kit: `python -m latency ingest` writes its measurements, "
                    "then `python -m latency calibrate HOST_LUT MEASUREMENTS`")
        raise LatencyTableError(f"no benchmark results in {rep.logs} log(s) ({why}); nothing to write")
    calib = []
    for _, n in sorted(nets.items()):
        g = parse_genotype(n["genotype"])
        keys = genotype_keys(g, table.resolution, table.num_classes, table.in_channels)
        if all(k in table for k in keys):
            calib.append({"genotype": g.to_string(), "measured_ms": n["median_ms"],
                          "sum_ms": round(table.sum_keys(keys, False), 6)})
    if calib:
        set_calibration(table, calib)
    rep.networks = len(calib)
    return table, rep


def ingest_networks(paths: Iterable[str | Path], manifest: str | Path | None = None,
                    device: Mapping[str, Any] | None = None, threads: int | None = None
                    ) -> tuple[Measurements, IngestReport]:
    """The whole-network measurements of a kit (its calibration networks), for `latency.calibrate`.

    Reads the same logs as `ingest`; a kit without a manifest (which names the networks'
    genotypes) or without a timed network is a LatencyTableError.
    """
    table, rep, man, nets = _read_kit(paths, manifest, device, threads)
    if not man:
        raise LatencyTableError("no manifest.json found beside the logs: it names the calibration networks' "
                                "genotypes; pass --manifest")
    if not nets:
        why = "; ".join(rep.lines()[1:]) or f"the manifest lists {len(man.get('networks', []))}"
        raise LatencyTableError(f"no calibration network results in the logs ({why}); nothing to write")
    rows = [{"name": name, "genotype": n["genotype"], "measured_ms": n["median_ms"],
             **{k: v for k, v in n.items() if k not in ("median_ms", "genotype")}}
            for name, n in sorted(nets.items())]
    rep.networks = len(rows)
    m = table.meta
    return Measurements(rows, device=m["device"], measurement=m["measurement"], resolution=m["resolution"],
                        num_classes=m["num_classes"], in_channels=m["in_channels"]), rep


def _infer_resolution(table: LatencyTable) -> int | None:
    for k in table.entries:
        if k.startswith("stem-"):
            return parse_key(k).h  # type: ignore[union-attr]
    return None


def _infer_in_channels(table: LatencyTable) -> int:
    for k in table.entries:
        if k.startswith("stem-"):
            return parse_key(k).c_in  # type: ignore[union-attr]
    return 3


def _infer_num_classes(table: LatencyTable) -> int:
    for k in table.entries:
        if k.startswith("head-"):
            return parse_key(k).num_classes  # type: ignore[union-attr]
    return 1000
