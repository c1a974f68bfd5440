"""Shape ops (see the package docstring).

* ``stack``: Unsqueeze each input at ``axis``, then Concat (no handler upstream);
* ``flip``: Slice with step -1 over ``dims`` (works for any length, the batch too);
* ``roll``: two Slices and a Concat per rolled dim; the split point comes from
  ``Shape`` when the dim is the batch (or the roll is over the flattened tensor),
  so one export serves every batch size. OneFlow's kernel reads ``dims=-1`` as
  "flatten" and ignores other negative dims: reproduced (see ``Roll``);
* ``constant`` (ones/zeros/full, *_like): ``ConstantOfShape`` of an int64 shape
  constant instead of a constant of the traced shape, so that a tensor made from
  the batch size follows the batch (``dynamic_batch`` makes the shape dynamic);
* ``arange``: Range with start/limit/delta of the OUTPUT dtype (upstream wrote
  float64 constants for a float32 arange: onnx.checker refused the graph);
* ``dim_gather`` (flow.gather): GatherElements.
"""
import numpy as np
from onnx import TensorProto, helper
from oneflow_onnx import util

from . import register
from .common import axes_input_opset, const, node
from .reduce import norm_axes, take

INT64_MIN = np.iinfo(np.int64).min


def unsqueeze(ctx, x, axes, dtype=None, shape=None, outputs=None):
    first = axes_input_opset("Unsqueeze")
    if ctx.opset >= first:
        return node(ctx, "Unsqueeze", [x, const(ctx, list(axes), np.int64)], dtype=dtype, shape=shape, outputs=outputs)
    return node(ctx, "Unsqueeze", [x], {"axes": list(axes)}, dtype=dtype, shape=shape, outputs=outputs)


def slice_(ctx, x, starts, ends, axes, steps=None, dtype=None, shape=None, outputs=None):
    """Slice; ``starts``/``ends`` are lists of ints or names of 1-D int64 tensors."""
    ins = [s if isinstance(s, str) else const(ctx, list(s), np.int64) for s in (starts, ends)]
    ins.append(const(ctx, list(axes), np.int64))
    if steps is not None:
        ins.append(const(ctx, list(steps), np.int64))
    return node(ctx, "Slice", [x] + ins, dtype=dtype, shape=shape, outputs=outputs)


@register("stack")
class Stack:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        ins, outs, dtypes, shapes = take(ctx, n)
        rank = len(ctx.get_shape(ins[0]))
        axis = int(n.attrs.get("axis", 0))
        axis = axis + rank + 1 if axis < 0 else axis
        parts = [unsqueeze(ctx, x, [axis], dtype=dtypes[0]) for x in ins]
        node(ctx, "Concat", parts, {"axis": axis}, dtype=dtypes[0], shape=shapes[0], outputs=outs[:1])


@register("flip")
class Flip:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        x = n.input_tensor_names[0]
        dims = n.attrs.get("dims") or []         # flip(x, []) is the identity (its empty attr is dropped)
        dims = norm_axes(ctx, x, dims) if len(dims) else []
        ins, outs, dtypes, shapes = take(ctx, n)
        k = len(dims)
        if not k:
            node(ctx, "Identity", [x], dtype=dtypes[0], shape=shapes[0], outputs=outs[:1])
            return
        slice_(ctx, x, [-1] * k, [INT64_MIN] * k, dims, [-1] * k, dtype=dtypes[0], shape=shapes[0], outputs=outs[:1])


def _roll_dim(ctx, x, dim, shift, size, dtype):
    """``x`` rolled by ``shift`` along ``dim`` (length ``size``, or None: from Shape)."""
    if size is not None:
        s = shift % size if size else 0
        if s == 0:
            return x
        tail = slice_(ctx, x, [size - s], [size], [dim], dtype=dtype)
        head = slice_(ctx, x, [0], [size - s], [dim], dtype=dtype)
    else:
        i64 = TensorProto.INT64
        length = node(ctx, "Gather", [node(ctx, "Shape", [x], dtype=i64), const(ctx, [dim], np.int64)],
                      {"axis": 0}, dtype=i64)                                       # [n]
        s = node(ctx, "Mod", [const(ctx, [shift], np.int64), length], {"fmod": 0}, dtype=i64)  # in [0, n)
        cut = node(ctx, "Sub", [length, s], dtype=i64)                               # n - s
        tail = slice_(ctx, x, cut, length, [dim], dtype=dtype)
        head = slice_(ctx, x, [0], cut, [dim], dtype=dtype)
    return node(ctx, "Concat", [tail, head], {"axis": dim}, dtype=dtype)


@register("roll")
class Roll:
    """OneFlow's roll kernel (roll_kernel_utils.h ``computeParams``): ``dims[0] == -1``
    (what ``dims=None`` becomes, and also an explicit ``dims=-1``) rolls the flattened
    tensor by ``shifts[0]``; otherwise each dim in ``[0, rank)`` is rolled by the
    shift given first for it, and other negative dims are ignored. Reproduced as is."""

    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        x = n.input_tensor_names[0]
        shape = ctx.get_shape(x)
        rank = len(shape)
        dims = [int(d) for d in (n.attrs.get("dims") or [-1])]
        shifts = [int(s) for s in (n.attrs.get("shifts") or [])]
        if not shifts:
            raise NotImplementedError("roll without shifts")
        ins, outs, dtypes, shapes = take(ctx, n)
        dt = dtypes[0]
        i64 = TensorProto.INT64
        if dims[0] == -1:              # roll of the flattened tensor, shape restored
            flat = node(ctx, "Reshape", [x, const(ctx, [-1], np.int64)], dtype=dt)
            y = _roll_dim(ctx, flat, 0, shifts[0], None, dt)
            node(ctx, "Reshape", [y, node(ctx, "Shape", [x], dtype=i64)], dtype=dt, shape=shapes[0], outputs=outs[:1])
            return
        if len(dims) != len(shifts):
            raise NotImplementedError(f"roll with {len(shifts)} shifts for {len(dims)} dims")
        per_dim = {}
        for d, s in zip(dims, shifts):
            per_dim.setdefault(d, s)
        y = x
        for d in range(rank):
            if d in per_dim:
                y = _roll_dim(ctx, y, d, per_dim[d], None if d == 0 else shape[d], dt)
        node(ctx, "Identity", [y], dtype=dt, shape=shapes[0], outputs=outs[:1])


@register("constant")
class Constant:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        out = n.output_tensor_names[0]
        dt = ctx.get_dtype(out)
        shape = n.attrs.get("shape")
        if shape is None:
            shape = ctx.get_shape(out)
        shape = [int(d) for d in (shape or [])]
        if n.attrs.get("is_floating_value"):
            value = n.attrs.get("floating_value", 0.0)
        else:
            value = n.attrs.get("integer_value", 0)
        ins, outs, dtypes, shapes = take(ctx, n)
        tensor = helper.make_tensor("value", dt, [1], np.asarray([value], util.Onnx2NumpyDtype(dt)).tolist())
        node(ctx, "ConstantOfShape", [const(ctx, shape, np.int64)], {"value": tensor},
             dtype=dt, shape=shapes[0], outputs=outs[:1])


@register("arange")
class Arange:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        a = n.attrs
        ins, outs, dtypes, shapes = take(ctx, n)
        dt = dtypes[0]
        npd = util.Onnx2NumpyDtype(dt)
        kind = "float" if np.dtype(npd).kind == "f" else "integer"
        vals = [a.get(f"{kind}_{k}", 0) for k in ("start", "limit", "delta")]
        node(ctx, "Range", [const(ctx, v, npd) for v in vals], dtype=dt, shape=shapes[0], outputs=outs[:1])


@register("dim_gather")
class DimGather:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        x = n.input_tensor_names[0]
        dim = norm_axes(ctx, x, [n.attrs.get("dim", 0)])[0]
        ins, outs, dtypes, shapes = take(ctx, n)
        node(ctx, "GatherElements", ins[:2], {"axis": dim}, dtype=dtypes[0], shape=shapes[0], outputs=outs[:1])
