"""What a pipeline run's own numbers say its proxy can and cannot tell apart.

The pipeline's report lists accuracies to four decimals; whether a difference between two of them
means anything depends on how much one network's proxy accuracy moves with the training seed. This
module measures that from the run itself (the re-seeded candidates and grid points) and writes the
report's section that holds each of the run's decisions (winner, discovered vs EfficientNet-B0,
the grid's coefficients, stage 2's ranking) against it.
"""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from .config import DataConfig
from .reseed import SeedStats

RESOLVED = 2.0  # a difference of more than this many seed-noise standard deviations is read as real


def native_size(data: DataConfig) -> int | None:
    """The stored side of the source's images when they are square and in memory (digits: 8), else None."""
    from .data import open_source

    try:
        x = getattr(open_source(data), "x", None)
    except Exception:  # noqa: BLE001 - a note in a report is not worth failing a finished run over
        return None
    if x is None or x.ndim != 4 or x.shape[1] != x.shape[2]:
        return None
    return int(x.shape[1])


def seed_noise(stats: Sequence[SeedStats], grid_records: Sequence[dict[str, Any]] = ()) -> tuple[float, int] | None:
    """(median std of proxy accuracy over seeds, how many networks it comes from), from re-seeded networks."""
    stds = [s.std_accuracy for s in stats if s.n >= 2]
    stds += [float(r["accuracy_std"]) for r in grid_records if r.get("seeds", 1) >= 2 and "accuracy_std" in r]
    return (float(statistics.median(stds)), len(stds)) if stds else None


def _verdict(diff: float, noise: float | None) -> tuple[str, bool]:
    """The sentence on a difference and whether it is resolved."""
    if noise is None or noise <= 0:
        return "with no seed-noise estimate to hold it against (turn on `search.reseed_top_k`)", False
    ratio = abs(diff) / noise
    if ratio > RESOLVED:
        return f"{ratio:.1f}x the seed noise: a difference this proxy resolves", True
    return f"{ratio:.1f}x the seed noise: **within noise**, the proxy cannot tell them apart", False


def _spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return float(spearmanr(xs, ys).statistic)


def section(data: DataConfig, proxy_resolution: int, search_stats: Sequence[SeedStats], best_accuracy: float,
            b0_accuracy: float, grid_records: Sequence[dict[str, Any]], grid_best: dict[str, Any],
            kendall_tau: float | None = None, ranked: int = 0) -> list[str]:
    """The report's lines on what the proxy resolves, from this run's own seed noise."""
    def pts(x: float) -> str:
        return f"{100 * x:.2f} points"

    noise_est = seed_noise(search_stats, grid_records)
    noise = noise_est[0] if noise_est else None
    doubts = 0
    lines = ["## What this proxy can and cannot tell", ""]
    if noise_est is not None:
        lines.append(f"- **Seed noise**: the proxy accuracy of one network moves with its training seed by a median "
                     f"standard deviation of {pts(noise)} (the {noise_est[1]} re-seeded networks of this run). A "
                     f"difference below {RESOLVED:g}x that is not evidence.")
    else:
        doubts += 1
        lines.append("- **Seed noise**: unknown, nothing in this run was trained with more than one seed; every "
                     "difference below is unverified.")

    def compare(label: str, detail: str, diff: float) -> None:
        nonlocal doubts
        text, resolved = _verdict(diff, noise)
        doubts += not resolved
        lines.append(f"- **{label}** {detail}: {pts(diff)} of accuracy, {text}.")

    if len(search_stats) >= 2:
        a, b = search_stats[0], search_stats[1]
        compare("The search's winner", "vs its runner-up (means over seeds)", a.mean_accuracy - b.mean_accuracy)
    compare("Discovered vs EfficientNet-B0", "with the same proxy budget", best_accuracy - b0_accuracy)
    ok = sorted((r for r in grid_records if r.get("status", "ok") == "ok"), key=lambda r: -r["accuracy"])
    if len(ok) >= 2:
        compare("The grid's choice", f"(alpha {grid_best['alpha']:.2f}, beta {grid_best['beta']:.2f}, gamma "
                f"{grid_best['gamma']:.2f}) over the next point", ok[0]["accuracy"] - ok[1]["accuracy"])
        rho = _spearman([float(r["params"]) for r in ok], [float(r["accuracy"]) for r in ok])
        if rho is not None and rho < 0:
            doubts += 1
            lines.append(f"- **Capacity is penalised**: across the grid's points, accuracy falls as parameters grow "
                         f"(Spearman rho {rho:+.2f}). At this training budget larger networks have not finished "
                         "learning, so the grid favours the coefficients that add the fewest parameters (depth and "
                         "width lose to resolution) whatever they would give after full training.")
    native = native_size(data)
    if native is not None and native < proxy_resolution:
        doubts += 1
        lines.append(f"- **Resolution adds no information here**: the source's images are {native}x{native}, "
                     f"upsampled to {proxy_resolution}x{proxy_resolution} for the proxy (and further by gamma in the "
                     "grid). A higher resolution only adds interpolated pixels, so what the grid says about gamma "
                     "does not carry over to real images.")
    if kendall_tau is not None:
        held = kendall_tau >= 0.6
        doubts += not held
        lines.append(f"- **Stage 2** ordered its {ranked} models with Kendall tau {kendall_tau:+.2f} against the proxy: "
                     + ("the proxy's order largely held up under longer training." if held
                        else "the proxy's order did not hold up under longer training."))
    lines.append("")
    if doubts:
        lines += ["So this run shows that the machinery works end to end and what each stage costs; the decisions "
                  "marked above are not supported by its proxy. For decisions, use real data at its native resolution "
                  "with a longer proxy (`bench/cifar_study.py`, `configs/efficientnet_imagenet.yaml`) and check the "
                  "proxy's ranking first (`python -m nas.proxycheck`).", ""]
    else:
        lines += ["Every decision above stands clear of this run's seed noise.", ""]
    return lines
