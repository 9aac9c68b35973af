import random

import pytest

from search_space import SearchSpace, SpaceError, load_space, reference
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
