"""Command line: build / validate / predict with latency tables, and the phone kit.

    python -m latency build configs/space_mnas.yaml --resolution 224 --out lut.json [--threads 1]
    python -m latency validate lut.json --samples 100
    python -m latency predict lut.json GENOTYPE...
    python -m latency info lut.json
    python -m latency export-probes configs/space_mnas.yaml --resolution 224 --out kit/
    python -m latency ingest kit/ --out phone_lut.json
    python -m latency import-ofa mobile_lut.yaml --out ofa_lut.json

Errors (missing file, foreign table, ...) print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

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
    return Settings(threads=a.threads, warmup=a.warmup, runs=a.runs, rounds=a.rounds, pin=not a.no_pin,
                    statistic=a.statistic, passes=a.passes)


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
                        overwrite=a.overwrite, log=print)
    dt = time.perf_counter() - t0
    print(f"{a.out}: {len(table)} entries for {space.source} at {table.resolution} "
          f"({in_channels} input channel(s), {num_classes} classes; "
          f"{table.device.get('cpu')}, {table.device.get('runtime')}, {table.device.get('threads')} thread(s)); "
          f"invoke overhead {table.overhead_ms * 1000:.1f} us, calibration scale {table.scale:.4f}; {dt:.1f} s")
    return 0


def cmd_validate(a: argparse.Namespace) -> int:
    from .build import resolve_space
    from .table import LatencyTable
    from .validate import validate

    _check_ints(a, samples=(1, 100_000), **_TIMING_RANGES)
    table = LatencyTable.load(a.lut)
    space = resolve_space(a.space) if a.space else None
    settings = None
    if any(v is not None for v in (a.threads, a.warmup, a.runs, a.rounds, a.passes)) or a.no_pin:
        from .measure import Settings
        from .predictor import table_settings

        base = table_settings(table)
        settings = Settings(threads=a.threads or base.threads, warmup=a.warmup or base.warmup,
                            runs=a.runs or base.runs, rounds=a.rounds or base.rounds, pin=not a.no_pin,
                            statistic=base.statistic, passes=a.passes or base.passes)
    t0 = time.perf_counter()
    rep = validate(table, samples=a.samples, space=space, settings=settings, seed=a.seed, progress=not a.quiet)
    for line in rep.lines():
        print(line)
    print(f"({time.perf_counter() - t0:.1f} s; {table.device.get('cpu')}, {table.resolution}x{table.resolution})")
    if a.json:
        Path(a.json).write_text(json.dumps(rep.to_dict(), indent=1) + "\n")
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    from search_space.genotype import parse

    from .table import LatencyTable

    table = LatencyTable.load(a.lut)
    for text in a.genotypes:
        print(f"{table.predict(parse(text)):.4f} ms  {text}")
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from .table import LatencyTable

    t = LatencyTable.load(a.lut)
    kinds: dict[str, int] = {}
    for k in t.entries:
        kinds[k.split("-", 1)[0]] = kinds.get(k.split("-", 1)[0], 0) + 1
    print(f"{a.lut}: {len(t)} entries {kinds}")
    print(f"resolution {t.resolution}, classes {t.num_classes}, input channels {t.in_channels}, "
          f"invoke overhead {t.overhead_ms * 1000:.2f} us, "
          f"calibration scale {t.scale:.4f}")
    print("device: " + json.dumps(t.device))
    print("measurement: " + json.dumps(t.meta.get("measurement", {})))
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from .probes import export_probes

    _check_ints(a, **{k: _TIMING_RANGES[k] for k in ("threads", "runs", "warmup")})
    in_channels, num_classes = _shape(a)
    export_probes(a.space, a.out, resolution=a.resolution, num_classes=num_classes, in_channels=in_channels,
                  threads=a.threads, runs=a.runs, warmup=a.warmup, calibration_networks=a.calibration_networks,
                  progress=not a.quiet, log=print)
    print(f"next: {Path(a.out) / 'run_probes.sh'} adb   (or: local --benchmark PATH), then "
          f"python -m latency ingest {a.out} --out lut.json")
    return 0


def cmd_ingest(a: argparse.Namespace) -> int:
    from .ingest import ingest

    _check_ints(a, threads=_TIMING_RANGES["threads"])
    device = {"model": a.device, "cpu": a.cpu} if (a.device or a.cpu) else None
    table, rep = ingest(a.paths, manifest=a.manifest, device=device, threads=a.threads)
    return _save(table, rep.lines(), a.out, f", calibration scale {table.scale:.4f}")


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
    b.add_argument("--calibration-networks", type=int, default=10,
                   help="whole networks timed to fit the table's scale (0: none)")
    b.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_timing_args(b)
    b.set_defaults(func=cmd_build)

    v = sub.add_parser("validate", help="compare predictions with end-to-end measurements")
    v.add_argument("lut")
    v.add_argument("--samples", type=int, default=100)
    v.add_argument("--space", default=None, help="space to sample (default: the one recorded in the table)")
    v.add_argument("--seed", type=int, default=2024)
    v.add_argument("--json", default=None, help="write per-network rows and statistics here")
    v.add_argument("--quiet", action="store_true")
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
    e.add_argument("--calibration-networks", type=int, default=10)
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
