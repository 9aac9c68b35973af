"""The weight-sharing supernet of a search space: one set of weights that runs any member.

Per layer of every stage it holds one block of weights per *op family* (``cn`` regular conv,
``ds`` depthwise-separable, ``ir`` MBConv); within a family the shapes nest and are shared:

- kernel (`KERNEL_SHARING`): the centre ``k x k`` of the largest kernel (``centre``, BigNAS), that
  centre through a learned ``k^2 x k^2`` matrix per conv and smaller kernel (``transform``,
  Once-for-All's kernel transformation), or separate weights per kernel size (``separate``);
- channels: the first ``c`` output / input channels of every conv, BN and SE weight;
- expansion: the first ``expanded_channels(c_in, e)`` channels of the MBConv expansion (``e = 1``
  skips it, as the builder does, and uses the first ``c_in`` channels of the depthwise and
  projection);
- SE: on/off, its squeeze width (`search_space.rounding.squeeze_channels` of the space's SE
  variant) a slice of the widest one;
- activation: a stage's own where the space gives it (no weights), else the global one;
- MobileNetV3 head: the feature mix (``head_mix``) is a slice of the widest linear layer;
- layers: the first ``k`` layers of a stage (the rest are skipped);
- skip: the identity residual where the builder adds it (no weights).

BatchNorm affine parameters are sliced like the convs; running statistics are sliced too (so
the supernet in eval mode runs exactly the extracted network), but a subnet's statistics are
meant to be recalibrated before it is scored (`recalibrate_bn`).

A layer of a genotype is computed as a list of *pieces* (conv + BN + activation, or SE) that
mirror `search_space.model.Block` one to one; `SuperNet.forward(x, genotype)` runs the pieces
and `SuperNet.extract(genotype)` copies the very same tensors into
`search_space.model.build_model(genotype, num_classes, in_channels)`. So the extracted module is
exactly the builder's network (parameter count = `search_space.cost(...).params`) and computes
what the supernet computes for that genotype.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from search_space.genotype import Genotype, Stage, uses_residual
from search_space.model import ACTIVATION_MODULES, GATE_MODULES, GenotypeNet, build_model
from search_space.rounding import expanded_channels, squeeze_channels
from search_space.space import OP_CHOICES, SearchSpace, load_space
from search_space.vocab import se_activation

BN_EPS = 1e-3  # the builder's
# How the smaller kernels of a conv use its weights (`supernet.kernel_sharing`).
KERNEL_SHARING = ("centre", "transform", "separate")
# The builder's activation and gate modules, not in place: a supernet slice's output feeds autograd.
_ACTS = {name: cls() for name, cls in ACTIVATION_MODULES.items()}
_GATES = {name: cls() for name, cls in GATE_MODULES.items()}


def _act(x: torch.Tensor, name: str) -> torch.Tensor:
    return _ACTS[name](x)


class SuperConvBN(nn.Module):
    """The widest conv (no bias) + BatchNorm of a slot; any (out, in, kernel) runs as a slice.

    `kernels` are the kernel sizes members may use (default: only the widest); how the smaller ones
    share the widest one's weights is `sharing` (one of `KERNEL_SHARING`).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, depthwise: bool = False, bn_momentum: float = 0.1,
                 kernels: list[int] | None = None, sharing: str = "centre") -> None:
        super().__init__()
        if sharing not in KERNEL_SHARING:
            raise ValueError(f"kernel sharing {sharing!r}: expected one of {', '.join(KERNEL_SHARING)}")
        self.depthwise = depthwise
        self.kernel = kernel
        self.sharing = sharing
        # The smaller kernels, largest first: Once-for-All's transforms chain 7 -> 5 -> 3.
        self.smaller = sorted({k for k in (kernels or [kernel]) if k < kernel}, reverse=True)
        self.weight = nn.Parameter(torch.empty(c_out, 1 if depthwise else c_in, kernel, kernel))
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=bn_momentum)
        self._init(self.weight)
        if sharing == "separate" and self.smaller:
            self.small = nn.ParameterDict({f"k{k}": nn.Parameter(torch.empty(c_out, self.weight.shape[1], k, k))
                                           for k in self.smaller})
            for w in self.small.values():
                self._init(w)
        if sharing == "transform" and self.smaller:
            # Identity at the start: the transformed centre is the plain centre until training moves it.
            self.transform = nn.ParameterDict({f"k{k}": nn.Parameter(torch.eye(k * k)) for k in self.smaller})

    def _init(self, w: torch.Tensor) -> None:
        k = w.shape[-1]
        fan_out = k * k * (1 if self.depthwise else w.shape[0])  # per group, as the builder's init
        nn.init.normal_(w, 0.0, (2.0 / fan_out) ** 0.5)

    def kernel_weight(self, c_in: int, c_out: int, kernel: int) -> torch.Tensor:
        """The (c_out, c_in or 1, kernel, kernel) weight a member's conv uses."""
        if kernel > self.kernel or kernel % 2 == 0 or (kernel < self.kernel and kernel not in self.smaller):
            raise ValueError(f"kernel {kernel} is not one of the supernet's {[self.kernel, *self.smaller]}")
        ci = 1 if self.depthwise else c_in
        if kernel == self.kernel or self.sharing == "centre":
            off = (self.kernel - kernel) // 2
            return self.weight[:c_out, :ci, off:off + kernel, off:off + kernel]
        if self.sharing == "separate":
            return self.small[f"k{kernel}"][:c_out, :ci]
        w, size = self.weight[:c_out, :ci], self.kernel
        for k in self.smaller:
            if k < kernel:
                break
            off = (size - k) // 2
            centre = w[:, :, off:off + k, off:off + k]
            w = (centre.reshape(*centre.shape[:2], k * k) @ self.transform[f"k{k}"]).reshape(centre.shape)
            size = k
        return w

    def piece(self, c_in: int, c_out: int, kernel: int, stride: int, act: str | None) -> ConvPiece:
        """The slice that a (c_in -> c_out, kernel, stride) conv of a subnet uses."""
        w = self.kernel_weight(c_in, c_out, kernel)
        bn = self.bn
        return ConvPiece(w, bn.weight[:c_out], bn.bias[:c_out], bn.running_mean[:c_out], bn.running_var[:c_out],
                         bn.num_batches_tracked, bn.momentum, stride, c_out if self.depthwise else 1, act)


class SuperSE(nn.Module):
    """The widest squeeze-and-excitation of a slot: reduce (mid -> squeeze) and expand, with biases."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)
        for m in (self.reduce, self.expand):
            nn.init.normal_(m.weight, 0.0, (2.0 / m.out_channels) ** 0.5)
            nn.init.zeros_(m.bias)

    def piece(self, channels: int, squeeze: int, act: str, gate: str = "sigmoid") -> SEPiece:
        """The slice an SE of `channels` with `squeeze` units uses."""
        return SEPiece(self.reduce.weight[:squeeze, :channels], self.reduce.bias[:squeeze],
                       self.expand.weight[:channels, :squeeze], self.expand.bias[:channels], act, gate)


@dataclass
class ConvPiece:
    """Conv -> BN -> optional activation, on sliced tensors (a `search_space.model.ConvBNAct`)."""

    weight: torch.Tensor
    bn_weight: torch.Tensor
    bn_bias: torch.Tensor
    running_mean: torch.Tensor
    running_var: torch.Tensor
    num_batches_tracked: torch.Tensor
    momentum: float | None
    stride: int
    groups: int
    act: str | None

    def __call__(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        k = self.weight.shape[-1]
        y = F.conv2d(x, self.weight, None, self.stride, k // 2, 1, self.groups)
        momentum = self.momentum
        if training:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative average, as nn.BatchNorm2d with momentum None
                momentum = 1.0 / float(self.num_batches_tracked)
        y = F.batch_norm(y, self.running_mean, self.running_var, self.bn_weight, self.bn_bias, training,
                         0.0 if momentum is None else momentum, BN_EPS)
        return y if self.act is None else _act(y, self.act)

    def copy_to(self, module: nn.Sequential) -> None:
        """Copy the slice into a ConvBNAct (shapes must match exactly)."""
        conv, bn = module[0], module[1]
        conv.weight.copy_(self.weight)
        bn.weight.copy_(self.bn_weight)
        bn.bias.copy_(self.bn_bias)
        bn.running_mean.copy_(self.running_mean)
        bn.running_var.copy_(self.running_var)
        bn.num_batches_tracked.copy_(self.num_batches_tracked)


@dataclass
class SEPiece:
    """Squeeze-and-excitation on sliced tensors (a `search_space.model.SqueezeExcite`)."""

    rw: torch.Tensor
    rb: torch.Tensor
    ew: torch.Tensor
    eb: torch.Tensor
    act: str
    gate: str = "sigmoid"

    def __call__(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = F.conv2d(_act(F.conv2d(s, self.rw, self.rb), self.act), self.ew, self.eb)
        return x * _GATES[self.gate](s)

    def copy_to(self, module: nn.Module) -> None:
        """Copy the slice into a SqueezeExcite."""
        module.reduce.weight.copy_(self.rw)
        module.reduce.bias.copy_(self.rb)
        module.expand.weight.copy_(self.ew)
        module.expand.bias.copy_(self.eb)


class SuperLayer(nn.Module):
    """Layer j of a stage: the widest weights of every op family the stage can choose."""

    def __init__(self, ops: list[str], kernels: list[int], ses: list[float], c_in: int, c_out: int,
                 c_in_choices: list[int], bn_momentum: float, se_gate: str = "sigmoid",
                 c_out_choices: list[int] | None = None, kernel_sharing: str = "centre") -> None:
        super().__init__()
        self.se_gate = se_gate
        fams: dict[str, list[int]] = {}
        for name in ops:
            op, e = OP_CHOICES[name]
            fams.setdefault(op, []).append(e)
        k = max(kernels)
        ratios = [r for r in ses if r > 0]
        outs = c_out_choices or [c_out]

        def widest_squeeze(mids: dict[int, list[int]]) -> int:
            # Every (c_in, mid, ratio) a member can have; MobileNetV3's squeeze depends on mid.
            return max(squeeze_channels(ci, mid, r, se_gate) for ci, ms in mids.items() for mid in ms for r in ratios)

        bn = dict(bn_momentum=bn_momentum)
        kk = dict(kernels=list(kernels), sharing=kernel_sharing)
        self.families = nn.ModuleDict()
        if "cn" in fams:
            m = nn.ModuleDict({"conv": SuperConvBN(c_in, c_out, k, **bn, **kk)})
            if ratios:
                m["se"] = SuperSE(c_out, widest_squeeze({ci: outs for ci in c_in_choices}))
            self.families["cn"] = m
        for op in ("ds", "ir"):
            if op not in fams:
                continue
            mid = max(expanded_channels(c_in, e) for e in fams[op])
            m = nn.ModuleDict()
            if any(e != 1 for e in fams[op]):
                m["expand"] = SuperConvBN(c_in, mid, 1, **bn)
            m["dw"] = SuperConvBN(mid, mid, k, depthwise=True, **bn, **kk)
            if ratios:
                m["se"] = SuperSE(mid, widest_squeeze({ci: [expanded_channels(ci, e) for e in fams[op]]
                                                       for ci in c_in_choices}))
            m["project"] = SuperConvBN(mid, c_out, 1, **bn)
            self.families[op] = m

    def pieces(self, st: Stage, c_in: int, c_out: int, stride: int, act: str) -> list[Any]:
        """The pieces of one layer of stage `st`, in the order of `search_space.model.Block`'s body.

        `act` is the network's activation; a stage that names its own uses that, as the builder does.
        """
        if st.op not in self.families:
            raise ValueError(f"op {st.op} is not in the supernet's families {list(self.families)}")
        m = self.families[st.op]
        act = st.act or act
        gate = self.se_gate
        out: list[Any] = []
        if st.op == "cn":
            out.append(m["conv"].piece(c_in, c_out, st.kernel, stride, act))
            mid = c_out
        else:
            mid = expanded_channels(c_in, st.expansion)
            if st.expansion != 1:
                out.append(m["expand"].piece(c_in, mid, 1, 1, act))
            out.append(m["dw"].piece(mid, mid, st.kernel, stride, act))
        if st.se:
            out.append(m["se"].piece(mid, squeeze_channels(c_in, mid, st.se, gate), se_activation(act, gate), gate))
        if st.op != "cn":
            out.append(m["project"].piece(mid, c_out, 1, 1, act if st.op == "ds" else None))
        return out


@dataclass(frozen=True)
class LayerPlan:
    """One layer of a genotype inside the supernet: which slot, which stage, its shape and residual."""

    stage: int
    layer: int
    st: Stage
    c_in: int
    c_out: int
    stride: int
    residual: bool


class SuperNet(nn.Module):
    """All members of a search space in one module; `forward(x, genotype)` runs one of them."""

    def __init__(self, space: SearchSpace | Mapping[str, Any] | str, num_classes: int, in_channels: int = 3,
                 bn_momentum: float = 0.1, kernel_sharing: str = "centre") -> None:
        super().__init__()
        if kernel_sharing not in KERNEL_SHARING:
            raise ValueError(f"kernel sharing {kernel_sharing!r}: expected one of {', '.join(KERNEL_SHARING)}")
        self.kernel_sharing = kernel_sharing
        self.space = load_space(space)
        spec = self.space.to_dict()
        self.spec = spec
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.activation: str = spec["activation"]
        self.se_gate: str = spec.get("se_gate", "sigmoid")
        stem = spec["stem"]
        self.stem = SuperConvBN(in_channels, max(stem["channels"]), stem["kernel"], bn_momentum=bn_momentum)
        self.stages = nn.ModuleList()
        prev = list(stem["channels"])
        for st in spec["stages"]:
            layers = nn.ModuleList()
            for j in range(max(st["layers"])):
                c_in_choices = prev if j == 0 else list(st["channels"])
                layers.append(SuperLayer(st["op"], st["kernel"], st["se"], max(c_in_choices), max(st["channels"]),
                                         c_in_choices, bn_momentum, self.se_gate, list(st["channels"]),
                                         kernel_sharing))
            self.stages.append(layers)
            prev = list(st["channels"])
        head = max(spec["head"])
        self.head = SuperConvBN(max(prev), head, 1, bn_momentum=bn_momentum)
        mix = max(spec.get("head_mix", [0]))
        # MobileNetV3's feature mix after the pool (none when the space has the EfficientNet head).
        self.mix = nn.Linear(head, mix) if mix else None
        self.classifier = nn.Linear(mix or head, num_classes)
        r = 1.0 / num_classes ** 0.5
        nn.init.uniform_(self.classifier.weight, -r, r)
        nn.init.zeros_(self.classifier.bias)

    # ---- a genotype inside the supernet ------------------------------------------------------
    def check(self, g: Genotype) -> None:
        """Raise ValueError unless `g` is a member of the supernet's space."""
        from search_space.space import SpaceError

        try:
            self.space.encode(g)
        except SpaceError as e:
            raise ValueError(f"{g.to_string()} is not a member of the supernet's space: {e}") from None
        if g.activation != self.activation:
            raise ValueError(f"activation {g.activation} differs from the supernet's {self.activation}")
        if g.se_gate != self.se_gate:
            raise ValueError(f"se_gate {g.se_gate} differs from the supernet's {self.se_gate}")

    def plan(self, g: Genotype) -> Iterator[LayerPlan]:
        """The layers of `g` with their slot in the supernet."""
        c_in = g.stem.channels
        for i, st in enumerate(g.stages):
            for j in range(st.layers):
                stride = st.stride if j == 0 else 1
                yield LayerPlan(i, j, st, c_in, st.channels, stride, uses_residual(st, c_in, st.channels, stride))
                c_in = st.channels

    def forward(self, x: torch.Tensor, genotype: Genotype) -> torch.Tensor:
        """Logits of the member `genotype` (train or eval mode, as the module is)."""
        g = genotype
        act = self.activation
        training = self.training
        x = self.stem.piece(self.in_channels, g.stem.channels, g.stem.kernel, g.stem.stride, act)(x, training)
        for p in self.plan(g):
            y = x
            for piece in self.stages[p.stage][p.layer].pieces(p.st, p.c_in, p.c_out, p.stride, act):
                y = piece(y, training)
            x = y + x if p.residual else y
        x = self.head.piece(g.stages[-1].channels, g.head, 1, 1, act)(x, training)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        if g.head_mix:
            x = _act(F.linear(x, self.mix.weight[:g.head_mix, :g.head], self.mix.bias[:g.head_mix]), act)
        return F.linear(x, self.classifier.weight[:, :g.head_mix or g.head], self.classifier.bias)

    @torch.no_grad()
    def extract(self, genotype: Genotype | str, **options: float) -> GenotypeNet:
        """The member as a standalone `build_model(genotype, num_classes, in_channels)` with the shared weights.

        `options` go to the builder (dropout, drop_connect, bn_momentum); they change no shape.
        The module is on the CPU in float32, in eval mode.
        """
        from search_space.genotype import parse

        g = parse(genotype) if isinstance(genotype, str) else genotype
        self.check(g)
        model = build_model(g, num_classes=self.num_classes, in_channels=self.in_channels, **options)
        act = self.activation

        self.stem.piece(self.in_channels, g.stem.channels, g.stem.kernel, g.stem.stride, act).copy_to(model.stem)
        for idx, p in enumerate(self.plan(g)):
            body = list(model.blocks[idx].body)
            pieces = self.stages[p.stage][p.layer].pieces(p.st, p.c_in, p.c_out, p.stride, act)
            if len(body) != len(pieces):
                raise RuntimeError(f"block {idx}: {len(body)} modules but {len(pieces)} supernet pieces")
            for piece, module in zip(pieces, body):
                piece.copy_to(module)  # copy_ also moves a GPU slice to the CPU
            if model.blocks[idx].residual != p.residual:
                raise RuntimeError(f"block {idx}: residual differs between the builder and the supernet")
        self.head.piece(g.stages[-1].channels, g.head, 1, 1, act).copy_to(model.head)
        if g.head_mix:
            model.mix[0].weight.copy_(self.mix.weight[:g.head_mix, :g.head])
            model.mix[0].bias.copy_(self.mix.bias[:g.head_mix])
        model.classifier.weight.copy_(self.classifier.weight[:, :g.head_mix or g.head])
        model.classifier.bias.copy_(self.classifier.bias)
        return model.eval()

    def describe(self) -> str:
        """One line: parameters and members."""
        n = sum(p.numel() for p in self.parameters())
        kernels = "" if self.kernel_sharing == "centre" else f", kernels {self.kernel_sharing}"
        return f"supernet of {self.space.source}: {n:,} parameters, {self.space.size:.3g} members{kernels}"


def build_supernet(space: SearchSpace | Mapping[str, Any] | str, num_classes: int, in_channels: int = 3,
                   bn_momentum: float = 0.1, kernel_sharing: str = "centre") -> SuperNet:
    """A freshly initialised supernet of a space."""
    return SuperNet(space, num_classes, in_channels, bn_momentum, kernel_sharing)


__all__ = ["KERNEL_SHARING", "SuperNet", "SuperLayer", "SuperConvBN", "SuperSE", "build_supernet", "LayerPlan"]
