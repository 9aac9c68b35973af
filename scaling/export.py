"""Export a genotype (optionally with trained weights) to ONNX, TFLite or TorchScript."""
from __future__ import annotations

from pathlib import Path

FORMATS = ("onnx", "tflite", "torchscript")


def export(model, resolution: int, fmt: str, out: str | Path, in_channels: int = 3) -> Path:
    """Write `model` (a GenotypeNet, put in eval mode) at `resolution` in format `fmt` to `out`."""
    import torch

    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {list(FORMATS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.randn(1, in_channels, resolution, resolution)
    if fmt == "onnx":
        try:
            import onnxscript  # noqa: F401  (the dynamo exporter needs it)
        except ImportError:
            raise ImportError("ONNX export needs the onnx extra: pip install 'hwnas[onnx]'") from None
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.onnx.export(model, (example,), dynamo=True, verbose=False,
                                    dynamic_shapes=({0: batch},))
        program.save(str(out))
    elif fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(model, example)
        traced.save(str(out))
    else:
        from latency.emit import network_tflite

        out.write_bytes(network_tflite(model, resolution))
    return out


def run_exported(path: str | Path, fmt: str, x):
    """Run an exported file on a float32 NCHW numpy batch with its runtime; returns numpy logits."""
    import numpy as np

    path = Path(path)
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]
    if fmt == "torchscript":
        import torch

        with torch.no_grad():
            return torch.jit.load(str(path))(torch.from_numpy(x)).numpy()
    from latency.measure import run_model

    # The TFLite graph is NHWC, one image at a time.
    return np.concatenate([run_model(path.read_bytes(), xi.transpose(1, 2, 0)[None].copy()) for xi in x])
