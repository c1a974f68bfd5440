"""Helpers shared by the handler modules (oneflow-onnx graph API)."""
import numpy as np
from onnx import TensorProto

_COUNTER = [0]


def uname(prefix):
    """A name unique in this process (canonicalize() renames everything later)."""
    _COUNTER[0] += 1
    return f"ofc_{prefix}_{_COUNTER[0]}"


def const(ctx, value, dtype=None):
    """A constant tensor -> its name."""
    arr = np.asarray(value, dtype=dtype)
    return ctx.MakeConst(uname("const"), arr).output_tensor_names[0]


def axes_input_opset(op_type):
    """First opset where ``axes`` of ``op_type`` is an input instead of an attribute."""
    if op_type in ("ReduceSum", "Squeeze", "Unsqueeze"):
        return 13
    if op_type.startswith("Reduce"):
        return 18
    return None


def node(ctx, op_type, inputs, attr=None, dtype=None, shape=None, outputs=None):
    """Make one node; returns its first output name."""
    n = ctx.MakeNode(op_type, inputs, attr=attr or {}, name=uname(op_type), outputs=outputs,
                     dtypes=[dtype] if dtype is not None else None, shapes=[shape] if shape is not None else None)
    return n.output_tensor_names[0]


def reduce(ctx, op_type, x, axes, keepdims, dtype=None, outputs=None):
    """Reduce* over ``axes`` at any opset (attribute or input as the opset wants)."""
    attr = {"keepdims": int(bool(keepdims))}
    inputs = [x]
    first = axes_input_opset(op_type)
    if first is not None and ctx.opset >= first:
        inputs.append(const(ctx, list(axes), np.int64))
    else:
        attr["axes"] = list(axes)
    return node(ctx, op_type, inputs, attr, dtype=dtype if dtype is not None else ctx.get_dtype(x), outputs=outputs)


FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64


def take(ctx, n):
    """Remove node ``n`` from ``ctx``; returns (inputs, outputs, output dtypes, output shapes)."""
    ins, outs = list(n.input_tensor_names), list(n.output_tensor_names)
    dtypes = [ctx.get_dtype(o) for o in outs]
    shapes = [ctx.get_shape(o) for o in outs]
    ctx.RemoveNode(n.name)
    return ins, outs, dtypes, shapes


def norm_axes(ctx, x, axes):
    """``axes`` of a tensor ``x`` made non-negative and sorted; ``None`` or ``[]`` -> every axis."""
    shape = ctx.get_shape(x)
    if shape is None:
        raise NotImplementedError("the input's rank is unknown")
    rank = len(shape)
    if axes is None:
        return list(range(rank))
    axes = [int(axes)] if np.ndim(axes) == 0 else [int(a) for a in axes]
    if not axes:
        return list(range(rank))
    return sorted({a + rank if a < 0 else a for a in axes})
