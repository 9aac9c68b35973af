"""Exact parameter and multiply-add counts of a genotype, in pure Python (no torch).

What is counted (the definition of REFERENCE.md):
- params: every trainable tensor of the built model, i.e. ``sum(p.numel() for p in
  model.parameters())``: conv weights (no bias, BN follows), BN weight and bias, SE convs with
  bias, the classifier with bias. BN running statistics are buffers and not counted.
- MACs: multiply-adds of every Conv2d and Linear at batch 1: for a conv, output elements x
  kernel area x input channels per group; for a Linear, in x out. Biases, BN, activations,
  pooling, SE gating and residual additions are not counted. Convs use padding k // 2, so a
  stride-s layer maps H to (H - 1) // s + 1.

The numbers equal the torch module built by `search_space.model.build_model` exactly (tested).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .genotype import Genotype
from .rounding import scale_genotype, se_channels


@dataclass(frozen=True)
class Cost:
    """Params and multiply-adds of a network at one input size."""

    params: int
    macs: int


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Spatial output size of a conv with padding kernel // 2."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


@lru_cache(maxsize=1 << 16)
def layer_cost(op: str, kernel: int, expansion: int, se: float, c_in: int, c_out: int, stride: int,
               h: int, w: int) -> tuple[int, int, int, int]:
    """(params, macs, out height, out width) of one layer of a stage."""
    ho, wo = conv_out(h, kernel, stride), conv_out(w, kernel, stride)
    params = macs = 0
    if op == "cn":
        params += kernel * kernel * c_in * c_out + 2 * c_out
        macs += ho * wo * kernel * kernel * c_in * c_out
        mid = c_out
    else:  # "ir" and "ds": [expand 1x1] -> depthwise kxk -> [SE] -> project 1x1
        mid = c_in * expansion
        if expansion != 1:
            params += c_in * mid + 2 * mid
            macs += h * w * c_in * mid
        params += mid * kernel * kernel + 2 * mid
        macs += ho * wo * mid * kernel * kernel
        params += mid * c_out + 2 * c_out
        macs += ho * wo * mid * c_out
    if se:
        sq = se_channels(c_in, se)
        params += mid * sq + sq + sq * mid + mid
        macs += 2 * mid * sq
    return params, macs, ho, wo


def cost(g: Genotype, resolution: int | tuple[int, int] | None = None, in_channels: int = 3,
         num_classes: int = 1000, width: float = 1.0, depth: float = 1.0) -> Cost:
    """Params and MACs of `g` (scaled by width/depth) at a resolution (default: the genotype's)."""
    if width != 1.0 or depth != 1.0:
        g = scale_genotype(g, width, depth)
    if resolution is None:
        resolution = g.resolution
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    stem = g.stem
    c = stem.channels
    h, w = conv_out(h, stem.kernel, stem.stride), conv_out(w, stem.kernel, stem.stride)
    params = stem.kernel * stem.kernel * in_channels * c + 2 * c
    macs = h * w * stem.kernel * stem.kernel * in_channels * c
    for st in g.stages:
        op, k, e, se, c_out = st.op, st.kernel, st.expansion, st.se, st.channels
        p, m, h, w = layer_cost(op, k, e, se, c, c_out, st.stride, h, w)
        params += p
        macs += m
        if st.layers > 1:
            p, m, _, _ = layer_cost(op, k, e, se, c_out, c_out, 1, h, w)
            params += p * (st.layers - 1)
            macs += m * (st.layers - 1)
        c = c_out
    params += c * g.head + 2 * g.head + g.head * num_classes + num_classes
    macs += h * w * c * g.head + g.head * num_classes
    return Cost(params=params, macs=macs)
