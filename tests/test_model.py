import random

import torch

from search_space import load_space, reference
from search_space.model import Block, build_model


def _tiny(root):
    return load_space(root / "configs" / "space_cifar.yaml").sample(random.Random(0))


def test_forward_shapes_and_options(root):
    g = _tiny(root)
    m = build_model(g, num_classes=7, in_channels=1, dropout=0.1, drop_connect=0.3, bn_eps=1e-5, bn_momentum=0.1)
    y = m(torch.randn(2, 1, 32, 32))
    assert y.shape == (2, 7)
    bn = next(x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d))
    assert bn.eps == 1e-5 and bn.momentum == 0.1
    assert m.dropout.p == 0.1


def test_activation_and_ops():
    a1 = build_model(reference("mnasnet-a1"), num_classes=10)
    assert any(isinstance(x, torch.nn.ReLU) for x in a1.modules())
    assert not any(isinstance(x, torch.nn.SiLU) for x in a1.modules())
    b0 = build_model(reference("efficientnet-b0"), num_classes=10)
    assert any(isinstance(x, torch.nn.SiLU) for x in b0.modules())


def test_drop_connect_grows_linearly_and_residual_only_where_allowed():
    m = build_model(reference("efficientnet-b0"), num_classes=10, drop_connect=0.2)
    blocks = [b for b in m.blocks if isinstance(b, Block)]
    assert len(blocks) == 16
    rates = [b.drop_connect for b in blocks]
    assert rates[0] == 0.0 and rates == sorted(rates) and abs(rates[-1] - 0.2 * 15 / 16) < 1e-12
    # B0: first block of each stage changes shape -> no residual; the others keep it
    assert [b.residual for b in blocks] == [False, False, True, False, True, False, True, True,
                                            False, True, True, False, True, True, True, False]


def test_eval_is_deterministic_and_training_uses_drop_connect():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 64, 64)
    m = build_model(reference("efficientnet-b0"), num_classes=10, dropout=0.0, drop_connect=0.5).eval()
    assert torch.equal(m(x), m(x))
    m.train()
    torch.manual_seed(1)
    a = m(x)
    torch.manual_seed(2)
    b = m(x)
    torch.manual_seed(1)
    assert torch.equal(a, m(x))  # the masks come from torch's RNG
    assert not torch.allclose(a, b)  # ... and differ between draws: residual branches are dropped
    plain = build_model(reference("efficientnet-b0"), num_classes=10, dropout=0.0, drop_connect=0.0).train()
    plain.load_state_dict(m.state_dict())
    torch.manual_seed(1)
    c = plain(x)
    torch.manual_seed(2)
    assert torch.equal(c, plain(x))  # without drop-connect (and dropout) training mode is deterministic


def test_channels_last_matches(root):
    g = _tiny(root)
    torch.manual_seed(0)
    m = build_model(g, num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    ref = m(x)
    m2 = m.to(memory_format=torch.channels_last)
    out = m2(x.to(memory_format=torch.channels_last))
    assert torch.allclose(ref, out, atol=1e-4)


def test_autocast_bf16(root):
    m = build_model(_tiny(root), num_classes=10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(torch.randn(2, 3, 32, 32))
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_torchscript_and_export(root):
    g = load_space(root / "configs" / "space_digits.yaml").sample(random.Random(3))
    m = build_model(g, num_classes=10).eval()
    x = torch.randn(1, 3, 16, 16)
    scripted = torch.jit.script(m)
    assert torch.allclose(scripted(x), m(x), atol=1e-5)
    exported = torch.export.export(m, (x,))
    assert torch.allclose(exported.module()(x), m(x), atol=1e-5)
