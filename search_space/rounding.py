"""The rounding rules of the official EfficientNet code, and scaling a genotype by width/depth.

This is the single home of these rules: the cost model, the builder and `scaling/` all call it.
"""
from __future__ import annotations

import math
from dataclasses import replace

from .genotype import Genotype

DIVISOR = 8


def round_channels(channels: int, width: float, divisor: int = DIVISOR) -> int:
    """Scale a channel count by `width` and round to a multiple of `divisor` (official rule)."""
    if width == 1.0:
        return channels
    c = channels * width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    if new < 0.9 * c:
        new += divisor
    return int(new)


def round_layers(layers: int, depth: float) -> int:
    """Scale a stage's layer count by `depth`, rounding up (official rule)."""
    if depth == 1.0:
        return layers
    return int(math.ceil(depth * layers))


def se_channels(block_in: int, ratio: float) -> int:
    """Squeeze width of an SE module: a ratio of the block's input channels, at least 1."""
    return max(1, int(block_in * ratio))


def round_resolution(resolution: float, divisor: int = DIVISOR) -> int:
    """Round a scaled resolution to the nearest multiple of `divisor` (at least `divisor`)."""
    return max(divisor, int(round(resolution / divisor)) * divisor)


def resolution_divisor(base_resolution: int) -> int:
    """The multiple a resolution scaled from `base_resolution` is rounded to: `min(8, base // 16)`.

    8 at ImageNet sizes (within 2% of the exact value from 224 up, and early strides divide it
    cleanly), 2 at 32x32 and 1 at 16x16, so that small images still grow.
    """
    return max(1, min(DIVISOR, base_resolution // 16))


def scale_resolution(base_resolution: int, factor: float, divisor: int | None = None) -> int:
    """`base_resolution * factor` rounded to a multiple of `divisor` (default `resolution_divisor(base)`).

    The one rounding rule for every scaled resolution: compound (gamma^phi) and official (r / 224).
    """
    divisor = resolution_divisor(base_resolution) if divisor is None else divisor
    return round_resolution(base_resolution * factor, divisor)


def scale_genotype(g: Genotype, width: float = 1.0, depth: float = 1.0,
                   resolution: int | None = None, divisor: int = DIVISOR) -> Genotype:
    """Apply width/depth multipliers to stem, every stage and head, and optionally set a resolution."""
    stages = tuple(
        replace(st, channels=round_channels(st.channels, width, divisor), layers=round_layers(st.layers, depth))
        for st in g.stages
    )
    return replace(
        g,
        stem=replace(g.stem, channels=round_channels(g.stem.channels, width, divisor)),
        stages=stages,
        head=round_channels(g.head, width, divisor),
        resolution=g.resolution if resolution is None else int(resolution),
    )


__all__ = ["DIVISOR", "round_channels", "round_layers", "se_channels", "round_resolution", "resolution_divisor",
           "scale_resolution", "scale_genotype"]
