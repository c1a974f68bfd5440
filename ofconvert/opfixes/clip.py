"""ReLU6 / hardtanh / clip_by_scalar*: oneflow-onnx's handlers lost the bounds at
opset >= 11 (identity) and dropped a 0.0 bound of clip_by_scalar (truthiness test)."""
import numpy as np
from oneflow_onnx import util
from oneflow_onnx.oneflow2onnx.handlers.math import ClipOps

from . import register


def _bounds(ctx, node):
    """(min, max) of hardtanh / clip_by_scalar*, read with ``is not None`` (0.0 is a bound)."""
    if "min_val" in node.attrs or "max_val" in node.attrs:          # hardtanh (ReLU6 = hardtanh(0, 6))
        return node.attrs.get("min_val"), node.attrs.get("max_val")
    dtype = util.ONNX_2_NUMPY_DTYPE[ctx.get_dtype(node.input_tensor_names[0])]
    kind = "floating" if np.dtype(dtype).kind == "f" else "integral"
    return node.attrs.get(f"{kind}_min"), node.attrs.get(f"{kind}_max")


def _handler(use_lo, use_hi):
    class FixedClip(ClipOps):
        @classmethod
        def Version_1(cls, ctx, node, **kwargs):
            lo, hi = _bounds(ctx, node)
            ClipOps.Version_1(ctx, node, lo if use_lo else None, hi if use_hi else None)

        @classmethod
        def Version_11(cls, ctx, node, **kwargs):
            lo, hi = _bounds(ctx, node)
            ClipOps.Version_11(ctx, node, lo if use_lo else None, hi if use_hi else None)

    return FixedClip


register(["hardtanh", "clip_by_scalar"], onnx_op="Clip")(_handler(True, True))
register("clip_by_scalar_min", onnx_op="Clip")(_handler(True, False))
register("clip_by_scalar_max", onnx_op="Clip")(_handler(False, True))
