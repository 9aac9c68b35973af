"""How many genotypes per second the pure-Python cost model scores, on one core.

Baseline: building each network on the meta device and counting with forward hooks (what a
torch-based counter does). Candidate: `search_space.cost`, first with an empty layer cache, then
warm. Usage: python bench/cost_speed.py [--n 50000] [--space configs/space_mnas.yaml]
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search_space import cost, layer_cost, load_space  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--baseline-n", type=int, default=30)
    p.add_argument("--space", default=str(Path(__file__).resolve().parent.parent / "configs" / "space_mnas.yaml"))
    p.add_argument("--resolution", type=int, default=224)
    a = p.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    space = load_space(a.space)
    rng = random.Random(0)
    genotypes = [space.sample(rng) for _ in range(a.n)]

    import torch

    from search_space.model import build_model, count_macs

    torch.set_num_threads(1)
    t = time.perf_counter()
    for g in genotypes[: a.baseline_n]:
        with torch.device("meta"):
            m = build_model(g)
        count_macs(m, (3, a.resolution, a.resolution), device="meta")
    base_rate = a.baseline_n / (time.perf_counter() - t)

    layer_cost.cache_clear()
    t = time.perf_counter()
    for g in genotypes:
        cost(g, a.resolution)
    cold = a.n / (time.perf_counter() - t)
    t = time.perf_counter()
    for g in genotypes:
        cost(g, a.resolution)
    warm = a.n / (time.perf_counter() - t)
    print(f"space {a.space} at {a.resolution}, one core, {a.n} random genotypes")
    print(f"baseline (torch build on meta + hooks): {base_rate:12,.1f} genotypes/s")
    print(f"cost model, empty cache:                 {cold:12,.1f} genotypes/s  ({cold / base_rate:,.0f}x)")
    print(f"cost model, warm cache:                  {warm:12,.1f} genotypes/s  ({warm / base_rate:,.0f}x)")
    print(f"layer cache entries: {layer_cost.cache_info().currsize}")


if __name__ == "__main__":
    main()
