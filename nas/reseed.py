"""Noise-aware winners: the search's top candidates trained again with more seeds, chosen by the mean.

A short proxy's accuracy moves by a point or more from one seed to the next, so the journal's
single best is often a lucky seed. After the search the top `k` candidates by reward get
`reseeds` more evaluations each (seeds derived from the genotype, so a resume gives the same),
journaled in ``reseed.jsonl``; the winner is the highest mean reward, and the report says when
the top candidates cannot be told apart (their means closer than twice the standard error of
the difference).
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .results import eval_seed

RESEED_FILE = "reseed.jsonl"


def check_reseed_record(record: dict[str, Any], position: int) -> None:
    """Raise ValueError saying why `record` is not a valid line of ``reseed.jsonl``."""
    from search_space import parse

    g = record.get("genotype")
    if not isinstance(g, str):
        raise ValueError(f"'genotype' is {g!r}, not a genotype string")
    parse(g)
    seed = record.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"'seed' is {seed!r}, not a seed")
    acc, reward = record.get("accuracy"), record.get("reward")
    if not (isinstance(acc, (int, float)) and not isinstance(acc, bool) and 0.0 <= acc <= 1.0):
        raise ValueError(f"'accuracy' is {acc!r}, not a number in [0, 1]")
    if not (isinstance(reward, (int, float)) and not isinstance(reward, bool) and math.isfinite(reward)):
        raise ValueError(f"'reward' is {reward!r}, not a finite number")


def reseed_seeds(search_seed: int, genotype: str, n: int) -> list[int]:
    """The `n` extra training seeds of a genotype (stable: the same on every resume and machine)."""
    return [eval_seed(search_seed, f"{genotype}#reseed{j}") for j in range(1, n + 1)]


def auto_top_k(requested: int | None, train: Any) -> int:
    """How many candidates to re-seed: the config's number, or (None) 3 for short proxies and 0 otherwise."""
    if requested is not None:
        return requested
    if getattr(train, "evaluator", "") == "supernet":
        return 0  # inherited weights do not depend on a training seed
    short = bool(train.steps) or float(train.epochs) <= 5
    return 3 if short else 0


@dataclass(frozen=True)
class SeedStats:
    """One candidate's accuracy and reward over every seed it was trained with (std: sample, 0 for one seed)."""

    record: dict[str, Any]  # its journal record (first seed)
    accuracies: tuple[float, ...]
    rewards: tuple[float, ...]
    mean_accuracy: float
    std_accuracy: float
    mean_reward: float
    std_reward: float

    @property
    def n(self) -> int:
        """Number of seeds."""
        return len(self.accuracies)


def _mean_std(xs: tuple[float, ...]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def seed_stats(record: dict[str, Any], accuracies: Iterable[float], rewards: Iterable[float]) -> SeedStats:
    """The statistics of one candidate's seeds (`record` is its first evaluation)."""
    accs, rews = tuple(accuracies), tuple(rewards)
    return SeedStats(record, accs, rews, *_mean_std(accs), *_mean_std(rews))


def summarize(records: list[dict[str, Any]], reseeds: list[dict[str, Any]]) -> list[SeedStats]:
    """Every re-seeded candidate with all its seeds, best mean reward first (failed seeds count as 0)."""
    by_key = {r["genotype"]: r for r in records}
    extra: dict[str, list[dict[str, Any]]] = {}
    for r in reseeds:
        if r["genotype"] in by_key:
            extra.setdefault(r["genotype"], []).append(r)
    out = []
    for key, rs in extra.items():
        first = by_key[key]
        out.append(seed_stats(first, [first["accuracy"]] + [r["accuracy"] for r in rs],
                              [first["reward"]] + [r["reward"] for r in rs]))
    return sorted(out, key=lambda s: (-s.mean_reward, s.record["index"]))


def separable(a: SeedStats, b: SeedStats) -> bool:
    """Whether `a`'s mean reward exceeds `b`'s by more than twice the standard error of the difference."""
    if a.n < 2 or b.n < 2:
        return False
    se = math.sqrt(a.std_reward ** 2 / a.n + b.std_reward ** 2 / b.n)
    return a.mean_reward - b.mean_reward > 2 * se


def winner_record(stats: list[SeedStats]) -> dict[str, Any] | None:
    """The chosen candidate's record with its mean and spread (for best.yaml), or None without stats."""
    if not stats:
        return None
    s = stats[0]
    return dict(s.record, accuracy=s.mean_accuracy, reward=s.mean_reward, accuracy_std=s.std_accuracy,
                seeds=s.n, first_seed_accuracy=s.record["accuracy"])


def markdown_section(stats: list[SeedStats], score: str = "reward") -> list[str]:
    """The report's lines on the re-seeded candidates and whether the winner stands out from noise.

    `score` names what the rewards are (the grid ranks its points by accuracy itself).
    """
    if not stats:
        return []
    lines = ["", f"## Re-evaluated with {stats[0].n} seeds each", "",
             "Short proxies are noisy: the top candidates were trained again with more seeds and the "
             f"winner is the highest *mean* {score}.", "",
             f"| # | mean {score} | accuracy mean +- std | seeds | first seed's accuracy | genotype |",
             "|---|---|---|---|---|---|"]
    for s in stats:
        lines.append(f"| {s.record.get('key', s.record.get('index'))} | {s.mean_reward:.4f} | "
                     f"{100 * s.mean_accuracy:.2f} +- "
                     f"{100 * s.std_accuracy:.2f}% | {s.n} | {100 * s.record['accuracy']:.2f}% | "
                     f"`{s.record['genotype']}` |")
    if len(stats) > 1 and not separable(stats[0], stats[1]):
        lines += ["", f"**Not separable from noise:** the winner's mean {score} ({stats[0].mean_reward:.4f}) is "
                      f"within twice the standard error of the runner-up's ({stats[1].mean_reward:.4f}); "
                      f"more seeds or a longer proxy are needed to tell them apart."]
    return lines


__all__ = ["RESEED_FILE", "SeedStats", "auto_top_k", "check_reseed_record", "markdown_section", "reseed_seeds",
           "seed_stats", "separable", "summarize", "winner_record"]
