"""What an ONNX model holds, read from its content: int8 (for TensorRT or the
CPU), fp16 or fp32 -- the one precision detector (names never decide)."""
from onnx import TensorProto

_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger",
              "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QGemm"}


def _graphs(g):
    yield g
    for n in g.node:
        for a in n.attribute:
            if a.type == a.GRAPH:
                yield from _graphs(a.g)
            for sub in a.graphs:
                yield from _graphs(sub)


def onnx_precision(model) -> str:
    """The one precision detector of an ``onnx.ModelProto`` (a :class:`ofconvert.artifacts.Flavour`
    value): Q/DQ (or integer) ops -> int8 / int8-cpu by the activations' zero point;
    any float16 initializer, graph input/output, constant or Cast to float16 -> fp16;
    else fp32. The file-level :func:`ofconvert.artifacts.detect_precision` and the
    TensorRT plan use it."""
    graphs = list(_graphs(model.graph))
    nodes = [n for g in graphs for n in g.node]
    if any(n.op_type in _QUANT_OPS for n in nodes):
        return "int8-cpu" if _uint8_activations(graphs) else "int8"
    f16 = TensorProto.FLOAT16
    for g in graphs:
        if any(t.data_type == f16 for t in g.initializer):
            return "fp16"
        if any(v.type.tensor_type.elem_type == f16 for v in list(g.input) + list(g.output)):
            return "fp16"
        for n in g.node:
            if n.op_type == "Constant" and any(a.t.data_type == f16 for a in n.attribute if a.name == "value"):
                return "fp16"
            if n.op_type == "Cast" and any(a.name == "to" and a.i == f16 for a in n.attribute):
                return "fp16"
    return "fp32"


def _uint8_activations(graphs):
    """True when a QuantizeLinear (activations: weights are stored quantized) or
    DynamicQuantizeLinear produces uint8: its zero point is uint8 (ONNX's default
    when it has none)."""
    dtype_of = {}
    for g in graphs:
        for t in g.initializer:
            dtype_of[t.name] = t.data_type
        for n in g.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        dtype_of[n.output[0]] = a.t.data_type
    for g in graphs:
        for n in g.node:
            if n.op_type == "DynamicQuantizeLinear":
                return True
            if n.op_type == "QuantizeLinear":
                out_dtype = next((a.i for a in n.attribute if a.name == "output_dtype"), 0)
                zp = n.input[2] if len(n.input) > 2 and n.input[2] else None
                dt = out_dtype or (dtype_of.get(zp, TensorProto.UINT8) if zp else TensorProto.UINT8)
                if dt == TensorProto.UINT8:
                    return True
    return False
