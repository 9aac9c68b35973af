"""Is the proxy trustworthy? Rank a sample of candidates with two estimators and compare.

``python -m nas.proxycheck CONFIG [--samples N] [--long-epochs E] [--a SPEC] [--b SPEC]`` draws N
distinct random members of the config's space, scores each with estimator A (default ``proxy``:
the config's ``train`` section, what the search uses) and estimator B (default ``long``: the same
with ``train.epochs = E``), both with the seed the search would give it, and reports Kendall's
tau and Spearman's rho between the two accuracy rankings. Values near 1 mean A orders candidates
as B does; near 0, a search driven by A makes mostly noisy choices.

Estimators: ``proxy``, ``long``, ``standard[:EPOCHS]``, ``fast[:EPOCHS]`` (a trainer without its own
epochs gets the config's on side A and E on side B) and ``supernet[:CHECKPOINT]`` (inherited
weights, docs/supernet.md), e.g. ``--a supernet:runs/x-supernet/supernet.pt --b standard --long-epochs 20``.
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
    a_name: str = "proxy"      # the estimator behind proxy_acc (--a)
    b_name: str = "long"       # the estimator behind long_acc (--b)
    a_time_s: float = 0.0      # its summed train + eval seconds
    b_time_s: float = 0.0

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


ESTIMATORS = ("proxy", "long", "standard[:EPOCHS]", "fast[:EPOCHS]", "supernet[:CHECKPOINT]")


def estimator(cfg: Config, spec: str, epochs: float | None) -> tuple[str, Any]:
    """(label, Evaluator) of an estimator spec; trainers without their own epochs get `epochs` (None: the config's).

    ``proxy``: the config's train section as it is; ``long``: the same with `epochs`;
    ``standard[:E]`` / ``fast[:E]``: that trainer for E epochs; ``supernet[:CHECKPOINT]``: inherited
    weights from a trained supernet (default: the config's supernet.checkpoint).
    """
    from .config import ConfigError, resolve_path
    from .evaluate import Evaluator

    kind, _, arg = spec.partition(":")
    train, sn = cfg.train, cfg.supernet
    if kind == "proxy" and not arg:
        label = "proxy"
    elif kind == "long" and not arg:
        train = dataclasses.replace(train, epochs=float(epochs), steps=None) if epochs else train
        label = f"long {train.epochs:g}ep"
    elif kind in ("standard", "fast"):
        try:
            e = float(arg) if arg else epochs
        except ValueError:
            raise ConfigError(f"estimator {spec!r}: {arg!r} is not a number of epochs") from None
        if e is not None and not e > 0:
            raise ConfigError(f"estimator {spec!r}: epochs must be positive")
        train = dataclasses.replace(train, evaluator=kind, **({"epochs": float(e), "steps": None} if e else {}))
        label = f"{kind} {train.epochs:g}ep" if not train.steps else f"{kind} {train.steps} steps"
    elif kind == "supernet":
        ckpt = str(resolve_path(arg, Path.cwd())) if arg else sn.checkpoint
        if not ckpt:
            raise ConfigError(f"estimator {spec!r}: give the checkpoint (supernet:PATH) or set supernet.checkpoint")
        train = dataclasses.replace(train, evaluator="supernet")
        sn = dataclasses.replace(sn, checkpoint=ckpt)
        label = "supernet"
    else:
        raise ConfigError(f"estimator {spec!r} is not one of {', '.join(ESTIMATORS)}")
    ev = Evaluator(cfg.data, train, sn)
    if ev.kind == "supernet":
        from search_space import SearchSpace

        from .supernet.evaluator import check_for_search

        space = SearchSpace.from_yaml(cfg.space)
        check_for_search(ev, space, ev.prepare(space.resolution), f"estimator {spec!r}")
    return label, ev


def proxy_check(cfg: Config, samples: int, long_epochs: float, seed: int = 0, a: str = "proxy",
                b: str = "long") -> ProxyReport:
    """Score `samples` candidates with estimators `a` (default the proxy) and `b` (default `long_epochs`); correlate."""
    from .results import eval_seed

    t0 = time.perf_counter()
    gs = sample_genotypes(cfg, samples, seed)
    seeds = [eval_seed(cfg.search.seed, g.to_string()) for g in gs]
    a_name, ev_a = estimator(cfg, a, None)
    b_name, ev_b = estimator(cfg, b, long_epochs)
    short = ev_a.evaluate_many(gs, seeds)
    long = ev_b.evaluate_many(gs, seeds)
    ok = [i for i in range(len(gs)) if short[i].ok and long[i].ok]
    tau, rho = rank_correlations([short[i].accuracy for i in ok], [long[i].accuracy for i in ok])
    statuses = [a.status if not a.ok else b.status for a, b in zip(short, long)]
    proxy_epochs = float(short[0].epochs) if short and short[0].ok else float(cfg.train.epochs)
    return ProxyReport(genotypes=[g.to_string() for g in gs], proxy_acc=[r.accuracy for r in short],
                       long_acc=[r.accuracy for r in long], statuses=statuses, kendall_tau=tau, spearman_rho=rho,
                       proxy_epochs=proxy_epochs, long_epochs=float(long_epochs),
                       wall_s=time.perf_counter() - t0, a_name=a_name, b_name=b_name,
                       a_time_s=sum(r.train_time_s + r.eval_time_s for r in short),
                       b_time_s=sum(r.train_time_s + r.eval_time_s for r in long))


def _ranks(x: list[float]) -> list[int]:
    order = sorted(range(len(x)), key=lambda i: -x[i])
    r = [0] * len(x)
    for pos, i in enumerate(order):
        r[i] = pos + 1
    return r


def format_report(rep: ProxyReport) -> str:
    """A table (rank and accuracy under both budgets per candidate) and the two correlations."""
    rs, rl = _ranks(rep.proxy_acc), _ranks(rep.long_acc)
    a, b = rep.a_name, rep.b_name
    lines = [f"A = {a} ({rep.a_time_s:.1f} s), B = {b} ({rep.b_time_s:.1f} s)",
             f"{'A':>6}{'B':>6}{'A acc':>11}{'B acc':>10}  status  genotype"]
    for i in sorted(range(len(rs)), key=lambda i: rs[i]):
        lines.append(f"{rs[i]:>6}{rl[i]:>6}{100 * rep.proxy_acc[i]:>10.2f}%{100 * rep.long_acc[i]:>9.2f}%  "
                     f"{rep.statuses[i]:<6}  {rep.genotypes[i]}")

    def fmt(v: float | None) -> str:
        return "undefined" if v is None else f"{v:+.3f}"

    n_ok = sum(s == "ok" for s in rep.statuses)
    lines.append(f"Kendall tau {fmt(rep.kendall_tau)}, Spearman rho {fmt(rep.spearman_rho)} over {n_ok} candidates "
                 f"({a} vs {b}; {rep.wall_s:.1f} s)")
    if n_ok:
        best = max((i for i in range(len(rs)) if rep.statuses[i] == "ok"), key=lambda i: rep.proxy_acc[i])
        lines.append(f"the best candidate of A ({a}) ranks #{rl[best]} of {len(rl)} with B ({b})")
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
    ap.add_argument("--a", default="proxy", metavar="SPEC",
                    help="estimator A (default proxy): proxy, long, standard[:E], fast[:E], supernet[:CHECKPOINT]")
    ap.add_argument("--b", default="long", metavar="SPEC", help="estimator B, the reference (default long)")
    args = ap.parse_args(argv)
    if args.samples < 2:
        ap.error("--samples must be at least 2 to rank anything")
    try:
        cfg = load_config(args.config, args.sets)
        long_epochs = args.long_epochs if args.long_epochs is not None else 3 * cfg.train.epochs
        if long_epochs <= 0:
            ap.error("--long-epochs must be positive")
        rep = proxy_check(cfg, args.samples, long_epochs, args.seed, a=args.a, b=args.b)
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
