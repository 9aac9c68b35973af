"""Emit TFLite graphs from the torch modules of `search_space.model`, BatchNorm folded into convs.

The op sequence is the one a converter produces for these modules: CONV_2D / DEPTHWISE_CONV_2D
(a PAD first at stride 2), ReLU fused into the conv, Swish and SE gates as LOGISTIC + MUL,
h-swish as HARD_SWISH, MobileNetV3's hard-sigmoid SE gate as ADD(+3, RELU6 fused) + MUL(1/6),
SE squeeze as MEAN(keep_dims), residual ADD, global pool as MEAN, the MobileNetV3 feature mix
and the classifier FULLY_CONNECTED.
Graphs are float32 NHWC with batch 1.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from search_space.genotype import Genotype, Stage, Stem
from search_space.model import Block, ConvBNAct, GenotypeNet, SqueezeExcite, activation_name, make_activation
from search_space.vocab import ACTIVATIONS, SE_GATES

from . import tflite_builder as tb
from .keys import BlockSpec, HeadSpec, InvokeSpec, Spec, StemSpec

# How each activation of the vocabulary lowers: fused into the conv, or an op after it.
_FUSED = {"relu": tb.ACT_RELU}
_AFTER = {"swish": tb.swish, "hswish": tb.hard_swish}
_GATES = {"sigmoid": tb.logistic, "hsigmoid": tb.hard_sigmoid}
assert set(_FUSED) | set(_AFTER) == set(ACTIVATIONS) and set(_GATES) == set(SE_GATES)


def _act_of(module: nn.Module | None) -> str | None:
    """The vocabulary name of an activation module, or None for its absence."""
    if module is None:
        return None
    try:
        return activation_name(module)
    except ValueError:
        raise TypeError(f"no TFLite lowering for activation {type(module).__name__}") from None


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """Conv weight (torch layout) and bias with an eval-mode BatchNorm folded in (float64)."""
    scale = _np(bn.weight) / np.sqrt(_np(bn.running_var) + bn.eps)
    w = _np(conv.weight) * scale[:, None, None, None]
    b = _np(bn.bias) - _np(bn.running_mean) * scale
    if conv.bias is not None:
        b = b + _np(conv.bias) * scale
    return w, b


def _conv(g: tb.Graph, x: int, conv: nn.Conv2d, w: np.ndarray, b: np.ndarray, act: str | None, name: str) -> int:
    """A conv (depthwise when grouped per channel) followed by its activation."""
    stride = conv.stride[0]
    fused = _FUSED.get(act, tb.ACT_NONE) if act else tb.ACT_NONE
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
    if depthwise:
        y = tb.depthwise_conv2d(g, x, w.transpose(1, 2, 3, 0).astype(np.float32), b.astype(np.float32), stride,
                                fused, name)
    elif conv.groups == 1:
        y = tb.conv2d(g, x, w.transpose(0, 2, 3, 1).astype(np.float32), b.astype(np.float32), stride, fused, name)
    else:
        raise ValueError(f"{name}: grouped conv with {conv.groups} groups has no lowering here")
    if act in _AFTER:
        y = _AFTER[act](g, y, f"{name}/{act}")
    return y


def emit_conv_bn_act(g: tb.Graph, x: int, m: ConvBNAct, name: str = "conv") -> int:
    """Conv -> BN (folded) -> optional activation."""
    conv, bn = m[0], m[1]
    act = _act_of(m[2]) if len(m) > 2 else None
    w, b = fold_bn(conv, bn)
    return _conv(g, x, conv, w, b, act, name)


def emit_se(g: tb.Graph, x: int, se: SqueezeExcite, name: str = "se") -> int:
    """Squeeze-and-excitation: MEAN(keep_dims) -> 1x1 reduce + act -> 1x1 expand -> gate -> MUL."""
    s = tb.mean(g, x, keep_dims=True, name=name + "/squeeze")
    r = _conv(g, s, se.reduce, _np(se.reduce.weight), _np(se.reduce.bias), _act_of(se.act), name + "/reduce")
    e = _conv(g, r, se.expand, _np(se.expand.weight), _np(se.expand.bias), None, name + "/expand")
    return tb.mul(g, x, _GATES[activation_name(se.gate)](g, e, name + "/gate"), name + "/excite")


def emit_block(g: tb.Graph, x: int, block: Block, name: str = "block") -> int:
    """One `search_space.model.Block` in eval mode (drop-connect is off at inference)."""
    y = x
    for i, m in enumerate(block.body):
        if isinstance(m, ConvBNAct):
            y = emit_conv_bn_act(g, y, m, f"{name}/conv{i}")
        elif isinstance(m, SqueezeExcite):
            y = emit_se(g, y, m, f"{name}/se")
        else:
            raise TypeError(f"{name}: no TFLite lowering for {type(m).__name__}")
    if block.residual:
        y = tb.add(g, y, x, name + "/residual")
    return y


def emit_head(g: tb.Graph, x: int, head: ConvBNAct, classifier: nn.Linear, mix: nn.Sequential | None = None) -> int:
    """Head: 1x1 conv + act -> global MEAN -> [FULLY_CONNECTED + act: MobileNetV3's mix] -> FULLY_CONNECTED.

    Dropout is the identity at inference.
    """
    y = emit_conv_bn_act(g, x, head, "head/conv")
    y = tb.mean(g, y, keep_dims=False, name="head/pool")
    if mix is not None:
        fc, act = mix[0], _act_of(mix[1])
        y = tb.fully_connected(g, y, _np(fc.weight).astype(np.float32), _np(fc.bias).astype(np.float32), "head/mix",
                               _FUSED.get(act, tb.ACT_NONE))
        if act in _AFTER:
            y = _AFTER[act](g, y, f"head/mix/{act}")
    return tb.fully_connected(g, y, _np(classifier.weight).astype(np.float32),
                              _np(classifier.bias).astype(np.float32), "head/fc")


def _single_input(g: tb.Graph, shape: tuple[int, int, int]) -> int:
    x = g.tensor((1, *shape), "input")
    g.inputs = [x]
    return x


def network_tflite(net: GenotypeNet, resolution: int | None = None) -> bytes:
    """A whole `GenotypeNet` as a TFLite model with input 1xHxWxC (eval-mode semantics)."""
    res = resolution or net.genotype.resolution
    g = tb.Graph("network")
    x = _single_input(g, (res, res, net.stem[0].in_channels))
    y = emit_conv_bn_act(g, x, net.stem, "stem")
    for i, blk in enumerate(net.blocks):
        y = emit_block(g, y, blk, f"block{i}")
    g.outputs = [emit_head(g, y, net.head, net.classifier, net.mix)]
    return g.finish()


def module_tflite(module: nn.Module, input_hwc: tuple[int, int, int]) -> bytes:
    """A single Block, stem ConvBNAct or `HeadModule` as a TFLite model with a 1xHxWxC input."""
    g = tb.Graph("probe")
    x = _single_input(g, input_hwc)
    if isinstance(module, Block):
        y = emit_block(g, x, module)
    elif isinstance(module, HeadModule):
        y = emit_head(g, x, module.conv, module.classifier, module.mix)
    elif isinstance(module, ConvBNAct):
        y = emit_conv_bn_act(g, x, module, "stem")
    else:
        raise TypeError(f"no TFLite lowering for {type(module).__name__}")
    g.outputs = [y]
    return g.finish()


def trivial_tflite(channels: int = 1) -> bytes:
    """The smallest real model (one ADD of a 1x1x1xC input to itself): measures per-invoke overhead."""
    g = tb.Graph("invoke")
    x = _single_input(g, (1, 1, channels))
    g.outputs = [tb.add(g, x, x, "add")]
    return g.finish()


# ---- modules with random weights, for probes and tests ------------------------------------------
class HeadModule(nn.Module):
    """The network head alone: 1x1 conv + BN + act, global average pool, [feature mix + act], linear classifier."""

    def __init__(self, c_in: int, channels: int, num_classes: int, act: str, mix: int = 0) -> None:
        super().__init__()
        self.conv = ConvBNAct(c_in, channels, 1, act=act)
        self.mix = nn.Sequential(nn.Linear(channels, mix), make_activation(act)) if mix else None
        self.classifier = nn.Linear(mix or channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).mean((2, 3))
        return self.classifier(y if self.mix is None else self.mix(y))


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine terms (so folding is really tested); eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
    return module.eval()


def make_block(stage: Stage, c_in: int, c_out: int, stride: int, act: str, seed: int = 0,
               se_gate: str = "sigmoid") -> Block:
    """A torch Block with random weights, in eval mode."""
    torch.manual_seed(seed)
    return randomize(Block(stage, c_in, c_out, stride, act, se_gate=se_gate), seed)


def make_stem(stem: Stem, in_channels: int, act: str, seed: int = 0) -> ConvBNAct:
    """The stem ConvBNAct with random weights, in eval mode."""
    torch.manual_seed(seed)
    return randomize(ConvBNAct(in_channels, stem.channels, stem.kernel, stem.stride, act=act), seed)


def make_head(c_in: int, channels: int, num_classes: int, act: str, seed: int = 0, mix: int = 0) -> HeadModule:
    """A HeadModule with random weights, in eval mode."""
    torch.manual_seed(seed)
    return randomize(HeadModule(c_in, channels, num_classes, act, mix), seed)


def make_network(genotype: Genotype, num_classes: int = 1000, seed: int = 0,
                 calibrate_at: int | None = None, in_channels: int = 3) -> GenotypeNet:
    """A GenotypeNet with its own init and random BN terms, in eval mode.

    With `calibrate_at` (a resolution) the BN running statistics are then estimated from random
    inputs, as training would leave them, so activations keep a trained network's scale (without
    it a deep ReLU net's outputs can reach 1e4, where float32 rounding alone exceeds 1e-4).
    """
    torch.manual_seed(seed)
    net = randomize(GenotypeNet(genotype, num_classes=num_classes, in_channels=in_channels), seed)
    if calibrate_at:
        calibrate_bn(net, calibrate_at, seed=seed, in_channels=in_channels)
    return net


def calibrate_bn(net: nn.Module, resolution: int, batches: int = 2, batch_size: int = 8, seed: int = 0,
                 in_channels: int = 3) -> nn.Module:
    """Estimate BN running statistics from random inputs (cumulative average); back in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the calibration batches
    net.train()
    with torch.no_grad():
        for _ in range(batches):
            net(torch.randn(batch_size, in_channels, resolution, resolution, generator=gen))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    return net.eval()


def spec_tflite(spec: Spec, seed: int = 0) -> bytes:
    """The probe model of a table entry (random weights; timing does not depend on their values)."""
    if isinstance(spec, InvokeSpec):
        return trivial_tflite()
    if isinstance(spec, StemSpec):
        m: nn.Module = make_stem(Stem(spec.c_out, spec.kernel, spec.stride), spec.c_in, spec.act, seed)
    elif isinstance(spec, BlockSpec):
        m = make_block(spec.stage(), spec.c_in, spec.c_out, spec.stride, spec.act, seed, spec.se_gate)
    elif isinstance(spec, HeadSpec):
        m = make_head(spec.c_in, spec.channels, spec.num_classes, spec.act, seed, spec.mix)
    else:
        raise TypeError(f"not a probe spec: {spec!r}")
    return module_tflite(m, spec.input_hwc)


def genotype_tflite(g: Genotype, resolution: int | None = None, num_classes: int = 1000, seed: int = 0,
                    in_channels: int = 3) -> bytes:
    """A whole network of a genotype with random weights, at a resolution (default: its own)."""
    return network_tflite(make_network(g, num_classes, seed, in_channels=in_channels), resolution or g.resolution)
