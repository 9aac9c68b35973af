"""Export round-trips: ONNX (when installed), TFLite (when LiteRT is installed) and TorchScript."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from scaling.export import export, run_exported
from scaling.models import build
from search_space import reference


def _trained_like(model):
    """Random BN statistics and affine params, as after training, so outputs are not trivial."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.4 + 0.8)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.4 + 0.6)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def _needs(fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxscript")
        pytest.importorskip("onnxruntime")
    elif fmt == "tflite":
        pytest.importorskip("ai_edge_litert")


@pytest.mark.parametrize("fmt", ["onnx", "tflite", "torchscript"])
def test_export_round_trip(tmp_path, fmt):
    _needs(fmt)
    model = _trained_like(build(reference("efficientnet-b0"), num_classes=10))
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(ref).max() > 0.1  # outputs are not trivially near zero
    path = export(model, 64, fmt, tmp_path / f"m.{fmt}")
    assert np.abs(run_exported(path, fmt, x) - ref).max() < 1e-4


def test_cli_export_with_weights(tmp_path):
    _needs("tflite")
    g = reference("mnasnet-a1").replace(resolution=48)
    (tmp_path / "g.yaml").write_text(g.to_yaml(name="a1-48"))
    model = _trained_like(build(g, num_classes=5))
    torch.save(model.state_dict(), tmp_path / "w.pt")
    r = subprocess.run([sys.executable, "-m", "scaling", "export", str(tmp_path / "g.yaml"), "--weights",
                        str(tmp_path / "w.pt"), "--classes", "5", "--format", "tflite", "--out",
                        str(tmp_path / "m.tflite")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "input 3x48x48" in r.stdout and "max abs difference" in r.stdout
    diff = float(r.stdout.split("PyTorch on random inputs:")[1].split()[0])
    assert diff < 1e-4
    # wrong weights for the genotype: one-line error
    r = subprocess.run([sys.executable, "-m", "scaling", "export", "efficientnet-b0", "--weights",
                        str(tmp_path / "w.pt"), "--classes", "5", "--format", "torchscript", "--out",
                        str(tmp_path / "x.pt")], capture_output=True, text=True)
    assert r.returncode == 2 and "do not fit" in r.stderr and "Traceback" not in r.stderr


def test_build_api_loads_weights(tmp_path):
    g = reference("mobilenet-v2")
    (tmp_path / "g.yaml").write_text(g.to_yaml())
    m = _trained_like(build(tmp_path / "g.yaml", num_classes=3))
    torch.save({"model": m.state_dict()}, tmp_path / "ckpt.pt")
    m2 = build(str(tmp_path / "g.yaml"), num_classes=3, weights=tmp_path / "ckpt.pt").eval()
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(m(x), m2(x))
    with pytest.raises(FileNotFoundError):
        build(g, weights=tmp_path / "missing.pt")
