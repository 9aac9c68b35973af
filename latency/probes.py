"""The phone kit: every probe of a space as a .tflite file, a manifest, and a benchmark_model script."""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from search_space.files import atomic_write_bytes
from search_space.space import SearchSpace

from .build import resolve_space, space_meta
from .calibrate import spread_genotypes
from .errors import LatencyTableError
from .keys import space_specs
from .kinds import DEVICE_CALIBRATION_NETWORKS

MANIFEST_FORMAT = "hwnas-latency-probes"
MANIFEST_VERSION = 1
PROBES_DIR = "probes"
NETWORKS_DIR = "networks"
LOGS_DIR = "logs"


def export_probes(space: SearchSpace | str | Path, out_dir: str | Path, resolution: int | None = None,
                  num_classes: int = 1000, in_channels: int = 3, threads: int = 1, runs: int = 50,
                  warmup: int = 10, calibration_networks: int = DEVICE_CALIBRATION_NETWORKS, progress: bool = True,
                  log: Callable[[str], None] | None = None, networks_only: bool = False) -> dict[str, Any]:
    """Write probes/<key>.tflite, networks/calib-NN.tflite, manifest.json and run_probes.sh; returns the manifest.

    The calibration networks are whole members of the space spread over size and block kinds
    (`latency.calibrate.spread_genotypes`); with `networks_only` no probe is written, for a kit
    that only calibrates a host table (`python -m latency calibrate`). Existing files are kept
    (an interrupted export resumes).
    """
    from tqdm import tqdm

    from .emit import genotype_tflite, spec_tflite

    space = resolve_space(space) if not isinstance(space, SearchSpace) else space
    res = int(resolution or space.resolution)
    out = Path(out_dir)
    if networks_only and calibration_networks < 1:
        raise LatencyTableError("--networks-only needs --calibration K with K >= 1: the kit would be empty")
    if not networks_only:
        (out / PROBES_DIR).mkdir(parents=True, exist_ok=True)
    (out / NETWORKS_DIR).mkdir(parents=True, exist_ok=True)
    specs = [] if networks_only else space_specs(space, res, num_classes, in_channels)
    probes = []
    for s in tqdm(specs, unit="probe", disable=not progress, desc="export probes"):
        rel = f"{PROBES_DIR}/{s.key}.tflite"  # keys are file-name safe by design
        _write_once(out / rel, lambda s=s: spec_tflite(s))
        probes.append({"key": s.key, "kind": s.kind, "file": rel})
    networks = []
    for i, g in enumerate(spread_genotypes(space, calibration_networks, res, num_classes, in_channels)):
        name = f"calib-{i:02d}"
        rel = f"{NETWORKS_DIR}/{name}.tflite"
        _write_once(out / rel, lambda g=g: genotype_tflite(g, res, num_classes, in_channels=in_channels))
        networks.append({"name": name, "file": rel, "genotype": g.to_string()})
    manifest = {
        "format": MANIFEST_FORMAT, "schema_version": MANIFEST_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "resolution": res, "num_classes": num_classes, "in_channels": in_channels,
        "space": space_meta(space),
        "benchmark": {"threads": threads, "runs": runs, "warmup": warmup},
        "probes": probes, "networks": networks,
        "calibration": {"networks": len(networks), "choice": "spread over size and block kinds",
                        "networks_only": networks_only},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    script = out / "run_probes.sh"
    script.write_text(run_script(threads, runs, warmup))
    script.chmod(0o755)
    if log:
        size = sum(f.stat().st_size for d in (PROBES_DIR, NETWORKS_DIR) for f in (out / d).glob("*.tflite"))
        log(f"wrote {len(probes)} probes and {len(networks)} calibration networks "
            f"({size / 1e6:.1f} MB) to {out}")
    return manifest


def _write_once(path: Path, make: Callable[[], bytes]) -> None:
    if path.is_file() and path.stat().st_size > 0:
        return
    atomic_write_bytes(path, make())


def run_script(threads: int, runs: int, warmup: int) -> str:
    """The shell script that runs benchmark_model over the kit, on Android via adb or locally."""
    return _SCRIPT.replace("@THREADS@", str(threads)).replace("@RUNS@", str(runs)).replace("@WARMUP@", str(warmup))


_SCRIPT = r"""#!/usr/bin/env bash
# Run TFLite's benchmark_model over every probe and calibration network of this kit; one log per
# model in logs/ (an existing non-empty log is skipped, so an interrupted run resumes).
#
#   ./run_probes.sh adb   [--serial SERIAL] [--benchmark /data/local/tmp/benchmark_model]
#   ./run_probes.sh local --benchmark /path/to/benchmark_model
#
# adb: pushes the kit to $DEVICE_DIR, runs benchmark_model there (push the binary first, e.g.
# `adb push benchmark_model /data/local/tmp/ && adb shell chmod +x /data/local/tmp/benchmark_model`),
# and pulls the logs. local: runs a benchmark_model binary of this (Linux) board.
# Options: --threads N --runs N --warmup N --cpu-mask HEX (taskset, e.g. f0 = big cores)
# Then: python -m latency ingest <this folder> --out lut.json (a calibration-only kit: --out
# measurements.json, then python -m latency calibrate HOST_LUT measurements.json --out device_lut.json)
set -euo pipefail
cd "$(dirname "$0")"

MODE="${1:-adb}"; [ $# -gt 0 ] && shift
THREADS=@THREADS@; RUNS=@RUNS@; WARMUP=@WARMUP@
SERIAL=""; CPU_MASK=""; BENCH=""
DEVICE_DIR="${DEVICE_DIR:-/data/local/tmp/hwnas_probes}"
while [ $# -gt 0 ]; do
  case "$1" in
    --serial) SERIAL="$2"; shift 2 ;;
    --benchmark) BENCH="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --cpu-mask) CPU_MASK="$2"; shift 2 ;;
    *) echo "run_probes.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
# min_secs=0 so that exactly RUNS timed runs are made (the tool's default runs for at least 1 s).
FLAGS="--num_threads=$THREADS --num_runs=$RUNS --warmup_runs=$WARMUP --min_secs=0 --warmup_min_secs=0 --use_xnnpack=true"
PREFIX=""
[ -n "$CPU_MASK" ] && PREFIX="taskset $CPU_MASK "
mkdir -p logs
MODELS=$(ls probes/*.tflite networks/*.tflite 2>/dev/null || true)
TOTAL=$(echo "$MODELS" | grep -c . || true)

# Per mode: what describes the device, and bench_one MODEL NAME, which writes logs/NAME.log.
case "$MODE" in
  adb)
    ADB="adb"; [ -n "$SERIAL" ] && ADB="adb -s $SERIAL"
    BENCH="${BENCH:-/data/local/tmp/benchmark_model}"
    $ADB shell "mkdir -p $DEVICE_DIR/probes $DEVICE_DIR/networks $DEVICE_DIR/logs"
    for d in probes networks; do  # a calibration-only kit has no probes/
      if [ -d "$d" ]; then $ADB push "$d" "$DEVICE_DIR/" >/dev/null; fi
    done
    prop() { $ADB shell getprop "$1" | tr -d '\r' || true; }  # a missing property is no reason to stop
    DEVICE_INFO="model=$(prop ro.product.model)
soc=$(prop ro.soc.model)
board=$(prop ro.board.platform)
android=$(prop ro.build.version.release)
abi=$(prop ro.product.cpu.abi)"
    bench_one() {
      local rc=0
      $ADB shell "$PREFIX$BENCH --graph=$DEVICE_DIR/$1 $FLAGS > $DEVICE_DIR/logs/$2.log 2>&1" || rc=$?
      $ADB pull "$DEVICE_DIR/logs/$2.log" "logs/$2.log" >/dev/null  # a failed run's log says why
      return $rc
    }
    ;;
  local)
    if [ -z "$BENCH" ]; then echo "run_probes.sh local: --benchmark PATH is required" >&2; exit 2; fi
    DEVICE_INFO="model=$(uname -n)
cpu=$( (grep -m1 -i 'model name' /proc/cpuinfo || grep -m1 -i '^hardware' /proc/cpuinfo || uname -m) | sed 's/.*: //')
abi=$(uname -m)"
    bench_one() { $PREFIX"$BENCH" --graph="$1" $FLAGS > "logs/$2.log" 2>&1; }
    ;;
  *) echo "run_probes.sh: mode must be adb or local, got $MODE" >&2; exit 2 ;;
esac
printf '%s\nthreads=%s\n' "$DEVICE_INFO" "$THREADS" > logs/device.txt
i=0
for f in $MODELS; do
  i=$((i + 1)); name=$(basename "$f" .tflite)
  [ -s "logs/$name.log" ] && continue
  echo "[$i/$TOTAL] $name"
  bench_one "$f" "$name" || echo "  benchmark_model failed for $name (see its log)" >&2
done
echo "logs in $(pwd)/logs; next: python -m latency ingest $(pwd) --out lut.json"
"""
