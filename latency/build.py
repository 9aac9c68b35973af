"""Build (or resume) a latency table for a search space by timing every probe with LiteRT."""
from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from search_space.genotype import Genotype
from search_space.genotype import parse as parse_genotype
from search_space.space import SearchSpace, SpaceError, load_space
from search_space.yamlfile import read_yaml_file

from .drift import entry_with_reference, merge_pass, passes_done, rebase, time_with_reference
from .errors import LatencyTableError
from .keys import Spec, genotype_keys, space_specs
from .kinds import CALIBRATION_NETWORKS, DEFAULT_KINDS
from .measure import LEGACY_WINDOW_S, Settings, Timing, host_metadata
from .table import LatencyTable, drift_corrected

# Calibration networks are sampled from this seed family; validation uses others and skips them.
CALIBRATION_SEED = "hwnas-latency-calibration"
# Models timed round-robin together. Large batches spread each model's runs over a longer stretch
# of the host's shifting speed (see Settings.window_s) for the same total time.
PROBE_BATCH = 64
NETWORK_BATCH = 32
SLOW_BATCH = 0.15  # a batch whose drift reference read this much above its run's median ran in a slow spell


def resolve_space(path_or_space: str | Path | SearchSpace | Mapping[str, Any]) -> SearchSpace:
    """A SearchSpace from a space YAML, or from a search config YAML whose `space:` names one.

    `space:` may be a path (relative to the config file, else to the working directory) or an
    inline space mapping.
    """
    if isinstance(path_or_space, (SearchSpace, Mapping)):
        return load_space(path_or_space)
    p = Path(path_or_space)
    doc = read_yaml_file(p, SpaceError, "space or config file")
    if isinstance(doc, Mapping) and "space" in doc and "stages" not in doc:
        ref = doc["space"]
        if isinstance(ref, Mapping):
            return SearchSpace(ref, source=f"{p}:space")
        for cand in (p.parent / str(ref), Path(str(ref))):
            if cand.is_file():
                return SearchSpace.from_yaml(cand)
        raise SpaceError(f"{p}: key 'space': {str(ref)!r} not found next to the config or in the working directory")
    return SearchSpace.from_yaml(p)


# The search's data sources (nas.data) as (in_channels, num_classes); None: it depends on the data.
# `latency` sits below `nas` and may not import it, so a search config is read here as plain YAML;
# tests/test_latency_api.py checks these numbers against nas.data and nas.config.
DATA_SHAPES: dict[str, tuple[int, int | None]] = {"digits": (1, 10), "cifar10": (3, 10), "imagefolder": (3, None)}
DEFAULT_DATA_SOURCE = "digits"  # nas.config.DataConfig.source


def data_shape(path: str | Path, in_channels: int | None = None,
               num_classes: int | None = None) -> tuple[int, int]:
    """(in_channels, num_classes) for a table: the given ones, else a search config's data source, else (3, 1000).

    A space file has no data, so its table gets an ImageNet-style 3-channel stem and 1000-class
    head unless told otherwise; a search config's table gets the shape its search will ask for.
    """
    doc = read_yaml_file(Path(path), SpaceError, "space or config file")
    if not (isinstance(doc, Mapping) and "space" in doc and "stages" not in doc):
        return in_channels or 3, num_classes or 1000
    data = doc.get("data") or {}
    source = data.get("source", DEFAULT_DATA_SOURCE) if isinstance(data, Mapping) else None
    if source not in DATA_SHAPES:
        if in_channels and num_classes:
            return in_channels, num_classes
        raise LatencyTableError(f"{path}: key 'data.source': {source!r} is not one of {sorted(DATA_SHAPES)}; "
                                "pass --in-channels and --num-classes")
    c, n = DATA_SHAPES[source]
    if not (num_classes or n):
        raise LatencyTableError(f"{path}: data source {source!r} has as many classes as class folders; "
                                "pass --num-classes")
    return in_channels or c, num_classes or n  # type: ignore[return-value]


def space_meta(space: SearchSpace) -> dict[str, Any]:
    """How a table records the space it was built for (validate samples from it)."""
    return {"source": space.source, "spec": space.to_dict()}


def new_table(space: SearchSpace, resolution: int, settings: Settings, num_classes: int = 1000,
              in_channels: int = 3) -> LatencyTable:
    """An empty table with this host's metadata."""
    meta = {
        "device": host_metadata(settings.threads),
        "measurement": settings.to_dict(),
        "resolution": resolution,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "space": space_meta(space),
    }
    return LatencyTable(meta=meta)


def check_compatible(table: LatencyTable, resolution: int, settings: Settings, num_classes: int,
                     in_channels: int) -> None:
    """Resuming only adds to a table measured the same way on the same kind of host; else an error."""
    host = host_metadata(settings.threads)
    want = {"resolution": resolution, "num_classes": num_classes, "in_channels": in_channels}
    have = {k: table.meta.get(k) for k in want}
    diffs = [f"{k} {have[k]!r} vs {want[k]!r}" for k in want if have[k] != want[k]]
    m_have, m_want = {"window_s": LEGACY_WINDOW_S, **(table.meta.get("measurement") or {})}, settings.to_dict()
    diffs += [f"measurement.{k} {m_have.get(k)!r} vs {v!r}" for k, v in m_want.items() if m_have.get(k) != v]
    d_have = table.device
    diffs += [f"device.{k} {d_have.get(k)!r} vs {host[k]!r}" for k in ("cpu", "runtime", "threads")
              if d_have.get(k) != host[k]]
    if diffs:
        raise LatencyTableError(f"{table.path}: cannot resume, the table was measured differently ("
                                + "; ".join(diffs) + "); give the table's own settings (--rounds, --window, ...), "
                                "another output path, or overwrite it")


def measure_specs(specs: Sequence[Spec], settings: Settings, act: str, resolution: int) -> list[dict[str, Any]]:
    """Build each probe's model and time them together (round-robin) with the drift reference."""
    from .emit import spec_tflite

    timings, ref = time_with_reference([spec_tflite(s) for s in specs], settings, act, resolution)
    return [entry_with_reference(t, ref) for t in timings]


def build_table(space: SearchSpace | str | Path, out: str | Path | None, resolution: int | None = None,
                settings: Settings | None = None, num_classes: int = 1000, in_channels: int = 3,
                calibration_networks: int | None = None, batch: int = PROBE_BATCH, progress: bool = True, overwrite: bool = False,
                log: Callable[[str], None] | None = None, calibration_kinds: str | None = None,
                recalibrate: bool = False, entry_statistic: str | None = None) -> LatencyTable:
    """Measure every entry of the space that `out` lacks, saving atomically after each batch.

    An existing `out` measured the same way is resumed: its entries are kept and skipped.
    `calibration_networks` and `calibration_kinds` left None keep a built table's calibration as
    it is; a new table gets CALIBRATION_NETWORKS networks and DEFAULT_KINDS (see `calibration_plan`).
    `recalibrate` times the calibration networks again even when the table has them (the
    previous calibration is kept in `calibration_history`). `entry_statistic` sets what entries
    are read at (`cold_p10`: each probe's runs with its weights evicted; None keeps the table's);
    changing it refits the calibration from its stored networks. Returns the finished table (also
    written to `out` when given).
    """
    from tqdm import tqdm

    settings = settings or Settings()
    space = resolve_space(space) if not isinstance(space, SearchSpace) else space
    res = int(resolution or space.resolution)
    out_p = Path(out) if out is not None else None
    if out_p is not None and out_p.exists() and not overwrite:
        table = LatencyTable.load(out_p)
        check_compatible(table, res, settings, num_classes, in_channels)
        table.meta["space"] = space_meta(space)
    else:
        table = new_table(space, res, settings, num_classes, in_channels)
        table.path = out_p
    # Tables built before `window_s` existed read each entry at its batch's reference (legacy); newer
    # ones keep entries as measured (latency.drift).
    per_batch = table.baseline_ms is not None
    specs = space_specs(space, res, num_classes, in_channels)
    n_todo = sum(max(0, settings.passes - passes_done(table.entries.get(s.key))) for s in specs)
    if log and n_todo < len(specs) * settings.passes:
        done = sum(passes_done(table.entries.get(s.key)) >= settings.passes for s in specs)
        log(f"resuming {out_p}: {done} of {len(specs)} entries already measured")
    t0 = time.perf_counter()
    with tqdm(total=n_todo, unit="probe", disable=not progress, desc="latency table") as bar:
        for p in range(settings.passes):
            todo = [s for s in specs if passes_done(table.entries.get(s.key)) <= p]
            if p:  # later passes: other neighbours in each batch, and minutes later
                random.Random(f"pass-{p}").shuffle(todo)
            for i in range(0, len(todo), batch):
                chunk = todo[i:i + batch]
                for s, e in zip(chunk, measure_specs(chunk, settings, space.activation, res)):
                    table.set(s.key, merge_pass(table.entries.get(s.key), e, settings.statistic, per_batch))
                rebase(table, space.activation, res, per_batch)
                if out_p is not None:
                    table.save(out_p)
                bar.update(len(chunk))
    entries_s = time.perf_counter() - t0
    reread = entry_statistic is not None and entry_statistic != table.entry_statistic
    calibration_networks, calibration_kinds = calibration_plan(table, calibration_networks, calibration_kinds)
    if entry_statistic is not None:
        table.meta.setdefault("measurement", {})["entry_statistic"] = entry_statistic
    calibrated = bool(calibration_networks and (recalibrate or _needs_calibration(table, calibration_networks)))
    if calibrated and table.meta.get("calibration"):
        # A shared host's speed moves by 5-15% over an hour (docs/latency.md): a table built in one
        # period is re-anchored to another by its calibration networks alone, in seconds.
        old = dict(table.meta["calibration"])
        old["replaced"] = host_metadata(settings.threads)["date"]
        table.meta["calibration_history"] = [*table.meta.get("calibration_history", []), old]
    if calibrated:
        calibrate(table, space, calibration_networks, settings, progress=progress, kinds=calibration_kinds)
    elif ((reread and (table.meta.get("calibration") or {}).get("networks"))
          or (calibration_networks and (table.meta.get("calibration") or {}).get("kinds", "one") != calibration_kinds)):
        refit_calibration(table, calibration_kinds)  # nothing to time
        calibrated = True
    if n_todo or calibrated:
        table.meta["build"] = {"probe_runs": n_todo, "entries_seconds": round(entries_s, 1),
                               "seconds": round(time.perf_counter() - t0, 1),
                               "date": host_metadata(settings.threads)["date"]}
    if out_p is not None:
        table.save(out_p)
    return table


def calibration_plan(table: LatencyTable, networks: int | None, kinds: str | None) -> tuple[int, str]:
    """(networks, kinds) a build calibrates with: those given, else the table's own, else the defaults.

    A table goes on as it was calibrated unless asked otherwise (a search's cached table is not
    re-timed because a default moved); the default kinds need MIN_NETWORKS networks to be fitted
    and fall back to the one scale with fewer.
    """
    from .calibrate import MIN_NETWORKS

    cal = table.meta.get("calibration") or {}
    if networks is None:
        networks = len(cal.get("networks", [])) if cal else CALIBRATION_NETWORKS
    if kinds is None:
        kinds = cal.get("kinds", "one") if cal else (DEFAULT_KINDS if networks >= MIN_NETWORKS else "one")
    return networks, kinds


def _needs_calibration(table: LatencyTable, n: int) -> bool:
    cal = table.meta.get("calibration") or {}
    return len(cal.get("networks", [])) < n


def calibration_genotypes(space: SearchSpace, n: int) -> list[Genotype]:
    """The `n` networks calibration measures (fixed seed, so build and validate agree on them)."""
    rng = random.Random(CALIBRATION_SEED)
    return [space.sample(rng) for _ in range(n)]


def measure_network_pass(genotypes: Sequence[Genotype], order: Sequence[int], resolution: int, num_classes: int,
                         settings: Settings, batch: int = NETWORK_BATCH, in_channels: int = 3,
                         bar: Any = None) -> dict[int, tuple[Timing, float]]:
    """One pass over `genotypes[j]` for j in `order`, in batches each timed with the drift reference.

    Returns index -> (timing, the batch's reference time in ms). A network's random weights come
    from its index, so every pass of it times the same model.
    """
    from .emit import genotype_tflite

    out: dict[int, tuple[Timing, float]] = {}
    for i in range(0, len(order), batch):
        idx = list(order[i:i + batch])
        models = [genotype_tflite(genotypes[j], resolution, num_classes, seed=j, in_channels=in_channels)
                  for j in idx]
        timings, ref = time_with_reference(models, settings, genotypes[idx[0]].activation, resolution)
        out.update((j, (t, ref)) for j, t in zip(idx, timings))
        if bar is not None:
            bar.update(len(idx))
    return out


def pass_order(n: int, p: int, prefix: str = "pass") -> list[int]:
    """The order of pass `p` over `n` networks: as given first, then shuffled (other neighbours, later time)."""
    order = list(range(n))
    if p:
        random.Random(f"{prefix}-{p}").shuffle(order)
    return order


def measure_networks(genotypes: Sequence[Genotype], resolution: int, num_classes: int, settings: Settings,
                     batch: int = NETWORK_BATCH, progress: bool = False, desc: str = "networks",
                     in_channels: int = 3, per_batch_drift: bool = False) -> list[tuple[Timing, float]]:
    """End-to-end timings of whole networks (random weights), round-robin in batches; per network the
    pass with the lowest value (drift-corrected by its batch's reference with `per_batch_drift`) and
    that pass's reference time (ms)."""
    from tqdm import tqdm

    best: list[tuple[Timing, float] | None] = [None] * len(genotypes)
    stat = settings.statistic

    def value(t: Timing, ref: float) -> float:
        return drift_corrected(t.stat(stat), ref, 1.0) if per_batch_drift else t.stat(stat)

    with tqdm(total=len(genotypes) * settings.passes, unit="net", disable=not progress, desc=desc) as bar:
        for p in range(settings.passes):
            got = measure_network_pass(genotypes, pass_order(len(genotypes), p), resolution, num_classes, settings,
                                       batch=batch, in_channels=in_channels, bar=bar)
            for j, (t, ref) in got.items():
                old = best[j]
                if old is None or value(t, ref) < value(*old):
                    best[j] = (t, ref)
    return [b for b in best if b is not None]


def spread(a: float, b: float) -> float:
    """Test-retest spread of two measurements of one network: |a - b| / their mean."""
    return abs(a - b) / ((a + b) / 2) if a + b > 0 else 0.0


def settle(values: Sequence[float], max_spread: float) -> tuple[float, float, bool]:
    """(value, spread, agreed) of a network's passes: its two lowest must agree within `max_spread`.

    Contention on a shared host only ever slows a run down, so the calm measurement is the lowest
    one, and a second pass close to it confirms it; one slow outlier among the passes is then
    harmless, while two passes far apart leave no way to tell which one is the network's speed.
    No passes at all is (nan, inf, False).
    """
    if not values:
        return math.nan, math.inf, False
    lo = sorted(values)[:2]
    s = spread(lo[0], lo[1]) if len(lo) == 2 else math.inf
    return lo[0], s, s <= max_spread


def slow_limit(passes: Sequence[Sequence[tuple[Timing, float]]], slow_batch: float | None) -> float:
    """The reference time above which a pass ran in a slow spell: the run's median reference times
    1 + `slow_batch` (inf when `slow_batch` is None or nothing was timed)."""
    refs = [ref for ps in passes for _, ref in ps if ref > 0]
    return statistics.median(refs) * (1 + slow_batch) if refs and slow_batch is not None else math.inf


def measure_retest(genotypes: Sequence[Genotype], resolution: int, num_classes: int, settings: Settings,
                   reading: Callable[[Timing, float], float], max_spread: float, retries: int,
                   batch: int = NETWORK_BATCH,
                   progress: bool = False, desc: str = "networks", in_channels: int = 3,
                   slow_batch: float | None = SLOW_BATCH) -> list[list[tuple[Timing, float]]]:
    """Every pass of every network: at least two shuffled passes, then up to `retries` more for those
    whose two lowest `reading`s (of a timing and its reference time) disagree by more than `max_spread`,
    counting only passes whose batch's reference stayed within `slow_limit`.

    The drift reference is a poor gauge to correct by (latency.drift) but a fair alarm: a batch
    that spent its whole window in a slow spell reads its reference 30% slow with all its
    networks, and two such passes of one network agree with each other. Measured again instead.
    """
    from tqdm import tqdm

    n, n_passes = len(genotypes), max(2, settings.passes)  # test-retest needs two
    passes: list[list[tuple[Timing, float]]] = [[] for _ in genotypes]

    def run(order: Sequence[int], bar: Any) -> None:
        got = measure_network_pass(genotypes, order, resolution, num_classes, settings, batch=batch,
                                   in_channels=in_channels, bar=bar)
        for j, v in got.items():
            passes[j].append(v)

    with tqdm(total=n * n_passes, unit="net", disable=not progress, desc=desc) as bar:
        for p in range(n_passes):
            run(pass_order(n, p), bar)
        for r in range(retries):
            limit = slow_limit(passes, slow_batch)
            todo = [j for j in range(n) if not settle([reading(t, ref) for t, ref in passes[j] if ref <= limit],
                                                      max_spread)[2]]
            if not todo:
                break
            bar.total += len(todo)
            bar.refresh()
            run([todo[k] for k in pass_order(len(todo), n_passes + r, "retry")], bar)
    return passes


def calibrate(table: LatencyTable, space: SearchSpace, n: int, settings: Settings, progress: bool = False,
              kinds: str = "one") -> float:
    """Fit the table's calibration on `n` sampled networks timed whole; returns the one scale.

    Blocks are timed alone with their weights hot in cache; inside a network the previous blocks
    have evicted them, so a network is a few percent slower than its sum on a CPU with a small
    cache. One robust ratio (median of measured / block sum) absorbs that without touching the
    entries; `kinds` other than `one` also fits a factor per kind of block (see `set_calibration`).
    """
    gs = calibration_genotypes(space, n)
    res = table.resolution or space.resolution
    missing = sorted({k for g in gs for k in genotype_keys(g, res, table.num_classes, table.in_channels)
                      if k not in table})
    if missing:
        raise LatencyTableError(f"cannot calibrate: {len(missing)} entries missing, e.g. {missing[0]!r}")
    per_batch = table.baseline_ms is not None
    timings = measure_networks(gs, res, table.num_classes, settings, progress=progress, desc="calibration",
                               in_channels=table.in_channels, per_batch_drift=per_batch)
    nets = []
    for g, (t, ref) in zip(gs, timings):
        raw = table.sum_keys(genotype_keys(g, res, table.num_classes, table.in_channels), calibrated=False)
        v = t.stat(settings.statistic)
        measured = drift_corrected(v, ref, table.baseline_ms)
        nets.append({"genotype": g.to_string(), "measured_ms": round(measured, 6),
                     "raw_measured_ms": round(v, 6), "ref_ms": round(ref, 6), "sum_ms": round(raw, 6)})
    return set_calibration(table, nets, kinds)


def refit_calibration(table: LatencyTable, kinds: str = "one") -> float:
    """Fit the calibration again from the table's stored networks, their block sums read anew."""
    nets = [dict(n, sum_ms=round(table.sum_keys(table.keys_for(parse_genotype(n["genotype"])), calibrated=False), 6))
            for n in table.meta["calibration"]["networks"]]
    return set_calibration(table, nets, kinds)


def set_calibration(table: LatencyTable, nets: list[dict[str, Any]], kinds: str = "one") -> float:
    """Store calibration networks (genotype, measured_ms, sum_ms) and their median ratio as the scale.

    With `kinds` other than `one`, also a factor per kind of block and a constant overhead, fitted
    on the same networks by `latency.calibrate.select_and_fit` (the device calibration's fit, here
    host against host), with the leave-one-out error of that fit and of the one scale.
    """
    ratios = [n["measured_ms"] / n["sum_ms"] for n in nets if n["sum_ms"] > 0]
    scale = statistics.median(ratios) if ratios else 1.0
    cal: dict[str, Any] = {"scale": round(scale, 6), "method": "median of measured / block sum", "networks": nets}
    refs = [float(n["ref_ms"]) for n in nets if n.get("ref_ms")]
    if refs and table.baseline_ms is None:
        # The machine's speed when the scale was fitted, as the drift reference reads it
        # (`validate --reading run`; see latency.drift).
        cal["reference_ms"] = round(statistics.median(refs), 6)
    table.meta["calibration"] = cal
    if kinds != "one":
        from .calibrate import MIN_NETWORKS, design, error_stats, loo, select_and_fit

        if len(nets) < MIN_NETWORKS:
            raise LatencyTableError(f"calibration kinds {kinds!r} need at least {MIN_NETWORKS} networks, "
                                    f"got {len(nets)}")
        keys = [table.keys_for(parse_genotype(n["genotype"])) for n in nets]
        names, parts, totals = design(table, keys, kinds)
        y = np.array([n["measured_ms"] for n in nets], dtype=float)
        f = select_and_fit(parts, y, names)
        ratio = np.array(ratios)
        one_loo = np.array([statistics.median(np.delete(ratio, i)) * totals[i] for i in range(len(y))])
        errors = {"per_kind": error_stats(loo(parts, y, names), y), "one_scale": error_stats(one_loo, y)}
        cal.update(kinds=kinds, leave_one_out=errors)
        # Kept only when it predicts networks left out of the fit better than the one scale does.
        if errors["per_kind"]["mape_pct"] < errors["one_scale"]["mape_pct"]:
            cal["method"] = "per-kind factors (latency.calibrate), applied at prediction"
            cal["by_kind"] = {"kinds": kinds, "factors": {k: round(float(v), 6) for k, v in f.factor_map().items()},
                              "overhead_ms": round(f.overhead_ms, 9),
                              "weights_ms_per_mparam": round(f.weights_ms_per_mparam, 9),
                              "ridge": f.ridge if math.isfinite(f.ridge) else "inf"}
    return scale
