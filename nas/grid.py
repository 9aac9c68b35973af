"""Step 1 of compound scaling, run for real: train every (alpha, beta, gamma) point at phi = 1.

Uses the search's proxy trainer and data (`data` and `train` sections, same keys), writes a
resumable journal, TensorBoard curves, a Markdown table and the chosen coefficients as YAML.
`python -m scaling grid BASELINE.yaml --config configs/scaling.yaml` is the command line.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scaling.compound import apply, compound
from scaling.family import latency_ms
from scaling.grid import GridPoint, choose, enumerate_grid, spread
from search_space.cost import cost
from search_space.genotype import Genotype

from .config import (DataConfig, ExecutorConfig, ScalingConfig, TrainConfig, check_data_paths, check_train,
                     load_yaml, resolve_path)
from .journal import Journal, atomic_write_text, load_json, save_json
from .schema import ConfigError, option, to_dict

PAPER_POINT = GridPoint(1.2, 1.1, 1.15)


@dataclass
class GridConfig:
    """`python -m scaling grid`'s config: the proxy trainer's sections plus the grid."""

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


def grid_points(s: ScalingConfig) -> list[GridPoint]:
    """The points to train: explicit ones, or the grid (subsampled to max_points)."""
    if s.points:
        return [GridPoint(float(a), float(b), float(g)) for a, b, g in s.points]
    pts = enumerate_grid(s.step, s.tolerance, s.factor, s.max_alpha, s.max_beta, s.max_gamma)
    must = [PAPER_POINT] if s.include_paper_point else []
    return spread(pts, s.max_points, must)


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
    points = grid_points(scaling)
    # Data resolution follows the network's, so that gamma changes what the proxy sees.
    proxy_data = copy.deepcopy(data)
    base_data_res = data.resolution or baseline.resolution
    proxy_data.resolution = None
    evaluator = Evaluator(_Sections(proxy_data, train))
    splits = evaluator.prepare(base_data_res)
    num_classes, in_channels = splits.num_classes, splits.in_channels
    base_cost = cost(baseline, num_classes=num_classes, in_channels=in_channels)

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
    bar.close()
    if tb is not None:
        tb.close()
    records = [done[k] for k, _ in jobs if k in done and k != "baseline"]
    best = dict(choose(records))
    coeff = {"alpha": best["alpha"], "beta": best["beta"], "gamma": best["gamma"], "product": best["product"],
             "accuracy": best["accuracy"], "macs_ratio": best["macs_ratio"], "divisor": scaling.divisor,
             "num_classes": num_classes, "in_channels": in_channels,
             "baseline": baseline.to_string(), "phis": list(scaling.phis)}
    cpath = out / "coefficients.yaml"
    atomic_write_text(cpath, "# chosen by the grid search at phi = 1 (best accuracy, ties by MACs)\n"
                      + yaml.safe_dump(coeff, sort_keys=False))
    rpath = out / "grid.md"
    atomic_write_text(rpath, grid_table(records, done["baseline"], best))
    return GridSummary(best=best, records=records, baseline=done["baseline"], coefficients_path=cpath,
                       report_path=rpath)


def grid_table(records: list[dict[str, Any]], baseline: dict[str, Any], best: dict[str, Any]) -> str:
    """Markdown: every grid point with accuracy, MACs, params, latency and the measured MACs ratio."""
    lat = any(r.get("latency_ms") is not None for r in records)
    head = "| alpha | beta | gamma | a*b^2*g^2 | resolution | accuracy | MACs | MACs / baseline | params |"
    sep = "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    if lat:
        head += " latency (ms) |"
        sep += "---:|"
    lines = [f"Baseline: accuracy {baseline['accuracy']:.4f}, {baseline['macs'] / 1e6:,.2f}M MACs, "
             f"{baseline['params']:,} params (`{baseline['genotype']}`).", "", head, sep]
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


class _Sections:
    """The two sections the Evaluator reads."""

    def __init__(self, data: DataConfig, train: TrainConfig) -> None:
        self.data, self.train = data, train




def _tb(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency; stay usable without it
        return None
    return SummaryWriter(str(out / "tensorboard"))
