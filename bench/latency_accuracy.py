"""How well host tables predict whole networks, for every shipped space (issue 13's figure).

For each space and resolution: build the table (resumed when present; 60 calibration networks,
per-kind calibration with the weights term kept only when its leave-one-out error beats the one
scale), validate it on 100 other random members (test-retest, noise refused), and print one
row: the share within
+-10% of the table as built, of the one scale alone and of the plain block sum (against the
measurements as measured, `validate`'s default reading), with the noise figures next to them.
Run it on a quiet machine: under load `validate` refuses much of what it measures and says the
figure is not trustworthy. A table built in an earlier period (the host's speed moves over
hours) is re-anchored first with `--recalibrate`.

    python bench/latency_accuracy.py [--only digits@16 mnas@96 ...] [--samples 100] [--out runs/latency_accuracy]
                                     [--recalibrate] [--entry-statistic cold_p10] [--anchor]
                                     [--kinds kernel-se+weights] [--compare-kinds one kernel-se ...]

Each row also gives, from the same measurements, the share within +-10% when the entries are read
at the other reading (warm `p10` or `cold_p10`, each block's runs with its weights evicted as
inside a network), with one scale refitted on the same calibration networks; `--compare-kinds`
adds the share of other calibration models (`one`, `kernel-se`, `+weights`...) refitted on the
same networks (the anchored ones with `--anchor`), so models compare on one set of measurements.

Tables and validation rows stay in --out (resumable; a finished pair is only re-read).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latency.build import CALIBRATION_NETWORKS, build_table, refit_calibration  # noqa: E402 - after the path set-up
from latency.calibrate import error_stats  # noqa: E402
from latency.kinds import DEFAULT_KINDS  # noqa: E402
from latency.measure import Settings, host_metadata  # noqa: E402
from latency.table import ENTRY_STATISTICS, LatencyTable  # noqa: E402
from latency.validate import validate  # noqa: E402
from search_space.genotype import parse  # noqa: E402
from search_space.space import load_space  # noqa: E402

# Cheapest first: every shipped space at its own resolution, then the MnasNet space at the sizes.
TARGETS = ("digits@16", "cifar_oneshot@32", "cifar_elastic@32", "cifar_narrow@32", "cifar@32", "mnas@96", "mbv3@224", "mnas@128",
           "mnas@160", "mnas@224")


def within(pred: np.ndarray, meas: np.ndarray) -> float:
    """Share of networks within +-10%."""
    return float(error_stats(pred, meas)["within_10"])


def other_reading(table, rows: list[dict]) -> tuple[str, float | None]:
    """(the other entry reading, its share within +-10% on `rows` with one scale refitted), from stored values."""
    import copy

    other = "p10" if table.entry_statistic == "cold_p10" else "cold_p10"
    if not all(f"{other}_ms" in e for e in table.entries.values()) or not rows:
        return other, None
    t = LatencyTable(entries=table.entries, meta=copy.deepcopy(table.meta))
    t.meta["measurement"]["entry_statistic"] = other
    refit_calibration(t)
    pred = np.array([t.predict(parse(r["genotype"])) for r in rows])
    return other, within(pred, np.array([r["measured_ms"] for r in rows]))


def refitted(table, rows: list[dict], nets: list[dict], kinds: str) -> float | None:
    """Share within +-10% on `rows` of the table's calibration refitted with `kinds` on `nets` (genotype, measured_ms)."""
    import copy

    if not rows or not nets:
        return None
    t = LatencyTable(entries=table.entries, meta=copy.deepcopy(table.meta))
    t.meta["calibration"]["networks"] = [dict(n) for n in nets]
    refit_calibration(t, kinds)
    pred = np.array([t.predict(parse(r["genotype"])) for r in rows])
    return within(pred, np.array([r["measured_ms"] for r in rows]))


def run_one(target: str, out: Path, samples: int, networks: int, kinds: str, recalibrate: bool = False,
            entry_statistic: str | None = None, anchor: bool = False, compare: tuple[str, ...] = ()) -> dict:
    """Build (or resume) and validate one table; the summary row as a dict."""
    name, res = target.split("@")
    space_path = ROOT / "configs" / f"space_{name}.yaml"
    lut = out / f"{name}_{res}.json"
    rows_path = out / f"{name}_{res}.validate.json"
    t0 = time.perf_counter()
    # a table built earlier is re-anchored to this period before it is validated (docs/latency.md)
    again = recalibrate and lut.exists() and not rows_path.exists()
    table = build_table(load_space(space_path), lut, resolution=int(res), settings=Settings(threads=1),
                        calibration_networks=networks, calibration_kinds=kinds, progress=False, recalibrate=again,
                        entry_statistic=entry_statistic)
    build_s = time.perf_counter() - t0
    if rows_path.exists():
        rep = json.loads(rows_path.read_text())
    else:
        rep = validate(table, samples=samples, progress=False, anchor=anchor).to_dict()
        rows_path.write_text(json.dumps(rep, indent=1) + "\n")
    ok = [r for r in rep["rows"] if not r.get("refused")]
    meas = np.array([r["measured_ms"] for r in ok])
    built = np.array([r["predicted_ms"] for r in ok])
    raw = np.array([r["block_sum_ms"] for r in ok])
    cal = table.meta.get("calibration") or {}
    noise = rep.get("noise") or {}
    other, other_within = other_reading(table, ok)
    # The same measurements, the calibration refitted with other kinds on the same networks
    # (the anchored ones when the validation anchored, else the table's).
    nets = (rep.get("anchor") or {}).get("calibration_networks") or cal.get("networks") or []
    alternatives = {k: refitted(table, ok, nets, k) for k in compare}
    return {"target": target, "entry_statistic": table.entry_statistic, "other_reading": other,
            "other_reading_one_scale": other_within, "entries": len(table), "build_s": round(build_s, 1),
            "built_s": (table.meta.get("build") or {}).get("seconds"), "accepted": len(ok),
            "refused": len(rep["rows"]) - len(ok), "ms": [round(float(meas.min()), 4), round(float(meas.max()), 4)]
            if len(ok) else None, "as_built": within(built, meas) if len(ok) else None,
            "one_scale": within(table.scale * raw, meas) if len(ok) else None,
            "block_sum": within(raw, meas) if len(ok) else None, "per_kind_kept": bool(cal.get("by_kind")),
            "reading": rep.get("reading"), "as_measured": (rep.get("uncorrected") or {}).get("within_10"),
            "run_factor": noise.get("run_factor"), "recalibrated": bool(table.meta.get("calibration_history")),
            "loo": cal.get("leave_one_out"), "median_spread": noise.get("median_spread"),
            "agree_10": noise.get("agree_10"), "reference_drift": noise.get("reference_drift"),
            "network_drift": noise.get("network_drift"), "anchor": {k: v for k, v in (rep.get("anchor") or {}).items()
                                                                    if k != "calibration_networks"} or None,
            "alternatives": alternatives, "trustworthy": rep.get("trustworthy")}


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def main(argv: list[str] | None = None) -> int:
    """Build, validate and summarize each target."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", default=list(TARGETS), help=f"targets (default: {' '.join(TARGETS)})")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--networks", type=int, default=CALIBRATION_NETWORKS,
                   help="calibration networks per table (the weights term needs more than 30)")
    p.add_argument("--kinds", default=DEFAULT_KINDS,
                   help="calibration granularity of latency.kinds ('one': one scale; '+weights': the weights term)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "latency_accuracy")
    p.add_argument("--recalibrate", action="store_true",
                   help="time a built table's calibration networks again before validating it")
    p.add_argument("--entry-statistic", choices=ENTRY_STATISTICS, default=None,
                   help="what the tables' entries are read at (cold_p10: weights evicted, as inside a network)")
    p.add_argument("--anchor", action="store_true",
                   help="validate with the calibration networks timed in the same passes (validate --anchor)")
    p.add_argument("--compare-kinds", nargs="*", default=[],
                   help="also score these calibration kinds, refitted on the same networks (e.g. one kernel-se+weights)")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    host = host_metadata(1)
    print(f"{host['cpu']}, {host.get('runtime')}, 1 thread; {a.samples} networks per table, {a.networks} "
          f"calibration networks, kinds {a.kinds}")
    print("| space @ resolution | entries | networks (ms) | refused | within +-10%: as built | one scale | "
          "block sum | other reading, one scale | as measured (no drift correction) | "
          "per-kind kept (LOO within +-10%: per kind / one scale) | "
          "test-retest median | drift between passes: median network / reference | reference vs calibration | "
          "verdict |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|")
    for target in a.only:
        r = run_one(target, a.out, a.samples, a.networks, a.kinds, a.recalibrate, a.entry_statistic, a.anchor,
                    tuple(a.compare_kinds))
        (a.out / f"{target.replace('@', '_')}.summary.json").write_text(json.dumps(r, indent=1) + "\n")
        loo = r["loo"] or {}
        kept = ("yes" if r["per_kind_kept"] else "no") + (
            f" ({pct(loo['per_kind']['within_10'])} / {pct(loo['one_scale']['within_10'])})" if loo else "")
        ms = f"{r['ms'][0]:.3g}-{r['ms'][1]:.3g}" if r["ms"] else "-"
        speed = f"{100 * (1 / r['run_factor'] - 1):+.0f}%" if r.get("run_factor") else "-"
        print(f"| {target} | {r['entries']} | {ms} | {r['refused']} | **{pct(r['as_built'])}** | "
              f"{pct(r['one_scale'])} | {pct(r['block_sum'])} | {r['other_reading']} {pct(r['other_reading_one_scale'])} | "
              f"{pct(r.get('as_measured'))} | {kept} | "
              f"{pct(r['median_spread'])} | {pct(r.get('network_drift'))} / {pct(r['reference_drift'])} | {speed} | "
              f"{'trustworthy' if r['trustworthy'] else 'NOT TRUSTWORTHY'} |", flush=True)
        if r["anchor"]:
            print(f"  {target}: anchored on {r['anchor']['networks']} of {r['anchor']['timed']} calibration networks, "
                  f"scale {r['anchor']['scale']:.4f} (the table's {r['anchor']['table_scale']:.4f})")
        for k, v in r["alternatives"].items():
            print(f"  {target}: calibration kinds {k}, refitted on the same networks: {pct(v)} within +-10%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
