"""Is the proxy trustworthy? Rank a sample of candidates with the proxy budget and a longer one and compare.

``python -m nas.proxycheck CONFIG [--samples N] [--long-epochs E]`` draws N distinct random members
of the config's space, trains each with the config's ``train`` section (the proxy the search uses)
and again with ``train.epochs = E``, both with the seed the search would give it, and reports
Kendall's tau and Spearman's rho between the two accuracy rankings. Values near 1 mean the proxy
orders candidates as the longer training does; near 0, the search's choices are mostly noise.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .config import Config, load_config
from .errors import UserError


@dataclass(frozen=True)
class ProxyReport:
    """Both accuracies per candidate and the rank correlations between them."""

    genotypes: list[str]
    proxy_acc: list[float]
    long_acc: list[float]
    statuses: list[str]
    kendall_tau: float | None
    spearman_rho: float | None
    proxy_epochs: float
    long_epochs: float
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return dataclasses.asdict(self)


def rank_correlations(a: list[float], b: list[float]) -> tuple[float | None, float | None]:
    """(Kendall tau-b, Spearman rho) of two score lists; None where undefined (fewer than 2, or constant)."""
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return None, None
    from scipy.stats import kendalltau, spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tau = float(kendalltau(a, b).statistic)
        rho = float(spearmanr(a, b).statistic)
    return (None if math.isnan(tau) else tau), (None if math.isnan(rho) else rho)


def sample_genotypes(cfg: Config, n: int, seed: int) -> list[Any]:
    """`n` distinct random members of the config's space (fewer if the space is smaller)."""
    from search_space import SearchSpace

    space = SearchSpace.from_yaml(cfg.space)
    rng = random.Random(seed)
    out: dict[str, Any] = {}
    for _ in range(max(1, n) * 50):
        if len(out) == min(n, space.size):
            break
        g = space.sample(rng)
        out.setdefault(g.to_string(), g)
    return list(out.values())


def proxy_check(cfg: Config, samples: int, long_epochs: float, seed: int = 0) -> ProxyReport:
    """Train `samples` candidates with the proxy budget and with `long_epochs`; correlate the rankings."""
    from .evaluate import Evaluator
    from .search import eval_seed

    t0 = time.perf_counter()
    gs = sample_genotypes(cfg, samples, seed)
    seeds = [eval_seed(cfg.search.seed, g.to_string()) for g in gs]
    short = Evaluator(cfg).evaluate_many(gs, seeds)
    long_train = dataclasses.replace(cfg.train, epochs=float(long_epochs), steps=None)
    long = Evaluator(SimpleNamespace(data=cfg.data, train=long_train)).evaluate_many(gs, seeds)
    ok = [i for i in range(len(gs)) if short[i].ok and long[i].ok]
    tau, rho = rank_correlations([short[i].accuracy for i in ok], [long[i].accuracy for i in ok])
    statuses = [s.status if not s.ok else l.status for s, l in zip(short, long)]
    proxy_epochs = float(short[0].epochs) if short and short[0].ok else float(cfg.train.epochs)
    return ProxyReport(genotypes=[g.to_string() for g in gs], proxy_acc=[r.accuracy for r in short],
                       long_acc=[r.accuracy for r in long], statuses=statuses, kendall_tau=tau, spearman_rho=rho,
                       proxy_epochs=proxy_epochs, long_epochs=float(long_epochs), wall_s=time.perf_counter() - t0)


def _ranks(x: list[float]) -> list[int]:
    order = sorted(range(len(x)), key=lambda i: -x[i])
    r = [0] * len(x)
    for pos, i in enumerate(order):
        r[i] = pos + 1
    return r


def format_report(rep: ProxyReport) -> str:
    """A table (rank and accuracy under both budgets per candidate) and the two correlations."""
    rs, rl = _ranks(rep.proxy_acc), _ranks(rep.long_acc)
    lines = [f"{'proxy':>6}{'long':>6}{'proxy acc':>11}{'long acc':>10}  status  genotype"]
    for i in sorted(range(len(rs)), key=lambda i: rs[i]):
        lines.append(f"{rs[i]:>6}{rl[i]:>6}{100 * rep.proxy_acc[i]:>10.2f}%{100 * rep.long_acc[i]:>9.2f}%  "
                     f"{rep.statuses[i]:<6}  {rep.genotypes[i]}")

    def fmt(v: float | None) -> str:
        return "undefined" if v is None else f"{v:+.3f}"

    n_ok = sum(s == "ok" for s in rep.statuses)
    lines.append(f"Kendall tau {fmt(rep.kendall_tau)}, Spearman rho {fmt(rep.spearman_rho)} over {n_ok} candidates "
                 f"(proxy {rep.proxy_epochs:.3g} epochs vs {rep.long_epochs:.3g}; {rep.wall_s:.1f} s)")
    if n_ok:
        best = max((i for i in range(len(rs)) if rep.statuses[i] == "ok"), key=lambda i: rep.proxy_acc[i])
        lines.append(f"the proxy's best candidate ranks #{rl[best]} of {len(rl)} with the longer budget")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; config mistakes exit 2 with one line on stderr."""
    ap = argparse.ArgumentParser(prog="python -m nas.proxycheck", description=__doc__.splitlines()[0])
    ap.add_argument("config", help="search config YAML (its space, data and train sections are used)")
    ap.add_argument("--samples", type=int, default=8, help="candidates to train (default 8)")
    ap.add_argument("--long-epochs", type=float, default=None, help="the longer budget (default 3x train.epochs)")
    ap.add_argument("--seed", type=int, default=0, help="which candidates are drawn")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. train.epochs=2 (repeatable)")
    ap.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    args = ap.parse_args(argv)
    if args.samples < 2:
        ap.error("--samples must be at least 2 to rank anything")
    try:
        cfg = load_config(args.config, args.sets)
        long_epochs = args.long_epochs if args.long_epochs is not None else 3 * cfg.train.epochs
        if long_epochs <= 0:
            ap.error("--long-epochs must be positive")
        rep = proxy_check(cfg, args.samples, long_epochs, args.seed)
    except UserError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(format_report(rep))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rep.to_dict(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
