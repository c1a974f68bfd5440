"""Our corrections and additions to oneflow-onnx's op handlers, in one place.

oneflow-onnx maps each OneFlow op type to a handler class whose ``Version_N``
methods rewrite the node for opset >= N. ``register`` replaces whatever
oneflow-onnx had for an op type (every opset version of it, so an old handler
can never win at a higher opset) and records who owns it; ``install`` imports
every handler module of this package once. One module per family of ops:

* ``clip``      ReLU6 / hardtanh / clip_by_scalar bounds (lost or dropped upstream)
* ``reduce``    reductions with axes (an input since opset 13 / 18), var, amax,
                argmax, max/min over a dim
* ``activation`` negative, GELU(tanh), SELU, Mish, log_softmax, ...
* ``shape``     stack, roll, ones_like, ...
* ``nn``        deconv, pooling variants, padding modes, resampling, norms
* ``detection`` top_k, cumsum, eye, affine_grid, grid_sample (DETR, PointNet, STN)

``legalize.attrs_to_inputs`` runs after mapping: attributes that an opset moved
to inputs (``axes``, ``split``) become constant inputs instead of being dropped.
"""
import importlib

HANDLER_MODULES = ("clip", "reduce", "activation", "shape", "nn", "detection")
OWNED = {}          # OneFlow op type -> module that handles it here
_INSTALLED = []


def register(names, onnx_op=None, **kwargs):
    """``flow_op`` that first removes oneflow-onnx's handlers for ``names``."""
    from oneflow_onnx import constants
    from oneflow_onnx.oneflow2onnx.handler import flow_op

    names = names if isinstance(names, list) else [names]
    for opset in flow_op.get_opsets().get(constants.ONNX_DOMAIN, []):
        for n in names:
            opset.pop(n, None)

    def deco(cls):
        for n in names:
            OWNED[n] = cls.__module__.rsplit(".", 1)[-1]
        return flow_op(names, onnx_op=onnx_op, **kwargs)(cls)

    return deco


def install():
    """Import every handler module once (registration happens on import)."""
    if _INSTALLED:
        return
    for name in HANDLER_MODULES:
        importlib.import_module(f".{name}", __name__)
    _INSTALLED.append(True)
