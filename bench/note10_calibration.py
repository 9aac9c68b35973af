"""Device calibration scored on real phone data: Once-for-All's Samsung Note10 tables.

A network made of Note10-covered blocks has a known Note10 latency (the sum of its entries). The
bench samples networks of a space, gets each one's Note10 latency and its host-table parts, fits
the device calibration (`latency.calibrate`) on K of them and scores the share within +-10% on
all the others, for several random draws of the K, next to the plain host table with one scale
fitted on the same K. Only the Note10-covered entries of a network are scored (both sides sum
the same keys); with a space whose every entry maps (the MobileNetV3 space) that is the whole
network.

    python -m latency build configs/space_mbv3.yaml --resolution 224 --out mbv3_224.json --threads 1
    python bench/note10_calibration.py --host mbv3_224.json [--space configs/space_mbv3.yaml] [--kinds kernel-se]

Skips with a message (exit 0) when ../shared (the Note10 tables) is absent.
"""
from __future__ import annotations

import argparse
import platform
import random
import sys
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from latency.calibrate import DEFAULT_KINDS, design, error_stats, loo, one_scale, select_and_fit, spread_genotypes  # noqa: E402
from latency.keys import genotype_keys  # noqa: E402
from latency.kinds import KINDS  # noqa: E402
from latency.ofa import import_ofa, load_ofa_yaml  # noqa: E402
from latency.table import LatencyTable  # noqa: E402
from latency.validate import table_space  # noqa: E402
from search_space.space import load_space  # noqa: E402

NOTE10 = ROOT.parent / "shared" / "datasets" / "ofa_note10"


def sample_networks(space, n: int, seed: int) -> list:
    """Up to n distinct members of the space (fewer when the space is smaller)."""
    rng = random.Random(seed)
    seen: dict[str, object] = {}
    for _ in range(n * 20):
        g = space.sample(rng)
        seen.setdefault(g.to_string(), g)
        if len(seen) >= n:
            break
    return list(seen.values())


def main(argv: list[str] | None = None) -> int:
    """Run the bench; print the table of shares within +-10% vs K."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--space", default=None, help="space to sample (default: the one the host table records)")
    p.add_argument("--host", required=True, help="host table of the space (python -m latency build ...)")
    p.add_argument("--note10", default=None, help="OFA Note10 YAML (default: ../shared/... at the host's resolution)")
    p.add_argument("--networks", type=int, default=300, help="networks sampled (fit + test)")
    p.add_argument("--ks", type=int, nargs="+", default=[5, 10, 20])
    p.add_argument("--draws", type=int, default=20, help="random draws of the K per K")
    p.add_argument("--kinds", choices=KINDS, default=DEFAULT_KINDS)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    host = LatencyTable.load(a.host)
    res = host.resolution
    note10_file = Path(a.note10) if a.note10 else NOTE10 / f"{res}_lookup_table.yaml"
    if not note10_file.is_file():
        print(f"skipped: no Note10 table at {note10_file} (needs ../shared/datasets/ofa_note10)")
        return 0
    note10, rep = import_ofa(load_ofa_yaml(note10_file), source=str(note10_file))
    space = load_space(a.space) if a.space else table_space(host)
    gs = sample_networks(space, a.networks, a.seed)
    # The kit's own choice of K networks (spread over size and kinds) joins the pool, to be scored too.
    spread = {k: [g.to_string() for g in spread_genotypes(space, k, res, host.num_classes, host.in_channels)]
              for k in a.ks}
    have = {g.to_string() for g in gs}
    for k in a.ks:
        for g in spread_genotypes(space, k, res, host.num_classes, host.in_channels):
            if g.to_string() not in have:
                have.add(g.to_string())
                gs.append(g)
    key_lists, phone, names = [], [], []
    covered_share = []
    for g in gs:
        keys = genotype_keys(g, res, host.num_classes, host.in_channels)
        cov = [k for k in keys if k in note10]
        if not cov:
            continue
        key_lists.append(cov)
        names.append(g.to_string())
        phone.append(note10.sum_keys(cov, calibrated=False))
        covered_share.append(len(cov) / len(keys))
    kinds, parts, totals = design(host, key_lists, a.kinds)
    y = np.array(phone)
    n = len(y)
    print(f"Note10 {note10_file.name}: {rep.lines()[0]}; host table {a.host} ({host.device.get('cpu')}, "
          f"{host.device.get('threads')} thread(s), statistic {host.statistic})")
    print(f"{n} distinct networks of {space.source} at {res}; scored on the Note10-covered entries: "
          f"{100 * float(np.mean(covered_share)):.0f}% of each network's entries on average; "
          f"Note10 {y.min():.2f}-{y.max():.2f} ms; kinds ({a.kinds}): {', '.join(kinds)}")
    ratio = y / totals
    print(f"Note10 / host ratio over the networks: {ratio.min():.2f}-{ratio.max():.2f} "
          f"(max/min {ratio.max() / ratio.min():.2f})")
    rng = np.random.default_rng(a.seed)
    print()
    print("| K | draws | per-kind: within +-10% on the rest (mean, min-max) | mean abs error | "
          "one scale: within +-10% | mean abs error | per-kind LOO estimate (within +-10%) |")
    print("|---|---|---|---|---|---|---|")
    for k in a.ks:
        if k >= n:
            print(f"| {k} | - | K >= {n} networks | | | | |")
            continue
        w_kind, w_one, e_kind, e_one, w_loo = [], [], [], [], []
        for _ in range(a.draws):
            idx = rng.permutation(n)
            fit_i, test_i = idx[:k], idx[k:]
            f = select_and_fit(parts[fit_i], y[fit_i], kinds)
            sk = error_stats(f.predict(parts[test_i]), y[test_i])
            s1 = error_stats(one_scale(totals[fit_i], y[fit_i]) * totals[test_i], y[test_i])
            w_kind.append(sk["within_10"])
            e_kind.append(sk["mape_pct"])
            w_one.append(s1["within_10"])
            e_one.append(s1["mape_pct"])
            w_loo.append(error_stats(loo(parts[fit_i], y[fit_i], kinds), y[fit_i])["within_10"])
        print(f"| {k} | {a.draws} | {100 * np.mean(w_kind):.1f}% ({100 * min(w_kind):.0f}-{100 * max(w_kind):.0f}%) "
              f"| {np.mean(e_kind):.2f}% | {100 * np.mean(w_one):.1f}% ({100 * min(w_one):.0f}-{100 * max(w_one):.0f}%) "
              f"| {np.mean(e_one):.2f}% | {100 * np.mean(w_loo):.1f}% |")
    # The kit's own choice (spread over size and kinds), one draw per K.
    index = {name: i for i, name in enumerate(names)}
    for k in a.ks:
        chosen = [index.get(name) for name in spread[k]]
        if any(c is None for c in chosen) or k >= n:
            continue
        fit_i = np.array(chosen)
        test_i = np.setdiff1d(np.arange(n), fit_i)
        f = select_and_fit(parts[fit_i], y[fit_i], kinds)
        sk = error_stats(f.predict(parts[test_i]), y[test_i])
        s1 = error_stats(one_scale(totals[fit_i], y[fit_i]) * totals[test_i], y[test_i])
        print(f"| {k} (export-probes' spread choice) | 1 | {100 * sk['within_10']:.1f}% | {sk['mape_pct']:.2f}% "
              f"| {100 * s1['within_10']:.1f}% | {s1['mape_pct']:.2f}% | |")
    print(f"\n({platform.node()}, {date.today().isoformat()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
