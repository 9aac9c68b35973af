"""`python -m nas.pipeline CONFIG`: the whole EfficientNet recipe in one resumable run folder.

search (the config's search sections) -> EfficientNet-B0 trained with the same proxy budget for
comparison -> stage 2, when `stage2.top_k` > 0: the search's top-k candidates and a reference
(`stage2.reference`, EfficientNet-B0 at the space's resolution by default) trained for real with
the `stage2` recipe, proxy rank vs final rank (Kendall tau), and the baseline chosen by final
validation accuracy -> the (alpha, beta, gamma) grid at phi = 1 (the config's `scaling` section)
around that baseline -> the family for every phi -> `report.md`. Each stage keeps its own files
under the run folder (stage 2: ``stage2/<name>/``, one `python -m nas.train` run folder each), so
`--resume` picks up wherever a run stopped, also in the middle of a stage-2 training.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

from scaling.family import compound_family, family_latencies_ms, format_table, write_members
from search_space.cost import cost
from search_space.genotype import Genotype
from search_space.references import reference

from . import finalists, proxy_notes
from .config import Config, load_config
from .errors import UserError
from .grid import GridSummary, check_scaling, run_grid
from .journal import Journal, atomic_write_text, check_search_record, load_json, save_json
from .reseed import RESEED_FILE, check_reseed_record, summarize
from .stage2 import Stage2Setup, setup_from_config


def run_pipeline(cfg: Config, resume: bool = False, progress: bool = True,
                 source: str | Path | None = None) -> Path:
    """Run (or resume) search -> B0 comparison -> stage 2 (if on) -> grid -> family; returns the report's path.

    `source` is the config file: it names the file in errors and anchors relative paths of ``stage2.data``.
    """
    from .search import check_out_dir, run_search

    root = Path(cfg.out)
    check_out_dir(root)
    # Checked before the search, so that a mistake in the stage2 section does not wait for it.
    setup = _stage2_setup(cfg, source) if cfg.stage2.top_k else None
    if root.exists() and any(root.iterdir()) and not resume:
        raise UserError(f"run folder {str(root)!r} is not empty; pass --resume to continue it or choose another --out")
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    n = 5 if setup is not None else 4
    step = iter(range(1, n + 1))

    search_cfg = copy.deepcopy(cfg)
    search_cfg.out = str(root / "search")
    # Its saved config marks a started search, also one killed before its first evaluation.
    has_search = (root / "search" / "config.yaml").exists()
    _say(progress, f"[{next(step)}/{n}] search")
    t = time.perf_counter()
    summary = run_search(search_cfg, resume=has_search, progress=progress)
    stages["search"] = time.perf_counter() - t
    if summary.best is None:
        raise UserError("the search trained no candidate successfully; nothing to scale")
    baseline = Genotype.from_yaml((root / "search" / "best.yaml").read_text())
    best = summary.best

    _say(progress, f"[{next(step)}/{n}] EfficientNet-B0 with the same proxy budget")
    t = time.perf_counter()
    b0 = _proxy_record(cfg, reference("efficientnet-b0").replace(resolution=baseline.resolution),
                       root / "efficientnet-b0.json")
    stages["b0"] = time.perf_counter() - t

    finals = None
    prefix, label, note = "discovered", "discovered", "from the search journal"
    if setup is not None:
        _say(progress, f"[{next(step)}/{n}] stage 2: the top {cfg.stage2.top_k} candidates and the reference "
                       f"trained for real")
        t = time.perf_counter()
        finals = run_stage2(cfg, setup, root, baseline.resolution, b0, progress)
        stages["stage2"] = time.perf_counter() - t
        chosen = finals.chosen.finalist
        baseline, best = chosen.genotype, chosen.record
        if chosen.kind == "reference":
            prefix, label = chosen.name, f"{chosen.label} (reference)"
        note = "the proxy record of the network stage 2 chose by final validation accuracy"

    _say(progress, f"[{next(step)}/{n}] grid search of (alpha, beta, gamma) at phi = 1")
    t = time.perf_counter()
    base_record = {k: best[k] for k in ("accuracy", "macs", "params", "genotype", "status") if k in best}
    base_record.update(resolution=baseline.resolution, alpha=1.0, beta=1.0, gamma=1.0, product=1.0, macs_ratio=1.0,
                       reason="", train_time_s=best.get("train_time_s"), note=note)
    grid = run_grid(baseline, cfg.data, cfg.train, cfg.scaling, root / "grid", resume=(root / "grid").exists(),
                    progress=progress, baseline_record=base_record, executor=cfg.executor)
    stages["grid"] = time.perf_counter() - t

    _say(progress, f"[{next(step)}/{n}] family")
    b = grid.best
    num_classes, in_channels = int(b0["num_classes"]), int(b0["in_channels"])
    members = compound_family(baseline, b["alpha"], b["beta"], b["gamma"], cfg.scaling.phis, prefix=prefix,
                              num_classes=num_classes, in_channels=in_channels, divisor=cfg.scaling.divisor)
    write_members(members, root / "family")
    base_macs = cost(baseline, num_classes=num_classes, in_channels=in_channels).macs
    latencies = family_latencies_ms(cfg.scaling.lut, [m.genotype for m in members])
    family_table = format_table(members, base_macs, latencies)
    stages["total"] = time.perf_counter() - t0
    stages = _add_times(root / "times.json", stages)
    records, reseeds = _search_journals(root / "search")
    notes = proxy_notes.section(cfg.data, cfg.data.resolution or baseline.resolution, summarize(records, reseeds),
                                float(summary.best["accuracy"]), float(b0["accuracy"]), grid.records, grid.best,
                                finals.kendall_tau if finals is not None else None,
                                finals.ranked if finals is not None else 0)
    report = render_report(cfg, best, b0, grid, family_table, stages, finals=finals, label=label, notes=notes)
    path = root / "report.md"
    atomic_write_text(path, report)
    return path


def _stage2_setup(cfg: Config, source: str | Path | None) -> Stage2Setup:
    src = str(source) if source is not None else (cfg.name or "<config>")
    config_dir = Path(source).resolve().parent if source is not None else None
    return setup_from_config(copy.deepcopy(cfg), src, config_dir)


def run_stage2(cfg: Config, setup: Stage2Setup, root: Path, resolution: int, b0: dict[str, Any],
               progress: bool = True) -> finalists.FinalsSummary:
    """Train the search's top-k and the reference with the stage-2 recipe (resumable); rank them and choose."""
    records, reseeds = _search_journals(root / "search")
    todo = finalists.top_candidates(records, reseeds, cfg.stage2.top_k)
    ref = finalists.reference_genotype(cfg.stage2.reference, resolution)
    if ref is not None:
        name, g = ref
        # EfficientNet-B0 at the space's resolution already has its proxy record; another reference gets one.
        proxy = b0 if g.to_string() == b0["genotype"] else _proxy_record(cfg, g, root / "stage2" / f"{name}-proxy.json")
        todo.append(finalists.reference_finalist(name, g, proxy))
    done = finalists.train_finalists(todo, setup, root / "stage2", progress=progress)
    out = finalists.summarize_finals(done, cfg.stage2.baseline_from)
    finalists.save_summary(root / "stage2" / "summary.json", out)
    return out


def _search_journals(search: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The search's journal records and its re-seed records (none when it re-seeded nothing)."""
    records = Journal(search / "journal.jsonl", check_search_record).read()
    reseeds = Journal(search / RESEED_FILE, check_reseed_record).read() if (search / RESEED_FILE).exists() else []
    return records, reseeds


def _add_times(path: Path, stages: dict[str, float]) -> dict[str, float]:
    """Stage times summed over every invocation of this run folder (a resumed run adds to them)."""
    total = {k: float(v) for k, v in load_json(path).items()} if path.exists() else {}
    for k, v in stages.items():
        total[k] = round(total.get(k, 0.0) + v, 3)
    save_json(path, total)
    return total


def _proxy_record(cfg: Config, g: Genotype, path: Path) -> dict[str, Any]:
    """Train a reference genotype with the search's proxy trainer and seed rule, once (kept in `path`)."""
    if path.exists():
        rec = load_json(path)
        if rec.get("genotype") == g.to_string():
            return rec
    path.parent.mkdir(parents=True, exist_ok=True)
    from .evaluate import Evaluator
    from .results import eval_seed

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
                  stages: dict[str, float], finals: finalists.FinalsSummary | None = None,
                  label: str = "discovered", notes: list[str] | None = None) -> str:
    """The pipeline's Markdown report (with stage 2's section when `finals` is given)."""
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
    ]
    lines += notes or []
    if finals is not None:
        lines += finalists.markdown(finals, _recipe_line(cfg))
    lines += [
        "## Baseline", "",
        "| model | proxy accuracy | params | MACs |" + (" latency (ms) |" if best.get("latency_ms") else ""),
        "|---|---:|---:|---:|" + ("---:|" if best.get("latency_ms") else ""),
        f"| {label} | {best['accuracy']:.4f} | {best['params']:,} | {best['macs'] / 1e6:,.2f}M |"
        + (f" {best['latency_ms']:.3f} |" if best.get("latency_ms") else ""),
        f"| EfficientNet-B0 (same budget) | {b0['accuracy']:.4f} | {b0['params']:,} | {b0['macs'] / 1e6:,.2f}M |"
        + (" - |" if best.get("latency_ms") else ""), "",
        (f"Baseline (chosen by stage 2's final validation accuracy, "
         f"{100 * (finals.chosen.val_accuracy or 0.0):.2f}%; proxy accuracy above): `{best['genotype']}`"
         if finals is not None else f"Discovered: `{best['genotype']}`"), "",
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


def _recipe_line(cfg: Config) -> str:
    s2 = cfg.stage2
    ema = f"EMA {s2.ema_decay:g}" if s2.ema_decay else "no EMA"
    return (f"{s2.epochs} epochs, batch {s2.batch_size}, {s2.optimizer} lr {s2.lr:g}, {ema}, seed {s2.seed}"
            + (f", cutout {s2.cutout}" if s2.cutout else "") + (f", data overrides {s2.data}" if s2.data else ""))


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
        path = run_pipeline(cfg, resume=args.resume, progress=not args.no_progress, source=args.config)
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
