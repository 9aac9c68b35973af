"""Reference genotypes, in one place: EfficientNet-B0, MnasNet-A1, MobileNetV2 and MobileNetV3-Large (all at 224)."""
from __future__ import annotations

from .genotype import Genotype, GenotypeError, parse

# Tan & Le 2019, Table 1: every MBConv has SE 0.25 of its input channels; Swish.
EFFICIENTNET_B0 = (
    "swish_r224:stem_c32_k3_s2:"
    "ir_r1_k3_s1_e1_c16_se0.25:ir_r2_k3_s2_e6_c24_se0.25:ir_r2_k5_s2_e6_c40_se0.25:"
    "ir_r3_k3_s2_e6_c80_se0.25:ir_r3_k5_s1_e6_c112_se0.25:ir_r4_k5_s2_e6_c192_se0.25:"
    "ir_r1_k3_s1_e6_c320_se0.25:head_c1280"
)

# Tan et al. 2019, the TF block strings of MnasNet-A1; ReLU.
MNASNET_A1 = (
    "relu_r224:stem_c32_k3_s2:"
    "ir_r1_k3_s1_e1_c16_noskip:ir_r2_k3_s2_e6_c24:ir_r3_k5_s2_e3_c40_se0.25:"
    "ir_r4_k3_s2_e6_c80:ir_r2_k3_s1_e6_c112_se0.25:ir_r3_k5_s2_e6_c160_se0.25:"
    "ir_r1_k3_s1_e6_c320:head_c1280"
)

# Sandler et al. 2018 (ReLU6 in the paper; ReLU here), no SE.
MOBILENET_V2 = (
    "relu_r224:stem_c32_k3_s2:"
    "ir_r1_k3_s1_e1_c16:ir_r2_k3_s2_e6_c24:ir_r3_k3_s2_e6_c32:ir_r4_k3_s2_e6_c64:"
    "ir_r3_k3_s1_e6_c96:ir_r3_k3_s2_e6_c160:ir_r1_k3_s1_e6_c320:head_c1280"
)

# Howard et al. 2019, Table 1, as timm's block strings write it (expansions 2.5 and 2.3 give the
# expanded widths 200 and 184): h-swish stem, head and late stages, ReLU early; MobileNetV3's
# SE (hard-sigmoid, squeeze = make_divisible(expanded / 4, 8)); head 1x1 conv to 960, pool, 1x1
# to 1280. 5,483,032 parameters with 1000 classes, as torchvision's mobilenet_v3_large.
MOBILENET_V3_LARGE = (
    "hswish_r224_hsigmoid:stem_c16_k3_s2:"
    "ir_r1_k3_s1_e1_c16_relu:ir_r1_k3_s2_e4_c24_relu:ir_r1_k3_s1_e3_c24_relu:ir_r3_k5_s2_e3_c40_se0.25_relu:"
    "ir_r1_k3_s2_e6_c80:ir_r1_k3_s1_e2.5_c80:ir_r2_k3_s1_e2.3_c80:ir_r2_k3_s1_e6_c112_se0.25:"
    "ir_r3_k5_s2_e6_c160_se0.25:head_c960_m1280"
)

REFERENCES: dict[str, str] = {
    "efficientnet-b0": EFFICIENTNET_B0,
    "mnasnet-a1": MNASNET_A1,
    "mobilenet-v2": MOBILENET_V2,
    "mobilenet-v3-large": MOBILENET_V3_LARGE,
}


def reference(name: str) -> Genotype:
    """The reference genotype called `name` (see REFERENCES for the names)."""
    key = name.lower().replace("_", "-")
    if key not in REFERENCES:
        raise GenotypeError(f"unknown reference genotype {name!r}; known: {sorted(REFERENCES)}")
    return parse(REFERENCES[key])


def load_genotype(source: str) -> Genotype:
    """A genotype from a reference name, a genotype YAML file or a genotype string."""
    from pathlib import Path

    if source.lower().replace("_", "-") in REFERENCES:
        return reference(source)
    p = Path(source)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise GenotypeError(f"genotype file {source!r} does not exist")
        try:
            return Genotype.from_yaml(p.read_text())
        except GenotypeError as e:
            raise GenotypeError(f"{source}: {e}") from None
    if ":" in source:
        return parse(source)
    raise GenotypeError(f"{source!r} is neither a reference name ({', '.join(sorted(REFERENCES))}), "
                        f"a genotype YAML file nor a genotype string")
