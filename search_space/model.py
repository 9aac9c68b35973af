"""The torch builder: an `nn.Module` for any genotype.

Layer by layer it is the network that `search_space.cost` counts; a test checks params and
hook-counted MACs agree exactly.
"""
from __future__ import annotations

import torch
from torch import nn

from .cost import check_size
from .genotype import Genotype, Stage, uses_residual
from .rounding import expanded_channels, squeeze_channels
from .vocab import ACTIVATIONS, SE_GATES, se_activation

# The one map from the vocabulary's activation and SE-gate names to torch modules; the TFLite
# emitter and the supernet read it too.
ACTIVATION_MODULES: dict[str, type[nn.Module]] = {"swish": nn.SiLU, "relu": nn.ReLU, "hswish": nn.Hardswish}
GATE_MODULES: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "hsigmoid": nn.Hardsigmoid}
assert set(ACTIVATION_MODULES) == set(ACTIVATIONS) and set(GATE_MODULES) == set(SE_GATES)


def make_activation(name: str, inplace: bool = True) -> nn.Module:
    """The torch module of an activation name of `search_space.vocab.ACTIVATIONS`."""
    if name not in ACTIVATION_MODULES:
        raise ValueError(f"activation {name!r} is not allowed; allowed: one of {list(ACTIVATIONS)}")
    return ACTIVATION_MODULES[name](inplace=inplace)


def activation_name(module: nn.Module) -> str:
    """The vocabulary name of an activation or gate module (inverse of `make_activation`, `GATE_MODULES`)."""
    for names in (ACTIVATION_MODULES, GATE_MODULES):
        for name, cls in names.items():
            if type(module) is cls:
                return name
    raise ValueError(f"module {type(module).__name__} is not allowed; allowed: {list(ACTIVATION_MODULES)} "
                     f"or gates {list(GATE_MODULES)}")


class ConvBNAct(nn.Sequential):
    """Conv (no bias, padding k // 2) -> BatchNorm -> optional activation."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: str | None = "swish", bn_eps: float = 1e-3, bn_momentum: float = 0.01) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out, eps=bn_eps, momentum=bn_momentum),
        ]
        if act is not None:
            layers.append(make_activation(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: pool -> 1x1 reduce -> act -> 1x1 expand -> gate (sigmoid or hard-sigmoid)."""

    def __init__(self, channels: int, squeeze: int, act: str, gate: str = "sigmoid") -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.act = make_activation(act)
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.gate = GATE_MODULES[gate]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.expand(self.act(self.reduce(s)))
        return x * self.gate(s)


class Block(nn.Module):
    """One layer of a stage: MBConv (``ir``), depthwise-separable (``ds``) or regular conv (``cn``).

    ``ir``: [expand 1x1 + act] -> depthwise kxk + act -> [SE] -> project 1x1 (linear bottleneck).
    ``ds``: depthwise kxk + act -> [SE] -> pointwise 1x1 + act (MobileNetV1 style).
    ``cn``: kxk conv + act -> [SE].
    The identity residual (with drop-connect while training) is added only where allowed.
    `act` is the network's activation; a stage that names its own uses that. SE as `se_gate` says
    (MobileNetV3's: ReLU inside, the squeeze of the expanded width).
    """

    def __init__(self, stage: Stage, c_in: int, c_out: int, stride: int, act: str,
                 drop_connect: float = 0.0, bn_eps: float = 1e-3, bn_momentum: float = 0.01,
                 se_gate: str = "sigmoid") -> None:
        super().__init__()
        bn = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        act = stage.act or act
        k = stage.kernel
        layers: list[nn.Module] = []
        if stage.op == "cn":
            layers.append(ConvBNAct(c_in, c_out, k, stride, act=act, **bn))
            mid = c_out
        else:
            mid = expanded_channels(c_in, stage.expansion)
            if stage.expansion != 1:
                layers.append(ConvBNAct(c_in, mid, 1, act=act, **bn))
            layers.append(ConvBNAct(mid, mid, k, stride, groups=mid, act=act, **bn))
        if stage.se:
            layers.append(SqueezeExcite(mid, squeeze_channels(c_in, mid, stage.se, se_gate), se_activation(act, se_gate),
                                        se_gate))
        if stage.op != "cn":
            layers.append(ConvBNAct(mid, c_out, 1, act=act if stage.op == "ds" else None, **bn))
        self.body = nn.Sequential(*layers)
        self.residual = uses_residual(stage, c_in, c_out, stride)
        self.drop_connect = float(drop_connect)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.residual:
            if self.training and self.drop_connect > 0.0:
                keep = 1.0 - self.drop_connect
                mask = torch.empty((y.shape[0], 1, 1, 1), dtype=y.dtype, device=y.device).bernoulli_(keep)
                y = y * mask / keep
            y = y + x
        return y


class GenotypeNet(nn.Module):
    """Stem -> stages of blocks -> head: 1x1 conv, pool, [feature mix: linear + act], dropout, linear.

    The feature mix (no BN, with bias) is the MobileNetV3 head, present when `genotype.head_mix`.

    Above `max_params` parameters or `max_activation_bytes` of activations at batch 1 and the
    genotype's resolution (defaults: `search_space.cost.size_limits`) it raises ModelSizeError
    before allocating anything.
    """

    def __init__(self, genotype: Genotype, num_classes: int = 1000, in_channels: int = 3,
                 dropout: float = 0.2, drop_connect: float = 0.2, bn_eps: float = 1e-3,
                 bn_momentum: float = 0.01, activation: str | None = None, *,
                 max_params: float | None = None, max_activation_bytes: float | None = None) -> None:
        check_size(genotype, in_channels=in_channels, num_classes=num_classes, max_params=max_params,
                   max_activation_bytes=max_activation_bytes)
        super().__init__()
        self.genotype = genotype
        act = activation or genotype.activation
        bn = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        self.stem = ConvBNAct(in_channels, genotype.stem.channels, genotype.stem.kernel, genotype.stem.stride,
                              act=act, **bn)
        n = genotype.num_blocks
        blocks = [
            Block(st, c_in, c_out, stride, act, drop_connect * idx / n, se_gate=genotype.se_gate, **bn)
            for idx, st, c_in, c_out, stride in genotype.layers()
        ]
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBNAct(genotype.stages[-1].channels, genotype.head, 1, act=act, **bn)
        self.pool = nn.AdaptiveAvgPool2d(1)
        mix = genotype.head_mix
        self.mix = nn.Sequential(nn.Linear(genotype.head, mix), make_activation(act)) if mix else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(mix or genotype.head, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # The official EfficientNet init: fan-out normal for convs (fan-out per group, so that
        # depthwise convs are not scaled down by their channel count), uniform for the classifier.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                r = 1.0 / m.out_features ** 0.5
                nn.init.uniform_(m.weight, -r, r)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after the head conv."""
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        if self.mix is not None:
            x = self.mix(x)
        return self.classifier(self.dropout(x))


def build_model(genotype: Genotype | str, num_classes: int = 1000, in_channels: int = 3,
                **options: float) -> GenotypeNet:
    """Build the torch module of a genotype (or its string form); size limits as in `GenotypeNet`."""
    if isinstance(genotype, str):
        from .genotype import parse

        genotype = parse(genotype)
    return GenotypeNet(genotype, num_classes=num_classes, in_channels=in_channels, **options)


def count_macs(model: nn.Module, input_shape: tuple[int, ...], device: str | torch.device = "cpu") -> int:
    """Multiply-adds of every Conv2d and Linear, counted with forward hooks at batch 1.

    `device="meta"` counts a model built on the meta device without computing anything.
    """
    total = 0

    def conv_hook(m: nn.Conv2d, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out[0].numel() * kh * kw * (m.in_channels // m.groups)

    def linear_hook(m: nn.Linear, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters())
