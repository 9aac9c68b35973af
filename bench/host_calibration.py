"""Does a per-kind calibration predict this host better than the table's one scale?

Scores calibrations of a host table against whole networks timed on the same host, e.g. the rows
of ``python -m latency validate LUT --samples 100 --json rows.json`` (refused rows are left out).
For several random draws of K networks, fits on the K and scores the share within +-10% on all
the others: the one-scale fit, the per-kind fit of `latency.calibrate` at each granularity, and
(baseline, no fit) the table's own build-time calibration.

    python bench/host_calibration.py LUT rows.json [more_rows.json ...] [--ks 10 20 30] [--draws 20]
        [--entry-statistic cold_p10]

`--entry-statistic` reads the table's entries at another stored statistic (`cold_p10`: each
block's runs with its weights evicted, as inside a network), its calibration refitted to it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latency.build import refit_calibration  # noqa: E402
from latency.calibrate import design, error_stats, one_scale, select_and_fit  # noqa: E402
from latency.table import ENTRY_STATISTICS, LatencyTable  # noqa: E402
from search_space.genotype import parse  # noqa: E402

KINDS = ("kernel", "kernel-se", "kernel-se-size", "kernel-size")


def main(argv: list[str] | None = None) -> int:
    """Print, per K, the share within +-10% on held-out networks for each calibration."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("lut", help="host latency table")
    p.add_argument("rows", nargs="+", help="validate --json files measured on the same host")
    p.add_argument("--ks", type=int, nargs="+", default=[10, 20, 30])
    p.add_argument("--draws", type=int, default=20)
    p.add_argument("--kinds", nargs="+", default=list(KINDS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--entry-statistic", choices=ENTRY_STATISTICS, default=None,
                   help="read entries at this statistic (default: the table's)")
    a = p.parse_args(argv)
    table = LatencyTable.load(a.lut)
    if a.entry_statistic and a.entry_statistic != table.entry_statistic:
        table.meta["measurement"]["entry_statistic"] = a.entry_statistic
        refit_calibration(table)
    print(f"entries read at {table.entry_statistic}")
    rows: dict[str, float] = {}
    for f in a.rows:
        for r in json.loads(Path(f).read_text())["rows"]:
            if not r.get("refused"):
                rows.setdefault(r["genotype"], r["measured_ms"])
    names = list(rows)
    y = np.array([rows[g] for g in names])
    keys = [table.keys_for(parse(g)) for g in names]
    built = np.array([table.sum_keys(k) for k in keys])
    n = len(y)
    print(f"{a.lut}: {len(table)} entries at {table.resolution}, {table.device.get('cpu')}; {n} networks "
          f"of {y.min():.3f}-{y.max():.3f} ms")
    print(f"table as built (scale {table.scale:.4f}): within +-10% {100 * error_stats(built, y)['within_10']:.1f}%, "
          f"mean abs error {error_stats(built, y)['mape_pct']:.1f}%")
    fits = {k: design(table, keys, k) for k in a.kinds}
    rng = np.random.default_rng(a.seed)
    print()
    print("| K | one scale | " + " | ".join(f"per-kind `{k}`" for k in a.kinds) + " |")
    print("|---:|---:|" + "---:|" * len(a.kinds))
    for k in a.ks:
        if k >= n - 5:
            continue
        one, per = [], {kind: [] for kind in a.kinds}
        for _ in range(a.draws):
            idx = rng.permutation(n)
            fit_i, test_i = idx[:k], idx[k:]
            _, _, totals = fits[a.kinds[0]]
            s = one_scale(totals[fit_i], y[fit_i])
            one.append(error_stats(s * totals[test_i], y[test_i])["within_10"])
            for kind in a.kinds:
                kn, parts, _ = fits[kind]
                f = select_and_fit(parts[fit_i], y[fit_i], kn)
                per[kind].append(error_stats(f.predict(parts[test_i]), y[test_i])["within_10"])
        cells = [f"{100 * np.mean(one):.1f}%"] + [f"{100 * np.mean(per[kind]):.1f}%" for kind in a.kinds]
        print(f"| {k} | " + " | ".join(cells) + " |")
    print(f"\n(share within +-10% on the networks not fitted on, mean over {a.draws} draws)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
