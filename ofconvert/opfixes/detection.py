"""Ops of detection, point-cloud and spatial-transformer heads (see the package
docstring); none has a handler upstream.

* ``top_k`` (``x.topk(k, dim)``): OneFlow's op returns only the int64 INDICES of the
  k largest entries of the LAST axis (the tracer transposes ``dim`` there, and
  ``largest=False`` becomes ``topk(-x)``); the values are a ``dim_gather`` after it.
  ONNX ``TopK`` (K an input since opset 10), ``sorted=1``: ties keep the lower index
  first, as OneFlow does. ``sorted=False`` with k > 1 is refused: OneFlow's kernel
  then returns its heap's order, which no ONNX op reproduces;
* ``cumsum``: ``CumSum`` with the axis as an int64 scalar input (opset 11+);
* ``eye``: a constant (rows x cols, the output's dtype): nothing of the batch in it
  (PointNet's ``eye(3).view(1, 9).repeat(batch, 1)`` is followed by an Expand whose
  batch ``dynamic_batch`` makes dynamic);
* ``affine_grid`` (2-D and 3-D): ``MatMul`` of the constant base grid (OneFlow's exact
  float32 values for ``align_corners`` False/True) with ``theta`` transposed, then
  ``Reshape`` to ``[0, *spatial, d]`` (``0``: the batch of theta, never the traced one).
  Exact at every opset, so ``AffineGrid`` (opset 20) is not needed;
* ``grid_sample``: ``GridSample``, which ONNX has from opset 16 (4-D input; 5-D
  from opset 20, where the modes are renamed ``linear`` / ``cubic``); below that the
  export is refused with "needs opset >= N".
"""
import numpy as np
from oneflow_onnx import util
from onnx import TensorProto

from . import register
from .common import const, node, norm_axes, take

I64 = TensorProto.INT64


@register("top_k")
class TopK:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        k = int(n.attrs.get("k", 1))
        if not n.attrs.get("sorted", True) and k > 1:
            raise NotImplementedError(f"topk(k={k}, sorted=False): OneFlow returns the {k} indices in its heap's "
                                      "order, which no ONNX op reproduces; use sorted=True")
        ins, outs, dtypes, shapes = take(ctx, n)
        x = ins[0]
        axis = len(ctx.get_shape(x)) - 1
        values = ctx.MakeNode("TopK", [x, const(ctx, [k], np.int64)],
                              attr={"axis": axis, "largest": 1, "sorted": 1},
                              outputs=[n.name + "_values", n.name + "_indices"], name=n.name + "_topk",
                              dtypes=[ctx.get_dtype(x), I64], shapes=[shapes[0], shapes[0]])
        idx = values.output_tensor_names[1]
        if dtypes[0] == I64:
            node(ctx, "Identity", [idx], dtype=I64, shape=shapes[0], outputs=outs[:1])
        else:
            node(ctx, "Cast", [idx], {"to": dtypes[0]}, dtype=dtypes[0], shape=shapes[0], outputs=outs[:1])


@register("cumsum")
class CumSum:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        x = n.input_tensor_names[0]
        axis = norm_axes(ctx, x, [int(n.attrs.get("dim", 0))])[0]
        ins, outs, dtypes, shapes = take(ctx, n)
        node(ctx, "CumSum", [x, const(ctx, axis, np.int64)], dtype=dtypes[0], shape=shapes[0], outputs=outs[:1])


@register("eye")
class Eye:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        rows = int(n.attrs.get("rows", 1))
        cols = n.attrs.get("cols")
        cols = rows if cols is None else int(cols)
        ins, outs, dtypes, shapes = take(ctx, n)
        value = np.eye(rows, cols, dtype=util.Onnx2NumpyDtype(dtypes[0]))
        node(ctx, "Identity", [const(ctx, value)], dtype=dtypes[0], shape=[rows, cols], outputs=outs[:1])


def base_grid(spatial, align_corners):
    """OneFlow's / PyTorch's base grid for ``affine_grid``: ``[prod(spatial), d + 1]``
    rows ``(x, y[, z], 1)``, x (the last spatial dim) varying fastest; float32."""
    def lin(size):
        v = np.linspace(-1.0, 1.0, size) if size > 1 else np.zeros(1)
        return v if align_corners else v * (size - 1) / size

    axes = np.meshgrid(*[lin(s) for s in spatial], indexing="ij")        # (z,) y, x
    cols = [a.reshape(-1) for a in reversed(axes)] + [np.ones(int(np.prod(spatial)))]
    return np.stack(cols, -1).astype(np.float32)


@register("affine_grid")
class AffineGrid:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        size = [int(s) for s in n.attrs.get("size")]
        if len(size) not in (4, 5):
            raise NotImplementedError(f"affine_grid of size {size}: only 4-D and 5-D sizes exist")
        spatial, d = size[2:], len(size) - 2
        ins, outs, dtypes, shapes = take(ctx, n)
        dt = dtypes[0]
        base = const(ctx, base_grid(spatial, bool(n.attrs.get("align_corners", False))).astype(
            util.Onnx2NumpyDtype(dt)))                                                      # [P, d + 1]
        theta_t = node(ctx, "Transpose", [ins[0]], {"perm": [0, 2, 1]}, dtype=dt)          # [N, d + 1, d]
        flat = node(ctx, "MatMul", [base, theta_t], dtype=dt)                              # [N, P, d]
        node(ctx, "Reshape", [flat, const(ctx, [0] + spatial + [d], np.int64)], dtype=dt, shape=shapes[0],
             outputs=outs[:1])


_MODES_20 = {"bilinear": "linear", "bicubic": "cubic", "nearest": "nearest"}


@register("grid_sample")
class GridSample:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        rank = len(ctx.get_shape(n.input_tensor_names[0]))
        if rank not in (4, 5):
            raise NotImplementedError(f"grid_sample of a {rank}-D input (ONNX GridSample: 4-D or 5-D)")
        need = 16 if rank == 4 else 20
        if ctx.opset < need:
            raise NotImplementedError(f"needs opset >= {need} (ONNX GridSample of a {rank}-D input); "
                                      f"export at opset {need} or newer")
        mode = n.attrs.get("interpolation_mode", "bilinear")
        pad = n.attrs.get("padding_mode", "zeros")
        if mode not in _MODES_20 or pad not in ("zeros", "border", "reflection"):
            raise NotImplementedError(f"grid_sample mode={mode!r} padding_mode={pad!r}")
        ins, outs, dtypes, shapes = take(ctx, n)
        attr = {"mode": _MODES_20[mode] if ctx.opset >= 20 else mode, "padding_mode": pad,
                "align_corners": int(bool(n.attrs.get("align_corners", False)))}
        node(ctx, "GridSample", ins[:2], attr, dtype=dtypes[0], shape=shapes[0], outputs=outs[:1])
