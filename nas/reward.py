"""The multi-objective reward ``acc * (cost / target) ** w`` of MnasNet and EfficientNet.

``w = alpha`` when the cost is within the target and ``beta`` above it. Presets (MnasNet, Tan et
al. 2019): ``soft`` alpha = beta = -0.07 (doubling the cost is worth about 5% relative accuracy),
``hard`` alpha = 0, beta = -1 (no bonus under the target, a steep penalty above it). The cost is
multiply-adds from `search_space.cost` (objective ``flops``) or milliseconds from a latency
predictor (objective ``latency``); objective ``accuracy`` is the plain accuracy.
"""
from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from search_space import Genotype
from search_space import cost as analytic_cost

from .errors import UserError

PRESETS: dict[str, tuple[float, float]] = {"soft": (-0.07, -0.07), "hard": (0.0, -1.0)}
KINDS = ("flops", "latency", "accuracy")


class ObjectiveUnavailable(UserError):
    """The objective needs something that is not installed (the latency package or LiteRT)."""


def reward(accuracy: float, cost: float | None, target: float | None, alpha: float, beta: float) -> float:
    """``accuracy * (cost / target) ** w``, w = alpha if cost <= target else beta; plain accuracy without a target."""
    if cost is None or target is None:
        return float(accuracy)
    if not (cost > 0 and target > 0):
        raise ValueError(f"cost {cost!r} and target {target!r} must be positive")
    w = alpha if cost <= target else beta
    return float(accuracy) * (cost / target) ** w


def weights(preset: str | None, alpha: float | None, beta: float | None) -> tuple[float, float]:
    """(alpha, beta) from a preset or explicit exponents; soft constraint when nothing is given."""
    if alpha is not None or beta is not None:
        a = alpha if alpha is not None else beta
        b = beta if beta is not None else alpha
        return float(a), float(b)
    return PRESETS[preset or "soft"]


@dataclass(frozen=True)
class Costs:
    """What a candidate costs: params, multiply-adds and (with a latency objective) milliseconds."""

    params: int
    macs: int
    latency_ms: float | None = None


@dataclass(frozen=True)
class Objective:
    """Which cost the reward uses, its target (MACs or ms) and the exponents."""

    kind: str = "flops"
    target: float | None = None
    alpha: float = -0.07
    beta: float = -0.07

    def cost(self, costs: Costs) -> float | None:
        """The cost the reward is computed from (None for the accuracy objective)."""
        if self.kind == "flops":
            return float(costs.macs)
        if self.kind == "latency":
            return costs.latency_ms
        return None

    def reward(self, accuracy: float, costs: Costs) -> float:
        """The reward of a candidate with this accuracy and these costs (0 for a failed one)."""
        if not math.isfinite(accuracy) or accuracy <= 0.0:
            return 0.0
        if self.kind == "accuracy":
            return float(accuracy)
        return reward(accuracy, self.cost(costs), self.target, self.alpha, self.beta)


LatencyFn = Callable[[Genotype], float]


class CostModel:
    """Params and MACs of a genotype for the data's channels and classes, plus latency when asked."""

    def __init__(self, in_channels: int, num_classes: int, latency: LatencyFn | None = None) -> None:
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.latency = latency

    def __call__(self, g: Genotype) -> Costs:
        """The costs of one genotype at its own resolution."""
        c = analytic_cost(g, in_channels=self.in_channels, num_classes=self.num_classes)
        lat = float(self.latency(g)) if self.latency is not None else None
        return Costs(params=c.params, macs=c.macs, latency_ms=lat)


def check_latency_available(need_runtime: bool = True) -> None:
    """Raise ObjectiveUnavailable unless the latency package (and, to build a table, LiteRT) imports."""
    hint = "pip install ai-edge-litert (or: pip install 'hwnas[latency]')"
    if need_runtime and importlib.util.find_spec("ai_edge_litert") is None:
        raise ObjectiveUnavailable(f"objective 'latency' is not available: the LiteRT runtime is missing; {hint}")
    try:
        import latency  # noqa: F401
    except ImportError as e:  # the package exists in this repo, but its own imports may fail
        raise ObjectiveUnavailable(f"objective 'latency' is not available ({e}); {hint}") from None


def latency_predictor(lut: str | Path | None, space: object, resolution: int, cache_dir: str | Path | None,
                      threads: int = 1, num_classes: int = 1000, measure_missing: bool = False,
                      progress: bool = True, in_channels: int = 3) -> LatencyFn:
    """A genotype -> ms predictor; with ``lut=None`` a table for the space is built into cache_dir/lut.json.

    A given table is checked up front (resolution, classes, input channels, every block of the
    space, or those missing measured when `measure_missing`), so a wrong one fails before training.
    """
    check_latency_available(need_runtime=lut is None)
    import latency

    try:
        return latency.load_predictor(None if lut is None else str(lut), space, resolution=resolution,
                                      cache_dir=None if cache_dir is None else str(cache_dir), threads=threads,
                                      num_classes=num_classes, measure_missing=measure_missing, progress=progress,
                                      in_channels=in_channels)
    except latency.RuntimeMissingError as e:  # measure_missing found blocks to time, without LiteRT
        raise ObjectiveUnavailable(f"objective 'latency' is not available: {e}") from None


__all__ = ["PRESETS", "KINDS", "ObjectiveUnavailable", "reward", "weights", "Costs", "Objective", "CostModel",
           "check_latency_available", "latency_predictor"]
