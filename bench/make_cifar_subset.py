"""Write a stratified CIFAR-10 subset .npz small enough to carry to a GPU machine (< 60 MB).

From the full ``cifar10_uint8.npz`` (x_train/y_train/x_test/y_test, uint8 NHWC) it keeps
`--train` training and `--test` test images, the same number per class, drawn with a fixed seed,
and saves them compressed (15,000 + 5,000 images: about 50 MB; raw they would be 61 MB).
Usage: python bench/make_cifar_subset.py [--src ../shared/datasets/cifar10_uint8.npz]
       [--out bench/data/cifar10_15k.npz] [--train 15000] [--test 5000] [--seed 0]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SRC = ROOT.parent / "shared" / "datasets" / "cifar10_uint8.npz"
DEFAULT_OUT = ROOT / "bench" / "data" / "cifar10_15k.npz"
MAX_BYTES = 60_000_000


def stratified(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` indices with (as near as possible) the same count per class, sorted."""
    classes = np.unique(labels)
    base, extra = divmod(n, len(classes))
    picks = []
    for i, c in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        k = base + (1 if i < extra else 0)
        if k > len(idx):
            raise ValueError(f"class {c} has {len(idx)} images, {k} asked for")
        picks.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(picks))


def make_subset(src: Path, out: Path, n_train: int, n_test: int, seed: int = 0) -> dict[str, int]:
    """Write the subset to `out` (compressed); returns the image counts and the file size."""
    rng = np.random.default_rng(seed)
    with np.load(src, allow_pickle=False) as z:
        y_tr, y_te = z["y_train"].astype(np.int64), z["y_test"].astype(np.int64)
        tr = stratified(y_tr, min(n_train, len(y_tr)), rng)
        te = stratified(y_te, min(n_test, len(y_te)), rng)
        arrays = {"x_train": z["x_train"][tr], "y_train": y_tr[tr].astype(np.uint8),
                  "x_test": z["x_test"][te], "y_test": y_te[te].astype(np.uint8)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out)
    return {"train": len(tr), "test": len(te), "bytes": out.stat().st_size}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, default=DEFAULT_SRC)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--train", type=int, default=15_000)
    p.add_argument("--test", type=int, default=5_000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if not a.src.is_file():
        print(f"error: {a.src} not found (the full CIFAR-10 .npz; see ../shared/datasets/README.md)", file=sys.stderr)
        return 2
    info = make_subset(a.src, a.out, a.train, a.test, a.seed)
    print(f"wrote {a.out}: {info['train']} train + {info['test']} test images, {info['bytes'] / 1e6:.1f} MB")
    if info["bytes"] > MAX_BYTES:
        print(f"warning: over {MAX_BYTES / 1e6:.0f} MB, too big to carry to the GPU machine; use fewer --test images",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
