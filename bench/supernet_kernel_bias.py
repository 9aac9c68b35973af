"""How much a supernet favours one kernel size: each study candidate scored with every kernel 3, then 5.

    python bench/supernet_kernel_bias.py --checkpoint docs/data/supernet_study_full/supernet.pt \\
        --config configs/supernet_cifar_elastic.yaml --subset 50000 --spread [--out rows.jsonl]

The candidates are `bench/supernet_study.py`'s (same --seed, --candidates, --spread); everything but
the kernels stays as drawn, and both versions are scored like the supernet evaluator does (extract,
recalibrate BatchNorm, validation split). A supernet whose 3x3 members run the centre of shared 5x5
weights can score 5x5 members higher than training each alone would; the stand-alone side of that
comparison is the study's reference. Skips with a message without CIFAR-10.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DATA = ROOT.parent / "shared" / "datasets" / "cifar10_uint8.npz"


def with_kernel(genotype: str, k: int) -> str:
    """The genotype string with every block's kernel set to `k` (the stem keeps its own)."""
    return re.sub(r"(_r\d+_)k\d+", rf"\g<1>k{k}", genotype)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "supernet_cifar_elastic.yaml")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--subset", type=int, default=50000)
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--spread", action="store_true")
    ap.add_argument("--kernels", type=int, nargs=2, default=[3, 5])
    ap.add_argument("--out", type=Path, help="JSON lines, one per candidate")
    args = ap.parse_args(argv)
    if not args.data.is_file():
        print(f"skipped: CIFAR-10 not found at {args.data} (pass --data PATH to cifar10_uint8.npz)")
        return 0
    import supernet_study as study
    import torch

    from nas.config import load_config
    from nas.evaluate import Evaluator
    from nas.supernet.evaluator import SupernetScorer
    from nas.train import accuracy
    from search_space import SearchSpace
    from search_space.genotype import parse

    torch.set_num_threads(1)
    cfg = load_config(args.config, [f"data.path={args.data.resolve()}", f"supernet.checkpoint={args.checkpoint.resolve()}",
                                    "train.threads=1", "train.device=cpu", f"data.subset={args.subset}"])
    space = SearchSpace.from_yaml(cfg.space)
    gs = study._candidates(space, args.candidates, args.seed, args.spread)
    splits = Evaluator(cfg.data, cfg.train, cfg.supernet).prepare(space.resolution)
    scorer, dev = SupernetScorer(cfg.supernet, cfg.train), torch.device("cpu")
    a, b = args.kernels
    gaps = []
    for i, g in enumerate(gs, 1):
        row = {"genotype": g.to_string()}
        for k in (a, b):
            model = scorer.model(parse(with_kernel(g.to_string(), k)), splits, dev)
            row[f"k{k}"] = accuracy(model, splits.x_val, splits.y_val, splits, cfg.train, dev)
        gaps.append(100 * (row[f"k{b}"] - row[f"k{a}"]))
        print(f"{i}/{len(gs)}: k{a} {100 * row[f'k{a}']:.2f}%, k{b} {100 * row[f'k{b}']:.2f}%  {row['genotype']}",
              flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
    print(f"every kernel {b} instead of {a}: {min(gaps):+.2f} to {max(gaps):+.2f} points, mean "
          f"{statistics.mean(gaps):+.2f} over {len(gaps)} candidates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
