"""Step 1 of compound scaling, run for real: train every (alpha, beta, gamma) point at phi = 1.

Uses the search's proxy trainer and data (`data` and `train` sections, same keys), writes a
resumable journal, TensorBoard curves, a Markdown table and the chosen coefficients as YAML.
`python -m nas.grid BASELINE.yaml --config configs/scaling.yaml` is the command line.
"""
from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scaling.compound import apply, compound
from scaling.family import latency_ms
from scaling.grid import PAPER_POINT, GridPoint, choose, enumerate_grid, spread
from search_space.cost import cost
from search_space.genotype import Genotype, GenotypeError, parse
from search_space.references import load_genotype

from .config import (
    DataConfig,
    ExecutorConfig,
    ScalingConfig,
    TrainConfig,
    check_data_paths,
    check_train,
    load_yaml,
    resolve_path,
)
from .errors import UserError
from .journal import Journal, atomic_write_text, load_json, save_json
from .reseed import SeedStats, auto_top_k, markdown_section, reseed_seeds, seed_stats
from .schema import ConfigError, to_dict


@dataclass
class GridConfig:
    """`python -m nas.grid`'s config: the proxy trainer's sections plus the grid."""

    name: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)  # where the points train (docs/scale_out.md)
    out: str | None = None


def load_grid_config(path: str | Path, sets: list[str] | None = None) -> GridConfig:
    """Load and validate a grid config (the search's `data`/`train` keys plus `scaling`)."""
    path = Path(path)
    cfg: GridConfig = load_yaml(path, GridConfig, sets)
    check_scaling(cfg.scaling, path.resolve().parent, str(path))
    check_data_paths(cfg.data, path.resolve().parent, str(path))
    check_train(cfg.train, str(path))
    from .executors import check_executor

    check_executor(cfg.executor, cfg.train.device, str(path))
    cfg.name = cfg.name or path.stem
    return cfg


def check_scaling(s: ScalingConfig, config_dir: Path, src: str) -> None:
    """Cross-field checks of a scaling section (explicit points, latency table path)."""
    for i, p in enumerate(s.points or []):
        if len(p) != 3 or any(not isinstance(v, (int, float)) or v < 1 for v in p):
            raise ConfigError(f"{src}: key 'scaling.points[{i}]': {p!r} must be [alpha, beta, gamma], each >= 1")
    if not s.phis or any(not isinstance(v, (int, float)) or v <= 0 for v in s.phis):
        raise ConfigError(f"{src}: key 'scaling.phis': {s.phis!r} must be a non-empty list of numbers > 0")
    if s.lut is not None:
        p = resolve_path(s.lut, config_dir)
        if not p.is_file():
            raise ConfigError(f"{src}: key 'scaling.lut': file {s.lut!r} not found ({p})")
        s.lut = str(p)
    if not grid_points(s):
        raise ConfigError(f"{src}: key 'scaling.tolerance': no (alpha, beta, gamma) on a {s.step} grid is within "
                          f"{s.tolerance} of alpha*beta^2*gamma^2 = {s.factor}; raise the tolerance")


def grid_points(s: ScalingConfig, baseline: Genotype | None = None, num_classes: int = 1000,
                in_channels: int = 3) -> list[GridPoint]:
    """The points to train: explicit ones, or the grid under `s.rule` (subsampled to max_points).

    Without a baseline the measured rule cannot be applied and the formula decides (config checks).
    """
    if s.points:
        return [GridPoint(float(a), float(b), float(g)) for a, b, g in s.points]
    if s.rule == "formula" or baseline is None:
        pts = enumerate_grid(s.step, s.tolerance, s.factor, s.max_alpha, s.max_beta, s.max_gamma)
    else:
        # Rounding moves the measured ratio well away from the formula's, so start from a wide band.
        wide = enumerate_grid(s.step, max(s.tolerance, 0.35 * s.factor), s.factor, s.max_alpha, s.max_beta,
                              s.max_gamma)
        base = cost(baseline, num_classes=num_classes, in_channels=in_channels).macs
        pts = [p for p in wide
               if abs(measured_ratio(baseline, p, s.divisor, base, num_classes, in_channels) - s.factor)
               <= s.tolerance + 1e-12]
    must = [PAPER_POINT] if s.include_paper_point and PAPER_POINT in pts else []
    return spread(pts, s.max_points, must)


def measured_ratio(baseline: Genotype, p: GridPoint, divisor: int, base_macs: int, num_classes: int = 1000,
                   in_channels: int = 3) -> float:
    """Counted MACs of the baseline scaled by `p` at phi = 1, over the baseline's (`base_macs`)."""
    g = apply(baseline, compound(p.alpha, p.beta, p.gamma, 1, baseline.resolution), divisor)
    return cost(g, num_classes=num_classes, in_channels=in_channels).macs / base_macs


@dataclass
class GridSummary:
    """What a grid run found."""

    best: dict[str, Any]
    records: list[dict[str, Any]]
    baseline: dict[str, Any]
    coefficients_path: Path
    report_path: Path


def run_grid(baseline: Genotype, data: DataConfig, train: TrainConfig, scaling: ScalingConfig,
             out: str | Path, resume: bool = False, progress: bool = True,
             baseline_record: dict[str, Any] | None = None, executor: ExecutorConfig | None = None) -> GridSummary:
    """Train the baseline and every grid point at phi = 1 (on `executor`); write journal, report and coefficients."""
    from tqdm import tqdm

    from .evaluate import Evaluator
    from .executors import Job, build_executor

    out = Path(out)
    journal_path = out / "journal.jsonl"
    if journal_path.exists() and journal_path.stat().st_size and not resume:
        raise ConfigError(f"grid folder {str(out)!r} already holds a journal; pass --resume to continue it "
                          f"or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    state = {"baseline": baseline.to_string(), "data": to_dict(data), "train": to_dict(train),
             "scaling": to_dict(scaling)}
    if (out / "grid.json").exists() and resume:
        old = load_json(out / "grid.json")
        if old != state:
            raise ConfigError(f"{out}/grid.json: the baseline or config differs from the run being resumed")
    save_json(out / "grid.json", state)

    journal = Journal(journal_path)
    done = {r["key"]: r for r in journal.read(repair=True)}
    # Data resolution follows the network's, so that gamma changes what the proxy sees.
    proxy_data = copy.deepcopy(data)
    base_data_res = data.resolution or baseline.resolution
    proxy_data.resolution = None
    evaluator = Evaluator(proxy_data, train)
    splits = evaluator.prepare(base_data_res)
    num_classes, in_channels = splits.num_classes, splits.in_channels
    base_cost = cost(baseline, num_classes=num_classes, in_channels=in_channels)
    points = grid_points(scaling, baseline, num_classes, in_channels)
    if not points:
        raise ConfigError(f"no (alpha, beta, gamma) on a {scaling.step} grid scales this baseline's measured MACs "
                          f"at phi = 1 to within {scaling.tolerance} of {scaling.factor}x; raise scaling.tolerance "
                          f"or use scaling.rule: formula")

    jobs: list[tuple[str, GridPoint | None]] = [("baseline", None)] + [(p.key, p) for p in points]
    if baseline_record is not None and "baseline" not in done:
        rec = dict(baseline_record, key="baseline", kind="baseline")
        journal.append(rec)
        done["baseline"] = rec
    tb = _tb(out)
    bar = tqdm(total=len(jobs), initial=sum(k in done for k, _ in jobs), desc="grid", disable=not progress,
               dynamic_ncols=True)
    todo: dict[str, tuple[GridPoint | None, Genotype, int]] = {}
    # Every point goes to the executor at once: a pool trains as many at a time as it has workers.
    with build_executor(executor or ExecutorConfig(), evaluator, train.device) as ex:
        for key, p in jobs:
            if key in done:
                continue
            g = baseline if p is None else apply(baseline, compound(p.alpha, p.beta, p.gamma, 1, baseline.resolution),
                                                 scaling.divisor)
            train_res = max(1, round(base_data_res * g.resolution / baseline.resolution))
            todo[key] = (p, g, train_res)
            ex.submit(Job(key, g.replace(resolution=train_res).to_string(), scaling.seed))
        while todo:
            for d in ex.wait():
                key = d.job.key
                p, g, train_res = todo.pop(key)
                res = d.result
                c = cost(g, num_classes=num_classes, in_channels=in_channels)
                rec = {
                    "key": key, "kind": "baseline" if p is None else "point",
                    "alpha": p.alpha if p else 1.0, "beta": p.beta if p else 1.0, "gamma": p.gamma if p else 1.0,
                    "product": round(p.product, 6) if p else 1.0, "genotype": g.to_string(),
                    "resolution": g.resolution, "train_resolution": train_res, "accuracy": res.accuracy,
                    "macs": c.macs, "params": c.params, "macs_ratio": round(c.macs / base_cost.macs, 6),
                    "latency_ms": latency_ms(scaling.lut, g), "status": res.status, "reason": res.reason,
                    "train_time_s": res.train_time_s, "wall_s": round(d.wall_s, 3),
                    "seed": scaling.seed,
                }
                journal.append(rec)  # only this driver writes the journal, whichever worker trained it
                done[key] = rec
                if tb is not None and p is not None:
                    step = points.index(p)
                    tb.add_scalar("grid/accuracy", rec["accuracy"], step)
                    tb.add_scalar("grid/macs_ratio", rec["macs_ratio"], step)
                bar.update(1)
                bar.set_postfix_str(f"{key} acc={res.accuracy:.3f} x{rec['macs_ratio']:.2f} MACs")
        _reseed_points(ex, journal, done, [done[k] for k, p in jobs if p is not None and k in done], scaling, train,
                       progress)
    bar.close()
    if tb is not None:
        tb.close()
    stats = {s.record["key"]: s for s in _point_stats(done)}
    records = [_with_mean(done[k], stats.get(k)) for k, _ in jobs if k in done and k != "baseline"]
    best = dict(choose(records))
    coeff = {"alpha": best["alpha"], "beta": best["beta"], "gamma": best["gamma"], "product": best["product"],
             "accuracy": best["accuracy"], "macs_ratio": best["macs_ratio"], "divisor": scaling.divisor,
             "num_classes": num_classes, "in_channels": in_channels,
             "baseline": baseline.to_string(), "phis": list(scaling.phis)}
    cpath = out / "coefficients.yaml"
    atomic_write_text(cpath, "# chosen by the grid search at phi = 1 (best accuracy, ties by MACs)\n"
                      + yaml.safe_dump(coeff, sort_keys=False))
    rpath = out / "grid.md"
    section = "\n".join(markdown_section(list(stats.values()), score="accuracy"))
    atomic_write_text(rpath, grid_table(records, done["baseline"], best, scaling) + (section + "\n" if stats else ""))
    return GridSummary(best=best, records=records, baseline=done["baseline"], coefficients_path=cpath,
                       report_path=rpath)


def _reseed_points(ex: Any, journal: Journal, done: dict[str, dict[str, Any]], points: list[dict[str, Any]],
                   scaling: ScalingConfig, train: TrainConfig, progress: bool) -> None:
    """Train the best points again with more seeds (journaled as kind 'reseed'), as the search does."""
    from tqdm import tqdm

    from .executors import Job

    k = auto_top_k(scaling.reseed_top_k, train)
    top = sorted((r for r in points if r["status"] == "ok"), key=lambda r: (-r["accuracy"], r["macs"]))[:k]
    todo: dict[str, tuple[dict[str, Any], int]] = {}
    for r in top:
        g = parse(r["genotype"]).replace(resolution=r["train_resolution"]).to_string()
        for seed in reseed_seeds(scaling.seed, r["key"], scaling.reseeds):
            key = f"{r['key']}#seed{seed}"
            if key not in done:
                todo[key] = (r, seed)
                ex.submit(Job(key, g, seed))
    bar = tqdm(total=len(todo), desc="reseed top", disable=not progress or not todo, dynamic_ncols=True)
    while todo:
        for d in ex.wait():
            r, seed = todo.pop(d.job.key)
            rec = {"key": d.job.key, "kind": "reseed", "point": r["key"], "seed": seed,
                   "accuracy": d.result.accuracy, "status": d.result.status, "reason": d.result.reason,
                   "train_time_s": d.result.train_time_s}
            journal.append(rec)
            done[d.job.key] = rec
            bar.update(1)
    bar.close()


def _point_stats(done: dict[str, dict[str, Any]]) -> list[SeedStats]:
    """Every re-seeded point with the accuracies of all its seeds (failed seeds count as 0), best mean first."""
    extra: dict[str, list[float]] = {}
    for r in done.values():
        if r.get("kind") == "reseed":
            extra.setdefault(r["point"], []).append(r["accuracy"])
    stats = [seed_stats(done[k], (done[k]["accuracy"], *accs), (done[k]["accuracy"], *accs))
             for k, accs in extra.items() if k in done]
    return sorted(stats, key=lambda s: -s.mean_accuracy)


def _with_mean(record: dict[str, Any], s: SeedStats | None) -> dict[str, Any]:
    if s is None:
        return record
    return dict(record, accuracy=s.mean_accuracy, accuracy_std=s.std_accuracy, seeds=s.n,
                first_seed_accuracy=record["accuracy"])


def grid_table(records: list[dict[str, Any]], baseline: dict[str, Any], best: dict[str, Any],
               scaling: ScalingConfig | None = None) -> str:
    """Markdown: every grid point with accuracy, MACs, params, latency, the formula and the measured MACs ratio."""
    lat = any(r.get("latency_ms") is not None for r in records)
    head = "| alpha | beta | gamma | a*b^2*g^2 | resolution | accuracy | MACs | MACs / baseline | params |"
    sep = "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    if lat:
        head += " latency (ms) |"
        sep += "---:|"
    lines = [f"Baseline: accuracy {baseline['accuracy']:.4f}, {baseline['macs'] / 1e6:,.2f}M MACs, "
             f"{baseline['params']:,} params (`{baseline['genotype']}`).", ""]
    if scaling is not None and not scaling.points:
        held = ("the measured MACs ratio at phi = 1" if scaling.rule == "measured"
                else "the formula alpha * beta^2 * gamma^2")
        lines += [f"Points kept: {held} within {scaling.tolerance} of {scaling.factor} "
                  f"(`scaling.rule: {scaling.rule}`).", ""]
    lines += [head, sep]
    for r in sorted(records, key=lambda r: (-r["accuracy"], r["macs"])):
        mark = " **(chosen)**" if r["key"] == best["key"] else ""
        if r.get("status", "ok") != "ok":
            mark += f" ({r['status']})"
        line = (f"| {r['alpha']:.2f} | {r['beta']:.2f} | {r['gamma']:.2f} | {r['product']:.3f} | {r['resolution']} | "
                f"{r['accuracy']:.4f}{mark} | {r['macs'] / 1e6:,.2f}M | {r['macs_ratio']:.2f} | {r['params']:,} |")
        if lat:
            line += f" {r['latency_ms']:.3f} |" if r.get("latency_ms") is not None else " - |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _tb(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency; stay usable without it
        return None
    return SummaryWriter(str(out / "tensorboard"))


def main(argv: list[str] | None = None) -> int:
    """`python -m nas.grid BASELINE --config CONFIG`: step 1 of compound scaling; mistakes exit 2 in one line."""
    ap = argparse.ArgumentParser(prog="python -m nas.grid",
                                 description="Step 1 of compound scaling: train the (alpha, beta, gamma) grid "
                                             "at phi = 1 and choose.")
    ap.add_argument("baseline", help="baseline genotype YAML (e.g. runs/mnas/best.yaml) or reference name")
    ap.add_argument("--config", required=True, help="grid config YAML: data, train and scaling sections")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    ap.add_argument("--out", help="run folder (default runs/<config name>-grid)")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted grid run")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        base = load_genotype(args.baseline)
        cfg = load_grid_config(args.config, args.set)
        out = Path(args.out or cfg.out or Path("runs") / f"{cfg.name}-grid")
        s = run_grid(base, cfg.data, cfg.train, cfg.scaling, out, resume=args.resume, progress=not args.quiet,
                     executor=cfg.executor)
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130
    except (UserError, GenotypeError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(Path(s.report_path).read_text())
    b = s.best
    print(f"chosen: alpha={b['alpha']:.2f} beta={b['beta']:.2f} gamma={b['gamma']:.2f} "
          f"(accuracy {b['accuracy']:.4f}, {b['macs_ratio']:.2f}x the baseline's MACs) -> {s.coefficients_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
