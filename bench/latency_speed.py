"""How fast latency predictions and an on-the-fly table are, on one core.

Predictions: a made-up entry for every key of ``configs/space_mnas.yaml`` at 224 (no runtime
needed); baseline ``LatencyTable.predict`` (keys derived on every call), candidate the search's
``latency.Predictor`` on fresh genotypes (no cache hits), then on repeats (cache hits).
``--build`` also times the on-the-fly table of ``configs/space_digits.yaml`` (needs LiteRT).

    python bench/latency_speed.py [--n 5000] [--build]
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from latency import LatencyTable, Predictor  # noqa: E402 - after the path set-up
from latency.keys import INVOKE_KEY, space_specs  # noqa: E402
from search_space.space import load_space  # noqa: E402


def made_up_table(space_path: Path, resolution: int) -> LatencyTable:
    """A table with a plausible entry for every key of a space."""
    t = LatencyTable(meta={"resolution": resolution, "num_classes": 1000, "in_channels": 3})
    for i, s in enumerate(space_specs(load_space(space_path), resolution, 1000, 3)):
        t.set(s.key, {"median_ms": 0.01 if s.key == INVOKE_KEY else 0.1 + (i % 7) * 0.05, "count": 5})
    return t


def rate(fn, genotypes) -> float:
    """Calls per second of fn over the genotypes."""
    t0 = time.perf_counter()
    for g in genotypes:
        fn(g)
    return len(genotypes) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000, help="genotypes to predict")
    ap.add_argument("--build", action="store_true", help="also time the digits space's on-the-fly table")
    a = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    space = ROOT / "configs" / "space_mnas.yaml"
    table = made_up_table(space, 224)
    rng = random.Random(0)
    sp = load_space(space)
    gs = [sp.sample(rng) for _ in range(a.n)]
    base = rate(table.predict, gs)
    predict = Predictor(table)
    cold = rate(predict, gs)
    warm = rate(predict, gs)
    print(f"space_mnas at 224, {len(table)} entries, {a.n} genotypes, one core")
    print(f"  baseline LatencyTable.predict : {base:10.0f} predictions/s")
    print(f"  Predictor, fresh genotypes    : {cold:10.0f} predictions/s  ({cold / base:.2f}x)")
    print(f"  Predictor, repeated genotypes : {warm:10.0f} predictions/s  ({warm / base:.2f}x)")
    if a.build:
        from latency import load_predictor

        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            load_predictor(None, str(ROOT / "configs" / "space_digits.yaml"), 16, cache_dir=Path(d), num_classes=10)
            s = time.perf_counter() - t0
            n = len(LatencyTable.load(Path(d) / "lut.json"))
        print(f"  on-the-fly table of space_digits at 16: {n} entries in {s:.1f} s")


if __name__ == "__main__":
    main()
