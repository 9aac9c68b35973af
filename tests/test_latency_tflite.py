"""TFLite graphs built without a converter agree with the torch modules (within 1e-4)."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

pytest.importorskip("ai_edge_litert")

from latency import emit  # noqa: E402
from latency import tflite_builder as tb  # noqa: E402
from latency.measure import run_model  # noqa: E402
from latency.runtime import schema  # noqa: E402
from search_space.genotype import Stage, Stem  # noqa: E402
from search_space.references import REFERENCES, reference  # noqa: E402
from search_space.space import load_space  # noqa: E402

TOL = 1e-4


def _torch_nhwc(module: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        y = module(x)
    return (y.permute(0, 2, 3, 1) if y.dim() == 4 else y).numpy()


def _tflite(model: bytes, x: torch.Tensor) -> np.ndarray:
    return run_model(model, x.permute(0, 2, 3, 1).numpy().copy())


def _ops(model: bytes) -> list[str]:
    s = schema()
    m = s.ModelT.InitFromPackedBuf(model, 0)
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    return [names[m.operatorCodes[o.opcodeIndex].builtinCode] for o in m.subgraphs[0].operators]


BLOCK_CASES = [
    # op, expansion, kernel, stride, se, skip, c_in, c_out, act, size
    ("ir", 6, 3, 1, 0.25, "identity", 16, 16, "swish", 9),
    ("ir", 6, 5, 2, 0.25, "identity", 16, 24, "swish", 10),
    ("ir", 3, 5, 2, 0.0, "identity", 8, 16, "relu", 9),
    ("ir", 1, 3, 1, 0.0, "identity", 16, 16, "relu", 8),
    ("ir", 1, 7, 2, 0.25, "none", 12, 20, "swish", 11),
    ("ds", 1, 3, 1, 0.25, "identity", 16, 16, "swish", 8),
    ("ds", 1, 5, 2, 0.0, "identity", 16, 32, "relu", 8),
    ("cn", 1, 3, 1, 0.0, "identity", 16, 16, "swish", 7),
    ("cn", 1, 5, 2, 0.25, "identity", 8, 16, "relu", 12),
    ("cn", 1, 3, 1, 0.25, "none", 16, 16, "relu", 6),
]


@pytest.mark.parametrize("op,e,k,s,se,skip,c_in,c_out,act,size", BLOCK_CASES)
def test_block_matches_torch(op, e, k, s, se, skip, c_in, c_out, act, size) -> None:
    stage = Stage(op=op, kernel=k, expansion=e, se=se, skip=skip, channels=c_out, layers=1, stride=s)
    block = emit.make_block(stage, c_in, c_out, s, act, seed=size)
    x = torch.randn(1, c_in, size, size, generator=torch.Generator().manual_seed(1))
    want = _torch_nhwc(block, x)
    got = _tflite(emit.module_tflite(block, (size, size, c_in)), x)
    assert got.shape == want.shape
    assert np.abs(got - want).max() < TOL


def test_block_op_sequence_is_what_a_converter_emits() -> None:
    stage = Stage(op="ir", kernel=3, expansion=6, se=0.25, skip="identity", channels=16, layers=1, stride=2)
    swish = _ops(emit.module_tflite(emit.make_block(stage, 16, 16, 2, "swish"), (8, 8, 16)))
    assert swish == ["CONV_2D", "LOGISTIC", "MUL", "PAD", "DEPTHWISE_CONV_2D", "LOGISTIC", "MUL",
                     "MEAN", "CONV_2D", "LOGISTIC", "MUL", "CONV_2D", "LOGISTIC", "MUL", "CONV_2D"]
    stage1 = Stage(op="ir", kernel=3, expansion=6, se=0.0, skip="identity", channels=16, layers=1, stride=1)
    relu = _ops(emit.module_tflite(emit.make_block(stage1, 16, 16, 1, "relu"), (8, 8, 16)))
    assert relu == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "ADD"]  # ReLU fused, residual ADD


def test_stride2_same_padding_would_differ_from_torch() -> None:
    """TFLite SAME at stride 2 pads at the end only; the explicit PAD reproduces torch's k // 2."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 4, 3, 2, 1, bias=False)
    x = torch.randn(1, 4, 8, 8)
    want = _torch_nhwc(conv, x)
    w = conv.weight.detach().numpy().transpose(0, 2, 3, 1).copy()
    b = np.zeros(4, np.float32)

    ours = tb.Graph()
    i = ours.tensor((1, 8, 8, 4))
    ours.inputs, ours.outputs = [i], [tb.conv2d(ours, i, w, b, 2)]
    assert np.abs(_tflite(ours.finish(), x) - want).max() < TOL

    s = schema()
    same = tb.Graph()
    i = same.tensor((1, 8, 8, 4))
    y = same.tensor((1, 4, 4, 4))
    opt = s.Conv2DOptionsT()
    opt.padding, opt.strideH, opt.strideW = s.Padding.SAME, 2, 2
    same.op(s.BuiltinOperator.CONV_2D, [i, same.const(w), same.const(b)], [y], opt, s.BuiltinOptions.Conv2DOptions)
    same.inputs, same.outputs = [i], [y]
    assert np.abs(_tflite(same.finish(), x) - want).max() > 1e-2


def test_stem_and_head_match_torch() -> None:
    stem = emit.make_stem(Stem(16, 3, 2), 3, "swish")
    x = torch.randn(1, 3, 15, 15)
    assert np.abs(_tflite(emit.module_tflite(stem, (15, 15, 3)), x) - _torch_nhwc(stem, x)).max() < TOL
    head = emit.make_head(24, 64, 10, "relu")
    x = torch.randn(1, 24, 4, 4)
    with torch.no_grad():
        want = head(x).numpy()
    assert np.abs(_tflite(emit.module_tflite(head, (4, 4, 24)), x) - want).max() < TOL


def _network_case(g, res: int, num_classes: int = 10) -> float:
    net = emit.make_network(g, num_classes=num_classes, seed=3, calibrate_at=res)  # trained-like scale
    x = torch.randn(2, 3, res, res, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        want = net(x).numpy()
    model = emit.network_tflite(net, res)
    got = np.concatenate([_tflite(model, x[i:i + 1]) for i in range(2)])
    assert got.shape == want.shape
    return float(np.abs(got - want).max())


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_networks_match_torch(name: str) -> None:
    assert _network_case(reference(name), 64) < TOL


@pytest.mark.parametrize("space,res,seed", [("configs/space_mnas.yaml", 64, 0), ("configs/space_mnas.yaml", 64, 1),
                                            ("configs/space_mbv3.yaml", 32, 0),
                                            ("configs/space_digits.yaml", 16, 0),
                                            ("configs/space_digits.yaml", 16, 1)])
def test_space_members_match_torch(space: str, res: int, seed: int) -> None:
    g = load_space(space).sample(random.Random(seed))
    assert _network_case(g, res) < TOL


def test_trained_style_network_in_eval_mode_matches() -> None:
    """Non-trivial BN statistics from a few training steps are folded correctly."""
    g = load_space("configs/space_digits.yaml").sample(random.Random(7))
    torch.manual_seed(0)
    from search_space.model import GenotypeNet

    net = GenotypeNet(g, num_classes=10)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, 3, 16, 16) * 2 + 0.5)  # moves BN running statistics
    net.eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        want = net(x).numpy()
    assert np.abs(_tflite(emit.network_tflite(net, 16), x) - want).max() < TOL


def test_xnnpack_delegate_takes_the_graph() -> None:
    """The default LiteRT CPU path applies XNNPACK: the interpreter's plan has a DELEGATE node."""
    from latency.measure import Runner

    stage = Stage(op="ir", kernel=5, expansion=6, se=0.25, skip="identity", channels=16, layers=1, stride=2)
    r = Runner(emit.module_tflite(emit.make_block(stage, 16, 16, 2, "swish"), (8, 8, 16)))
    assert "DELEGATE" in [d["op_name"] for d in r.interpreter._get_ops_details()]


MBV3_CASES = [
    # expansion, kernel, stride, se, c_in, c_out, act, size: MobileNetV3's SE (hard-sigmoid), h-swish
    (2.5, 3, 1, 0.25, 16, 16, "hswish", 7),
    (6, 5, 2, 0.25, 16, 24, "relu", 9),
    (4, 7, 1, 0.0, 8, 16, "hswish", 8),
    (1, 3, 1, 0.25, 16, 16, "relu", 6),
]


@pytest.mark.parametrize("e,k,s,se,c_in,c_out,act,size", MBV3_CASES)
def test_mbv3_block_matches_torch(e, k, s, se, c_in, c_out, act, size) -> None:
    stage = Stage(op="ir", kernel=k, expansion=e, se=se, skip="identity", channels=c_out, layers=1, stride=s)
    block = emit.make_block(stage, c_in, c_out, s, act, seed=size, se_gate="hsigmoid")
    x = torch.randn(1, c_in, size, size, generator=torch.Generator().manual_seed(1)) * 3  # reach both hinges
    got = _tflite(emit.module_tflite(block, (size, size, c_in)), x)
    assert np.abs(got - _torch_nhwc(block, x)).max() < TOL


def test_mbv3_ops_and_head() -> None:
    """HARD_SWISH builtin; hard-sigmoid gate as ADD (RELU6 fused) + MUL; the head's feature mix as FULLY_CONNECTED."""
    stage = Stage(op="ir", kernel=3, expansion=4, se=0.25, skip="identity", channels=16, layers=1, stride=1)
    ops = _ops(emit.module_tflite(emit.make_block(stage, 16, 16, 1, "hswish", se_gate="hsigmoid"), (8, 8, 16)))
    assert ops == ["CONV_2D", "HARD_SWISH", "DEPTHWISE_CONV_2D", "HARD_SWISH", "MEAN", "CONV_2D", "CONV_2D",
                   "ADD", "MUL", "MUL", "CONV_2D", "ADD"]
    head = emit.make_head(24, 48, 10, "hswish", mix=64)
    x = torch.randn(1, 24, 4, 4) * 3
    with torch.no_grad():
        want = head(x).numpy()
    model = emit.module_tflite(head, (4, 4, 24))
    assert _ops(model) == ["CONV_2D", "HARD_SWISH", "MEAN", "FULLY_CONNECTED", "HARD_SWISH", "FULLY_CONNECTED"]
    assert np.abs(_tflite(model, x) - want).max() < TOL
