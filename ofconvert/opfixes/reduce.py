"""Reductions (see the package docstring).

* ``reduce_max`` (amax, max(dim)[0], logsumexp) has no handler upstream;
  ``reduce_min/sum/prod`` are re-done here so the axes are normalized and written
  as attribute or input as the opset wants (``common.reduce``);
* ``argmax`` / ``argmin``: OneFlow reduces the LAST axis (the tracer puts a
  transpose before), one input; upstream removed a second input that does not
  exist ("list index out of range");
* ``var``: upstream divided by a count taken from the wrong dims (the batch) and
  wrote ReduceMean ``axes`` as an attribute at every opset; here the count is the
  product of the reduced dims only (from ``Shape`` when the batch dim is reduced).
  Unsorted ``dim`` (``var((2, -1))`` -> ``[3, 2]``) is refused: OneFlow's kernel
  then returns values that are not the variance;
* ``l2_normalize`` (F.normalize p=2): ``y = x / sqrt(max(sum(x^2, axis), eps))``,
  exactly OneFlow's kernel (eps under the square root, not on the norm).
"""
import numpy as np
from oneflow_onnx import util
from onnx import TensorProto

from . import register
from .common import const, node, norm_axes, reduce, take

_ONNX_REDUCE = {"reduce_max": "ReduceMax", "reduce_min": "ReduceMin",
                "reduce_sum": "ReduceSum", "reduce_prod": "ReduceProd"}


@register(list(_ONNX_REDUCE))
class Reduce:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        op = _ONNX_REDUCE[n.op_type]
        keepdims = bool(n.attrs.get("keepdims", False))
        axes = norm_axes(ctx, n.input_tensor_names[0], n.attrs.get("axis"))
        ins, outs, dtypes, shapes = take(ctx, n)
        reduce(ctx, op, ins[0], axes, keepdims, dtype=dtypes[0], outputs=outs[:1])


@register(["argmax", "argmin"])
class ArgMax:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        op = "ArgMax" if n.op_type == "argmax" else "ArgMin"
        ins, outs, dtypes, shapes = take(ctx, n)
        rank = len(ctx.get_shape(ins[0]))
        attr = {"axis": rank - 1, "keepdims": 0, "select_last_index": 0}    # OneFlow: last axis, first index
        if dtypes[0] == TensorProto.INT64:
            node(ctx, op, ins[:1], attr, dtype=TensorProto.INT64, shape=shapes[0], outputs=outs[:1])
        else:
            idx = node(ctx, op, ins[:1], attr, dtype=TensorProto.INT64)
            node(ctx, "Cast", [idx], {"to": dtypes[0]}, dtype=dtypes[0], shape=shapes[0], outputs=outs[:1])


def count_minus_one(ctx, x, axes, dtype):
    """(number of elements over ``axes`` of ``x``) - 1 as a scalar of ``dtype``: a
    constant unless the batch dim (0) is reduced, then computed from ``Shape(x)``."""
    shape = ctx.get_shape(x)
    np_dtype = util.Onnx2NumpyDtype(dtype)
    if 0 not in axes:
        return const(ctx, int(np.prod([shape[a] for a in axes])) - 1, np_dtype)
    dims = node(ctx, "Gather", [node(ctx, "Shape", [x], dtype=TensorProto.INT64), const(ctx, list(axes), np.int64)],
                {"axis": 0}, dtype=TensorProto.INT64)
    total = reduce(ctx, "ReduceProd", dims, [0], False, dtype=TensorProto.INT64)
    n = node(ctx, "Cast", [total], {"to": dtype}, dtype=dtype)
    return node(ctx, "Sub", [n, const(ctx, 1, np_dtype)], dtype=dtype)


@register("var")
class Var:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        dim = n.attrs.get("dim")
        keepdim = bool(n.attrs.get("keepdim", False))
        unbiased = bool(n.attrs.get("unbiased", True))
        x = n.input_tensor_names[0]
        if dim is not None and list(dim) != sorted(dim):
            # its kernel (VarParamHelper::GetCAxis) assumes sorted dims: x.var((2, -1)) becomes
            # dim=[3, 2] and OneFlow returns values that are not the variance
            raise NotImplementedError(f"OneFlow's var kernel gives wrong values for unsorted dims {list(dim)} "
                                      "(e.g. var((2, -1))): write the dims non-negative, e.g. var((2, 3))")
        axes = norm_axes(ctx, x, dim)
        ins, outs, dtypes, shapes = take(ctx, n)
        dt = ctx.get_dtype(x)
        mean = reduce(ctx, "ReduceMean", x, axes, True, dtype=dt)
        d = node(ctx, "Sub", [x, mean], dtype=dt)
        sq = node(ctx, "Mul", [d, d], dtype=dt)
        if not unbiased:
            reduce(ctx, "ReduceMean", sq, axes, keepdim, dtype=dtypes[0], outputs=outs[:1])
            return
        total = reduce(ctx, "ReduceSum", sq, axes, keepdim, dtype=dt)
        node(ctx, "Div", [total, count_minus_one(ctx, x, axes, dt)], dtype=dtypes[0], shape=shapes[0], outputs=outs[:1])


@register("l2_normalize")
class L2Normalize:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        x = n.input_tensor_names[0]
        axis = norm_axes(ctx, x, n.attrs["axis"])
        eps = float(n.attrs.get("epsilon", 1e-12))
        ins, outs, dtypes, shapes = take(ctx, n)
        dt = dtypes[0]
        sq = node(ctx, "Mul", [x, x], dtype=dt)
        # square_x_sum (second output, keepdims) as OneFlow computes it: before the max with eps
        sq_out = outs[1:2] if len(outs) > 1 else None
        ssum = reduce(ctx, "ReduceSum", sq, axis, True, dtype=dt, outputs=sq_out)
        clipped = node(ctx, "Max", [ssum, const(ctx, eps, util.Onnx2NumpyDtype(dt))], dtype=dt)
        norm = node(ctx, "Sqrt", [clipped], dtype=dt)
        node(ctx, "Div", [x, norm], dtype=dt, shape=shapes[0], outputs=outs[:1])
