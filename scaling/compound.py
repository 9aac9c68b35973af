"""Compound scaling: the official B0-B7 coefficients and the (alpha, beta, gamma, phi) map.

The rounding rules (channels, layers, resolution) live in `search_space.rounding`; this module
only decides the multipliers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from search_space.genotype import Genotype
from search_space.rounding import DIVISOR, scale_genotype, scale_resolution

# Tan & Le 2019, the released models: (width, depth, resolution, dropout).
OFFICIAL: dict[str, tuple[float, float, int, float]] = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}
# The grid search at phi = 1 in the paper.
PAPER_COEFFICIENTS = (1.2, 1.1, 1.15)


@dataclass(frozen=True)
class Multipliers:
    """Width, depth and resolution of one member of a family."""

    phi: float
    width: float
    depth: float
    resolution: int
    dropout: float | None = None


def compound(alpha: float, beta: float, gamma: float, phi: float, base_resolution: int = 224,
             divisor: int | None = None) -> Multipliers:
    """depth = alpha^phi, width = beta^phi, resolution = base * gamma^phi rounded to a multiple of `divisor`.

    The resolution follows `search_space.rounding.scale_resolution` (nearest multiple of
    `resolution_divisor(base)` unless `divisor` is given), the rule `official` uses too.
    """
    for name, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 1.0):
            raise ValueError(f"{name} must be a finite number >= 1, got {v}")
    if not (isinstance(phi, (int, float)) and math.isfinite(phi)):
        raise ValueError(f"phi must be a finite number (e.g. 1, 2.5 or -1), got {phi}")
    try:
        m = Multipliers(phi=phi, width=round(beta ** phi, 6), depth=round(alpha ** phi, 6),
                        resolution=scale_resolution(base_resolution, gamma ** phi, divisor))
    except OverflowError:
        m = None
    if m is None or not (math.isfinite(m.width) and math.isfinite(m.depth)):
        raise ValueError(f"phi {phi} with alpha {alpha}, beta {beta}, gamma {gamma} overflows; use a smaller phi")
    return m


def official(name: str, base_resolution: int = 224) -> Multipliers:
    """The released multipliers of EfficientNet-`name` (b0..b7); resolution relative to 224."""
    key = name.lower().replace("efficientnet-", "")
    if key not in OFFICIAL:
        raise ValueError(f"unknown official model {name!r}; known: {sorted(OFFICIAL)}")
    w, d, r, drop = OFFICIAL[key]
    # At 224 the released resolutions themselves (260, 300, 380 are not multiples of 8).
    res = r if base_resolution == 224 else scale_resolution(base_resolution, r / 224)
    return Multipliers(phi=int(key[1:]), width=w, depth=d, resolution=res, dropout=drop)


def apply(genotype: Genotype, m: Multipliers, divisor: int = DIVISOR) -> Genotype:
    """Scale any genotype by a family member's multipliers (official rounding rules).

    `divisor` is the channel multiple (8 in the official code); tiny networks of a few dozen
    channels scale more smoothly with 2 or 4.
    """
    return scale_genotype(genotype, m.width, m.depth, m.resolution, divisor)
