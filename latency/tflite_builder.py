"""A tiny TFLite flatbuffer writer: tensors, constant buffers and builtin ops, float32 NHWC.

It uses the flatbuffers object API that the LiteRT wheel ships (`ai_edge_litert.schema_py_generated`)
so that no converter (TensorFlow, ai-edge-torch) is needed. Only the handful of ops our networks
use are wrapped; `Graph.op` takes any builtin for the rest.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .runtime import schema

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3
# Constant data aligned like the converter does, so kernels may read weights in place.
BUFFER_ALIGNMENT = 16

ACT_NONE = "none"
ACT_RELU = "relu"
ACT_RELU6 = "relu6"


class Graph:
    """One subgraph being built: add tensors and ops, then `finish()` gives the model bytes."""

    def __init__(self, name: str = "main") -> None:
        self._s = schema()
        self.name = name
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [self._s.BufferT()]  # buffer 0: the empty sentinel of TFLite
        self.operators: list[Any] = []
        self.opcodes: list[int] = []
        self.inputs: list[int] = []
        self.outputs: list[int] = []
        self._shapes: list[tuple[int, ...]] = []

    # ---- tensors -------------------------------------------------------------------------
    def shape(self, t: int) -> tuple[int, ...]:
        """The static shape of tensor `t`."""
        return self._shapes[t]

    def tensor(self, shape: Sequence[int], name: str = "", dtype: str = "float32") -> int:
        """A new activation (non-constant) tensor; returns its index."""
        return self._add_tensor(shape, name, dtype, buffer=0)

    def const(self, array: np.ndarray, name: str = "") -> int:
        """A constant tensor holding `array` (float32 or int32); returns its index."""
        a = np.ascontiguousarray(array)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        if a.dtype not in (np.float32, np.int32):
            raise TypeError(f"constant {name!r}: dtype {a.dtype} is not float32 or int32")
        buf = _AlignedBuffer(a.tobytes())
        self.buffers.append(buf)
        return self._add_tensor(a.shape, name, str(a.dtype), buffer=len(self.buffers) - 1)

    def _add_tensor(self, shape: Sequence[int], name: str, dtype: str, buffer: int) -> int:
        s = self._s
        t = s.TensorT()
        t.shape = [int(d) for d in shape]
        t.type = {"float32": s.TensorType.FLOAT32, "int32": s.TensorType.INT32}[dtype]
        t.buffer = buffer
        t.name = name or f"t{len(self.tensors)}"
        self.tensors.append(t)
        self._shapes.append(tuple(int(d) for d in shape))
        return len(self.tensors) - 1

    # ---- ops -------------------------------------------------------------------------------
    def op(self, code: int, inputs: Sequence[int], outputs: Sequence[int], options: Any = None,
           options_type: int = 0) -> None:
        """Append one builtin operator (code from `BuiltinOperator`) with its options object."""
        if code not in self.opcodes:
            self.opcodes.append(code)
        o = self._s.OperatorT()
        o.opcodeIndex = self.opcodes.index(code)
        o.inputs = [int(i) for i in inputs]
        o.outputs = [int(i) for i in outputs]
        if options is not None:
            o.builtinOptionsType = options_type
            o.builtinOptions = options
        self.operators.append(o)

    def finish(self) -> bytes:
        """Serialize the model to TFLite flatbuffer bytes."""
        import flatbuffers

        s = self._s
        sg = s.SubGraphT()
        sg.tensors, sg.operators, sg.name = self.tensors, self.operators, self.name
        sg.inputs, sg.outputs = list(self.inputs), list(self.outputs)
        codes = []
        for c in self.opcodes:
            oc = s.OperatorCodeT()
            oc.builtinCode = c
            # Readers older than the 32-bit field look at the deprecated int8 one.
            oc.deprecatedBuiltinCode = min(c, s.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
            oc.version = 1
            codes.append(oc)
        m = s.ModelT()
        m.version = SCHEMA_VERSION
        m.operatorCodes = codes
        m.subgraphs = [sg]
        m.buffers = self.buffers
        m.description = "hwnas latency probe"
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=FILE_IDENTIFIER)
        return bytes(b.Output())


class _AlignedBuffer:
    """A BufferT stand-in whose data vector is 16-byte aligned (the generated Pack aligns to 1)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def Pack(self, builder: Any) -> int:  # noqa: N802 - the flatbuffers object-API name
        s = schema()
        n = len(self.data)
        builder.StartVector(1, n, BUFFER_ALIGNMENT)
        builder.head = builder.head - n
        builder.Bytes[builder.head:builder.head + n] = self.data
        vec = builder.EndVector()
        s.BufferStart(builder)
        s.BufferAddData(builder, vec)
        return s.BufferEnd(builder)


# ---- the ops a converter emits for our networks -----------------------------------------------
def _act_code(act: str) -> int:
    s = schema()
    return {ACT_NONE: s.ActivationFunctionType.NONE, ACT_RELU: s.ActivationFunctionType.RELU,
            ACT_RELU6: s.ActivationFunctionType.RELU6}[act]


def conv2d(g: Graph, x: int, weight: np.ndarray, bias: np.ndarray, stride: int, act: str = ACT_NONE,
           name: str = "conv") -> int:
    """CONV_2D with an OHWI `weight`; torch-style symmetric padding k // 2 (PAD op for stride 2)."""
    s = schema()
    x, padding, y = _conv_io(g, x, weight.shape[1], stride, weight.shape[0], name)
    opt = s.Conv2DOptionsT()
    opt.padding, opt.strideH, opt.strideW, opt.fusedActivationFunction = padding, stride, stride, _act_code(act)
    g.op(s.BuiltinOperator.CONV_2D, [x, g.const(weight, name + "/w"), g.const(bias, name + "/b")], [y],
         opt, s.BuiltinOptions.Conv2DOptions)
    return y


def depthwise_conv2d(g: Graph, x: int, weight: np.ndarray, bias: np.ndarray, stride: int,
                     act: str = ACT_NONE, name: str = "dwconv") -> int:
    """DEPTHWISE_CONV_2D with a 1HWC `weight` (multiplier 1); torch-style padding."""
    s = schema()
    x, padding, y = _conv_io(g, x, weight.shape[1], stride, weight.shape[3], name)
    opt = s.DepthwiseConv2DOptionsT()
    opt.padding, opt.strideH, opt.strideW, opt.fusedActivationFunction = padding, stride, stride, _act_code(act)
    opt.depthMultiplier = 1
    g.op(s.BuiltinOperator.DEPTHWISE_CONV_2D, [x, g.const(weight, name + "/w"), g.const(bias, name + "/b")], [y],
         opt, s.BuiltinOptions.DepthwiseConv2DOptions)
    return y


def _conv_io(g: Graph, x: int, k: int, stride: int, c_out: int, name: str) -> tuple[int, int, int]:
    """(padded input, padding mode, output tensor) of a k x k conv with torch-style padding."""
    x, padding = _pad_for(g, x, k, stride, name)
    n, h, w, _ = g.shape(x)
    y = g.tensor((n, _out_size(h, k, stride, padding), _out_size(w, k, stride, padding), c_out), name)
    return x, padding, y


def _pad_for(g: Graph, x: int, k: int, stride: int, name: str) -> tuple[int, int]:
    """Input and padding mode that reproduce torch's symmetric k // 2 padding.

    At stride 1 with an odd kernel SAME is symmetric, so it is used as is. At stride 2 SAME puts
    the extra row/column at the end, torch at both sides; converters emit an explicit PAD then a
    VALID conv, and so do we.
    """
    s = schema()
    p = k // 2
    if p == 0:
        return x, s.Padding.VALID
    if stride == 1 and k % 2 == 1:
        return x, s.Padding.SAME
    n, h, w, c = g.shape(x)
    y = g.tensor((n, h + 2 * p, w + 2 * p, c), name + "/pad")
    pads = g.const(np.array([[0, 0], [p, p], [p, p], [0, 0]], dtype=np.int32), name + "/paddings")
    g.op(s.BuiltinOperator.PAD, [x, pads], [y], s.PadOptionsT(), s.BuiltinOptions.PadOptions)
    return y, s.Padding.VALID


def _out_size(size: int, k: int, stride: int, padding: int) -> int:
    if padding == schema().Padding.SAME:
        return -(-size // stride)
    return (size - k) // stride + 1


def mean(g: Graph, x: int, keep_dims: bool, name: str = "mean") -> int:
    """MEAN over H and W (global average pool / SE squeeze)."""
    s = schema()
    n, _, _, c = g.shape(x)
    y = g.tensor((n, 1, 1, c) if keep_dims else (n, c), name)
    opt = s.ReducerOptionsT()
    opt.keepDims = keep_dims
    g.op(s.BuiltinOperator.MEAN, [x, g.const(np.array([1, 2], dtype=np.int32), name + "/axes")], [y],
         opt, s.BuiltinOptions.ReducerOptions)
    return y


def logistic(g: Graph, x: int, name: str = "sigmoid") -> int:
    """LOGISTIC (sigmoid)."""
    s = schema()
    y = g.tensor(g.shape(x), name)
    g.op(s.BuiltinOperator.LOGISTIC, [x], [y])
    return y


def mul(g: Graph, a: int, b: int, name: str = "mul") -> int:
    """MUL with numpy broadcasting of `b` (e.g. an SE gate of shape 1x1x1xC)."""
    s = schema()
    y = g.tensor(np.broadcast_shapes(g.shape(a), g.shape(b)), name)
    g.op(s.BuiltinOperator.MUL, [a, b], [y], s.MulOptionsT(), s.BuiltinOptions.MulOptions)
    return y


def add(g: Graph, a: int, b: int, name: str = "add") -> int:
    """ADD of two same-shape tensors (the identity residual)."""
    s = schema()
    y = g.tensor(g.shape(a), name)
    g.op(s.BuiltinOperator.ADD, [a, b], [y], s.AddOptionsT(), s.BuiltinOptions.AddOptions)
    return y


def fully_connected(g: Graph, x: int, weight: np.ndarray, bias: np.ndarray, name: str = "fc",
                    act: str = ACT_NONE) -> int:
    """FULLY_CONNECTED with an (out, in) weight, as torch's Linear stores it (`act` fused)."""
    s = schema()
    y = g.tensor((g.shape(x)[0], weight.shape[0]), name)
    opt = s.FullyConnectedOptionsT()
    opt.fusedActivationFunction = _act_code(act)
    g.op(s.BuiltinOperator.FULLY_CONNECTED, [x, g.const(weight, name + "/w"), g.const(bias, name + "/b")], [y],
         opt, s.BuiltinOptions.FullyConnectedOptions)
    return y


def swish(g: Graph, x: int, name: str = "swish") -> int:
    """x * sigmoid(x) as LOGISTIC + MUL, which is what converters emit for SiLU."""
    return mul(g, x, logistic(g, x, name + "/sigmoid"), name)


def hard_swish(g: Graph, x: int, name: str = "hswish") -> int:
    """HARD_SWISH (x * relu6(x + 3) / 6), TFLite's builtin for MobileNetV3's h-swish."""
    s = schema()
    y = g.tensor(g.shape(x), name)
    g.op(s.BuiltinOperator.HARD_SWISH, [x], [y])
    return y


def hard_sigmoid(g: Graph, x: int, name: str = "hsigmoid") -> int:
    """relu6(x + 3) / 6 as ADD (RELU6 fused) + MUL by a constant: TFLite has no hard-sigmoid builtin."""
    s = schema()
    shifted = g.tensor(g.shape(x), name + "/add3")
    opt = s.AddOptionsT()
    opt.fusedActivationFunction = _act_code(ACT_RELU6)
    g.op(s.BuiltinOperator.ADD, [x, g.const(np.array([3.0], np.float32), name + "/three")], [shifted], opt,
         s.BuiltinOptions.AddOptions)
    return mul(g, shifted, g.const(np.array([1.0 / 6.0], np.float32), name + "/sixth"), name)
