"""Runners: one module per backend (loader + runner), one registry here.

``make_runner(backend, model)``: ``oneflow`` takes a zoo name or nn.Module,
``ort-*`` an ONNX path, ``trt`` an engine path. Backend modules load lazily (the
base class never imports a concrete runner)."""
import importlib

from ..errors import OfconvertError
from .base import BaseRunner  # noqa: F401  (re-exported)

# backend -> (module, class, fixed keyword arguments)
_REGISTRY = {
    "oneflow": ("oneflow", "OneFlowRunner", {}),
    "ort-cpu": ("onnxruntime", "OnnxRuntimeRunner", {"provider": "cpu"}),
    "ort-cuda": ("onnxruntime", "OnnxRuntimeRunner", {"provider": "cuda"}),
    "ort-trt": ("onnxruntime", "OnnxRuntimeRunner", {"provider": "trt"}),
    "trt": ("tensorrt", "TensorRTRunner", {}),
}
BACKENDS = tuple(_REGISTRY)


def make_runner(backend, model, **kwargs):
    """Create a runner by backend name."""
    try:
        module, cls, fixed = _REGISTRY[backend]
    except (KeyError, TypeError):
        raise OfconvertError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}") from None
    runner_cls = getattr(importlib.import_module(f".{module}", __name__), cls)
    return runner_cls(model, **fixed, **kwargs)
