"""How fast does a candidate evaluate on the CPU at each evaluation batch size?

    python bench/eval_batch.py [--space configs/space_cifar_elastic.yaml] [--images 2000] [--members 4]
                               [--sizes 1024 256 128 64 32] [--repeats 3] [--threads 1]

Times `nas.train.accuracy` (the validation pass of the standard and the supernet evaluators) on
random images at the space's resolution, for a few random members, one torch thread, channels_last
as the trainers use it. The batch sizes are visited in turn, `--repeats` times, so a change of the
machine's speed touches all of them alike; per size the median over repeats of the mean seconds per
member, and its speed against the first size (the old fixed default, 1,024).
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    """Print seconds per member and the ratio to the first batch size."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", type=Path, default=ROOT / "configs" / "space_cifar_elastic.yaml")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 256, 128, 64, 32])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    import torch

    from nas.config import TrainConfig
    from nas.data import Splits
    from nas.train import accuracy
    from search_space import SearchSpace
    from search_space.model import build_model

    torch.set_num_threads(a.threads)
    space = SearchSpace.from_yaml(a.space)
    res = space.resolution
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (a.images, 3, res, res), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (a.images,), generator=gen)
    splits = Splits(x_train=x[:1], y_train=y[:1], x_val=x, y_val=y, mean=(0.5,) * 3, std=(0.25,) * 3, num_classes=10,
                    resolution=res)
    rng = random.Random(2024)
    models = []
    for _ in range(a.members):
        m = build_model(space.sample(rng), num_classes=10).eval().to(memory_format=torch.channels_last)
        models.append(m)
    dev = torch.device("cpu")
    times: dict[int, list[float]] = {s: [] for s in a.sizes}
    for s in a.sizes:  # warm-up: allocator and kernels
        accuracy(models[0], x[:256], y[:256], splits, TrainConfig(eval_batch_size=s), dev)
    for _ in range(a.repeats):
        for s in a.sizes:
            cfg = TrainConfig(eval_batch_size=s)
            t0 = time.perf_counter()
            for m in models:
                accuracy(m, x, y, splits, cfg, dev)
            times[s].append((time.perf_counter() - t0) / len(models))
    base = statistics.median(times[a.sizes[0]])
    print(f"{a.members} random members of {a.space.name}, {a.images} images at {res}x{res}, {a.threads} thread(s), "
          f"channels_last; median of {a.repeats} rounds")
    print(f"{'eval batch':>10} {'s / member':>11} {'images/s':>9} {'speed vs ' + str(a.sizes[0]):>14}")
    for s in a.sizes:
        t = statistics.median(times[s])
        print(f"{s:>10} {t:>11.2f} {a.images / t:>9.0f} {base / t:>13.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
