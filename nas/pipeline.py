"""`python -m nas.pipeline CONFIG`: the whole EfficientNet recipe in one resumable run folder.

search (the config's search sections) -> EfficientNet-B0 trained with the same proxy budget for
comparison -> the (alpha, beta, gamma) grid at phi = 1 (the config's `scaling` section) -> the
family for every phi -> `report.md`. Each stage keeps its own files under the run folder, so
`--resume` picks up wherever a run stopped.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

from scaling.family import compound_family, format_table, latency_ms, write_members
from search_space.cost import cost
from search_space.genotype import Genotype
from search_space.references import reference

from .config import Config, load_config
from .errors import UserError
from .grid import GridSummary, check_scaling, run_grid
from .journal import atomic_write_text, load_json, save_json


def run_pipeline(cfg: Config, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) search -> B0 comparison -> grid -> family; returns the report's path."""
    from .search import check_out_dir, run_search

    root = Path(cfg.out)
    check_out_dir(root)
    if root.exists() and any(root.iterdir()) and not resume:
        raise UserError(f"run folder {str(root)!r} is not empty; pass --resume to continue it or choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stages: dict[str, float] = {}

    search_cfg = copy.deepcopy(cfg)
    search_cfg.out = str(root / "search")
    # Its saved config marks a started search, also one killed before its first evaluation.
    has_search = (root / "search" / "config.yaml").exists()
    _say(progress, "[1/4] search")
    t = time.perf_counter()
    summary = run_search(search_cfg, resume=has_search, progress=progress)
    stages["search"] = time.perf_counter() - t
    if summary.best is None:
        raise UserError("the search trained no candidate successfully; nothing to scale")
    baseline = Genotype.from_yaml((root / "search" / "best.yaml").read_text())

    _say(progress, "[2/4] EfficientNet-B0 with the same proxy budget")
    t = time.perf_counter()
    b0 = _reference_record(cfg, baseline, root / "efficientnet-b0.json")
    stages["b0"] = time.perf_counter() - t

    _say(progress, "[3/4] grid search of (alpha, beta, gamma) at phi = 1")
    t = time.perf_counter()
    base_record = {k: summary.best[k] for k in ("accuracy", "macs", "params", "genotype", "status")
                   if k in summary.best}
    base_record.update(resolution=baseline.resolution, alpha=1.0, beta=1.0, gamma=1.0, product=1.0, macs_ratio=1.0,
                       reason="", train_time_s=summary.best.get("train_time_s"), note="from the search journal")
    grid = run_grid(baseline, cfg.data, cfg.train, cfg.scaling, root / "grid", resume=(root / "grid").exists(),
                    progress=progress, baseline_record=base_record, executor=cfg.executor)
    stages["grid"] = time.perf_counter() - t

    _say(progress, "[4/4] family")
    b = grid.best
    ref = load_json(root / "efficientnet-b0.json")
    num_classes, in_channels = int(ref["num_classes"]), int(ref["in_channels"])
    members = compound_family(baseline, b["alpha"], b["beta"], b["gamma"], cfg.scaling.phis, prefix="discovered",
                              num_classes=num_classes, in_channels=in_channels, divisor=cfg.scaling.divisor)
    write_members(members, root / "family")
    base_macs = cost(baseline, num_classes=num_classes, in_channels=in_channels).macs
    latencies = [latency_ms(cfg.scaling.lut, m.genotype) for m in members]
    family_table = format_table(members, base_macs, latencies)
    stages["total"] = time.perf_counter() - t0
    stages = _add_times(root / "times.json", stages)
    report = render_report(cfg, summary.best, b0, grid, family_table, stages)
    path = root / "report.md"
    atomic_write_text(path, report)
    return path


def _add_times(path: Path, stages: dict[str, float]) -> dict[str, float]:
    """Stage times summed over every invocation of this run folder (a resumed run adds to them)."""
    total = {k: float(v) for k, v in load_json(path).items()} if path.exists() else {}
    for k, v in stages.items():
        total[k] = round(total.get(k, 0.0) + v, 3)
    save_json(path, total)
    return total


def _reference_record(cfg: Config, baseline: Genotype, path: Path) -> dict[str, Any]:
    """Train EfficientNet-B0 (at the search space's resolution) with the search's proxy trainer, once."""
    if path.exists():
        return load_json(path)
    from .evaluate import Evaluator
    from .results import eval_seed

    g = reference("efficientnet-b0").replace(resolution=baseline.resolution)
    ev = Evaluator(cfg.data, cfg.train)
    splits = ev.prepare(g.resolution)
    res = ev.evaluate(g, eval_seed(cfg.search.seed, g.to_string()))
    c = cost(g, num_classes=splits.num_classes, in_channels=splits.in_channels)
    rec = {"genotype": g.to_string(), "accuracy": res.accuracy, "macs": c.macs, "params": c.params,
           "status": res.status, "reason": res.reason, "train_time_s": res.train_time_s,
           "num_classes": splits.num_classes, "in_channels": splits.in_channels}
    save_json(path, rec)
    return rec


def render_report(cfg: Config, best: dict[str, Any], b0: dict[str, Any], grid: GridSummary, family_table: str,
                  stages: dict[str, float]) -> str:
    """The pipeline's Markdown report."""
    tr = cfg.train
    budget = f"{tr.steps} steps" if tr.steps else f"{tr.epochs:g} epochs"
    lines = [
        f"# {cfg.name}: discovered baseline and its compound-scaled family", "",
        f"Data: `{cfg.data.source}`"
        + (f" at {cfg.data.resolution}x{cfg.data.resolution} (costs at the genotypes' own resolution)"
           if cfg.data.resolution else "")
        + f" (validation = {cfg.data.val_fraction:g} of the training split), proxy training "
        f"{budget}, batch {tr.batch_size}, {tr.optimizer} lr {tr.lr:g}. Objective: {cfg.objective.kind}"
        + (f", target {cfg.objective.target}" if cfg.objective.target is not None else "")
        + f". Controller: {cfg.controller.name}, {cfg.search.budget} candidates.", "",
        "## Baseline", "",
        "| model | proxy accuracy | params | MACs |" + (" latency (ms) |" if best.get("latency_ms") else ""),
        "|---|---:|---:|---:|" + ("---:|" if best.get("latency_ms") else ""),
        f"| discovered | {best['accuracy']:.4f} | {best['params']:,} | {best['macs'] / 1e6:,.2f}M |"
        + (f" {best['latency_ms']:.3f} |" if best.get("latency_ms") else ""),
        f"| EfficientNet-B0 (same budget) | {b0['accuracy']:.4f} | {b0['params']:,} | {b0['macs'] / 1e6:,.2f}M |"
        + (" - |" if best.get("latency_ms") else ""), "",
        f"Discovered: `{best['genotype']}`", "",
        f"EfficientNet-B0 at the same resolution: `{b0['genotype']}`", "",
        "## Step 1: grid search at phi = 1", "", grid.report_path.read_text().rstrip(), "",
        f"Chosen: alpha = {grid.best['alpha']:.2f}, beta = {grid.best['beta']:.2f}, gamma = {grid.best['gamma']:.2f} "
        f"(alpha * beta^2 * gamma^2 = {grid.best['product']:.3f}).", "",
        "## Step 2: the family", "", family_table, "",
    ]
    lines += ["Channels are rounded to multiples of the divisor, layers up, resolutions to a multiple; this is what "
              "moves the MACs ratio off 2^phi.", "",
              "## Time", "", "Wall-clock seconds, summed over every invocation of the run folder.", "",
              "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:,.1f} |" for k, v in stages.items()]
    return "\n".join(lines) + "\n"


def _say(progress: bool, msg: str) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(prog="python -m nas.pipeline", description=__doc__.splitlines()[0])
    ap.add_argument("config", help="a search config with a `scaling` section (e.g. configs/efficientnet.yaml)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", help="run folder (default runs/<config name>-pipeline)")
    ap.add_argument("--resume", action="store_true", help="continue the run in the run folder")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, list(args.sets))
        check_scaling(cfg.scaling, Path(args.config).resolve().parent, args.config)
        cfg.out = str(Path(args.out).resolve()) if args.out else str(Path(cfg.out).with_name(f"{cfg.name}-pipeline"))
        path = run_pipeline(cfg, resume=args.resume, progress=not args.no_progress)
    except UserError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; continue with: python -m nas.pipeline {args.config} --resume", file=sys.stderr)
        return 130
    print(path.read_text())
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
