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


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def _bad_weight_files(tmp_path):
    import pickle

    good = tmp_path / "good.pt"
    torch.save(build(reference("mobilenet-v2"), num_classes=3).state_dict(), good)
    data = good.read_bytes()
    files = {
        "pickle.pt": pickle.dumps(_Evil()),
        "tensor.pt": None,
        "text.pt": b"hello, these are not weights\n",
        "empty.pt": b"",
        "truncated.pt": data[: len(data) // 2],
    }
    for name, content in files.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    torch.save({"x": _Evil()}, tmp_path / "pickle-zip.pt")
    return tmp_path


@pytest.mark.parametrize("name,msg", [
    ("pickle.pt", "refused by torch.load(weights_only=True): it holds Python objects"),
    ("pickle-zip.pt", "refused by torch.load(weights_only=True): it holds Python objects, not only tensors "
                      "(Unsupported global: GLOBAL "),
    ("tensor.pt", "holds a Tensor, not a state dict"),
    ("text.pt", "not a torch.save file"),
    ("empty.pt", ": empty"),
    ("truncated.pt", "truncated or corrupt torch.save file"),
])
def test_cli_export_bad_weights_are_one_line(tmp_path, name, msg):
    _bad_weight_files(tmp_path)
    r = subprocess.run([sys.executable, "-m", "scaling", "export", "mobilenet-v2", "--weights", str(tmp_path / name),
                        "--classes", "3", "--format", "torchscript", "--out", str(tmp_path / "m.pt"), "--no-check"],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert f"weights file {tmp_path / name}: " in r.stderr and msg in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "this must never run" not in r.stdout + r.stderr
    assert not (tmp_path / "m.pt").exists()


def test_wrong_keys_are_named(tmp_path):
    from scaling.models import WeightsError

    state = build(reference("mobilenet-v2"), num_classes=3).state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["classifier.bias"]
    state["classifier.weight"] = torch.zeros(4, 1280)
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(WeightsError) as e:
        build(reference("mobilenet-v2"), num_classes=3, weights=tmp_path / "w.pt")
    msg = str(e.value)
    assert "weights do not fit" in msg and "\n" not in msg
    assert "missing keys [classifier.bias]" in msg and "unexpected keys [extra.weight]" in msg
    assert "classifier.weight (4, 1280) vs (3, 1280)" in msg
    torch.save(build(reference("efficientnet-b0"), num_classes=3).state_dict(), tmp_path / "b0.pt")
    with pytest.raises(WeightsError, match=r"missing keys \[.*\] and \d+ more; unexpected keys \[.*\] and \d+ more"):
        build(reference("mobilenet-v2"), num_classes=3, weights=tmp_path / "b0.pt")
