"""The search-facing predictor: genotype -> predicted latency in ms, cached and fast."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search_space.genotype import Genotype

from .errors import LatencyTableError
from .keys import genotype_keys, parse_key
from .measure import LEGACY_WINDOW_S, Settings, host_metadata
from .ofa import import_ofa, load_ofa_yaml
from .table import LatencyTable


def open_table(path: str | Path) -> LatencyTable:
    """A latency table file: ours (JSON), or an OFA / ProxylessNAS YAML table imported as it is read."""
    if Path(path).suffix.lower() in (".yaml", ".yml"):
        table, _ = import_ofa(load_ofa_yaml(path), source=str(path))
        table.path = Path(path)
        return table
    return LatencyTable.load(path)


class Predictor:
    """Callable predictor over a LatencyTable; optionally measures missing entries on this host."""

    def __init__(self, table: LatencyTable, resolution: int | None = None, num_classes: int | None = None,
                 measure_missing: bool = False, settings: Settings | None = None, cache_size: int = 100_000) -> None:
        self.table = table
        self.resolution = resolution or table.resolution
        self.num_classes = num_classes or table.num_classes
        self.measure_missing = measure_missing
        self.settings = settings or table_settings(table)
        self._cache: OrderedDict[Genotype, float] = OrderedDict()
        self._cache_size = cache_size

    def __call__(self, g: Genotype) -> float:
        """Predicted latency in ms (resolution: the predictor's, not the genotype's)."""
        hit = self._cache.get(g)
        if hit is not None:
            self._cache.move_to_end(g)
            return hit
        keys = genotype_keys(g, self.resolution or g.resolution, self.num_classes, self.table.in_channels)
        if self.measure_missing:
            missing = [k for k in dict.fromkeys(keys) if k not in self.table]
            if missing:
                self.measure(missing)
        ms = self.table.sum_keys(keys)
        self._cache[g] = ms
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return ms

    def measure(self, keys: list[str]) -> None:
        """Time missing entries on this host and add them (saved when the table has a path)."""
        from .build import PROBE_BATCH, measure_specs

        dev, host = self.table.device, host_metadata(self.settings.threads)
        if dev and any(dev.get(k) != host[k] for k in ("cpu", "runtime", "threads")):
            raise LatencyTableError(f"cannot measure {keys[0]!r} on the fly: the table was measured on "
                                    f"{dev.get('cpu')!r} ({dev.get('runtime')}, {dev.get('threads')} threads), "
                                    f"this host is {host['cpu']!r} ({host['runtime']}, {host['threads']} threads)")
        specs = [parse_key(k) for k in keys]
        act = next((s.act for s in specs if hasattr(s, "act")), "swish")
        res = self.table.resolution or self.resolution
        # Batches as in a build (each entry keeps its batch's reference time, which a table built
        # with per-batch drift correction reads it at); a whole space at once would not fit in memory.
        for i in range(0, len(specs), PROBE_BATCH):
            chunk = specs[i:i + PROBE_BATCH]
            for s, e in zip(chunk, measure_specs(chunk, self.settings, act, res)):
                self.table.set(s.key, e)
            if self.table.path is not None:
                self.table.save()


def table_settings(table: LatencyTable) -> Settings:
    """The measurement settings a table records (defaults for what it lacks)."""
    m = table.meta.get("measurement") or {}
    d = Settings()

    def get(name: str, default: object) -> object:
        v = m.get(name)
        return default if v is None else v

    return Settings(threads=int(get("threads", d.threads)), warmup=int(get("warmup", d.warmup)),
                    runs=int(get("runs", d.runs)), rounds=int(get("rounds", d.rounds)),
                    pin=bool(get("pin", d.pin)), statistic=str(get("statistic", d.statistic)),
                    passes=int(get("passes", 1)), window_s=float(get("window_s", LEGACY_WINDOW_S)))


def load_predictor(lut: str | None, space: Any, resolution: int, cache_dir: str | Path | None,
                   threads: int = 1, num_classes: int = 1000, measure_missing: bool = False,
                   progress: bool = True, in_channels: int = 3) -> Callable[[Genotype], float]:
    """A genotype -> latency (ms) predictor from a table file, or built for `space` when `lut` is None.

    With `lut=None` the table for `space` at `resolution` is built (or resumed) into
    `cache_dir/lut.json` with a progress bar, then used. A given table is checked before any
    work: another resolution, classifier width or input channels than asked for, or a table
    lacking blocks the space can produce, is a LatencyTableError; with `measure_missing` the
    missing blocks are measured on this host now instead (refused for another device's table).
    """
    from .build import build_table, resolve_space

    space = resolve_space(space)
    missing: list[str] = []
    if lut is None:
        if cache_dir is None:
            raise LatencyTableError("load_predictor: give a table path (lut) or a cache_dir to build one in")
        path = Path(cache_dir) / "lut.json"
        settings = Settings(threads=threads)
        if path.exists():  # a cached table goes on as it was measured, whatever today's defaults are
            cached = table_settings(LatencyTable.load(path))
            settings = cached if cached.threads == threads else settings
        table = build_table(space, path, resolution=resolution, settings=settings, num_classes=num_classes,
                            in_channels=in_channels, progress=progress)
    else:
        table = open_table(lut)
        for fmt, have, want in (("resolution {}", table.resolution, resolution),
                                ("{} classes", table.num_classes, num_classes),
                                ("{} input channel(s)", table.in_channels, in_channels)):
            if have is not None and have != want:
                raise LatencyTableError(f"{lut}: the table is for {fmt.format(have)}, asked for {fmt.format(want)}")
        missing = table.uncovered(space, resolution, num_classes, in_channels)
        if missing and not measure_missing:
            raise LatencyTableError(f"{lut}: the table lacks {len(missing)} of the blocks the space "
                                    f"{space.source} can produce, e.g. {missing[0]!r}; it was measured for another "
                                    "space: rebuild it for this one, or turn on measure_missing")
    predictor = Predictor(table, resolution=resolution, num_classes=num_classes, measure_missing=measure_missing)
    if missing:
        predictor.measure(missing)
    return predictor
