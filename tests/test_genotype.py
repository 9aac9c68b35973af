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


@pytest.mark.parametrize("space", ["space_mnas", "space_cifar", "space_digits"])
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
    with pytest.raises(Exception):
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
