import dataclasses
import random

import pytest
import yaml

from search_space import GenotypeError, SearchSpace, SpaceError, load_space, reference
from search_space.genotype import uses_residual


@pytest.fixture(scope="module")
def mnas(root):
    return load_space(root / "configs" / "space_mnas.yaml")


def test_default_space_contains_b0_and_a1(mnas):
    assert mnas.contains(reference("efficientnet-b0"))
    assert mnas.contains(reference("mnasnet-a1"))
    assert mnas.contains(reference("mobilenet-v2"))


def test_default_space_has_the_mnasnet_choices(mnas):
    d = {x.name: x.choices for x in mnas.decisions}
    assert d["s3.op"] == ("conv", "sepconv", "mbconv1", "mbconv3", "mbconv6")
    assert d["s3.kernel"] == (3, 5) and d["s3.se"] == (0.0, 0.25) and d["s3.skip"] == ("identity", "none")
    # 0.75 / 1.0 / 1.25 x MobileNetV2 (16, 24, 32, 64, 96, 160, 320), plus B0's 112 and 192
    assert d["s1.channels"] == (12, 16, 20) and d["s5.channels"] == (72, 96, 112, 120)
    assert d["s6.channels"] == (120, 160, 192, 200)
    assert len(mnas.decisions) == 42
    expected = 1
    for x in mnas.decisions:
        expected *= len(x.choices)
    assert mnas.size == expected


def test_encode_decode_round_trip(mnas):
    rng = random.Random(0)
    for _ in range(300):
        sample = mnas.sample_decisions(rng)
        g = mnas.decode(sample)
        assert mnas.encode(g) == sample
    b0 = reference("efficientnet-b0")
    assert mnas.decode(mnas.encode(b0)) == b0


def test_decode_errors_name_the_decision(mnas):
    sample = mnas.sample_decisions(random.Random(1))
    bad = dict(sample, **{"s2.kernel": 7})
    with pytest.raises(SpaceError, match="s2.kernel"):
        mnas.decode(bad)
    missing = dict(sample)
    del missing["s4.layers"]
    with pytest.raises(SpaceError, match="s4.layers"):
        mnas.decode(missing)


def test_identity_skip_only_where_shape_is_kept(mnas):
    rng = random.Random(2)
    for _ in range(50):
        g = mnas.sample(rng)
        for _, st, c_in, c_out, stride in g.layers():
            if uses_residual(st, c_in, c_out, stride):
                assert stride == 1 and c_in == c_out and st.skip == "identity"


def test_total_stride_configurable(root):
    assert load_space(root / "configs" / "space_mnas.yaml").sample(0).total_stride == 32
    assert load_space(root / "configs" / "space_cifar.yaml").sample(0).total_stride == 8
    assert load_space(root / "configs" / "space_digits.yaml").sample(0).total_stride == 4


@pytest.mark.parametrize("mutate,key", [
    (lambda s: s.update(bogus=1), "bogus"),
    (lambda s: s["stages"][0].update(kernel=[3, 4]), "stages[0].kernel"),
    (lambda s: s["stages"][1].update(stride=3), "stages[1].stride"),
    (lambda s: s["stages"][3].update(op=["conv", "mbconv9"]), "stages[3].op"),
    (lambda s: s["stages"][2].update(channels=[0]), "stages[2].channels"),
    (lambda s: s.update(activation="gelu"), "activation"),
    (lambda s: s["stages"][0].update(se=[0.0, 2.0]), "stages[0].se"),
])
def test_bad_space_files_name_the_key(mnas, mutate, key):
    spec = mnas.to_dict()
    spec["defaults"] = {}
    mutate(spec)
    with pytest.raises(SpaceError) as e:
        SearchSpace(spec, source="x.yaml")
    assert key in str(e.value)


def test_missing_space_file(tmp_path):
    with pytest.raises(SpaceError, match="does not exist"):
        load_space(tmp_path / "nope.yaml")


def test_decisions_unpack_like_pairs(mnas):
    name, choices = mnas.decisions[0]
    assert name == "s1.op" and len(choices) == 5


@pytest.mark.parametrize("mutate,msg", [
    (lambda s: s.update(resolution=100000), "key 'resolution': 100000 must be an integer in [8, 4096]"),
    (lambda s: s.update(resolution=True), "key 'resolution'"),
    (lambda s: s["stages"][0].update(kernel=[True, 3]), "stages[0].kernel': [True] not allowed"),
    (lambda s: s["stem"].update(kernel=4), "key 'stem.kernel': 4 is not one of [1, 3, 5, 7]"),
    (lambda s: s["stages"][0].update(bogus=1), "unknown key 'stages[0].bogus'"),
])
def test_bad_space_values_are_one_line(mnas, mutate, msg):
    spec = mnas.to_dict()
    mutate(spec)
    with pytest.raises(SpaceError) as e:
        SearchSpace(spec, source="x.yaml")
    assert msg in str(e.value) and str(e.value).startswith("x.yaml: ") and "\n" not in str(e.value)


def test_space_file_with_resolution_100000_is_refused_on_load(tmp_path, root):
    text = (root / "configs" / "space_digits.yaml").read_text()
    assert "resolution: 16" in text
    p = tmp_path / "huge.yaml"
    p.write_text(text.replace("resolution: 16", "resolution: 100000"))
    with pytest.raises(SpaceError, match=r"resolution.*100000.*\[8, 4096\]"):
        load_space(p)


def test_one_vocabulary():
    """Genotypes, spaces and latency keys accept exactly the spellings of search_space.vocab."""
    from latency.keys import parse_key
    from search_space import vocab
    from search_space.genotype import Stage

    space_ops = {vocab.OP_CHOICES[name][0] for name in vocab.OP_CHOICES}
    assert space_ops == set(vocab.OPS)
    for op in vocab.OPS:
        for act in vocab.ACTIVATIONS:
            spec = parse_key(f"{op}-in8x8x8-out8-k3-s1-e1-se0-res1-{act}")
            assert spec.op == op and spec.act == act
    with pytest.raises(ValueError):
        parse_key("xx-in8x8x8-out8-k3-s1-e1-se0-res1-swish")
    with pytest.raises(ValueError):
        parse_key("ir-in8x8x8-out8-k3-s1-e1-se0-res1-gelu")
    for k in vocab.KERNELS:
        for s in vocab.STRIDES:
            for skip in vocab.SKIPS:
                assert Stage("ir", k, 1, 0.0, skip, 8, 1, s).kernel == k
    for k in (0, 2, 4, 9):
        with pytest.raises(GenotypeError):
            Stage("ir", k, 1, 0.0, "identity", 8, 1, 1)


def test_mbv3_space_is_ofas(root):
    """OFA's MobileNetV3 space at width 1.2: fixed per-stage activations, MobileNetV3 SE and head."""
    space = load_space(root / "configs" / "space_mbv3.yaml")
    assert space.size == 27 ** 5 and space.se_gate == "hsigmoid"
    assert {d.name.split(".")[1] for d in space.decisions} == {"op", "kernel", "layers"}
    g = space.decode({d.name: d.choices[-1] for d in space.decisions})
    assert [g.stage_activation(st) for st in g.stages] == ["relu"] * 3 + ["hswish"] * 3
    assert [st.channels for st in g.stages] == [24, 32, 48, 96, 136, 192] and g.stem.channels == 24
    assert (g.head, g.head_mix, g.se_gate) == (1152, 1536, "hsigmoid")
    assert space.encode(g) == {d.name: d.choices[-1] for d in space.decisions}
    with pytest.raises(SpaceError, match=r"s4.activation.*'relu'.*\['hswish'\]"):
        space.encode(g.replace(stages=(*g.stages[:3], dataclasses.replace(g.stages[3], act="relu"), *g.stages[4:])))
    with pytest.raises(SpaceError, match="se_gate 'sigmoid'"):
        space.encode(g.replace(se_gate="sigmoid"))
    assert not space.contains(reference("mobilenet-v3-large"))
    # a space without the MobileNetV3 keys keeps its exact validated form (run resumes compare it)
    mnas = load_space(root / "configs" / "space_mnas.yaml").to_dict()
    assert "se_gate" not in mnas and "head_mix" not in mnas and "activation" not in mnas["stages"][0]


def test_per_stage_activation_choices_are_decisions(root):
    spec = yaml.safe_load((root / "configs" / "space_mbv3.yaml").read_text())
    spec["stages"][3]["activation"] = ["relu", "hswish"]
    space = SearchSpace(spec)
    assert space._index["s4.activation"].choices == ("relu", "hswish")
    g = space.decode({**{d.name: d.choices[0] for d in space.decisions}})
    assert g.stages[3].act == "relu" and space.encode(g)["s4.activation"] == "relu"
    spec["stages"][3]["activation"] = ["gelu"]
    with pytest.raises(SpaceError, match=r"stages\[3\].activation.*gelu.*allowed"):
        SearchSpace(spec)
    spec["stages"][3]["activation"] = "relu"
    spec["se_gate"] = "tanh"
    with pytest.raises(SpaceError, match="se_gate.*tanh.*sigmoid"):
        SearchSpace(spec)
