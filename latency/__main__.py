"""Command line: build / validate / predict with latency tables, and the phone kit.

    python -m latency build configs/space_mnas.yaml --resolution 224 --out lut.json [--threads 1]
    python -m latency validate lut.json --samples 100
    python -m latency predict lut.json GENOTYPE...
    python -m latency info lut.json
    python -m latency export-probes configs/space_mnas.yaml --resolution 224 --out kit/
    python -m latency ingest kit/ --out phone_lut.json
    python -m latency export-probes configs/space_mnas.yaml --calibration 20 --networks-only --out kit/
    python -m latency ingest kit/ --out measurements.json      (a calibration-only kit)
    python -m latency calibrate host_lut.json measurements.json --out device_lut.json
    python -m latency import-ofa mobile_lut.yaml --out ofa_lut.json

Errors (missing file, foreign table, ...) print one line and exit with status 2.
`validate --strict` exits with status 1 when its figure is not trustworthy (too noisy a machine).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .kinds import CALIBRATION_NETWORKS, DEFAULT_KINDS, DEVICE_CALIBRATION_NETWORKS, KINDS
from .table import ENTRY_STATISTICS

if TYPE_CHECKING:  # the commands import lazily, so that --help is instant
    from .table import LatencyTable


def _check_ints(a: argparse.Namespace, **ranges: tuple[int, int]) -> None:
    """Numeric flags within their range, else one line (argparse only checks that they are integers)."""
    from .errors import LatencyTableError

    for name, (lo, hi) in ranges.items():
        v = getattr(a, name, None)
        if v is not None and not lo <= v <= hi:
            raise LatencyTableError(f"--{name.replace('_', '-')} {v}: expected an integer from {lo} to {hi}")


_COUNT = (1, 1_000_000)
_TIMING_RANGES = {"threads": (1, 1024), "warmup": (0, 1_000_000), "runs": _COUNT, "rounds": _COUNT, "passes": _COUNT}


def _settings(a: argparse.Namespace):
    from .measure import Settings

    _check_ints(a, **_TIMING_RANGES)
    _check_window(a)
    return Settings(threads=a.threads, warmup=a.warmup, runs=a.runs, rounds=a.rounds, pin=not a.no_pin,
                    statistic=a.statistic, passes=a.passes, window_s=a.window)


def _check_window(a: argparse.Namespace) -> None:
    from .errors import LatencyTableError
    from .table import MAX_WINDOW_S

    if a.window is not None and not 0 <= a.window <= MAX_WINDOW_S:
        raise LatencyTableError(f"--window {a.window:g}: expected seconds from 0 to {MAX_WINDOW_S:g}")


def _add_timing_args(p: argparse.ArgumentParser, defaults: bool = True) -> None:
    from .measure import Settings

    d = Settings()
    p.add_argument("--threads", type=int, default=d.threads if defaults else None, help="interpreter threads")
    p.add_argument("--warmup", type=int, default=d.warmup if defaults else None, help="untimed runs per model")
    p.add_argument("--runs", type=int, default=d.runs if defaults else None, help="timed runs per model")
    p.add_argument("--rounds", type=int, default=d.rounds if defaults else None,
                   help="round-robin rounds the runs are split into")
    p.add_argument("--passes", type=int, default=d.passes if defaults else None,
                   help="measure everything this many times, minutes apart; keep the calmest pass")
    p.add_argument("--window", type=float, default=d.window_s if defaults else None, metavar="SECONDS",
                   help="spread each batch's runs over at least this many seconds (0: no minimum)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the measuring thread to one CPU")
    if defaults:
        p.add_argument("--statistic", choices=("p10", "median", "min"), default=d.statistic,
                       help="statistic of the runs that predictions use (all are stored)")


def _shape(a: argparse.Namespace) -> tuple[int, int]:
    from search_space.vocab import MAX_RESOLUTION

    from .build import data_shape

    _check_ints(a, in_channels=(1, 4096), num_classes=_COUNT, resolution=(1, MAX_RESOLUTION),
                calibration_networks=(0, 10_000))
    return data_shape(a.space, a.in_channels, a.num_classes)


def cmd_build(a: argparse.Namespace) -> int:
    from .build import build_table, resolve_space

    space = resolve_space(a.space)
    in_channels, num_classes = _shape(a)
    t0 = time.perf_counter()
    table = build_table(space, a.out, resolution=a.resolution, settings=_settings(a), num_classes=num_classes,
                        in_channels=in_channels, calibration_networks=a.calibration_networks, progress=not a.quiet,
                        overwrite=a.overwrite, log=print, calibration_kinds=a.calibration_kinds,
                        recalibrate=a.recalibrate, entry_statistic=a.entry_statistic)
    dt = time.perf_counter() - t0
    print(f"{a.out}: {len(table)} entries for {space.source} at {table.resolution} "
          f"({in_channels} input channel(s), {num_classes} classes; "
          f"{table.device.get('cpu')}, {table.device.get('runtime')}, {table.device.get('threads')} thread(s)); "
          f"invoke overhead {table.overhead_ms * 1000:.1f} us, calibration scale {table.scale:.4f}; {dt:.1f} s")
    _print_kind_calibration(table)
    return 0


def _print_kind_calibration(table: LatencyTable) -> None:
    """The per-kind factors of a table's calibration and their leave-one-out error, when it has them."""
    cal = table.meta.get("calibration") or {}
    if cal.get("kinds", "one") == "one":
        return
    loo = cal.get("leave_one_out") or {}
    per, one = loo.get("per_kind", {}), loo.get("one_scale", {})
    by_kind = cal.get("by_kind")
    if by_kind:
        print(f"calibration by kind ({by_kind['kinds']}, {len(cal.get('networks', []))} networks): "
              + ", ".join(f"{k} {v:.3f}" for k, v in by_kind["factors"].items())
              + f"; overhead {by_kind.get('overhead_ms', 0.0) * 1000:.1f} us")
    else:
        print(f"calibration by kind ({cal['kinds']}) not kept: the one scale predicts left-out networks better")
    if per and one:
        print(f"leave-one-out within +-10%: per kind {100 * per['within_10']:.0f}% "
              f"(mean abs {per['mape_pct']:.1f}%), one scale {100 * one['within_10']:.0f}% "
              f"(mean abs {one['mape_pct']:.1f}%)")


def cmd_validate(a: argparse.Namespace) -> int:
    from .build import resolve_space
    from .table import LatencyTable
    from .validate import validate

    _check_ints(a, samples=(1, 100_000), retries=(0, 100), **_TIMING_RANGES)
    table = LatencyTable.load(a.lut)
    space = resolve_space(a.space) if a.space else None
    settings = None
    _check_window(a)
    if any(v is not None for v in (a.threads, a.warmup, a.runs, a.rounds, a.passes, a.window)) or a.no_pin:
        from .measure import Settings
        from .predictor import table_settings

        base = table_settings(table)
        settings = Settings(threads=a.threads or base.threads, warmup=a.warmup or base.warmup,
                            runs=a.runs or base.runs, rounds=a.rounds or base.rounds, pin=not a.no_pin,
                            statistic=base.statistic, passes=a.passes or base.passes,
                            window_s=base.window_s if a.window is None else a.window)
    t0 = time.perf_counter()
    rep = validate(table, samples=a.samples, space=space, settings=settings, seed=a.seed, progress=not a.quiet,
                   max_spread=_percent(a.max_spread, "max-spread"), retries=a.retries,
                   max_refused=_percent(a.max_refused, "max-refused"), max_drift=_percent(a.max_drift, "max-drift"),
                   reading=a.reading, slow_batch=None if a.slow_batch == -1 else _percent(a.slow_batch, "slow-batch"),
                   anchor=a.anchor)
    for line in rep.lines():
        print(line)
    print(f"({time.perf_counter() - t0:.1f} s; {table.device.get('cpu')}, {table.resolution}x{table.resolution})")
    if a.json:
        Path(a.json).write_text(json.dumps(rep.to_dict(), indent=1) + "\n")
    # 1, not 2: the command worked, the machine was too noisy for its figure
    return 1 if a.strict and not rep.trustworthy else 0


def _percent(v: float, name: str) -> float:
    """A percentage flag (5 means 5%) as a fraction; NaN, negative or absurd values are one line."""
    from .errors import LatencyTableError

    if not 0 <= v <= 1000:  # also NaN
        raise LatencyTableError(f"--{name} {v}: expected a percentage from 0 to 1000")
    return v / 100


def cmd_predict(a: argparse.Namespace) -> int:
    from search_space.genotype import parse

    from .predictor import open_table

    table = open_table(a.lut)
    for text in a.genotypes:
        print(f"{table.predict(parse(text)):.4f} ms  {text}")
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from .predictor import open_table

    t = open_table(a.lut)
    kinds: dict[str, int] = {}
    for k in t.entries:
        kinds[k.split("-", 1)[0]] = kinds.get(k.split("-", 1)[0], 0) + 1
    print(f"{a.lut}: {len(t)} entries {kinds}")
    print(f"resolution {t.resolution}, classes {t.num_classes}, input channels {t.in_channels}, "
          f"invoke overhead {t.overhead_ms * 1000:.2f} us, "
          f"calibration scale {t.scale:.4f}")
    _print_kind_calibration(t)
    print("device: " + json.dumps(t.device))
    print("measurement: " + json.dumps(t.meta.get("measurement", {})))
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from .probes import export_probes

    _check_ints(a, **{k: _TIMING_RANGES[k] for k in ("threads", "runs", "warmup")})
    in_channels, num_classes = _shape(a)
    export_probes(a.space, a.out, resolution=a.resolution, num_classes=num_classes, in_channels=in_channels,
                  threads=a.threads, runs=a.runs, warmup=a.warmup, calibration_networks=a.calibration_networks,
                  progress=not a.quiet, log=print, networks_only=a.networks_only)
    out = "measurements.json" if a.networks_only else "lut.json"
    print(f"next: {Path(a.out) / 'run_probes.sh'} adb   (or: local --benchmark PATH), then "
          f"python -m latency ingest {a.out} --out {out}")
    return 0


def cmd_ingest(a: argparse.Namespace) -> int:
    from .errors import LatencyTableError
    from .ingest import ingest, ingest_networks

    _check_ints(a, threads=_TIMING_RANGES["threads"])
    device = {"model": a.device, "cpu": a.cpu} if (a.device or a.cpu) else None
    try:
        table, rep = ingest(a.paths, manifest=a.manifest, device=device, threads=a.threads)
    except LatencyTableError as first:
        # No probe results: a calibration-only kit's whole-network measurements, if it has them.
        try:
            meas, rep = ingest_networks(a.paths, manifest=a.manifest, device=device, threads=a.threads)
        except LatencyTableError:
            raise first from None
        for line in rep.lines():
            print(line)
        meas.save(a.out)
        print(f"wrote {a.out}: {len(meas.networks)} whole-network measurements (no probes); next: "
              f"python -m latency calibrate HOST_LUT {a.out} --out device_lut.json")
        return 0
    return _save(table, rep.lines(), a.out, f", calibration scale {table.scale:.4f}")


def cmd_calibrate(a: argparse.Namespace) -> int:
    from .build import resolve_space
    from .calibrate import calibrate, load_measurements
    from .table import LatencyTable

    ridge = None if a.ridge == "auto" else _ridge(a.ridge)
    overhead = {"auto": None, "on": True, "off": False}[a.overhead]
    host = LatencyTable.load(a.host_lut)
    meas = load_measurements(a.measurements)
    space = resolve_space(a.space) if a.space else None
    table, rep = calibrate(host, meas, kinds=a.kinds, ridge=ridge, overhead=overhead, fit_networks=a.networks,
                           space=space)
    if a.json:
        Path(a.json).write_text(json.dumps({"factors": rep.fit.factor_map(), "overhead_ms": rep.fit.overhead_ms,
                                            "one_scale": rep.fit.scale, "loo": rep.loo,
                                            "loo_one_scale": rep.loo_one_scale, "holdout": rep.holdout,
                                            "holdout_one_scale": rep.holdout_one_scale, "rows": rep.networks},
                                           indent=1) + "\n")
    return _save(table, rep.lines(), a.out, f" for {table.device.get('model') or table.device.get('source')}")


def _ridge(text: str) -> float:
    from .errors import LatencyTableError

    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not (v >= 0):  # also NaN
        raise LatencyTableError(f"--ridge {text}: expected auto or a number >= 0 (inf: one scale)")
    return v


def cmd_import_ofa(a: argparse.Namespace) -> int:
    from .ofa import import_ofa, load_ofa_yaml

    table, rep = import_ofa(load_ofa_yaml(a.file), source=str(a.file))
    if a.resolution and table.meta.get("resolution") is None:
        table.meta["resolution"] = a.resolution
    return _save(table, rep.lines(), a.out)


def _save(table: LatencyTable, report: list[str], out: str, more: str = "") -> int:
    for line in report:
        print(line)
    table.save(out)
    print(f"wrote {out}: {len(table)} entries{more}")
    return 0


def _add_shape_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-classes", type=int, default=None,
                   help="head width (default: a search config's data source, else 1000)")
    p.add_argument("--in-channels", type=int, default=None,
                   help="stem input channels (default: a search config's data source, else 3)")


def parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m latency`."""
    p = argparse.ArgumentParser(prog="python -m latency", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("build", help="measure every block of a space into a table (resumes)")
    b.add_argument("space", help="space YAML, or a search config YAML with a `space:` key")
    b.add_argument("--resolution", type=int, default=None, help="input size (default: the space's)")
    b.add_argument("--out", required=True, help="table JSON (resumed when it exists)")
    _add_shape_args(b)
    b.add_argument("--recalibrate", action="store_true",
                   help="time the calibration networks again on a built table (the host's speed moves over "
                        "hours; the previous calibration is kept in calibration_history)")
    b.add_argument("--calibration-networks", type=int, default=None,
                   help=f"whole networks timed to fit the table's calibration (0: none; default "
                        f"{CALIBRATION_NETWORKS} for a new table, a built table's own count)")
    b.add_argument("--calibration-kinds", choices=KINDS, default=None,
                   help=f"what the calibration fits: one scale, or also a factor per kind of block and a term "
                        f"per million weights, each kept only where leave-one-out says it helps (default "
                        f"{DEFAULT_KINDS} for a new table, a built table's own); changing it on a built table "
                        f"refits without timing anything")
    b.add_argument("--entry-statistic", choices=ENTRY_STATISTICS, default=None,
                   help="what entries are read at (default: the table's, else --statistic); cold_p10 reads "
                        "each block's runs with its weights evicted, as inside a network; changing it on a "
                        "built table refits the calibration without timing anything")
    b.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_timing_args(b)
    b.set_defaults(func=cmd_build)

    v = sub.add_parser("validate", help="compare predictions with end-to-end measurements")
    v.add_argument("lut")
    v.add_argument("--samples", type=int, default=100)
    v.add_argument("--space", default=None, help="space to sample (default: the one recorded in the table)")
    v.add_argument("--seed", type=int, default=2024)
    v.add_argument("--anchor", action="store_true",
                   help="time the table's calibration networks in the same passes and predict with the calibration "
                        "refitted on them (the host's speed moves within an hour); the table file is left as it is")
    v.add_argument("--json", default=None, help="write per-network rows and statistics here")
    v.add_argument("--quiet", action="store_true")
    v.add_argument("--max-spread", type=float, default=5.0, metavar="PCT",
                   help="passes of a network further apart than this are noise: re-measure, then refuse (default 5)")
    v.add_argument("--retries", type=int, default=2, help="extra passes for a network whose passes disagree")
    v.add_argument("--max-refused", type=float, default=20.0, metavar="PCT",
                   help="more networks refused than this: the figure is not trustworthy (default 20)")
    v.add_argument("--max-drift", type=float, default=15.0, metavar="PCT",
                   help="the median network moving more than this between the first two passes (the machine's "
                        "speed changed): not trustworthy (default 15)")
    from .validate import READINGS

    v.add_argument("--reading", choices=READINGS, default="measured",
                   help="which reading of the measurements is scored (all are printed): 'measured' (default) "
                        "as measured, 'run' rescaled to the calibration's speed by the drift reference's median, "
                        "'batch' each batch read at its reference")
    v.add_argument("--slow-batch", type=float, default=15.0, metavar="PCT",
                   help="set aside a pass whose batch's drift reference read more than this above the run's "
                        "median (a slow spell) and measure the network again (default 15; -1: never)")
    v.add_argument("--strict", action="store_true", help="exit with status 1 when the figure is not trustworthy")
    _add_timing_args(v, defaults=False)
    v.set_defaults(func=cmd_validate)

    pr = sub.add_parser("predict", help="predicted latency of genotype strings")
    pr.add_argument("lut")
    pr.add_argument("genotypes", nargs="+")
    pr.set_defaults(func=cmd_predict)

    i = sub.add_parser("info", help="summary of a table")
    i.add_argument("lut")
    i.set_defaults(func=cmd_info)

    e = sub.add_parser("export-probes", help="write the phone kit: probes, manifest, run_probes.sh")
    e.add_argument("space")
    e.add_argument("--resolution", type=int, default=None)
    e.add_argument("--out", required=True, help="kit folder")
    _add_shape_args(e)
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--runs", type=int, default=50)
    e.add_argument("--warmup", type=int, default=10)
    e.add_argument("--calibration", "--calibration-networks", dest="calibration_networks", type=int,
                   default=DEVICE_CALIBRATION_NETWORKS, metavar="K",
                   help=f"whole networks of the space to time, spread over size and kinds "
                        f"(default {DEVICE_CALIBRATION_NETWORKS})")
    e.add_argument("--networks-only", action="store_true",
                   help="write only the calibration networks (to calibrate a host table), no probes")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=cmd_export)

    g = sub.add_parser("ingest", help="benchmark_model logs -> table")
    g.add_argument("paths", nargs="+", help="kit folder, logs folder, or <key>.log files")
    g.add_argument("--out", required=True)
    g.add_argument("--manifest", default=None)
    g.add_argument("--device", default=None, help="device name (overrides logs/device.txt)")
    g.add_argument("--cpu", default=None, help="CPU/SoC name")
    g.add_argument("--threads", type=int, default=None)
    g.set_defaults(func=cmd_ingest)

    c = sub.add_parser("calibrate", help="host table + whole networks timed on a device -> device table")
    c.add_argument("host_lut", help="host table of the space (python -m latency build)")
    c.add_argument("measurements", help="ingest's measurements.json, an ingested table, or a JSON list of "
                                        "{genotype, measured_ms}")
    c.add_argument("--out", required=True, help="device table JSON")
    c.add_argument("--kinds", default=DEFAULT_KINDS,
                   help=f"what gets its own factor: one, block, kernel, kernel-se, kernel-se-stride, ..., each with "
                        f"an optional +weights (a term per million weights); default {DEFAULT_KINDS}")
    c.add_argument("--ridge", default="auto", help="shrinkage toward one scale: auto (leave-one-out) or a number")
    c.add_argument("--overhead", choices=("auto", "on", "off"), default="auto",
                   help="fit a constant per-network overhead (auto: when leave-one-out says it helps)")
    c.add_argument("--networks", type=int, default=None, metavar="K",
                   help="fit on the first K measurements, score the others as held out")
    c.add_argument("--space", default=None, help="space the networks must belong to (default: the host table's)")
    c.add_argument("--json", default=None, help="write factors, errors and per-network rows here")
    c.set_defaults(func=cmd_calibrate)

    o = sub.add_parser("import-ofa", help="convert a Once-for-All / ProxylessNAS YAML table")
    o.add_argument("file")
    o.add_argument("--out", required=True)
    o.add_argument("--resolution", type=int, default=None, help="record this resolution if the file has no stem")
    o.set_defaults(func=cmd_import_ofa)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; known errors become one line on stderr and exit status 2."""
    from search_space.genotype import GenotypeError
    from search_space.space import SpaceError

    from .errors import LatencyTableError, RuntimeMissingError

    a = parser().parse_args(argv)
    try:
        return a.func(a)
    except (LatencyTableError, RuntimeMissingError, SpaceError, GenotypeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (a table being built is saved and resumes on the next run)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
