"""Runners: one module per backend (loader + runner), and the one backend
registry that the CLI, the benchmark and the evaluator read.

``make_runner(backend, model)``: ``oneflow`` takes a zoo name or nn.Module,
``ort-*`` and ``openvino`` an ONNX path, ``trt`` an engine path. Backend modules load lazily (the
base class never imports a concrete runner); :func:`unavailable_reason` says why
a backend cannot run here without loading it."""
import dataclasses
import importlib
import importlib.util
import platform
from typing import Dict

from ..errors import OfconvertError


@dataclasses.dataclass(frozen=True)
class Backend:
    name: str
    module: str                 # runner module in this package
    cls: str                    # runner class
    fixed: Dict[str, str]       # fixed keyword arguments of the runner
    model: str                  # what it runs: "zoo" (a zoo name), "onnx" or "engine"
    gpu: bool                   # needs a GPU (device-resident input makes sense)


REGISTRY = {b.name: b for b in (
    Backend("oneflow", "oneflow", "OneFlowRunner", {}, "zoo", False),
    Backend("ort-cpu", "onnxruntime", "OnnxRuntimeRunner", {"provider": "cpu"}, "onnx", False),
    Backend("ort-cuda", "onnxruntime", "OnnxRuntimeRunner", {"provider": "cuda"}, "onnx", True),
    Backend("ort-trt", "onnxruntime", "OnnxRuntimeRunner", {"provider": "trt"}, "onnx", True),
    Backend("trt", "tensorrt", "TensorRTRunner", {}, "engine", True),
    Backend("openvino", "openvino", "OpenVINORunner", {}, "onnx", False),
)}
BACKENDS = tuple(REGISTRY)
GPU_BACKENDS = tuple(b for b in BACKENDS if REGISTRY[b].gpu)
_ORT_PROVIDER = {"ort-cuda": "CUDAExecutionProvider", "ort-trt": "TensorrtExecutionProvider"}


def get_backend(name) -> Backend:
    """The registry entry of ``name``; OfconvertError (one line) for an unknown one."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise OfconvertError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}") from None


def check_backends(names):
    """``names`` (list), each checked against the registry."""
    for n in names:
        get_backend(n)
    return list(names)


def make_runner(backend, model, **kwargs):
    """Create a runner by backend name."""
    b = get_backend(backend)
    runner_cls = getattr(importlib.import_module(f".{b.module}", __name__), b.cls)
    return runner_cls(model, **b.fixed, **kwargs)


def unavailable_reason(backend):
    """Why ``backend`` cannot run here (read without loading it), or None."""
    get_backend(backend)
    if backend == "oneflow" and importlib.util.find_spec("oneflow") is None:
        return (f"oneflow not installed (OneFlow 0.9.0 ships wheels for Python <= 3.10; "
                f"this is Python {platform.python_version()})")
    if backend == "openvino" and importlib.util.find_spec("openvino") is None:
        return "openvino not installed (pip install openvino; the OpenVINO CPU backend, docs/cpu.md)"
    if backend == "trt" and importlib.util.find_spec("tensorrt") is None:
        return "TensorRT not installed (pip install tensorrt, on a machine with an NVIDIA GPU)"
    if backend.startswith("ort-"):
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime not installed"
        if backend in _ORT_PROVIDER:
            import onnxruntime as ort

            have = ort.get_available_providers()
            if _ORT_PROVIDER[backend] not in have:
                what = "CUDA" if backend == "ort-cuda" else "TensorRT"
                return (f"ONNX Runtime {what} provider missing (this onnxruntime has {', '.join(have)}; "
                        "install onnxruntime-gpu, see docs/gpu.md)")
    return None


def __getattr__(name):   # BaseRunner loads numpy: only on use (the CLI's --help reads the registry)
    if name == "BaseRunner":
        from .base import BaseRunner

        return BaseRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
