"""The block vocabulary, in one place: every module that spells an op, kernel, stride,
activation or skip (genotypes, spaces, latency keys) imports it from here."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Genotype ops: MBConv (inverted residual), depthwise-separable conv, regular conv.
OPS = ("ir", "ds", "cn")
# The space's op decision: each choice stands for a genotype (op, expansion).
OP_CHOICES: dict[str, tuple[str, int]] = {
    "conv": ("cn", 1),
    "sepconv": ("ds", 1),
    "mbconv1": ("ir", 1),
    "mbconv3": ("ir", 3),
    "mbconv4": ("ir", 4),
    "mbconv6": ("ir", 6),
}
# Odd kernels only: padding k // 2 keeps "same" shapes, which the cost model assumes.
KERNELS = (1, 3, 5, 7)
STRIDES = (1, 2)
# The global activation, and a stage's own where it names one (MobileNetV3 mixes relu and hswish).
ACTIVATIONS = ("swish", "relu", "hswish")
# SE variants, named by their gate: "sigmoid" is EfficientNet's (squeeze = int(block input x
# ratio), the block's activation inside), "hsigmoid" MobileNetV3's (squeeze =
# make_divisible(int(expanded x ratio), 8), ReLU inside, hard-sigmoid gate).
SE_GATES = ("sigmoid", "hsigmoid")
SKIPS = ("identity", "none")
# Above this an input is not an image a classifier of this family is trained on (B7 uses 600,
# EfficientNet-L2 800); it stops a typo such as 100000 long before memory is allocated.
MAX_RESOLUTION = 4096


def se_activation(block_act: str, se_gate: str) -> str:
    """The activation inside an SE: ReLU in MobileNetV3's (gate hsigmoid), the block's in EfficientNet's."""
    return "relu" if se_gate == "hsigmoid" else block_act


def check_keys(data: Mapping[str, Any], allowed: set[str], error: type[Exception], where: str = "",
               prefix: str = "") -> None:
    """Raise `error` naming the first unknown key of `data` (as `prefix + key`) and the allowed keys."""
    unknown = sorted(str(k) for k in set(data) - allowed)
    if unknown:
        raise error(f"{where}unknown key '{prefix}{unknown[0]}'; allowed: {sorted(allowed)}")


__all__ = ["OPS", "OP_CHOICES", "KERNELS", "STRIDES", "ACTIVATIONS", "SE_GATES", "SKIPS", "MAX_RESOLUTION", "se_activation",
           "check_keys"]
