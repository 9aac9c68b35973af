import dataclasses
import random

import pytest

from search_space import Genotype, GenotypeError, load_space, parse, reference
from search_space.references import REFERENCES, load_genotype


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_string_round_trip(name):
    g = reference(name)
    assert parse(g.to_string()) == g
    assert g.to_string() == REFERENCES[name]


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_yaml_round_trip(name):
    g = reference(name)
    text = g.to_yaml(name=name)
    assert Genotype.from_yaml(text) == g
    assert Genotype.from_yaml(text).to_yaml(name=name) == text
    assert Genotype.from_dict(g.to_dict()) == g


@pytest.mark.parametrize("space", ["space_mnas", "space_cifar", "space_digits", "space_mbv3"])
def test_random_members_round_trip(root, space):
    s = load_space(root / "configs" / f"{space}.yaml")
    rng = random.Random(3)
    for _ in range(200):
        g = s.sample(rng)
        assert parse(g.to_string()) == g
        assert Genotype.from_yaml(g.to_yaml()) == g


def test_string_grammar_example():
    g = reference("efficientnet-b0")
    assert g.stages[1].to_string() == "ir_r2_k3_s2_e6_c24_se0.25"
    assert g.stem.channels == 32 and g.head == 1280 and g.activation == "swish"
    a1 = reference("mnasnet-a1")
    assert a1.stages[0].skip == "none" and a1.stages[2].se == 0.25 and a1.stages[1].se == 0.0


@pytest.mark.parametrize("bad", [
    "", "swish_r224", "tanh_r224:stem_c32_k3_s2:ir_r1_k3_s1_e1_c16:head_c1280",
    "swish_r224:stem_c32_k3_s2:xx_r1_k3_s1_e1_c16:head_c1280",
    "swish_r224:stem_c32_k3_s2:ir_r1_k3_s3_e1_c16:head_c1280",
    "swish_r224:stem_c32_k3_s2:ir_r1_k3_s1_e1:head_c1280",
    "swish_r224:stem_c32_k3_s2:ds_r1_k3_s1_e6_c16:head_c1280",
    "swish_r224:stem_c32_k3_s2:ir_r1_k3_s1_e1_c16_zz9:head_c1280",
])
def test_malformed_strings_are_errors(bad):
    with pytest.raises(GenotypeError):
        parse(bad)


def test_yaml_errors_name_the_key():
    g = reference("mobilenet-v2").to_dict()
    g["stages"][2]["bogus"] = 1
    with pytest.raises(GenotypeError, match="bogus"):
        Genotype.from_dict(g)
    g = reference("mobilenet-v2").to_dict()
    g["stages"][0]["kernel"] = 4
    with pytest.raises(GenotypeError, match=r"stages\[0\].*kernel"):
        Genotype.from_dict(g)


def test_genotype_is_immutable_and_hashable():
    g = reference("efficientnet-b0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.head = 10  # type: ignore[misc]
    assert len({g, reference("efficientnet-b0"), reference("mnasnet-a1")}) == 2


def test_load_genotype_sources(tmp_path):
    g = reference("mnasnet-a1")
    p = tmp_path / "a1.yaml"
    p.write_text(g.to_yaml(name="a1"))
    assert load_genotype(str(p)) == g
    assert load_genotype("mnasnet-a1") == g
    assert load_genotype(g.to_string()) == g
    with pytest.raises(GenotypeError, match="does not exist"):
        load_genotype(str(tmp_path / "missing.yaml"))
    with pytest.raises(GenotypeError, match="neither"):
        load_genotype("efficientnet-b9")


# ---- one validation for every part (issue 10.6) ------------------------------------------------
B0 = reference("efficientnet-b0").to_string()


@pytest.mark.parametrize("old,new,msg", [
    ("stem_c32_", "stem_c-3_", "stem: channels -3 is not allowed; allowed: an integer >= 1"),
    ("stem_c32_k3", "stem_c32_k4", "stem: kernel 4 is not allowed; allowed: one of [1, 3, 5, 7]"),
    ("stem_c32_k3_s2", "stem_c32_k3_s3", "stem: stride 3 is not allowed; allowed: one of [1, 2]"),
    ("stem_c32_", "stem_c8.7_", "stem: channels 8.7 is not allowed"),
    ("stem_c32_", "stem_ctrue_", "stem: channels 'true' is not allowed"),
    ("head_c1280", "head_c0", "head: channels 0 is not allowed"),
    ("swish_r224", "swish_r100000", "genotype: resolution 100000 is not allowed; allowed: an integer in [1, 4096]"),
    ("swish_r224", "gelu_r224", "genotype: activation 'gelu' is not allowed; allowed: one of ['swish', 'relu', 'hswish']"),
    ("ir_r1_k3_s1_e1_c16_se0.25", "ir_r1_k3_s1_e1_c16.5_se0.25",
     "stages[0] 'ir_r1_k3_s1_e1_c16.5_se0.25': channels 16.5 is not allowed"),
    ("ir_r2_k3_s2_e6_c24_se0.25", "ir_r2_k3_s2_e6_c24_se1.5", "stages[1] 'ir_r2_k3_s2_e6_c24_se1.5': se 1.5"),
])
def test_string_fields_are_validated(old, new, msg):
    with pytest.raises(GenotypeError) as e:
        parse(B0.replace(old, new, 1))
    assert msg in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("path,value,msg", [
    (("stem", "channels"), 8.7, "stem: channels 8.7 is not allowed"),
    (("stem", "channels"), True, "stem: channels True is not allowed"),
    (("stem", "channels"), "8", "stem: channels '8' is not allowed"),
    (("stem", "kernel"), 4, "stem: kernel 4 is not allowed; allowed: one of [1, 3, 5, 7]"),
    (("stem", "stride"), 3, "stem: stride 3 is not allowed"),
    (("stages", 0, "channels"), True, "stages[0]: channels True is not allowed"),
    (("stages", 3, "layers"), 2.5, "stages[3]: layers 2.5 is not allowed"),
    (("stages", 2, "kernel"), True, "stages[2]: kernel True is not allowed"),  # True == 1 is a kernel
    (("stages", 1, "se"), False, "stages[1]: se False is not allowed; allowed: a ratio in [0, 1)"),
    (("head",), True, "head: channels True is not allowed"),
    (("resolution",), 224.5, "genotype: resolution 224.5 is not allowed"),
    (("resolution",), 5000, "allowed: an integer in [1, 4096]"),
    (("activation",), 1, "genotype: activation 1 is not allowed"),
])
def test_mapping_fields_are_validated_bools_and_fractions_are_not_ints(path, value, msg):
    d = reference("efficientnet-b0").to_dict()
    target = d
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    with pytest.raises(GenotypeError) as e:
        Genotype.from_dict(d)
    assert msg in str(e.value)


def test_integral_floats_are_read_as_ints():
    d = reference("efficientnet-b0").to_dict()
    d["stem"]["channels"] = 32.0
    d["stages"][0]["layers"] = 1.0
    g = Genotype.from_dict(d)
    assert g == reference("efficientnet-b0") and type(g.stem.channels) is int and type(g.stages[0].layers) is int


def test_direct_construction_is_validated_the_same_way():
    from search_space import Stage, Stem

    with pytest.raises(GenotypeError, match=r"^stem: kernel 4 is not allowed"):
        Stem(32, 4, 2)
    with pytest.raises(GenotypeError, match=r"^stem: channels True"):
        Stem(channels=True)
    with pytest.raises(GenotypeError, match=r"^stage: stride 3"):
        Stage("ir", 3, 6, 0.25, "identity", 24, 2, 3)
    with pytest.raises(GenotypeError, match=r"^stage: expansion 6 is not allowed; allowed: 1"):
        Stage("ds", 3, 6, 0.0, "identity", 24, 1, 1)
    g = reference("efficientnet-b0")
    with pytest.raises(GenotypeError, match="resolution 100000"):
        g.replace(resolution=100000)
    with pytest.raises(GenotypeError, match=r"stages\[0\]: type 'dict'"):
        g.replace(stages=(g.stages[0].__dict__,))
    with pytest.raises(GenotypeError, match="stages"):
        g.replace(stages=())
    assert Stem(32.0, 3, 2) == Stem(32, 3, 2)


def test_yaml_with_a_bad_stem_is_an_error(tmp_path):
    text = reference("mnasnet-a1").to_yaml().replace("kernel: 3, stride: 2}", "kernel: 3, stride: 3}", 1)
    assert "stride: 3}" in text
    p = tmp_path / "g.yaml"
    p.write_text(text)
    with pytest.raises(GenotypeError, match=r"stride 3 is not allowed"):
        load_genotype(str(p))


def test_mobilenet_v3_grammar():
    """Per-stage activation, MobileNetV3 SE, float expansions and the feature-mix head, and their defaults."""
    g = reference("mobilenet-v3-large")
    assert g.activation == "hswish" and g.se_gate == "hsigmoid" and g.head == 960 and g.head_mix == 1280
    assert [st.act for st in g.stages[:4]] == ["relu"] * 4 and g.stages[4].act is None
    assert [g.stage_activation(st) for st in g.stages[3:5]] == ["relu", "hswish"]
    assert [st.expansion for st in g.stages[5:7]] == [2.5, 2.3]
    assert type(parse("relu_r224:stem_c8_k3_s2:ir_r1_k3_s1_e6.0_c8:head_c16").stages[0].expansion) is int
    old = reference("efficientnet-b0")
    assert old.se_gate == "sigmoid" and old.head_mix == 0 and all(st.act is None for st in old.stages)
    assert "se_gate" not in old.to_dict() and "activation" not in old.to_dict()["stages"][0]
    d = g.to_dict()
    assert d["se_gate"] == "hsigmoid" and d["head_mix"] == 1280 and d["stages"][0]["activation"] == "relu"
    assert Genotype.from_dict(d) == g
    assert dataclasses.replace(g.stages[0], act="swish").to_string() == "ir_r1_k3_s1_e1_c16_swish"


@pytest.mark.parametrize("bad,msg", [
    ("relu_r224_sigmoid2:stem_c8_k3_s2:ir_r1_k3_s1_e6_c8:head_c16", "se_gate 'sigmoid2'"),
    ("relu_r224:stem_c8_k3_s2:ir_r1_k3_s1_e6_c8_relu_hswish:head_c16", "at most one"),
    ("relu_r224:stem_c8_k3_s2:ir_r1_k3_s1_e0.5_c8:head_c16", "expansion 0.5"),
    ("relu_r224:stem_c8_k3_s2:ds_r1_k3_s1_e2.5_c8:head_c16", "expansion 2.5"),
    ("relu_r224:stem_c8_k3_s2:ir_r1_k3_s1_e6_c8_gelu:head_c16", "cannot read field 'gelu'"),
    ("relu_r224:stem_c8_k3_s2:ir_r1_k3_s1_e6_c8:head_c16_m-1", "mix -1"),
])
def test_mobilenet_v3_fields_are_validated(bad, msg):
    with pytest.raises(GenotypeError, match=msg):
        parse(bad)
