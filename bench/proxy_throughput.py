"""Candidates per GPU-hour: the naive eager loop of the field vs the project's fast evaluator, same run, same GPU.

Both train the same distinct random candidates of the CIFAR-10 space (configs/space_cifar.yaml)
with the same recipe (SGD Nesterov 0.9, LR warm-up + cosine, label smoothing 0.1, weight decay
5e-4, random crop + flip, batch 256, bf16 autocast, channels_last) for the same epochs on a
stratified CIFAR-10 subset, and report candidates per hour, training images per second and mean
test accuracy, and the ratio. The naive loop can run on the first N candidates only
(--naive-candidates, --naive-budget-s): it costs ~30 s a candidate, and its per-candidate average
keeps candidates/hour comparable; the accuracy difference is taken on those same candidates.

  python bench/proxy_throughput.py --data bench/data/cifar10_15k.npz --json out.json
  python bench/proxy_throughput.py --tiny            # end to end in seconds, CPU allowed
Make the subset with bench/make_cifar_subset.py; see docs/gpu.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from make_cifar_subset import stratified  # noqa: E402
from naive_loop import naive_evaluate  # noqa: E402

from nas.config import TrainConfig  # noqa: E402
from nas.data import Splits  # noqa: E402
from nas.fast import FastSession  # noqa: E402
from nas.train import physical_cores  # noqa: E402
from search_space import Genotype, cost, load_space  # noqa: E402

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
DEFAULT_DATA = [ROOT / "bench" / "data" / "cifar10_15k.npz", ROOT.parent / "shared" / "datasets" / "cifar10_uint8.npz"]


def load_data(path: Path, n_train: int, n_test: int | None, seed: int) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test): stratified `n_train` training images and up to `n_test` test images."""
    rng = np.random.default_rng(seed)
    with np.load(path, allow_pickle=False) as z:
        y_tr, y_te = z["y_train"].astype(np.int64), z["y_test"].astype(np.int64)
        tr = stratified(y_tr, n_train, rng) if n_train < len(y_tr) else np.arange(len(y_tr))
        te = stratified(y_te, n_test, rng) if n_test and n_test < len(y_te) else np.arange(len(y_te))
        return z["x_train"][tr], y_tr[tr], z["x_test"][te], y_te[te]


def sample_candidates(space_path: Path, n: int, seed: int) -> list[Genotype]:
    """`n` distinct random members of the space, fixed by `seed`."""
    space = load_space(space_path)
    rng = random.Random(seed)
    out: dict[str, Genotype] = {}
    while len(out) < n:
        g = space.sample(rng)
        out.setdefault(g.to_string(), g)
    return list(out.values())


def recipe(a: argparse.Namespace) -> TrainConfig:
    """The one training recipe both loops use."""
    return TrainConfig(epochs=a.epochs, batch_size=a.batch, eval_batch_size=1000, optimizer="sgd", lr=a.lr,
                       momentum=0.9, weight_decay=5e-4, schedule="cosine", warmup=a.warmup, label_smoothing=0.1,
                       bn_momentum=0.1, flip=True, crop_pad=4, amp=True, channels_last=True, cudnn_benchmark=False,
                       evaluator="fast", concurrent=a.concurrent, cuda_graphs=not a.no_graphs, threads=a.threads)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def warm_device(dev: torch.device) -> None:
    """Context and library start-up (cuDNN, cuBLAS) once, outside both timings: a process pays it once."""
    x = torch.randn(8, 3, 16, 16, device=dev, requires_grad=True)
    w = torch.randn(8, 3, 3, 3, device=dev, requires_grad=True)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        y = torch.nn.functional.conv2d(x, w, padding=1).flatten(1) @ torch.randn(8 * 256, 4, device=dev)
    y.float().sum().backward()
    _sync(dev)


def summarize(name: str, accs: list[float], wall: float, n: int, images: int) -> dict[str, float]:
    """Per-evaluator figures: candidates/hour, training images/s, mean accuracy."""
    return {"evaluator": name, "candidates": n, "wall_s": wall, "s_per_candidate": wall / n,
            "candidates_per_hour": 3600.0 * n / wall, "train_images_per_s": images / wall,
            "mean_test_accuracy": statistics.fmean(accs) if accs else float("nan")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="CIFAR-style .npz (full or a subset)")
    p.add_argument("--space", type=Path, default=ROOT / "configs" / "space_cifar.yaml")
    p.add_argument("--candidates", type=int, default=16)
    p.add_argument("--epochs", type=float, default=5.0)
    p.add_argument("--train-images", type=int, default=15_000)
    p.add_argument("--test-images", type=int, default=None, help="default: every test image in the file")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of the steps with a linear LR warm-up")
    p.add_argument("--concurrent", type=int, default=8, help="fast evaluator: candidates at once on the GPU")
    p.add_argument("--no-graphs", action="store_true", help="fast evaluator without CUDA graphs (eager steps)")
    p.add_argument("--naive-candidates", type=int, default=None, help="naive loop on the first N only (default all)")
    p.add_argument("--naive-budget-s", type=float, default=None, help="start no naive candidate after this long")
    p.add_argument("--only", choices=("both", "fast", "naive"), default="both")
    p.add_argument("--order", choices=("fast-first", "naive-first"), default="fast-first")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: physical cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--tiny", action="store_true", help="2 candidates, 1 epoch, 256 images: an end-to-end check")
    a = p.parse_args(argv)
    if a.tiny:
        a.candidates, a.epochs, a.train_images, a.batch, a.concurrent = 2, 1.0, 256, 64, 2
        a.test_images = a.test_images or 128
    data_path = a.data or next((d for d in DEFAULT_DATA if d.is_file()), None)
    if data_path is None or not data_path.is_file():
        print(f"error: no data: pass --data or run bench/make_cifar_subset.py (looked for {DEFAULT_DATA})",
              file=sys.stderr)
        return 2
    dev = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if a.device == "auto" else a.device))
    if dev.type == "cpu":
        torch.set_num_threads(a.threads or physical_cores())
    cfg = recipe(a)
    x_tr, y_tr, x_te, y_te = load_data(data_path, a.train_images, a.test_images, a.seed)
    gs = sample_candidates(a.space, a.candidates, a.seed)
    seeds = [1000 * a.seed + i for i in range(len(gs))]
    n_naive = min(a.naive_candidates or len(gs), len(gs))

    def nchw(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(dev)

    xt, yt, xv, yv = nchw(x_tr), torch.from_numpy(y_tr).to(dev), nchw(x_te), torch.from_numpy(y_te).to(dev)
    splits = Splits(x_train=xt, y_train=yt, x_val=xv, y_val=yv, mean=CIFAR_MEAN, std=CIFAR_STD, num_classes=10,
                    resolution=int(x_tr.shape[1]))
    warm_device(dev)
    res = int(x_tr.shape[1])
    report: dict = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "data": str(data_path), "train_images": len(y_tr), "test_images": len(y_te),
        "resolution": res, "epochs": a.epochs, "batch": a.batch, "lr": a.lr, "warmup": a.warmup,
        "concurrent": a.concurrent, "cuda_graphs": not a.no_graphs,
        "candidates": [{"genotype": g.to_string(), "seed": s, "params": cost(g, res, 3, 10).params,
                        "macs": cost(g, res, 3, 10).macs} for g, s in zip(gs, seeds)],
    }
    phases = ["fast", "naive"] if a.order == "fast-first" else ["naive", "fast"]
    for phase in phases:
        if a.only not in ("both", phase):
            continue
        if phase == "fast":
            torch.backends.cudnn.benchmark = False
            session = FastSession(splits, cfg, dev)
            _sync(dev)
            t0 = time.perf_counter()
            results = session.evaluate_many(gs, seeds, concurrent=a.concurrent)
            _sync(dev)
            wall = time.perf_counter() - t0
            steps = sum(r.steps for r in results)
            fast = summarize("fast", [r.accuracy for r in results], wall, len(gs), steps * min(a.batch, len(y_tr)))
            fast["per_candidate"] = [r.to_dict() for r in results]
            fast["graphs"] = session.stats
            fast["statuses"] = [r.status for r in results]
            if dev.type == "cuda":
                fast["max_memory_gb"] = torch.cuda.max_memory_allocated(dev) / 1e9
            report["fast"] = fast
            print(f"fast: {len(gs)} candidates in {wall:.1f} s ({session.stats['captured']} as CUDA graphs)",
                  flush=True)
        else:
            per: list[dict] = []
            t0 = time.perf_counter()
            for i in range(n_naive):
                spent = time.perf_counter() - t0
                if per and a.naive_budget_s is not None and spent + spent / len(per) > a.naive_budget_s:
                    break
                per.append(naive_evaluate(gs[i], seeds[i], xt, yt, xv, yv, CIFAR_MEAN, CIFAR_STD, cfg, dev))
                print(f"naive {i + 1}/{n_naive}: acc {per[-1]['accuracy']:.4f} in {per[-1]['wall_s']:.1f} s "
                      f"(first epoch {per[-1]['first_epoch_s']:.1f} s)", flush=True)
            torch.backends.cudnn.benchmark = False
            wall = sum(r["wall_s"] for r in per)
            naive = summarize("naive", [r["accuracy"] for r in per], wall, len(per),
                              sum(r["steps"] for r in per) * min(a.batch, len(y_tr)))
            naive["per_candidate"] = per
            report["naive"] = naive
        if a.json:  # after each phase, so a run cut short still leaves what it measured
            _write_json(a.json, report)
    if "fast" in report and "naive" in report:
        k = report["naive"]["candidates"]
        fast_same = statistics.fmean(r["accuracy"] for r in report["fast"]["per_candidate"][:k])
        report["ratio_candidates_per_hour"] = report["fast"]["candidates_per_hour"] / report["naive"]["candidates_per_hour"]
        report["paired_candidates"] = k
        report["fast_mean_accuracy_paired"] = fast_same
        report["accuracy_delta_points_paired"] = 100.0 * (fast_same - report["naive"]["mean_test_accuracy"])
    _print_table(report)
    if a.json:
        _write_json(a.json, report)
    return 0


def _write_json(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))


def _print_table(r: dict) -> None:
    print(f"\n{r['device']}, torch {r['torch']}: {len(r['candidates'])} candidates, {r['epochs']:g} epochs on "
          f"{r['train_images']} images, test on {r['test_images']}")
    print(f"{'evaluator':<10}{'cands':>6}{'wall s':>9}{'s/cand':>8}{'cand/h':>9}{'img/s':>9}{'mean acc':>10}")
    for key in ("naive", "fast"):
        if key in r:
            s = r[key]
            print(f"{key:<10}{s['candidates']:>6}{s['wall_s']:>9.1f}{s['s_per_candidate']:>8.2f}"
                  f"{s['candidates_per_hour']:>9.0f}{s['train_images_per_s']:>9.0f}{100 * s['mean_test_accuracy']:>9.2f}%")
    if "ratio_candidates_per_hour" in r:
        print(f"ratio (candidates/hour, fast / naive): {r['ratio_candidates_per_hour']:.1f}x; test accuracy fast - naive "
              f"on the {r['paired_candidates']} candidates both trained: {r['accuracy_delta_points_paired']:+.2f} points")


if __name__ == "__main__":
    sys.exit(main())
