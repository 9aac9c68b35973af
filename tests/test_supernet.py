"""The supernet: every member of every shipped space is extracted exactly; sampling rules; checkpoints."""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
import torch
from tiny import SPACE

from nas.supernet import SuperNet
from nas.supernet.checkpoint import CheckpointError, covers, load_supernet, save_supernet
from nas.supernet.evaluator import recalibrate_bn
from nas.supernet.sampling import largest, smallest, step_members
from search_space import cost, load_space
from search_space.references import REFERENCES, reference
from search_space.vocab import OP_CHOICES

ROOT = Path(__file__).resolve().parent.parent
SPACES = sorted((ROOT / "configs").glob("space_*.yaml"))
# A small input per space keeps the forward passes cheap (the total stride still fits).
SMALL = {"space_mnas.yaml": 32, "space_mbv3.yaml": 32, "space_cifar.yaml": 16, "space_cifar_narrow.yaml": 16,
         "space_digits.yaml": 8}


def _scramble(net: torch.nn.Module, seed: int = 0) -> None:
    """Random BatchNorm statistics and affine parameters, so that a wrong slice shows in the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def test_spaces_are_all_covered():
    assert {p.name for p in SPACES} >= set(SMALL), "a new shipped space needs a test resolution in SMALL"


@pytest.mark.parametrize("space_file", SPACES, ids=lambda p: p.name)
def test_extract_is_the_builders_network_with_the_supernets_outputs(space_file):
    space = load_space(space_file)
    res = SMALL.get(space_file.name, 16)
    torch.manual_seed(0)
    net = SuperNet(space, num_classes=10, in_channels=3)
    _scramble(net)
    net.eval()
    members = [reference(name) for name in sorted(REFERENCES) if space.contains(reference(name))]
    if space_file.name == "space_mnas.yaml":
        assert len(members) == 3  # EfficientNet-B0, MnasNet-A1, MobileNetV2
        members = [m.replace(activation=space.activation) for m in members]  # MnasNet-A1 is ReLU; the space swish
    rng = random.Random(space_file.name)
    members += [space.sample(rng) for _ in range(2 if members else 4)] + [largest(space), smallest(space)]
    x = torch.randn(2, 3, res, res, generator=torch.Generator().manual_seed(1))
    for g in members:
        model = net.extract(g)
        assert type(model).__name__ == "GenotypeNet" and model.genotype == g
        n = sum(p.numel() for p in model.parameters())
        assert n == cost(g, in_channels=3, num_classes=10).params, g.to_string()
        with torch.no_grad():
            a, b = net(x, g), model(x)
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), (g.to_string(), (a - b).abs().max().item())


def test_train_mode_and_gradients_agree_with_the_extracted_network():
    space = load_space(ROOT / "configs" / "space_digits.yaml")
    torch.manual_seed(0)
    net = SuperNet(space, num_classes=10, in_channels=1)
    g = space.sample(random.Random(5))
    model = net.extract(g, dropout=0.0, drop_connect=0.0).train()
    net.train()
    x = torch.randn(4, 1, 16, 16)
    a, b = net(x, g), model(x)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    a.square().sum().backward()
    b.square().sum().backward()
    # The stem's gradient is the sum over the whole network: a wrong slice anywhere would change it.
    assert torch.allclose(net.stem.weight.grad[: g.stem.channels], model.stem[0].weight.grad, rtol=1e-4, atol=1e-5)
    assert torch.allclose(net.classifier.bias.grad, model.classifier.bias.grad, rtol=1e-4, atol=1e-6)


def test_weights_are_shared_as_slices():
    space = load_space(ROOT / "configs" / "space_digits.yaml")
    net = SuperNet(space, 10, 1)
    sample = space.encode(space.sample(random.Random(2)))
    sample.update({"s1.channels": 8, "s2.op": "mbconv3", "s2.kernel": 3, "s2.se": 0.25})
    g = space.decode(sample)
    model = net.extract(g)
    slot = net.stages[1][0].families["ir"]
    body = model.blocks[1].body  # expand, depthwise, SE, project
    off = (slot["dw"].weight.shape[-1] - 3) // 2
    assert torch.equal(body[1][0].weight, slot["dw"].weight[:24, :, off:off + 3, off:off + 3])  # centre of the 5x5
    assert torch.equal(body[0][0].weight, slot["expand"].weight[:24, :8])
    assert torch.equal(body[2].reduce.weight, slot["se"].reduce.weight[:2, :24])  # squeeze int(8 * 0.25)
    assert torch.equal(body[3][1].weight, slot["project"].bn.weight[: g.stages[1].channels])
    assert set(net.stages[1][0].families) == {"cn", "ds", "ir"}  # one set of weights per op family


def test_largest_and_smallest_bound_random_members():
    for path in SPACES:
        space = load_space(path)
        big, small = largest(space), smallest(space)
        assert space.contains(big) and space.contains(small)
        for st, sp in zip(big.stages, space.to_dict()["stages"]):  # MBConv at its widest, SE at its largest
            assert st.op == "ir" and st.expansion == max(OP_CHOICES[o][1] for o in sp["op"]) and st.se == max(sp["se"])
        rng = random.Random(0)
        macs = [cost(space.sample(rng)).macs for _ in range(50)]
        assert cost(small).macs <= min(macs) and cost(big).macs >= max(macs) * 0.5
    space = load_space(SPACES[0])
    a = step_members(space, "sandwich", 2, seed=1, step=7)
    assert [r for r, _ in a] == ["largest", "smallest", "random", "random"]
    assert [g for _, g in a] == [g for _, g in step_members(space, "sandwich", 2, seed=1, step=7)]  # per-step stream
    assert [g for _, g in a] != [g for _, g in step_members(space, "sandwich", 2, seed=1, step=8)]
    assert len(step_members(space, "uniform", 2, seed=1, step=7)) == 1


def test_balanced_op_sampling_gives_each_family_a_third():
    from collections import Counter

    from nas.supernet.sampling import sample_member

    space = load_space(ROOT / "configs" / "space_cifar_narrow.yaml")
    rng = random.Random(0)
    plain = Counter(st.op for _ in range(400) for st in sample_member(space, rng).stages)
    fair = Counter(st.op for _ in range(400) for st in sample_member(space, rng, balance_ops=True).stages)
    assert plain["ir"] > 2.5 * plain["cn"]  # three of the five op choices are MBConv
    assert all(abs(fair[f] / 2000 - 1 / 3) < 0.04 for f in ("cn", "ds", "ir"))
    exps = Counter(st.expansion for _ in range(300) for st in sample_member(space, rng, True).stages if st.op == "ir")
    assert set(exps) == {1, 3, 6}


def test_checkpoint_round_trip_and_space_cover(tmp_path):
    space = load_space(__import__("yaml").safe_load(SPACE))
    net = SuperNet(space, 10, 1)
    _scramble(net)
    p = save_supernet(tmp_path / "s.pt", net, 0.1, {"steps": 3})
    again, meta = load_supernet(p)
    assert meta == {"steps": 3} and again.num_classes == 10 and again.in_channels == 1
    for k, v in net.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    assert covers(space.to_dict(), space.to_dict()) is None
    narrow = space.to_dict()
    narrow["stages"][0]["channels"] = [8]
    assert covers(space.to_dict(), narrow) is None  # a sub-space is fine
    assert "channels" in covers(narrow, space.to_dict())
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_supernet(tmp_path / "bad.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a supernet checkpoint"):
        load_supernet(tmp_path / "other.pt")


def test_recalibration_measures_exact_batch_statistics():
    space = load_space(ROOT / "configs" / "space_digits.yaml")
    net = SuperNet(space, 10, 1)
    _scramble(net)
    model = net.extract(space.sample(random.Random(3)))
    x = torch.randn(32, 1, 16, 16)
    recalibrate_bn(model, [x[:16], x[16:]])
    assert not model.training and all(m.momentum == 0.01 for m in model.modules()
                                      if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        stem = model.stem[0](x)
    assert torch.allclose(model.stem[1].running_mean, stem.mean((0, 2, 3)), atol=1e-5)


def test_covers_compares_the_mobilenet_v3_knobs():
    spec = load_space(ROOT / "configs" / "space_mbv3.yaml").to_dict()
    assert covers(spec, spec) is None
    other = {**spec, "stages": [dict(st) for st in spec["stages"]]}
    other["stages"][3]["activation"] = ["relu"]
    assert "stage 4: activation ['relu']" in covers(spec, other)
    del other["stages"][3]["activation"]  # no choices: the global hswish, which the supernet has there
    assert covers(spec, other) is None
    assert "se_gate sigmoid" in covers(spec, {**spec, "se_gate": "sigmoid"})
    assert "head_mix [1280]" in covers(spec, {**spec, "head_mix": [1280]})


@pytest.mark.parametrize("sharing", ["transform", "separate"])
@pytest.mark.parametrize("space_file", ["space_digits.yaml", "space_mbv3.yaml"])
def test_kernel_sharing_variants_extract_exactly(space_file, sharing):
    space = load_space(ROOT / "configs" / space_file)
    torch.manual_seed(0)
    net = SuperNet(space, 10, 3, kernel_sharing=sharing)
    _scramble(net)
    with torch.no_grad():  # move the transforms off the identity, so that using them shows
        for name, p in net.named_parameters():
            if ".transform." in name:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))) * 0.1)
    net.eval()
    res = SMALL[space_file]
    x = torch.randn(2, 3, res, res, generator=torch.Generator().manual_seed(1))
    rng = random.Random(sharing)
    for g in [space.sample(rng) for _ in range(3)] + [smallest(space)]:
        model = net.extract(g)
        assert sum(p.numel() for p in model.parameters()) == cost(g, in_channels=3, num_classes=10).params
        with torch.no_grad():
            a, b = net(x, g), model(x)
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), (g.to_string(), (a - b).abs().max().item())


def test_kernel_transform_chains_from_the_largest_kernel_and_starts_as_the_centre():
    from nas.supernet.net import SuperConvBN

    centre = SuperConvBN(4, 6, 7, depthwise=True, kernels=[3, 5, 7])
    torch.manual_seed(0)
    conv = SuperConvBN(4, 6, 7, depthwise=True, kernels=[3, 5, 7], sharing="transform")
    with torch.no_grad():
        centre.weight.copy_(conv.weight)
    for k in (3, 5, 7):  # identity transforms: the plain centre
        assert torch.equal(conv.kernel_weight(4, 6, k), centre.kernel_weight(4, 6, k))
    m5, m3 = torch.randn(25, 25), torch.randn(9, 9)
    with torch.no_grad():
        conv.transform["k5"].copy_(m5)
        conv.transform["k3"].copy_(m3)
    w5 = (conv.weight[:, :, 1:6, 1:6].reshape(6, 1, 25) @ m5).reshape(6, 1, 5, 5)
    w3 = (w5[:, :, 1:4, 1:4].reshape(6, 1, 9) @ m3).reshape(6, 1, 3, 3)
    assert torch.allclose(conv.kernel_weight(4, 6, 5), w5) and torch.allclose(conv.kernel_weight(4, 3, 3), w3[:3])
    with pytest.raises(ValueError, match="not one of the supernet's"):
        SuperConvBN(4, 6, 5, kernels=[5]).kernel_weight(4, 6, 3)


def test_separate_kernels_train_their_own_weights():
    space = load_space(ROOT / "configs" / "space_digits.yaml")
    net = SuperNet(space, 10, 1, kernel_sharing="separate")
    sample = space.encode(space.sample(random.Random(2)))
    sample.update({"s2.op": "mbconv3", "s2.kernel": 3})
    g = space.decode(sample)
    net(torch.randn(2, 1, 16, 16), g).sum().backward()
    dw = net.stages[1][0].families["ir"]["dw"]
    assert dw.weight.grad is None and dw.small["k3"].grad.abs().sum() > 0  # the 5x5 weights are not touched
    model = net.extract(g)
    assert torch.equal(model.blocks[1].body[1][0].weight, dw.small["k3"][:24])


def test_checkpoint_keeps_the_kernel_sharing(tmp_path):
    space = load_space(ROOT / "configs" / "space_digits.yaml")
    net = SuperNet(space, 10, 1, kernel_sharing="transform")
    again, _ = load_supernet(save_supernet(tmp_path / "s.pt", net, 0.1))
    assert again.kernel_sharing == "transform" and again.state_dict().keys() == net.state_dict().keys()
    old = torch.load(tmp_path / "s.pt", weights_only=True)
    old.pop("kernel_sharing")
    old["model"] = SuperNet(space, 10, 1).state_dict()
    torch.save(old, tmp_path / "old.pt")
    assert load_supernet(tmp_path / "old.pt")[0].kernel_sharing == "centre"  # files written before the key
    with pytest.raises(ValueError, match="expected one of centre, transform, separate"):
        SuperNet(space, 10, 1, kernel_sharing="middle")


def _class_ordered_splits():
    from nas.data import Splits

    gen = torch.Generator().manual_seed(0)
    # Labels in class order, as CIFAR-10's file and image folders keep them: a prefix holds one class.
    return Splits(x_train=torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8, generator=gen),
                  y_train=torch.arange(32) % 10,
                  x_val=torch.randint(0, 256, (100, 1, 8, 8), dtype=torch.uint8, generator=gen),
                  y_val=torch.arange(10).repeat_interleave(10), mean=(0.5,), std=(0.25,), num_classes=10,
                  resolution=8)


def _scorer(net, **sets):
    from nas.config import SupernetConfig, TrainConfig
    from nas.supernet import evaluator

    scorer = evaluator.SupernetScorer(SupernetConfig(checkpoint="<in memory>", bn_batches=2, bn_batch_size=16, **sets),
                                      TrainConfig())
    scorer._net = net
    return scorer


def test_a_limited_score_reads_a_random_part_of_a_class_ordered_split(monkeypatch):
    from nas.supernet import evaluator

    space = load_space(ROOT / "configs" / "space_digits.yaml")
    net = SuperNet(space, 10, 1)
    splits = _class_ordered_splits()
    scorer = _scorer(net)
    seen = []
    monkeypatch.setattr(evaluator, "accuracy", lambda model, x, y, *rest: seen.append(y.tolist()) or 0.5)
    g = space.sample(random.Random(1))
    for limit in (20, 20, None):
        assert scorer.score(g, 0, splits, torch.device("cpu"), limit=limit).ok
    assert len(seen[0]) == 20 and len(set(seen[0])) >= 6 and seen[1] == seen[0]
    assert seen[2] == splits.y_val.tolist()


def test_scoring_at_the_largest_kernel_scores_that_member_and_keeps_the_rest():
    space = load_space(ROOT / "configs" / "space_digits.yaml")
    net = SuperNet(space, 10, 1)
    _scramble(net)
    splits, cpu = _class_ordered_splits(), torch.device("cpu")
    own, at_largest = _scorer(net), _scorer(net, score_kernel="largest")
    big = largest(space)
    rng = random.Random(5)
    gs = [space.sample(rng) for _ in range(8)]
    g = next(g for g in gs if any(st.kernel != b.kernel for st, b in zip(g.stages, big.stages)))
    member = at_largest.scored_member(g)
    assert own.scored_member(g) is g and member != g and space.contains(member)
    assert [st.kernel for st in member.stages] == [b.kernel for b in big.stages]
    assert [dataclasses.replace(st, kernel=3) for st in member.stages] == \
        [dataclasses.replace(st, kernel=3) for st in g.stages]
    assert at_largest.score(g, 0, splits, cpu).accuracy == own.score(member, 0, splits, cpu).accuracy
