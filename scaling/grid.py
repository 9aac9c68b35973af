"""Step 1 of compound scaling: the (alpha, beta, gamma) grid under alpha * beta^2 * gamma^2 ~= 2.

Pure enumeration and selection; training the grid points is `nas.grid`'s job.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .compound import PAPER_COEFFICIENTS


@dataclass(frozen=True)
class GridPoint:
    """One candidate triple of compound coefficients."""

    alpha: float
    beta: float
    gamma: float

    @property
    def product(self) -> float:
        """alpha * beta^2 * gamma^2, the FLOPs factor per unit of phi."""
        return self.alpha * self.beta ** 2 * self.gamma ** 2

    @property
    def key(self) -> str:
        """A stable name, e.g. ``a1.20_b1.10_g1.15``."""
        return f"a{self.alpha:.2f}_b{self.beta:.2f}_g{self.gamma:.2f}"


# The paper's chosen point, kept when a grid is subsampled.
PAPER_POINT = GridPoint(*PAPER_COEFFICIENTS)


def enumerate_grid(step: float = 0.05, tolerance: float = 0.1, factor: float = 2.0,
                   max_alpha: float | None = None, max_beta: float | None = None,
                   max_gamma: float | None = None) -> list[GridPoint]:
    """All (alpha, beta, gamma) on a `step` grid, each >= 1, with |alpha*beta^2*gamma^2 - factor| <= tolerance."""
    if step <= 0:
        raise ValueError(f"step must be > 0, got {step}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    hi = factor + tolerance
    max_alpha = hi if max_alpha is None else max_alpha
    max_beta = math.sqrt(hi) if max_beta is None else max_beta
    max_gamma = math.sqrt(hi) if max_gamma is None else max_gamma

    def axis(top: float) -> list[float]:
        n = int(math.floor((top - 1.0) / step + 1e-9))
        return [round(1.0 + i * step, 10) for i in range(n + 1)]

    points = [GridPoint(a, b, g) for a in axis(max_alpha) for b in axis(max_beta) for g in axis(max_gamma)
              if abs(a * b * b * g * g - factor) <= tolerance + 1e-12]
    return points


def spread(points: Sequence[GridPoint], k: int | None, must: Iterable[GridPoint] = ()) -> list[GridPoint]:
    """At most `k` points spread evenly over the list (sorted by alpha, beta, gamma), keeping `must`."""
    pts = sorted(points, key=lambda p: (p.alpha, p.beta, p.gamma))
    if k is None or k >= len(pts):
        return pts
    keep = [p for p in must if p in pts][:k]
    rest = [p for p in pts if p not in keep]
    n = k - len(keep)
    if n > 0 and rest:
        idx = sorted({round(i * (len(rest) - 1) / max(1, n - 1)) for i in range(n)}) if n > 1 else [len(rest) // 2]
        keep += [rest[i] for i in idx]
    return sorted(keep, key=lambda p: (p.alpha, p.beta, p.gamma))


def choose(results: Sequence[Mapping]) -> Mapping:
    """The best grid result: highest accuracy, ties broken by lower MACs."""
    ok = [r for r in results if r.get("status", "ok") == "ok"]
    if not ok:
        raise ValueError("no grid point trained successfully")
    return max(ok, key=lambda r: (round(float(r["accuracy"]), 6), -int(r["macs"])))
