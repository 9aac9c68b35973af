"""What a finished (or stopped) run shows a person: best.yaml, a Pareto plot and report.md.

Everything is derived from the journal, so ``python -m nas.report RUN_DIR`` rebuilds it at any
time, also for a run that is still going or was killed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from search_space import parse
from search_space.yamlfile import read_yaml_file

from .errors import UserError
from .journal import Journal, atomic_write_text, check_search_record
from .reseed import RESEED_FILE, check_reseed_record, markdown_section, summarize, winner_record
from .units import format_macs


def ok_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of candidates that trained normally."""
    return [r for r in records if r.get("status") == "ok"]


def best_record(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The highest reward (earliest on ties), or None when nothing trained."""
    ok = ok_records(records)
    return max(ok, key=lambda r: (r["reward"], -r["index"])) if ok else None


def top_records(records: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The k best by reward."""
    return sorted(ok_records(records), key=lambda r: (-r["reward"], r["index"]))[:k]


def cost_key(kind: str) -> str:
    """The journal field plotted as cost: latency_ms for a latency objective, else macs."""
    return "latency_ms" if kind == "latency" else "macs"


def pareto_front(records: list[dict[str, Any]], key: str = "macs") -> list[dict[str, Any]]:
    """Candidates no other beats on both accuracy (higher) and cost (lower), cheapest first."""
    pts = sorted((r for r in ok_records(records) if r.get(key) is not None),
                 key=lambda r: (r[key], -r["accuracy"]))
    front, best_acc = [], -1.0
    for r in pts:
        if r["accuracy"] > best_acc:
            front.append(r)
            best_acc = r["accuracy"]
    return front


def plot_pareto(records: list[dict[str, Any]], path: str | Path, key: str = "macs",
                target: float | None = None) -> Path | None:
    """Accuracy vs cost of every candidate with the Pareto front and the best marked (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    ok = [r for r in ok_records(records) if r.get(key) is not None]
    if not ok:
        return None
    scale, unit = (1e6, "MMACs") if key == "macs" else (1.0, "ms")
    front = pareto_front(records, key)
    best = best_record(records)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    ax.scatter([r[key] / scale for r in ok], [100 * r["accuracy"] for r in ok], s=16, c="0.6",
               label="candidates")
    ax.step([r[key] / scale for r in front], [100 * r["accuracy"] for r in front], where="post", c="tab:blue",
            marker="o", ms=4, label="Pareto front")
    if best is not None and best.get(key) is not None:
        ax.scatter([best[key] / scale], [100 * best["accuracy"]], marker="*", s=180, c="tab:red", zorder=5,
                   label="best reward")
    if target is not None:
        ax.axvline(target / scale, ls="--", c="tab:orange", lw=1, label="target")
    ax.set_xlabel(f"cost ({unit})")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def best_yaml(record: dict[str, Any], name: str) -> str:
    """The winning genotype as YAML (Genotype.to_yaml) plus a `meta` block with its numbers."""
    g = parse(record["genotype"])
    keys = ("accuracy", "reward", "macs", "params", "latency_ms", "index", "seed", "accuracy_std", "seeds",
            "first_seed_accuracy")
    meta = {k: record.get(k) for k in keys if k in record}
    return g.to_yaml(name=name) + yaml.safe_dump({"meta": meta}, sort_keys=False)


def _budget(train: dict[str, Any]) -> str:
    return f"{train['steps']} steps" if train.get("steps") else f"{train.get('epochs')} epochs"


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def markdown(records: list[dict[str, Any]], config: dict[str, Any], top_k: int, plot: str | None,
             note: str = "", weights: tuple[float, float] | None = None) -> str:
    """The report: setup, outcome counts, the top candidates and the Pareto plot."""
    obj = config.get("objective", {})
    kind = obj.get("kind", "flops")
    alpha, beta = weights or (obj.get("alpha"), obj.get("beta"))
    statuses: dict[str, int] = {}
    for r in records:
        statuses[r.get("status", "?")] = statuses.get(r.get("status", "?"), 0) + 1
    train_s = sum(r.get("train_time_s") or 0.0 for r in records)
    lines = [f"# Search report: {config.get('name', '')}", ""]
    lines += [f"- space: `{config.get('space')}`",
              f"- controller: {config.get('controller', {}).get('name')} "
              f"{config.get('controller', {}).get('options') or ''}".rstrip(),
              f"- objective: {kind}" + (f", target {obj.get('target')}, reward acc x (cost/target)^w with "
                                         f"w = {alpha} at or under the target, {beta} above"
                                         + (f" (preset {obj['preset']})" if obj.get("preset") else "")
                                         if kind != "accuracy" else ""),
              f"- data: {config.get('data', {}).get('source')}; train: {_budget(config.get('train', {}))} per candidate",
              f"- evaluations: {len(records)} of budget {config.get('search', {}).get('budget')} "
              f"({', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()))}); training time {train_s:.1f} s"]
    if note:
        lines += ["", f"**Note:** {note}"]
    lines += ["", f"## Top {top_k} candidates", "",
              "| # | reward | accuracy | MACs | params | latency (ms) | train (s) | genotype |",
              "|---|---|---|---|---|---|---|---|"]
    for r in top_records(records, top_k):
        lines.append(f"| {r['index']} | {r['reward']:.4f} | {100 * r['accuracy']:.2f}% | {format_macs(r['macs'])} | "
                     f"{r['params']:,} | {_fmt(r.get('latency_ms'), '.3f')} | {_fmt(r.get('train_time_s'), '.1f')} | "
                     f"`{r['genotype']}` |")
    front = pareto_front(records, cost_key(kind))
    lines += ["", "## Pareto front (accuracy vs cost)", ""]
    if plot:
        lines += [f"![Pareto front]({plot})", ""]
    lines += [f"{len(front)} candidates on the front: " +
              ", ".join(f"#{r['index']} ({100 * r['accuracy']:.1f}%, "
                        f"{format_macs(r['macs']) if kind != 'latency' else _fmt(r.get('latency_ms'), '.3f') + 'ms'})"
                        for r in front)]
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        lines += ["", "## Failed candidates", ""]
        lines += [f"- #{r['index']} {r['status']}: {r.get('reason', '')}" for r in failed]
    best = best_record(records)
    if best is not None:
        lines += ["", "## Best genotype", "", "```yaml", best_yaml(best, f"{config.get('name', 'search')}-best").rstrip(),
                  "```"]
    return "\n".join(lines) + "\n"


def write_outputs(run_dir: str | Path, records: list[dict[str, Any]], config: dict[str, Any],
                  target: float | None = None, note: str = "",
                  weights: tuple[float, float] | None = None,
                  reseeds: list[dict[str, Any]] | None = None) -> dict[str, Path]:
    """best.yaml, pareto.png and report.md in the run folder; returns their paths.

    With `reseeds` (the re-seeded top candidates) the winner is the best mean reward over seeds.
    """
    run_dir = Path(run_dir)
    out: dict[str, Path] = {}
    stats = summarize(records, reseeds or [])
    best = winner_record(stats) or best_record(records)
    if best is not None:
        out["best"] = run_dir / "best.yaml"
        atomic_write_text(out["best"], best_yaml(best, f"{config.get('name', 'search')}-best"))
    kind = config.get("objective", {}).get("kind", "flops")
    png = plot_pareto(records, run_dir / "pareto.png", cost_key(kind), target if kind != "accuracy" else None)
    if png is not None:
        out["pareto"] = png
    out["report"] = run_dir / "report.md"
    top_k = int(config.get("search", {}).get("top_k", 5))
    text = markdown(records, config, top_k, png.name if png else None, note, weights)
    atomic_write_text(out["report"], text + "\n".join(markdown_section(stats)) + ("\n" if stats else ""))
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m nas.report RUN_DIR``: rebuild best.yaml, pareto.png and report.md from the journal."""
    ap = argparse.ArgumentParser(prog="python -m nas.report", description=main.__doc__)
    ap.add_argument("run_dir")
    args = ap.parse_args(argv)
    run = Path(args.run_dir)
    if not (run / "config.yaml").is_file():
        print(f"error: {run} is not a run folder (no config.yaml)", file=sys.stderr)
        return 2
    from .config import config_from_dict

    try:
        config = read_yaml_file(run / "config.yaml", UserError, "run config")
        if not isinstance(config, dict):
            raise UserError(f"{run / 'config.yaml'}: not a config mapping")
        # A bad line is an error, not a shorter report: every journaled evaluation is reported or none.
        journal = Journal(run / "journal.jsonl", check_search_record)
        records = journal.read()
        reseed = Journal(run / RESEED_FILE, check_reseed_record).read()
        objective = config_from_dict(config, str(run / "config.yaml")).reward_objective()
    except UserError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    if journal.torn:
        print(f"note: {journal.path} ends in a record cut off mid-write (a killed run); it is not reported",
              file=sys.stderr)
    paths = write_outputs(run, records, config, objective.target, weights=(objective.alpha, objective.beta),
                          reseeds=reseed)
    print("\n".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
