"""Canonical keys of latency-table entries, and the entries a genotype or a space needs.

A key names everything that changes a probe's graph, and nothing else. Keys use only letters,
digits, ``-``, ``.`` and ``x``, so they double as file names in the phone kit::

    invoke                                               per-invoke overhead (trivial model)
    stem-in224x224x3-out32-k3-s2-swish                   stem conv + BN + act
    ir-in112x112x32-out16-k3-s1-e1-se0.25-res0-swish     one block (res1: identity residual used)
    ir-in14x14x96-out136-k5-s1-e4-hse0.25-res0-hswish    MobileNetV3 SE (hard-sigmoid); e2.5: float expansion
    head-in7x7x320-out1280-cls1000-swish                 1x1 conv + act, global pool, classifier
    head-in7x7x192-out1152-mix1536-cls1000-hswish        MobileNetV3 head (feature mix after the pool)

Pure Python (no torch, no LiteRT): the predictor calls these thousands of times a second.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import lru_cache
from numbers import Integral
from typing import Any

from search_space.cost import conv_out, head_cost, layer_cost, stem_cost
from search_space.genotype import Genotype, Stage, uses_residual
from search_space.vocab import ACTIVATIONS, OP_CHOICES, OPS, SE_GATES

INVOKE_KEY = "invoke"


def _fmt_se(se: float) -> str:
    return format(float(se), "g")


@dataclass(frozen=True)
class InvokeSpec:
    """The trivial model whose time is the per-invoke overhead."""

    kind = "invoke"

    @property
    def key(self) -> str:
        """The entry key."""
        return INVOKE_KEY


@dataclass(frozen=True)
class _OnInput:
    """A probe that runs on one NHWC input of h x w x c_in."""

    h: int
    w: int
    c_in: int

    def __post_init__(self) -> None:
        # Arguments in another order would still make a well-formed key, of another probe.
        if not all(isinstance(v, Integral) and not isinstance(v, bool) and v > 0 for v in self.input_hwc):
            raise ValueError(f"{type(self).__name__}: input h, w, c_in must be positive integers, "
                             f"got {self.input_hwc!r}")

    @property
    def input_hwc(self) -> tuple[int, int, int]:
        """Input shape H, W, C."""
        return self.h, self.w, self.c_in


@dataclass(frozen=True)
class _ConvOnInput(_OnInput):
    """A probe whose first conv maps c_in to c_out channels with a kernel and a stride."""

    c_out: int
    kernel: int
    stride: int

    @property
    def _shape(self) -> str:
        return f"in{self.h}x{self.w}x{self.c_in}-out{self.c_out}-k{self.kernel}-s{self.stride}"


@dataclass(frozen=True)
class StemSpec(_ConvOnInput):
    """The stem conv at an input size: StemSpec(h, w, c_in, c_out, kernel, stride, act)."""

    act: str
    kind = "stem"

    @property
    def key(self) -> str:
        """The entry key."""
        return f"stem-{self._shape}-{self.act}"


@dataclass(frozen=True)
class BlockSpec(_ConvOnInput):
    """One block (layer of a stage) at an input size; `residual` is whether the identity is added.

    BlockSpec(h, w, c_in, c_out, kernel, stride, op, expansion, se, residual, act[, se_gate]); the
    key writes the SE as ``se<ratio>`` (EfficientNet's) or ``hse<ratio>`` (MobileNetV3's).
    """

    op: str
    expansion: int | float
    se: float
    residual: bool
    act: str
    se_gate: str = "sigmoid"
    kind = "block"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.se and self.se_gate != SE_GATES[0]:
            object.__setattr__(self, "se_gate", SE_GATES[0])  # no SE, no variant: one spec per key

    @property
    def key(self) -> str:
        """The entry key."""
        se = ("h" if self.se and self.se_gate == "hsigmoid" else "") + f"se{_fmt_se(self.se)}"
        return f"{self.op}-{self._shape}-e{self.expansion}-{se}-res{int(self.residual)}-{self.act}"

    def stage(self) -> Stage:
        """A one-layer Stage that builds this block (skip chosen so the residual matches)."""
        return Stage(op=self.op, kernel=self.kernel, expansion=self.expansion, se=float(self.se),
                     skip="identity" if self.residual else "none", channels=self.c_out, layers=1,
                     stride=self.stride, act=self.act)


@dataclass(frozen=True)
class HeadSpec(_OnInput):
    """The head: 1x1 conv to `channels` + act, global average pool, [feature mix to `mix` + act], linear classifier."""

    channels: int
    num_classes: int
    act: str
    mix: int = 0
    kind = "head"

    @property
    def key(self) -> str:
        """The entry key."""
        mix = f"-mix{self.mix}" if self.mix else ""
        return f"head-in{self.h}x{self.w}x{self.c_in}-out{self.channels}{mix}-cls{self.num_classes}-{self.act}"


Spec = InvokeSpec | StemSpec | BlockSpec | HeadSpec

_NUM = r"(\d+)"
_HWC = rf"in{_NUM}x{_NUM}x{_NUM}"
_ACT = f"({'|'.join(ACTIVATIONS)})"
_STEM_RE = re.compile(rf"stem-{_HWC}-out{_NUM}-k{_NUM}-s{_NUM}-{_ACT}")
_BLOCK_RE = re.compile(rf"({'|'.join(OPS)})-{_HWC}-out{_NUM}-k{_NUM}-s{_NUM}-e(\d+|\d+\.\d+)-(h?)se([0-9.e-]+)"
                       rf"-res([01])-{_ACT}")
_HEAD_RE = re.compile(rf"head-{_HWC}-out{_NUM}(?:-mix{_NUM})?-cls{_NUM}-{_ACT}")


def parse_key(key: str) -> Spec:
    """The spec a key stands for; ValueError for a string that is not a key."""
    if key == INVOKE_KEY:
        return InvokeSpec()
    if m := _STEM_RE.fullmatch(key):
        h, w, c, o, k, s = map(int, m.groups()[:6])
        return StemSpec(h, w, c, o, k, s, m.group(7))
    if m := _BLOCK_RE.fullmatch(key):
        op = m.group(1)
        h, w, c, o, k, s = map(int, m.groups()[1:7])
        e = float(m.group(8)) if "." in m.group(8) else int(m.group(8))
        gate = SE_GATES[1] if m.group(9) else SE_GATES[0]
        return BlockSpec(h, w, c, o, k, s, op, e, float(m.group(10)), m.group(11) == "1", m.group(12), gate)
    if m := _HEAD_RE.fullmatch(key):
        h, w, c, o = map(int, m.groups()[:4])
        return HeadSpec(h, w, c, o, int(m.group(6)), m.group(7), int(m.group(5) or 0))
    raise ValueError(f"{key!r} is not a latency-table key")


@lru_cache(maxsize=1 << 16)
def key_params(key: str) -> int:
    """Trainable parameters of the stem, block or head a key stands for (0 for `invoke`), by the cost model."""
    s = parse_key(key)
    if isinstance(s, StemSpec):
        return stem_cost(s.kernel, s.stride, s.c_in, s.c_out, s.h, s.w)[0]
    if isinstance(s, BlockSpec):
        return layer_cost(s.op, s.kernel, s.expansion, s.se, s.c_in, s.c_out, s.stride, s.h, s.w, s.se_gate)[0]
    if isinstance(s, HeadSpec):
        return head_cost(s.c_in, s.channels, s.mix, s.num_classes, s.h, s.w)[0]
    return 0


@lru_cache(maxsize=1 << 16)
def block_key(op: str, kernel: int, expansion: int | float, se: float, residual: bool, h: int, w: int, c_in: int,
              c_out: int, stride: int, act: str, se_gate: str = "sigmoid") -> str:
    """The key of one block (cached: the predictor's hot path)."""
    return BlockSpec(h, w, c_in, c_out, kernel, stride, op, expansion, se, residual, act, se_gate).key


@lru_cache(maxsize=1 << 12)
def stem_key(h: int, w: int, c_in: int, c_out: int, kernel: int, stride: int, act: str) -> str:
    """The key of a stem (cached, like `block_key`)."""
    return StemSpec(h, w, c_in, c_out, kernel, stride, act).key


@lru_cache(maxsize=1 << 12)
def head_key(h: int, w: int, c_in: int, channels: int, num_classes: int, act: str, mix: int = 0) -> str:
    """The key of a head (cached, like `block_key`)."""
    return HeadSpec(h, w, c_in, channels, num_classes, act, mix).key


def _walk(g: Genotype, res: int) -> tuple[int, list[tuple[Stage, int, int, int, int, int]], int]:
    """Input size of the stem, (stage, c_in, c_out, stride, h, w) of every block, input size of the head."""
    st = g.stem
    h = w = res
    blocks = []
    h, w = conv_out(h, st.kernel, st.stride), conv_out(w, st.kernel, st.stride)
    for _, stage, c_in, c_out, stride in g.layers():
        blocks.append((stage, c_in, c_out, stride, h, w))
        h, w = conv_out(h, stage.kernel, stride), conv_out(w, stage.kernel, stride)
    return res, blocks, h


def genotype_specs(g: Genotype, resolution: int | None = None, num_classes: int = 1000,
                   in_channels: int = 3) -> list[Spec]:
    """The stem, every block and the head of a genotype at a resolution (default: its own)."""
    res, blocks, hh = _walk(g, resolution or g.resolution)
    act, st = g.activation, g.stem
    out: list[Spec] = [StemSpec(res, res, in_channels, st.channels, st.kernel, st.stride, act)]
    out += [BlockSpec(h, w, c_in, c_out, stage.kernel, stride, stage.op, stage.expansion, float(stage.se),
                      uses_residual(stage, c_in, c_out, stride), g.stage_activation(stage), g.se_gate)
            for stage, c_in, c_out, stride, h, w in blocks]
    out.append(HeadSpec(hh, hh, g.stages[-1].channels, g.head, num_classes, act, g.head_mix))
    return out


def genotype_keys(g: Genotype, resolution: int | None = None, num_classes: int = 1000,
                  in_channels: int = 3) -> list[str]:
    """The entry keys of stem, blocks and head (no `invoke`), in network order; fast (cached keys)."""
    res, blocks, hh = _walk(g, resolution or g.resolution)
    act, st = g.activation, g.stem
    keys = [stem_key(res, res, in_channels, st.channels, st.kernel, st.stride, act)]
    gate = g.se_gate
    keys += [block_key(stage.op, stage.kernel, stage.expansion, float(stage.se),
                       uses_residual(stage, c_in, c_out, stride), h, w, c_in, c_out, stride, stage.act or act, gate)
             for stage, c_in, c_out, stride, h, w in blocks]
    keys.append(head_key(hh, hh, g.stages[-1].channels, g.head, num_classes, act, g.head_mix))
    return keys


def space_specs(space: Any, resolution: int | None = None, num_classes: int = 1000,
                in_channels: int = 3) -> list[Spec]:
    """Every distinct entry reachable in a SearchSpace (plus `invoke`), in network order, no duplicates.

    Input channels of a stage's first layer range over the previous stage's channel choices; the
    later layers of a stage (when it may have more than one) map its channels to themselves at
    stride 1, with or without the residual as the skip choices allow.
    """
    spec = space.to_dict()
    res = resolution or spec["resolution"]
    act = spec["activation"]
    gate = spec.get("se_gate", "sigmoid")
    stem = spec["stem"]
    seen: dict[str, Spec] = {INVOKE_KEY: InvokeSpec()}

    def add(s: Spec) -> None:
        seen.setdefault(s.key, s)

    h = w = res
    for c in stem["channels"]:
        add(StemSpec(h, w, in_channels, c, stem["kernel"], stem["stride"], act))
    h, w = conv_out(h, stem["kernel"], stem["stride"]), conv_out(w, stem["kernel"], stem["stride"])
    prev = list(stem["channels"])
    for st in spec["stages"]:
        s = st["stride"]
        ho = wo = None
        for op_name in st["op"]:
            op, e = OP_CHOICES[op_name]
            for k in st["kernel"]:
                ho, wo = conv_out(h, k, s), conv_out(w, k, s)
                for se, skip, a in itertools.product(st["se"], st["skip"], st.get("activation", [act])):
                    for c_out in st["channels"]:
                        stage = Stage(op, k, e, float(se), skip, c_out, 1, s)
                        for c_in in prev:
                            add(BlockSpec(h, w, c_in, c_out, k, s, op, e, float(se),
                                          uses_residual(stage, c_in, c_out, s), a, gate))
                        if max(st["layers"]) > 1:
                            add(BlockSpec(ho, wo, c_out, c_out, k, 1, op, e, float(se),
                                          uses_residual(stage, c_out, c_out, 1), a, gate))
        h, w = ho, wo
        prev = list(st["channels"])
    for c_in in prev:
        for head, mix in itertools.product(spec["head"], spec.get("head_mix", [0])):
            add(HeadSpec(h, w, c_in, head, num_classes, act, mix))
    return list(seen.values())
