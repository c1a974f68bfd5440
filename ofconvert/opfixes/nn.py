"""nn ops: transposed convolution, pooling, padding modes, resampling.

Every handler computes what OneFlow's kernel computes (PyTorch semantics):

* ``deconv1d/2d/3d`` -> ConvTranspose (bias stays a separate ``bias_add``);
* ``avg_pool_*`` / ``max_pool_*`` (1-d and 2-d): the output size is OneFlow's
  (the traced shape); the end padding is made explicit so that the ONNX pool
  never uses its own ``ceil_mode`` (whose last-window rule and averaging of
  overhanging windows differ); an average with a ceil_mode overhang or a
  ``divisor_override`` is AveragePool(count_include_pad=0) times a constant
  per-position factor (OneFlow's divisor over ONNX's);
* ``adaptive_avg_pool1d/2d`` / ``adaptive_max_pool1d/2d``: bins
  ``[floor(i*In/Out), ceil((i+1)*In/Out))``; global or evenly dividing bins
  are one pool op, uneven ones are a MatMul with a bin-averaging matrix (avg)
  or Slice + ReduceMax + Concat per axis (max, separable);
* ``reflection_pad1d/2d`` / ``replication_pad1d/2d`` -> Pad reflect / edge;
* ``upsample_nearest_1d/2d/3d``, ``upsample_linear_1d``, ``upsample_bilinear_2d``,
  ``upsample_bicubic_2d``, ``upsample_trilinear_3d`` -> Resize: ``sizes`` (batch
  and channels read from the input's shape) when OneFlow had an output size,
  else ``scales``; nearest is asymmetric + floor (checked index by index
  against OneFlow's float formula, a Gather of constant indices otherwise);
  linear / cubic are ``half_pixel`` or ``align_corners``, cubic with a = -0.75.
"""
import numpy as np

from . import register
from .common import INT64, reduce, uname

CHANNELS_FIRST = ("channels_first", "NCHW", "NCL", "NCDHW", "")


# --- helpers ---------------------------------------------------------------------------------------

class _Rebuild:
    """Replace ``node`` by new nodes that produce its outputs (same names, shapes,
    dtypes); new node names keep the OneFlow module path of ``node``."""

    def __init__(self, ctx, node):
        self.ctx, self.scope = ctx, node.name
        self.x = node.input_tensor_names[0]
        self.in_shape = list(ctx.get_shape(self.x))
        self.dtype = ctx.get_dtype(self.x)
        names = list(node.output_tensor_names)
        self.y = names[0]
        self.out_shape = list(ctx.get_shape(self.y))
        for extra in names[1:]:          # index outputs of max pools
            if ctx.FindOutputConsumers(extra):
                raise NotImplementedError("return_indices=True is not supported (the pooling indices "
                                          "output is used; only the values are exported)")
        ctx.RemoveNode(node.name)

    def op(self, op_type, inputs, attr=None, final=False, dtype=None):
        out = [self.y] if final else None
        n = self.ctx.MakeNode(op_type, list(inputs), attr=attr or {}, name=f"{self.scope}-{uname(op_type)}",
                              outputs=out, dtypes=[dtype if dtype is not None else self.dtype],
                              shapes=[self.out_shape] if final else None)
        return n.output_tensor_names[0]

    def const(self, value, dtype):
        c = self.ctx.MakeConst(f"{self.scope}-{uname('const')}", np.asarray(value, dtype=dtype))
        return c.output_tensor_names[0]

    def ints(self, value):
        return self.const(np.asarray(value, np.int64).reshape(-1), np.int64)

    def floats(self, value):
        return self.const(value, _np_dtype(self.dtype))

    def identity(self, x):
        return self.op("Identity", [x], final=True)


def _np_dtype(onnx_dtype):
    from oneflow_onnx import util

    return util.Onnx2NumpyDtype(onnx_dtype)


def _check_layout(node):
    fmt = node.attrs.get("data_format", "channels_first")
    if fmt not in CHANNELS_FIRST:
        raise NotImplementedError(f"data_format {fmt!r} is not supported (only channels_first)")


def _ints(v, n):
    v = [int(i) for i in (v if isinstance(v, (list, tuple, np.ndarray)) else [v])]
    return v * n if len(v) == 1 and n > 1 else v


# --- transposed convolution ------------------------------------------------------------------------

@register(["deconv1d", "deconv2d", "deconv3d"], onnx_op="ConvTranspose")
class ConvTranspose:
    """OneFlow's weight is (in, out / groups, *k) like ONNX's; the bias is a bias_add after it."""

    @classmethod
    def Version_13(cls, ctx, node, **kwargs):
        _check_layout(node)
        a = node.attrs
        k = [int(i) for i in a["kernel_size"]]
        n = len(k)
        if len(node.input_tensor_names) not in (2, 3):
            raise NotImplementedError(f"{node.op_type} with {len(node.input_tensor_names)} inputs")
        pads = _ints(a.get("padding_before", [0]), n)
        attrs = {"kernel_shape": k, "strides": _ints(a.get("strides", [1]), n),
                 "dilations": _ints(a.get("dilation_rate", [1]), n), "pads": pads + pads,
                 "output_padding": _ints(a.get("output_padding", [0]), n), "group": int(a.get("groups", 1))}
        node.attrs.clear()
        node.attrs.update(attrs)


# --- pooling -------------------------------------------------------------------------------------------

def _pool_geometry(in_sizes, out_sizes, k, s, p, d):
    """End pads so that ``out`` windows (floor rule, no ONNX ceil_mode) all fit."""
    pend = []
    for i, o, kk, ss, pp, dd in zip(in_sizes, out_sizes, k, s, p, d):
        e = max((o - 1) * ss + dd * (kk - 1) + 1 - i - pp, 0)
        if (i + pp + e - dd * (kk - 1) - 1) // ss + 1 != o:
            raise NotImplementedError(f"pooling geometry (input {i}, kernel {kk}, stride {ss}, padding {pp}) "
                                      f"gives no ONNX pool with OneFlow's output size {o}")
        pend.append(e)
    return pend


def _avg_divisor_1d(i, o, k, s, p, include_pad):
    start = np.arange(o) * s - p
    end = np.minimum(start + k, i + p)
    if include_pad:
        return end - start
    return np.minimum(end, i) - np.maximum(start, 0)


def _pool(ctx, node, kind):
    _check_layout(node)
    a = node.attrs
    k = [int(v) for v in a["kernel_size"]]
    n = len(k)
    s = _ints(a.get("stride") or k, n)
    p = _ints(a.get("padding", [0]), n)
    d = _ints(a.get("dilation", [1]), n) if kind == "max" else [1] * n
    include_pad = bool(a.get("count_include_pad", True))
    override = int(a.get("divisor_override", 0) or 0)
    b = _Rebuild(ctx, node)
    in_sp, out_sp = b.in_shape[2:], b.out_shape[2:]
    if len(in_sp) != n:
        raise NotImplementedError(f"{n}-d pooling of a rank-{len(b.in_shape)} input")
    pend = _pool_geometry(in_sp, out_sp, k, s, p, d)
    x = b.x
    attr = {"kernel_shape": k, "strides": s}
    if kind == "max" and any(v != 1 for v in d):
        attr["dilations"] = d
    pads = p + pend
    explicit = any(pads[i] >= k[i] or pads[i + n] >= k[i] for i in range(n))
    if explicit:
        # ONNX Runtime wants pads < kernel: pad explicitly (-inf for max; 0 for a sum-pool)
        fill = np.array(-np.inf if kind == "max" else 0.0, dtype=_np_dtype(b.dtype))
        x = b.op("Pad", [x, b.ints([0, 0] + p + [0, 0] + pend), b.const(fill, fill.dtype)], {"mode": "constant"})
        pads = [0] * (2 * n)
    attr["pads"] = pads
    # plain: ONNX AveragePool's own divisor is OneFlow's (no overhang past the padding, no override)
    plain = pend == p and override == 0 and not explicit
    if kind == "avg" and not plain:
        # ONNX divides by the in-input count (count_include_pad=1 with a larger end pad is wrong in
        # ONNX Runtime 1.23's AveragePool-19); a constant factor turns that into OneFlow's divisor
        include_pad = False
    if kind == "max":
        b.op("MaxPool", [x], attr, final=True)
        return
    attr["count_include_pad"] = int(include_pad)
    if plain:
        b.op("AveragePool", [x], attr, final=True)
        return
    div = np.full(out_sp, float(override)) if override else np.ones([1] * n)
    onnx_div = np.ones([1] * n)
    for ax in range(n):
        shape = [-1 if j == ax else 1 for j in range(n)]
        if not override:
            d1 = _avg_divisor_1d(in_sp[ax], out_sp[ax], k[ax], s[ax], p[ax], a.get("count_include_pad", True))
            div = div * d1.reshape(shape)
        if explicit:    # the padded input has no pads left: full windows
            onnx_div = onnx_div * np.full(shape, float(k[ax]))
        else:           # windows (all inside the padded input) clipped to the input
            start = np.arange(out_sp[ax]) * s[ax] - p[ax]
            onnx_div = onnx_div * (np.minimum(start + k[ax], in_sp[ax]) - np.maximum(start, 0)).reshape(shape)
    factor = np.broadcast_to(onnx_div / div, out_sp)
    if np.all(factor == 1.0):
        b.op("AveragePool", [x], attr, final=True)
        return
    y = b.op("AveragePool", [x], attr)
    b.op("Mul", [y, b.floats(factor.reshape([1, 1] + list(out_sp)))], final=True)


@register(["avg_pool_1d", "avg_pool_2d"], onnx_op="AveragePool")
class AvgPool:
    @classmethod
    def Version_13(cls, ctx, node, **kwargs):
        _pool(ctx, node, "avg")


@register(["max_pool_1d", "max_pool_2d"], onnx_op="MaxPool", flow_obns=["y", "indice"])
class MaxPool:
    @classmethod
    def Version_13(cls, ctx, node, **kwargs):
        _pool(ctx, node, "max")


def _bins(i, o):
    """PyTorch / OneFlow adaptive-pool bins along one axis: [(start, end)] * o."""
    return [((j * i) // o, -((-(j + 1) * i) // o)) for j in range(o)]


def _adaptive(ctx, node, kind):
    _check_layout(node)
    b = _Rebuild(ctx, node)
    in_sp, out_sp = b.in_shape[2:], b.out_shape[2:]
    n = len(in_sp)
    if n not in (1, 2) or len(out_sp) != n:
        raise NotImplementedError(f"adaptive pooling over {n} spatial dims")
    if all(o == 1 for o in out_sp):
        b.op("GlobalAveragePool" if kind == "avg" else "GlobalMaxPool", [b.x], final=True)
        return
    if all(i % o == 0 for i, o in zip(in_sp, out_sp)):
        k = [i // o for i, o in zip(in_sp, out_sp)]
        if all(v == 1 for v in k):
            b.identity(b.x)
            return
        attr = {"kernel_shape": k, "strides": k, "pads": [0] * (2 * n)}
        b.op("AveragePool" if kind == "avg" else "MaxPool", [b.x], attr, final=True)
        return
    x = b.x
    axes = [ax for ax in range(n) if in_sp[ax] != out_sp[ax]]
    for idx, ax in enumerate(axes):
        last = idx == len(axes) - 1
        i, o = in_sp[ax], out_sp[ax]
        bins = _bins(i, o)
        rank_ax = 2 + ax
        if kind == "avg":
            m = np.zeros((i, o))
            for j, (lo, hi) in enumerate(bins):
                m[lo:hi, j] = 1.0 / (hi - lo)
            if rank_ax == len(b.in_shape) - 1:          # last axis: x @ M  (In, Out)
                x = b.op("MatMul", [x, b.floats(m)], final=last)
            else:                                       # second to last: M^T @ x  (Out, In)
                x = b.op("MatMul", [b.floats(m.T.copy()), x], final=last)
        else:
            parts = []
            for lo, hi in bins:
                sl = b.op("Slice", [x, b.ints([lo]), b.ints([hi]), b.ints([rank_ax])])
                parts.append(reduce(ctx, "ReduceMax", sl, [rank_ax], keepdims=True, dtype=b.dtype))
            x = b.op("Concat", parts, {"axis": rank_ax}, final=last)


@register(["adaptive_avg_pool1d", "adaptive_avg_pool2d"], onnx_op="AveragePool")
class AdaptiveAvgPool:
    @classmethod
    def Version_13(cls, ctx, node, **kwargs):
        _adaptive(ctx, node, "avg")


@register(["adaptive_max_pool1d", "adaptive_max_pool2d"], onnx_op="MaxPool", flow_obns=["y", "index"])
class AdaptiveMaxPool:
    @classmethod
    def Version_13(cls, ctx, node, **kwargs):
        _adaptive(ctx, node, "max")


# --- padding ----------------------------------------------------------------------------------------------

def _pad_mode(ctx, node, mode):
    b = _Rebuild(ctx, node)
    pad = [int(v) for v in node.attrs["padding"]]     # (left, right[, top, bottom]) as in F.pad
    rank = len(b.in_shape)
    if len(pad) % 2 or len(pad) // 2 > rank:
        raise NotImplementedError(f"padding {pad} for a rank-{rank} input")
    begin, end = [0] * rank, [0] * rank
    for j in range(len(pad) // 2):                      # pairs from the last axis backwards
        begin[rank - 1 - j], end[rank - 1 - j] = pad[2 * j], pad[2 * j + 1]
    if min(begin + end) < 0:
        raise NotImplementedError(f"negative {mode} padding {pad}")
    b.op("Pad", [b.x, b.ints(begin + end)], {"mode": mode}, final=True)


@register(["reflection_pad1d", "reflection_pad2d"], onnx_op="Pad")
class ReflectionPad:
    @classmethod
    def Version_13(cls, ctx, node, **kwargs):
        _pad_mode(ctx, node, "reflect")


@register(["replication_pad1d", "replication_pad2d"], onnx_op="Pad")
class ReplicationPad:
    @classmethod
    def Version_13(cls, ctx, node, **kwargs):
        _pad_mode(ctx, node, "edge")


# --- resampling --------------------------------------------------------------------------------------------

_SCALE_ATTRS = {1: ["scale_factor"], 2: ["height_scale", "width_scale"],
                3: ["depth_scale", "height_scale", "width_scale"]}


def _attr_double(v):
    """A OneFlow double attribute read back through oneflow-onnx (a float32 ONNX attribute):
    the shortest decimal that float32 rounds to it (what the user wrote, e.g. 1.2)."""
    return float(np.format_float_positional(np.float32(v), unique=True, trim="-")) if v else 0.0


def _flow_nearest_index(o, i, scale_attr):
    """OneFlow: min(floor(float(o) * float(1 / scale)), i - 1), scale = out / in when not given."""
    inv = np.float32(1.0 / scale_attr) if scale_attr > 0 else np.float32(i) / np.float32(o)
    idx = np.floor(np.arange(o, dtype=np.float32) * inv).astype(np.int64)
    return np.clip(idx, 0, i - 1)


def _ort_nearest_index(o, i, scale):
    """ONNX Runtime Resize nearest, asymmetric + floor: floor(o / scale)."""
    idx = np.floor(np.arange(o, dtype=np.float32) / np.float32(scale)).astype(np.int64)
    return np.clip(idx, 0, i - 1)


def _resize(ctx, node, mode):
    _check_layout(node)
    a = node.attrs
    b = _Rebuild(ctx, node)
    in_sp, out_sp = b.in_shape[2:], b.out_shape[2:]
    n = len(in_sp)
    if n not in _SCALE_ATTRS or len(out_sp) != n:
        raise NotImplementedError(f"resampling over {n} spatial dims")
    given = [_attr_double(a.get(k, 0.0) or 0.0) for k in _SCALE_ATTRS[n]]
    by_size = bool(a.get("output_size")) or not all(v > 0 for v in given)
    # the scale OneFlow's kernel uses: out / in when it had an output size, else the given factor
    flow_s = [o / i if by_size else s for i, o, s in zip(in_sp, out_sp, given)]
    has_size = by_size or any(int(np.float32(s) * np.float32(i)) != o    # Resize's own output size
                              for i, o, s in zip(in_sp, out_sp, given))
    if in_sp == out_sp and all(v == 1.0 for v in flow_s):
        b.identity(b.x)                 # source index == destination index
        return
    attr = {"mode": mode}
    if mode == "nearest":
        ort_scales = [np.float32(o) / np.float32(i) if has_size else s for i, o, s in zip(in_sp, out_sp, given)]
        flow_idx = [_flow_nearest_index(o, i, fs) for i, o, fs in zip(in_sp, out_sp, flow_s)]
        if any(not np.array_equal(f, _ort_nearest_index(o, i, sc))
               for f, i, o, sc in zip(flow_idx, in_sp, out_sp, ort_scales)):
            x = b.x
            for ax in range(n):         # float edge case: gather OneFlow's exact source indices
                if in_sp[ax] == out_sp[ax] and np.array_equal(flow_idx[ax], np.arange(in_sp[ax])):
                    continue
                x = b.op("Gather", [x, b.ints(flow_idx[ax])], {"axis": 2 + ax})
            b.identity(x)
            return
        attr.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:
        align = bool(a.get("align_corners", False))
        attr["coordinate_transformation_mode"] = "align_corners" if align else "half_pixel"
        if mode == "cubic":
            attr.update(cubic_coeff_a=-0.75, exclude_outside=0)
    if has_size:
        shape = b.op("Shape", [b.x], dtype=INT64)
        nc = b.op("Slice", [shape, b.ints([0]), b.ints([2]), b.ints([0])], dtype=INT64)
        sizes = b.op("Concat", [nc, b.ints(out_sp)], {"axis": 0}, dtype=INT64)
        inputs = [b.x, "", "", sizes]
    else:
        inputs = [b.x, "", b.const([1.0, 1.0] + given, np.float32)]
    b.op("Resize", inputs, attr, final=True)


@register(["upsample_nearest_1d", "upsample_nearest_2d", "upsample_nearest_3d"], onnx_op="Resize")
class UpsampleNearest:
    @classmethod
    def Version_13(cls, ctx, node, **kwargs):
        _resize(ctx, node, "nearest")


@register(["upsample_linear_1d", "upsample_bilinear_2d", "upsample_trilinear_3d"], onnx_op="Resize")
class UpsampleLinear:
    @classmethod
    def Version_13(cls, ctx, node, **kwargs):
        _resize(ctx, node, "linear")


@register(["upsample_bicubic_2d"], onnx_op="Resize")
class UpsampleCubic:
    @classmethod
    def Version_13(cls, ctx, node, **kwargs):
        _resize(ctx, node, "cubic")
