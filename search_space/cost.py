"""Exact parameter and multiply-add counts of a genotype, in pure Python (no torch).

What is counted (the definition docs/reference.md uses):
- params: every trainable tensor of the built model, i.e. ``sum(p.numel() for p in
  model.parameters())``: conv weights (no bias, BN follows), BN weight and bias, SE convs with
  bias, the MobileNetV3 head's feature-mix layer with bias (no BN), the classifier with bias.
  BN running statistics are buffers and not counted.
- MACs: multiply-adds of every Conv2d and Linear at batch 1: for a conv, output elements x
  kernel area x input channels per group; for a Linear, in x out. Biases, BN, activations,
  pooling, SE gating and residual additions are not counted. Convs use padding k // 2, so a
  stride-s layer maps H to (H - 1) // s + 1.

The numbers equal the torch module built by `search_space.model.build_model` exactly (tested).

Activations (`activation_elements`): the output elements of every Conv2d and Linear at batch 1,
what training keeps for the backward pass give or take the BN and activation outputs beside
them. With the parameter count it is the size guard `check_size` applies before a network is
built.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache

from .genotype import Genotype, GenotypeError
from .rounding import expanded_channels, scale_genotype, squeeze_channels

# Generous defaults: 8 GB of float32 weights (30x EfficientNet-B7), and 15x the 1.08 GiB that
# B7 at 600 px keeps at batch 1; above them a build is a typo, not a model.
MAX_PARAMS = 2_000_000_000
MAX_ACTIVATION_BYTES = 16 * 2**30
PARAMS_ENV = "HWNAS_MAX_PARAMS"
ACTIVATION_BYTES_ENV = "HWNAS_MAX_ACTIVATION_BYTES"
BYTES_PER_ELEMENT = 4  # float32


class ModelSizeError(GenotypeError):
    """A network above the size limits: refused before any memory is allocated."""


@dataclass(frozen=True)
class Cost:
    """Params and multiply-adds of a network at one input size."""

    params: int
    macs: int


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Spatial output size of a conv with padding kernel // 2."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


@lru_cache(maxsize=1 << 16)
def layer_cost(op: str, kernel: int, expansion: int | float, se: float, c_in: int, c_out: int, stride: int,
               h: int, w: int, se_gate: str = "sigmoid") -> tuple[int, int, int, int]:
    """(params, macs, out height, out width) of one layer of a stage (`se_gate`: the SE variant)."""
    ho, wo = conv_out(h, kernel, stride), conv_out(w, kernel, stride)
    params = macs = 0
    if op == "cn":
        params += kernel * kernel * c_in * c_out + 2 * c_out
        macs += ho * wo * kernel * kernel * c_in * c_out
        mid = c_out
    else:  # "ir" and "ds": [expand 1x1] -> depthwise kxk -> [SE] -> project 1x1
        mid = expanded_channels(c_in, expansion)
        if expansion != 1:
            params += c_in * mid + 2 * mid
            macs += h * w * c_in * mid
        params += mid * kernel * kernel + 2 * mid
        macs += ho * wo * mid * kernel * kernel
        params += mid * c_out + 2 * c_out
        macs += ho * wo * mid * c_out
    if se:
        sq = squeeze_channels(c_in, mid, se, se_gate)
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
    params, macs, h, w = stem_cost(stem.kernel, stem.stride, in_channels, c, h, w)
    gate = g.se_gate
    for st in g.stages:
        op, k, e, se, c_out = st.op, st.kernel, st.expansion, st.se, st.channels
        p, m, h, w = layer_cost(op, k, e, se, c, c_out, st.stride, h, w, gate)
        params += p
        macs += m
        if st.layers > 1:
            p, m, _, _ = layer_cost(op, k, e, se, c_out, c_out, 1, h, w, gate)
            params += p * (st.layers - 1)
            macs += m * (st.layers - 1)
        c = c_out
    p, m = head_cost(c, g.head, g.head_mix, num_classes, h, w)
    return Cost(params=params + p, macs=macs + m)


def stem_cost(kernel: int, stride: int, c_in: int, c_out: int, h: int, w: int) -> tuple[int, int, int, int]:
    """(params, macs, out height, out width) of the stem conv (with BN) on an h x w x c_in input."""
    ho, wo = conv_out(h, kernel, stride), conv_out(w, kernel, stride)
    return kernel * kernel * c_in * c_out + 2 * c_out, ho * wo * kernel * kernel * c_in * c_out, ho, wo


def head_cost(c_in: int, channels: int, mix: int, num_classes: int, h: int, w: int) -> tuple[int, int]:
    """(params, macs) of the head: 1x1 conv to `channels` (with BN), [feature mix to `mix`], classifier."""
    params, macs = c_in * channels + 2 * channels, h * w * c_in * channels
    last = channels
    if mix:
        params += channels * mix + mix
        macs += channels * mix
        last = mix
    return params + last * num_classes + num_classes, macs + last * num_classes


@lru_cache(maxsize=1 << 16)
def _layer_activations(op: str, kernel: int, expansion: int | float, se: float, c_in: int, c_out: int, stride: int,
                       h: int, w: int, se_gate: str) -> tuple[int, int, int]:
    ho, wo = conv_out(h, kernel, stride), conv_out(w, kernel, stride)
    if op == "cn":
        mid = c_out
        n = ho * wo * c_out
    else:
        mid = expanded_channels(c_in, expansion)
        n = h * w * mid if expansion != 1 else 0
        n += ho * wo * mid + ho * wo * c_out
    if se:
        n += squeeze_channels(c_in, mid, se, se_gate) + mid
    return n, ho, wo


def activation_elements(g: Genotype, resolution: int | tuple[int, int] | None = None,
                        num_classes: int = 1000) -> int:
    """Output elements of every Conv2d and Linear of `g` at batch 1 (default: its own resolution)."""
    if resolution is None:
        resolution = g.resolution
    h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
    stem = g.stem
    h, w = conv_out(h, stem.kernel, stem.stride), conv_out(w, stem.kernel, stem.stride)
    total = h * w * stem.channels
    c = stem.channels
    for st in g.stages:
        n, h, w = _layer_activations(st.op, st.kernel, st.expansion, st.se, c, st.channels, st.stride, h, w,
                                     g.se_gate)
        total += n
        if st.layers > 1:
            total += _layer_activations(st.op, st.kernel, st.expansion, st.se, st.channels, st.channels, 1,
                                        h, w, g.se_gate)[0] * (st.layers - 1)
        c = st.channels
    return total + h * w * g.head + g.head_mix + num_classes


def size_limits(max_params: float | None = None, max_activation_bytes: float | None = None) -> tuple[float, float]:
    """The limits in force: the arguments, else HWNAS_MAX_PARAMS / HWNAS_MAX_ACTIVATION_BYTES, else the defaults."""
    return (_limit(max_params, PARAMS_ENV, MAX_PARAMS, "max_params"),
            _limit(max_activation_bytes, ACTIVATION_BYTES_ENV, MAX_ACTIVATION_BYTES, "max_activation_bytes"))


def check_size(g: Genotype, resolution: int | tuple[int, int] | None = None, in_channels: int = 3,
               num_classes: int = 1000, max_params: float | None = None,
               max_activation_bytes: float | None = None) -> Cost:
    """The cost of `g`, or ModelSizeError (one line: size, limit, how to raise it) above the limits."""
    for name, v in (("in_channels", in_channels), ("num_classes", num_classes)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise GenotypeError(f"{name} {v!r} is not allowed; allowed: an integer >= 1")
    p_limit, a_limit = size_limits(max_params, max_activation_bytes)
    c = cost(g, resolution, in_channels=in_channels, num_classes=num_classes)
    if c.params > p_limit:
        raise ModelSizeError(f"network {_short(g)} has {c.params:,} parameters, above the limit of "
                             f"{p_limit:,.0f}; raise it with the environment variable {PARAMS_ENV}, max_params= "
                             f"or `python -m scaling export --max-params`")
    nbytes = activation_elements(g, resolution, num_classes) * BYTES_PER_ELEMENT
    if nbytes > a_limit:
        res = g.resolution if resolution is None else resolution
        raise ModelSizeError(f"network {_short(g)} keeps {nbytes / 2**30:,.1f} GiB of activations at batch 1 "
                             f"and resolution {res}, above the limit of {a_limit / 2**30:,.1f} GiB; raise it "
                             f"with max_activation_bytes= or the environment variable {ACTIVATION_BYTES_ENV}")
    return c


def _limit(value: float | None, env: str, default: float, name: str) -> float:
    source = name
    if value is None:
        raw = os.environ.get(env, "").strip()
        if not raw:
            return float(default)
        source = f"environment variable {env}"
        try:
            value = float(raw)
        except ValueError:
            raise ModelSizeError(f"{source}={raw!r} is not a number; allowed: a number > 0 such as 4e9") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
        raise ModelSizeError(f"{source} {value!r} is not allowed; allowed: a number > 0 (inf for no limit)")
    return float(value)


def _short(g: Genotype) -> str:
    text = g.to_string()
    return text if len(text) <= 80 else text[:77] + "..."
