"""The pure-Python cost model agrees exactly with the torch module, and reproduces the papers."""
import random
from pathlib import Path

import pytest
import torch

from scaling import apply, official
from search_space import cost, load_space, reference
from search_space.model import build_model, count_macs, count_params

# docs/reference.md: exact params (torchvision/timm) and hook-counted MACs at the official resolutions.
PARAMS = [5_288_548, 7_794_184, 9_109_994, 12_233_232, 19_341_616, 30_389_784, 43_040_704, 66_347_960]
HOOK_MACS = [385_814_752, 686_802_832, 993_561_872, 1_827_141_392, 4_393_771_024, 10_266_384_752,
             19_067_593_536, 37_745_884_192]
PAPER_MACS = [0.39e9, 0.70e9, 1.0e9, 1.8e9, 4.2e9, 9.9e9, 19e9, 37e9]


@pytest.mark.parametrize("i", range(8))
def test_official_efficientnets(i):
    g = apply(reference("efficientnet-b0"), official(f"b{i}"))
    c = cost(g)
    assert c.params == PARAMS[i]
    assert abs(c.macs - HOOK_MACS[i]) / HOOK_MACS[i] < 0.005
    assert abs(c.macs - PAPER_MACS[i]) / PAPER_MACS[i] < 0.05


def test_width_depth_arguments_equal_scaled_genotype():
    b0 = reference("efficientnet-b0")
    assert cost(b0, 600, width=2.0, depth=3.1).params == PARAMS[7]
    assert cost(b0, 600, width=2.0, depth=3.1).macs == HOOK_MACS[7]


def test_mnasnet_a1():
    c = cost(reference("mnasnet-a1"))
    assert abs(c.params - 3.9e6) / 3.9e6 < 0.03
    assert abs(c.macs - 312e6) / 312e6 < 0.03


def _agree(g, res, in_ch, classes, device):
    with torch.device(device):
        m = build_model(g, num_classes=classes, in_channels=in_ch)
    c = cost(g, res, in_channels=in_ch, num_classes=classes)
    assert count_params(m) == c.params, g.to_string()
    assert count_macs(m, (in_ch, res, res), device=device) == c.macs, (g.to_string(), res)


@pytest.mark.parametrize("name", ["efficientnet-b0", "mnasnet-a1", "mobilenet-v2", "mobilenet-v3-large"])
@pytest.mark.parametrize("res", [224, 97, 32])
def test_references_agree_with_builder(name, res):
    _agree(reference(name), res, 3, 1000, "cpu" if res < 100 else "meta")


def test_mobilenet_v3_large_is_torchvisions():
    """Params of torchvision's mobilenet_v3_large and its expanded widths (timm's e2.5 / e2.3 included)."""
    from search_space.rounding import expanded_channels

    g = reference("mobilenet-v3-large")
    assert cost(g).params == 5_483_032
    mids = [expanded_channels(c_in, st.expansion) for _, st, c_in, _, _ in g.layers() if st.expansion != 1]
    assert mids == [64, 72, 72, 120, 120, 240, 200, 184, 184, 480, 672, 672, 960, 960]
    m = build_model(g)
    assert sum(isinstance(x, torch.nn.Hardswish) for x in m.modules()) == 1 + 2 * 9 + 2  # stem, 9 hs blocks, head
    assert sum(isinstance(x, torch.nn.Hardsigmoid) for x in m.modules()) == 8
    squeezes = [b.body[2].reduce.out_channels for b in m.blocks if len(b.body) == 4]
    assert squeezes == [24, 32, 32, 120, 168, 168, 240, 240]  # make_divisible(expanded / 4, 8)


def test_mbv3_space_members_agree_with_builder(root):
    rng = random.Random(3)
    space = load_space(root / "configs" / "space_mbv3.yaml")
    for _ in range(6):
        g = space.sample(rng)
        _agree(g, rng.choice([224, 160, 97]), 3, rng.choice([10, 1000]), "meta")
    _agree(space.sample(rng), 32, 3, 10, "cpu")


def test_200_random_members_agree_with_builder(root):
    """Random members of all three spaces, at several resolutions, channels and classes."""
    rng = random.Random(7)
    spaces = [load_space(root / "configs" / f"space_{n}.yaml") for n in ("mnas", "cifar", "digits")]
    for i in range(210):
        space = spaces[i % 3]
        g = space.sample(rng)
        res = rng.choice([space.resolution, space.resolution // 2 + 1, space.resolution * 2 - 3])
        _agree(g, res, rng.choice([1, 3, 4]), rng.choice([10, 1000]), "meta")


def test_random_members_agree_on_real_tensors(root):
    rng = random.Random(11)
    space = load_space(root / "configs" / "space_digits.yaml")
    for _ in range(10):
        _agree(space.sample(rng), 16, 1, 10, "cpu")


def test_non_square_input():
    g = reference("mobilenet-v2")
    with torch.device("meta"):
        m = build_model(g)
    assert count_macs(m, (3, 160, 96), device="meta") == cost(g, (160, 96)).macs


def _flop_counted_macs(g, res, in_ch, classes):
    """MACs by torch's own counter: FlopCounterMode counts 2 FLOPs per multiply-add of conv and addmm."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        m = build_model(g, num_classes=classes, in_channels=in_ch).eval()
        x = torch.zeros(1, in_ch, res, res)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        m(x)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


@pytest.mark.parametrize("name", ["efficientnet-b0", "mnasnet-a1", "mobilenet-v2"])
def test_macs_agree_with_torch_flop_counter(name):
    g = reference(name)
    assert _flop_counted_macs(g, 224, 3, 1000) == cost(g).macs
    assert _flop_counted_macs(g, 97, 1, 10) == cost(g, 97, in_channels=1, num_classes=10).macs


def test_random_members_macs_agree_with_torch_flop_counter(root):
    rng = random.Random(5)
    for n in ("mnas", "cifar", "digits"):
        space = load_space(root / "configs" / f"space_{n}.yaml")
        for _ in range(2):
            g = space.sample(rng)
            assert _flop_counted_macs(g, space.resolution, 3, 10) == cost(g, num_classes=10).macs, g.to_string()


def test_activation_elements_equal_hooked_outputs(root):
    """activation_elements = output elements of every Conv2d and Linear, counted on the module."""
    from search_space import activation_elements

    rng = random.Random(9)
    space = load_space(root / "configs" / "space_cifar.yaml")
    cases = [(reference("efficientnet-b0"), 64, 1000), (reference("mnasnet-a1"), 33, 10)]
    cases += [(space.sample(rng), 32, 10) for _ in range(3)]
    for g, res, classes in cases:
        with torch.device("meta"):
            m = build_model(g, num_classes=classes).eval()
            x = torch.zeros(1, 3, res, res)
        total = 0

        def hook(mod, inp, out):
            nonlocal total
            total += out.numel()

        layers = [x_ for x_ in m.modules() if isinstance(x_, (torch.nn.Conv2d, torch.nn.Linear))]
        hs = [x_.register_forward_hook(hook) for x_ in layers]
        with torch.no_grad():
            m(x)
        for h in hs:
            h.remove()
        assert activation_elements(g, res, classes) == total, g.to_string()


@pytest.mark.parametrize("path", sorted(str(p) for p in Path("configs").glob("space_*.yaml")))
def test_table_keys_weigh_what_the_cost_model_counts(path: str) -> None:
    """Every key's weights (the latency calibration's weights term) add up to the network's params."""
    from latency.keys import genotype_keys, key_params

    space = load_space(path)
    for i in range(20):
        g = space.sample(i)
        assert sum(key_params(k) for k in genotype_keys(g, g.resolution, 1000)) == cost(g, num_classes=1000).params
