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
* ``dim_gather`` (flow.gather): GatherElements;
* ``slice_update`` (``y[:, :c] = v``, ``out[:, 0:c] += x``): per sliced dim, Slice +
  Concat (step 1) or a Gather of constant indices (step > 1); dims the slice covers
  whole (the batch) are untouched, so nothing of the traced batch is written;
* ``unfold`` (F.unfold, im2col): Pad + Gather of window indices (Reshape when the
  windows tile the input) + Transpose + Reshape: exact, rows ordered (c, ki, kj);
* ``fold`` (F.fold, col2im): the inverse layout, then per spatial dim a Gather (windows
  that do not overlap) or a MatMul with the 0/1 scatter matrix (overlaps are summed).
"""
import numpy as np
from oneflow_onnx import util
from onnx import TensorProto, helper

from ..options import check_keywords
from . import register
from .common import axes_input_opset, const, node, norm_axes, take

INT64_MIN = np.iinfo(np.int64).min


def unsqueeze(ctx, x, axes, dtype=None, shape=None, outputs=None):
    first = axes_input_opset("Unsqueeze")
    if ctx.opset >= first:
        return node(ctx, "Unsqueeze", [x, const(ctx, list(axes), np.int64)], dtype=dtype, shape=shape, outputs=outputs)
    return node(ctx, "Unsqueeze", [x], {"axes": list(axes)}, dtype=dtype, shape=shape, outputs=outputs)


def slice_(ctx, x, starts, ends, axes, steps=None, **out):
    """Slice; ``starts``/``ends`` are lists of ints or names of 1-D int64 tensors.
    ``out``: the output's dtype, shape, outputs (as for ``node``)."""
    check_keywords(out, ("dtype", "shape", "outputs"), "slice_()")
    ins = [s if isinstance(s, str) else const(ctx, list(s), np.int64) for s in (starts, ends)]
    ins.append(const(ctx, list(axes), np.int64))
    if steps is not None:
        ins.append(const(ctx, list(steps), np.int64))
    return node(ctx, "Slice", [x] + ins, **out)


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


INT64_MAX = np.iinfo(np.int64).max


def _slice_update(ctx, ref, value, dims, dt):
    """``ref`` with ``ref[dims slices] = value``; ``dims``: [(axis, start, stop, step, size)],
    outermost first. One axis at a time: the part of ``ref`` on that axis (full on every
    other axis) is updated recursively, then put back between the untouched parts (step 1:
    Concat of head, part, tail) or interleaved with them (step > 1: Gather of constant
    indices from Concat(ref, part))."""
    if not dims:
        return value
    (axis, start, stop, step, size), rest = dims[0], dims[1:]
    end = INT64_MAX if stop >= size else stop       # never the traced length (the batch) as a constant
    part = slice_(ctx, ref, [start], [end], [axis], [step] if step != 1 else None, dtype=dt)
    part = _slice_update(ctx, part, value, rest, dt)
    if step == 1:
        pieces = []
        if start > 0:
            pieces.append(slice_(ctx, ref, [0], [start], [axis], dtype=dt))
        pieces.append(part)
        if stop < size:
            pieces.append(slice_(ctx, ref, [stop], [INT64_MAX], [axis], dtype=dt))
        return pieces[0] if len(pieces) == 1 else node(ctx, "Concat", pieces, {"axis": axis}, dtype=dt)
    if axis == 0:
        raise NotImplementedError(f"slice_update of the batch dim with step {step} (x[{start}:{stop}:{step}] = ...)")
    idx = np.arange(size, dtype=np.int64)
    upd = np.arange(start, stop, step)
    idx[upd] = size + np.arange(len(upd))
    both = node(ctx, "Concat", [ref, part], {"axis": axis}, dtype=dt)
    return node(ctx, "Gather", [both, const(ctx, idx, np.int64)], {"axis": axis}, dtype=dt)


@register("slice_update", flow_ibns=["ref", "value"])
class SliceUpdate:
    """``y = ref; y[start:stop:step per dim] = value`` (``x[:, :c] += t``, ``x[..., 1:, 1:] = v``).
    Dims the slice covers whole are left alone (the batch dim, typically: nothing of the
    traced batch size is written); the others are rebuilt by Slice + Concat / Gather, the
    indices being int64 constants."""

    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        a = n.attrs
        ref, value = n.input_tensor_names[:2]
        shape = [int(d) for d in ctx.get_shape(ref)]
        starts, stops, steps = (list(a.get(k) or []) for k in ("start", "stop", "step"))
        if not (len(starts) == len(stops) == len(steps) == len(shape)):
            raise NotImplementedError(f"slice_update with start/stop/step {starts}/{stops}/{steps} "
                                      f"for a rank-{len(shape)} tensor")
        dims, sub_shape = [], []
        for ax, (b, e, s, size) in enumerate(zip(starts, stops, steps, shape)):
            b, e, s = int(b), int(e), int(s)
            if s <= 0:
                raise NotImplementedError(f"slice_update with step {s}")
            b = min(max(b + size if b < 0 else b, 0), size)
            e = min(max(e + size if e < 0 else e, b), size)
            sub_shape.append(len(range(b, e, s)))
            if not (b == 0 and e == size and s == 1):
                dims.append((ax, b, e, s, size))
        ins, outs, dtypes, shapes = take(ctx, n)
        dt = dtypes[0]
        vshape = ctx.get_shape(value)
        if vshape is None or [int(d) for d in vshape] != sub_shape:
            # broadcast the value to the slice (its shape taken from the graph: batch-free)
            target = slice_(ctx, ref, [d[1] for d in dims], [INT64_MAX if d[2] >= d[4] else d[2] for d in dims],
                            [d[0] for d in dims], [d[3] for d in dims], dtype=dt) if dims else ref
            value = node(ctx, "Expand", [value, node(ctx, "Shape", [target], dtype=TensorProto.INT64)], dtype=dt)
        if ctx.get_dtype(value) != dt:
            value = node(ctx, "Cast", [value], {"to": dt}, dtype=dt)
        y = _slice_update(ctx, ref, value, dims, dt)
        node(ctx, "Identity", [y], dtype=dt, shape=shapes[0], outputs=outs[:1])


def _window_geometry(n, in_sizes=None, out_sizes=None):
    """Unfold / fold attributes -> (kernel, dilation, padding, stride, blocks per spatial dim)."""
    a = n.attrs
    fmt = a.get("data_format", "channels_first")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt not in ("channels_first", ""):
        raise NotImplementedError(f"{n.op_type} with data_format {fmt!r} (only channels_first)")
    k = [int(v) for v in a["kernel_size"]]
    r = len(k)

    def ints(name, default):
        v = [int(i) for i in (a.get(name) or [default])]
        return v * r if len(v) == 1 else v

    d, p, s = ints("dilation_rate", 1), ints("padding", 0), ints("strides", 1)
    sizes = in_sizes if in_sizes is not None else out_sizes
    blocks = [(i + 2 * pp - dd * (kk - 1) - 1) // ss + 1 for i, kk, dd, pp, ss in zip(sizes, k, d, p, s)]
    if min(blocks) <= 0:
        raise NotImplementedError(f"{n.op_type}: kernel {k} (dilation {d}) larger than the padded input {sizes}")
    return k, d, p, s, blocks


def _plain_windows(k, d, p, s):
    """Windows that tile the input: kernel == stride, no dilation, no padding."""
    return all(kk == ss and dd == 1 and pp == 0 for kk, dd, pp, ss in zip(k, d, p, s))


@register("unfold")
class Unfold:
    """F.unfold / nn.Unfold (im2col): (N, C, *spatial) -> (N, C * prod(k), L), rows
    channel-major (c, ki, kj), columns the blocks in row-major order. Exact data movement:
    Pad, then per spatial dim a Gather of the (block, kernel offset) indices
    ``block * stride + offset * dilation`` (or a Reshape when kernel == stride), then
    Transpose and Reshape (batch copied with 0)."""

    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        x = n.input_tensor_names[0]
        shape = [int(v) for v in ctx.get_shape(x)]
        C, sp = shape[1], shape[2:]
        k, d, p, s, blocks = _window_geometry(n, in_sizes=sp)
        r = len(k)
        if len(sp) != r:
            raise NotImplementedError(f"unfold with a {r}-d kernel of a rank-{len(shape)} input")
        ins, outs, dtypes, shapes = take(ctx, n)
        dt = dtypes[0]
        if _plain_windows(k, d, p, s):
            used = [b * kk for b, kk in zip(blocks, k)]
            if used != sp:
                x = slice_(ctx, x, [0] * r, used, list(range(2, 2 + r)), dtype=dt)
            split = [0, C] + [v for b, kk in zip(blocks, k) for v in (b, kk)]
            x = node(ctx, "Reshape", [x, const(ctx, split, np.int64)], dtype=dt)
        else:
            if any(p):
                x = node(ctx, "Pad", [x, const(ctx, [0, 0] + p + [0, 0] + p, np.int64)], {"mode": "constant"}, dtype=dt)
            for i in range(r):      # axis of spatial dim i: 2 + 2 * i (earlier dims became (block, offset))
                idx = (np.arange(blocks[i])[:, None] * s[i] + np.arange(k[i])[None, :] * d[i]).astype(np.int64)
                x = node(ctx, "Gather", [x, const(ctx, idx, np.int64)], {"axis": 2 + 2 * i}, dtype=dt)
        # (N, C, b1, k1, b2, k2, ...) -> (N, C, k1, k2, ..., b1, b2, ...)
        perm = [0, 1] + [3 + 2 * i for i in range(r)] + [2 + 2 * i for i in range(r)]
        x = node(ctx, "Transpose", [x], {"perm": perm}, dtype=dt)
        node(ctx, "Reshape", [x, const(ctx, [0, C * int(np.prod(k)), int(np.prod(blocks))], np.int64)],
             dtype=dt, shape=shapes[0], outputs=outs[:1])


@register("fold")
class Fold:
    """F.fold / nn.Fold (col2im), the adjoint of unfold: (N, C * prod(k), L) -> (N, C,
    *output_size), overlapping windows summed. Per spatial dim the (block, offset) axis
    pair is mapped to ``block * stride + offset * dilation - padding``: a Gather (with a
    zero slot for positions no window reaches) when windows do not overlap on that dim,
    else a MatMul with the 0/1 scatter matrix (the sum)."""

    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        x = n.input_tensor_names[0]
        shape = [int(v) for v in ctx.get_shape(x)]
        out_sp = [int(v) for v in n.attrs["output_size"]]
        k, d, p, s, blocks = _window_geometry(n, out_sizes=out_sp)
        r = len(k)
        K, L = int(np.prod(k)), int(np.prod(blocks))
        if len(shape) != 3 or shape[1] % K or shape[2] != L:
            raise NotImplementedError(f"fold of a {shape} input with kernel {k} into {out_sp} ({L} blocks)")
        C = shape[1] // K
        ins, outs, dtypes, shapes = take(ctx, n)
        dt = dtypes[0]
        npd = util.Onnx2NumpyDtype(dt)
        # (N, C*K, L) -> (N, C, k1, k2, .., b1, b2, ..) -> (N, C, b1, k1, b2, k2, ..) -> (N, C, b1*k1, ..)
        x = node(ctx, "Reshape", [x, const(ctx, [0, C] + k + blocks, np.int64)], dtype=dt)
        perm = [0, 1] + [v for i in range(r) for v in (2 + r + i, 2 + i)]
        x = node(ctx, "Transpose", [x], {"perm": perm}, dtype=dt)
        x = node(ctx, "Reshape", [x, const(ctx, [0, C] + [b * kk for b, kk in zip(blocks, k)], np.int64)], dtype=dt)
        rank = 2 + r
        for i in range(r):
            ax = 2 + i
            src = (np.arange(blocks[i])[:, None] * s[i] + np.arange(k[i])[None, :] * d[i] - p[i]).reshape(-1)
            m = blocks[i] * k[i]
            inside = (src >= 0) & (src < out_sp[i])
            hits = np.bincount(src[inside], minlength=out_sp[i])
            if hits.max(initial=0) <= 1:
                if np.array_equal(src, np.arange(m)) and m == out_sp[i]:
                    continue
                idx = np.full(out_sp[i], m, dtype=np.int64)          # m: the zero slot
                idx[src[inside]] = np.nonzero(inside)[0]
                pads = [0] * (2 * rank)
                pads[rank + ax] = 1
                x = node(ctx, "Pad", [x, const(ctx, pads, np.int64)], {"mode": "constant"}, dtype=dt)
                x = node(ctx, "Gather", [x, const(ctx, idx, np.int64)], {"axis": ax}, dtype=dt)
            else:
                mat = np.zeros((m, out_sp[i]), dtype=npd)
                mat[np.nonzero(inside)[0], src[inside]] = 1
                if ax == rank - 1:                                   # last axis: x @ M
                    x = node(ctx, "MatMul", [x, const(ctx, mat, npd)], dtype=dt)
                elif ax == rank - 2:                                 # second to last: M^T @ x
                    x = node(ctx, "MatMul", [const(ctx, mat.T.copy(), npd), x], dtype=dt)
                else:                                                # move the axis last and back
                    tp = list(range(rank))
                    tp[ax], tp[-1] = tp[-1], tp[ax]
                    x = node(ctx, "Transpose", [x], {"perm": tp}, dtype=dt)
                    x = node(ctx, "MatMul", [x, const(ctx, mat, npd)], dtype=dt)
                    x = node(ctx, "Transpose", [x], {"perm": tp}, dtype=dt)
        node(ctx, "Identity", [x], dtype=dt, shape=shapes[0], outputs=outs[:1])
