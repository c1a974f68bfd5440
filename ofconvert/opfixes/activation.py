"""Elementwise ops and activations (see the package docstring).

None of these had a handler upstream (``softplus`` had one that ignored
``beta`` / ``threshold``). Each one computes what OneFlow's kernel computes:

* ``negative`` -x; ``softsign`` x / (1 + |x|); ``selu`` / ``celu`` (ONNX ops);
* ``mish`` x * tanh(softplus(x)) (the ONNX ``Mish`` op from opset 18);
* ``fast_gelu`` (GELU approximate='tanh') 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))
  (the ONNX ``Gelu(approximate='tanh')`` op from opset 20);
* ``log_softmax`` over the last axis (OneFlow's op has no axis: the tracer
  transposes the reduced dim last, as for ``softmax``);
* ``softplus`` log(1 + exp(beta x)) / beta, x where beta x > threshold;
* ``scalar_logical_*`` (x == / != / >= / <= scalar) and ``masked_fill``
  (used by logsumexp);
* ``scalar_floordiv`` / ``floordiv`` (``//``): floor(x / y) for floats, truncating
  integer Div for ints (OneFlow: -7 // 2 == -3); ``scalar_fmod`` / ``broadcast_fmod``
  (``%``, flow.fmod): Mod(fmod=1), C semantics as OneFlow; ``scalar_reverse_pow``
  (``2 ** x``) and ``pow`` (``x ** y``): Pow in the output type.
"""
import math

from oneflow_onnx import util
from onnx import TensorProto

from . import register
from .common import const, node, take

# OneFlow's SELU constants (oneflow/user/kernels/activation_kernels.h)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _scalar(ctx, n, dtype):
    """The scalar operand of a scalar_* op as a constant of ONNX ``dtype``."""
    a = n.attrs
    if a.get("has_float_operand"):
        v = a["float_operand"]
    elif a.get("has_int_operand"):
        v = a["int_operand"]
    elif a.get("has_bool_operand"):
        v = a["bool_operand"]
    else:
        raise NotImplementedError("the op has no scalar operand")
    return const(ctx, v, util.Onnx2NumpyDtype(dtype))


def _unary(op, attr=None):
    """Handler that writes one ONNX op ``op`` (with ``attr``) on the single input."""
    class Unary:
        @classmethod
        def Version_13(cls, ctx, n, **kwargs):
            ins, outs, dtypes, shapes = take(ctx, n)
            node(ctx, op, ins[:1], dict(attr or {}), dtype=dtypes[0], shape=shapes[0], outputs=outs[:1])

    return Unary


register("negative")(_unary("Neg"))
register("softsign")(_unary("Softsign"))
register("selu")(_unary("Selu", {"alpha": SELU_ALPHA, "gamma": SELU_SCALE}))


@register("celu")
class Celu:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        alpha = float(n.attrs.get("alpha", 1.0))
        ins, outs, dtypes, shapes = take(ctx, n)
        if dtypes[0] != TensorProto.FLOAT:       # ONNX Celu is float32 only
            x, dt = ins[0], dtypes[0]
            one = const(ctx, 1.0, util.Onnx2NumpyDtype(dt))
            a = const(ctx, alpha, util.Onnx2NumpyDtype(dt))
            zero = const(ctx, 0.0, util.Onnx2NumpyDtype(dt))
            e = node(ctx, "Sub", [node(ctx, "Exp", [node(ctx, "Div", [x, a], dtype=dt)], dtype=dt), one], dtype=dt)
            neg = node(ctx, "Min", [zero, node(ctx, "Mul", [a, e], dtype=dt)], dtype=dt)
            node(ctx, "Add", [node(ctx, "Max", [x, zero], dtype=dt), neg], dtype=dt, shape=shapes[0], outputs=outs[:1])
            return
        node(ctx, "Celu", ins[:1], {"alpha": alpha}, dtype=dtypes[0], shape=shapes[0], outputs=outs[:1])


@register("mish")
class Mish:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        ins, outs, dtypes, shapes = take(ctx, n)
        dt = dtypes[0]
        t = node(ctx, "Tanh", [node(ctx, "Softplus", ins[:1], dtype=dt)], dtype=dt)
        node(ctx, "Mul", [ins[0], t], dtype=dt, shape=shapes[0], outputs=outs[:1])

    @classmethod
    def Version_18(cls, ctx, n, **kwargs):
        ins, outs, dtypes, shapes = take(ctx, n)
        node(ctx, "Mish", ins[:1], dtype=dtypes[0], shape=shapes[0], outputs=outs[:1])


@register("fast_gelu")
class FastGelu:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        ins, outs, dtypes, shapes = take(ctx, n)
        x, dt = ins[0], dtypes[0]
        npd = util.Onnx2NumpyDtype(dt)
        x3 = node(ctx, "Mul", [node(ctx, "Mul", [x, x], dtype=dt), x], dtype=dt)
        inner = node(ctx, "Add", [x, node(ctx, "Mul", [x3, const(ctx, 0.044715, npd)], dtype=dt)], dtype=dt)
        scaled = node(ctx, "Mul", [inner, const(ctx, math.sqrt(2.0 / math.pi), npd)], dtype=dt)
        t = node(ctx, "Tanh", [scaled], dtype=dt)
        half_x = node(ctx, "Mul", [x, const(ctx, 0.5, npd)], dtype=dt)
        node(ctx, "Mul", [half_x, node(ctx, "Add", [t, const(ctx, 1.0, npd)], dtype=dt)],
             dtype=dt, shape=shapes[0], outputs=outs[:1])

    @classmethod
    def Version_20(cls, ctx, n, **kwargs):
        ins, outs, dtypes, shapes = take(ctx, n)
        node(ctx, "Gelu", ins[:1], {"approximate": "tanh"}, dtype=dtypes[0], shape=shapes[0], outputs=outs[:1])


@register("log_softmax")
class LogSoftmax:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        ins, outs, dtypes, shapes = take(ctx, n)
        rank = len(ctx.get_shape(ins[0]))
        node(ctx, "LogSoftmax", ins[:1], {"axis": rank - 1}, dtype=dtypes[0], shape=shapes[0], outputs=outs[:1])


@register("softplus")
class Softplus:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        beta = float(n.attrs.get("beta", 1.0))
        threshold = float(n.attrs.get("threshold", 20.0))
        ins, outs, dtypes, shapes = take(ctx, n)
        x, dt = ins[0], dtypes[0]
        npd = util.Onnx2NumpyDtype(dt)
        bx = x if beta == 1.0 else node(ctx, "Mul", [x, const(ctx, beta, npd)], dtype=dt)
        sp = node(ctx, "Softplus", [bx], dtype=dt)
        if beta != 1.0:
            sp = node(ctx, "Div", [sp, const(ctx, beta, npd)], dtype=dt)
        big = node(ctx, "Greater", [bx, const(ctx, threshold, npd)], dtype=TensorProto.BOOL)
        node(ctx, "Where", [big, x, sp], dtype=dt, shape=shapes[0], outputs=outs[:1])


_COMPARE = {"scalar_logical_equal": ("Equal", False), "scalar_logical_not_equal": ("Equal", True),
            "scalar_logical_greater_equal": ("GreaterOrEqual", False),
            "scalar_logical_less_equal": ("LessOrEqual", False)}


@register(list(_COMPARE))
class ScalarCompare:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        op, negate = _COMPARE[n.op_type]
        dt = ctx.get_dtype(n.input_tensor_names[0])
        if dt == TensorProto.BOOL and op != "Equal":
            raise NotImplementedError(f"{n.op_type} of a bool tensor")
        y = _scalar(ctx, n, dt)
        ins, outs, dtypes, shapes = take(ctx, n)
        if not negate:
            node(ctx, op, [ins[0], y], dtype=TensorProto.BOOL, shape=shapes[0], outputs=outs[:1])
            return
        eq = node(ctx, op, [ins[0], y], dtype=TensorProto.BOOL)
        node(ctx, "Not", [eq], dtype=TensorProto.BOOL, shape=shapes[0], outputs=outs[:1])


@register("masked_fill")
class MaskedFill:
    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        dt = ctx.get_dtype(n.input_tensor_names[0])
        v = _scalar(ctx, n, dt)
        ins, outs, dtypes, shapes = take(ctx, n)
        x, mask = ins[0], ins[1]
        if ctx.get_dtype(mask) != TensorProto.BOOL:
            mask = node(ctx, "Cast", [mask], {"to": TensorProto.BOOL}, dtype=TensorProto.BOOL)
        node(ctx, "Where", [mask, v, x], dtype=dtypes[0], shape=shapes[0], outputs=outs[:1])


def _as(ctx, x, dt):
    """``x`` cast to ONNX ``dt`` when it is of another type."""
    if ctx.get_dtype(x) == dt:
        return x
    return node(ctx, "Cast", [x], {"to": dt}, dtype=dt)


def _is_float(dt):
    return dt in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)


def _binary_operands(ctx, n, dt):
    """(x, y) of a scalar_* or two-input op, both of the output's ONNX type ``dt``;
    for ``scalar_reverse_*`` the scalar comes first."""
    x = _as(ctx, n.input_tensor_names[0], dt)
    if len(n.input_tensor_names) > 1:
        return x, _as(ctx, n.input_tensor_names[1], dt)
    y = _scalar(ctx, n, dt)
    return (y, x) if n.op_type.startswith("scalar_reverse_") else (x, y)


def _take_binary(ctx, n):
    """Remove binary node ``n``; returns (x, y, output dtype, [output name], output shape)."""
    dt = ctx.get_dtype(n.output_tensor_names[0])
    x, y = _binary_operands(ctx, n, dt)
    _, outs, _, shapes = take(ctx, n)
    return x, y, dt, outs[:1], shapes[0]


@register(["scalar_floordiv", "floordiv"])
class FloorDiv:
    """OneFlow's ``//``: floor(x / y) for floats, C++ integer division (truncation toward
    zero: -7 // 2 == -3) for integers, which is ONNX's integer Div."""

    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        x, y, dt, out, shape = _take_binary(ctx, n)
        if not _is_float(dt):
            node(ctx, "Div", [x, y], dtype=dt, shape=shape, outputs=out)
            return
        q = node(ctx, "Div", [x, y], dtype=dt)
        node(ctx, "Floor", [q], dtype=dt, shape=shape, outputs=out)


@register(["scalar_fmod", "broadcast_fmod"])
class Fmod:
    """OneFlow's ``%`` and flow.fmod: C fmod (the result has the sign of x: -3.5 % 2 == -1.5)."""

    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        x, y, dt, out, shape = _take_binary(ctx, n)
        node(ctx, "Mod", [x, y], {"fmod": 1}, dtype=dt, shape=shape, outputs=out)


@register(["scalar_reverse_pow", "pow"])
class Pow:
    """``scalar ** x`` (scalar_reverse_pow) and ``x ** y`` of two tensors: Pow in the output type."""

    @classmethod
    def Version_13(cls, ctx, n, **kwargs):
        x, y, dt, out, shape = _take_binary(ctx, n)
        node(ctx, "Pow", [x, y], dtype=dt, shape=shape, outputs=out)
