"""The rounding rules of the official EfficientNet code, and scaling a genotype by width/depth.

This is the single home of these rules: the cost model, the builder and `scaling/` all call it.
"""
from __future__ import annotations

import math
from dataclasses import replace

from .genotype import Genotype

DIVISOR = 8


def make_divisible(value: float, divisor: int = DIVISOR) -> int:
    """`value` rounded to the nearest multiple of `divisor`, at least `divisor`, never 10% below `value`."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return int(new)


def round_channels(channels: int, width: float, divisor: int = DIVISOR) -> int:
    """Scale a channel count by `width` and round to a multiple of `divisor` (official rule)."""
    if width == 1.0:
        return channels
    return make_divisible(channels * width, divisor)


def round_layers(layers: int, depth: float) -> int:
    """Scale a stage's layer count by `depth`, rounding up (official rule)."""
    if depth == 1.0:
        return layers
    return int(math.ceil(depth * layers))


def expanded_channels(c_in: int, expansion: float) -> int:
    """Width of an MBConv's depthwise conv: c_in x e, exact for an integer e, else `make_divisible` (timm's rule).

    MobileNetV3-Large's e2.5 and e2.3 at 80 input channels give its 200 and 184.
    """
    if isinstance(expansion, int):
        return c_in * expansion
    return make_divisible(c_in * expansion)


def se_channels(block_in: int, ratio: float) -> int:
    """Squeeze width of an EfficientNet SE module: a ratio of the block's input channels, at least 1."""
    return max(1, int(block_in * ratio))


def squeeze_channels(block_in: int, mid: int, ratio: float, gate: str = "sigmoid") -> int:
    """Squeeze width of a block's SE: EfficientNet's (`gate` sigmoid) or MobileNetV3's (hsigmoid, of the expanded width)."""
    if gate == "hsigmoid":
        return make_divisible(int(mid * ratio))
    return se_channels(block_in, ratio)


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
    """Apply width/depth multipliers to stem, every stage and head, and optionally set a resolution.

    Everything else is kept: per-stage activations, expansions (float ones give their expanded
    width through `expanded_channels`), the SE variant and the head form (a MobileNetV3 head's
    feature-mix width scales like the head, as torchvision's width multiplier does).
    """
    stages = tuple(
        replace(st, channels=round_channels(st.channels, width, divisor), layers=round_layers(st.layers, depth))
        for st in g.stages
    )
    return replace(
        g,
        stem=replace(g.stem, channels=round_channels(g.stem.channels, width, divisor)),
        stages=stages,
        head=round_channels(g.head, width, divisor),
        head_mix=round_channels(g.head_mix, width, divisor) if g.head_mix else 0,
        resolution=g.resolution if resolution is None else int(resolution),
    )


__all__ = ["DIVISOR", "make_divisible", "round_channels", "round_layers", "expanded_channels", "se_channels",
           "squeeze_channels", "round_resolution", "resolution_divisor",
           "scale_resolution", "scale_genotype"]
