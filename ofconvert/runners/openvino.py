"""OpenVINO runner: an ONNX file on the CPU through OpenVINO (docs/cpu.md).

The same files ONNX Runtime runs: fp32, fp16 (OpenVINO reads the fp16 ONNX; a
CPU without native fp16 arithmetic computes it in f32 from the fp16 weights) and
int8 Q/DQ (OpenVINO's low-precision transformations turn the Q/DQ pairs into
int8 kernels). Reports name the precision the FILE holds, as everywhere else.

Float arithmetic is pinned to f32 by default (``inference_precision="f32"``):
OpenVINO's CPU plugin otherwise picks bf16 by itself on CPUs with AVX512-BF16 or
AMX, which would run an fp32 file at bf16 behind the report's back. Pass
``inference_precision=None`` (OpenVINO's choice) or "bf16" to allow it.

Models are compiled for one static input shape at a time (the ONNX batch is
dynamic): the first ``infer`` of a shape reshapes and compiles, later ones reuse
it (a handful of shapes are kept: the evaluator's last, smaller batch is one more).
"""
import os

import numpy as np

from ..errors import BackendUnavailableError, OfconvertError, first_line
from .base import BaseRunner

HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
INFERENCE_PRECISIONS = ("f32", "bf16", "f16")
_MAX_SHAPES = 4   # compiled shapes kept per runner


def import_openvino():
    """The ``openvino`` module; BackendUnavailableError naming the install when absent."""
    try:
        import openvino
    except ImportError as e:
        raise BackendUnavailableError(f"openvino not installed ({e}); pip install openvino "
                                      "(-c requirements/constraints.txt)") from None
    return openvino


class OpenVINORunner(BaseRunner):
    """Runs an ONNX file with OpenVINO on ``device`` (default "CPU").

    threads: INFERENCE_NUM_THREADS (None: OpenVINO's default, every core).
    hint: "latency" (default: one stream, all threads on each request: what a
    synchronous ``infer`` needs) or "throughput" (several streams, for callers
    running requests concurrently). inference_precision: "f32" (default), "bf16",
    "f16" or None (the plugin's default). static_shapes: compile per input shape
    (default) instead of one dynamic-batch model.
    """

    backend = "openvino"

    def __init__(self, onnx_path, threads=None, hint="latency", inference_precision="f32", static_shapes=True,
                 device="CPU", name=None):
        if hint not in HINTS:
            raise OfconvertError(f"unknown OpenVINO performance hint {hint!r}; one of {', '.join(HINTS)}")
        if inference_precision is not None and inference_precision not in INFERENCE_PRECISIONS:
            raise OfconvertError(f"unknown OpenVINO inference precision {inference_precision!r}; one of "
                                 f"{', '.join(INFERENCE_PRECISIONS)} or None")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise OfconvertError(f"threads must be an integer >= 1, got {threads!r}")
        super().__init__(name or "openvino")
        self.onnx_path = os.fspath(onnx_path)
        self.threads, self.hint, self.device = threads, hint, device
        self.inference_precision = inference_precision
        self.static_shapes = bool(static_shapes)
        self.core = self.model = None
        self._compiled = {}   # input shape (or None: dynamic) -> (compiled model, infer request)

    # -- loading ------------------------------------------------------------
    def config(self):
        """The compile properties this runner passes to OpenVINO."""
        cfg = {"PERFORMANCE_HINT": HINTS[self.hint]}
        if self.threads:
            cfg["INFERENCE_NUM_THREADS"] = int(self.threads)
        if self.inference_precision:
            cfg["INFERENCE_PRECISION_HINT"] = self.inference_precision
        return cfg

    def activate_impl(self):
        ov = import_openvino()
        if not os.path.isfile(self.onnx_path):
            raise OfconvertError(f"ONNX file not found: {self.onnx_path}")
        self.core = ov.Core()
        if self.device not in self.core.available_devices:
            raise BackendUnavailableError(f"OpenVINO device {self.device} is not available here "
                                          f"(available: {', '.join(self.core.available_devices)})")
        try:
            self.model = self.core.read_model(self.onnx_path)
        except Exception as e:  # OpenVINO raises RuntimeError & co for unreadable files
            raise OfconvertError(f"OpenVINO cannot read {self.onnx_path}: {first_line(e)}") from None
        if len(self.model.inputs) != 1:
            raise OfconvertError(f"{self.onnx_path}: image models take one input; this one has "
                                 f"{len(self.model.inputs)} inputs")
        self.input_dtype = np.dtype(self.model.input(0).get_element_type().to_dtype())
        if not self.static_shapes:
            self._compile(None)

    def _compile(self, shape):
        """(compiled model, infer request) for input ``shape`` (None: as read, dynamic)."""
        got = self._compiled.get(shape)
        if got is not None:
            return got
        if len(self._compiled) >= _MAX_SHAPES:
            self._compiled.pop(next(iter(self._compiled)))
        model = self.model
        if shape is not None:
            model = self.model.clone()
            try:
                model.reshape({0: list(shape)})
            except Exception as e:
                raise OfconvertError(f"{self.name}: {self.onnx_path} does not take input shape {tuple(shape)}: "
                                     f"{first_line(e)}") from None
        try:
            compiled = self.core.compile_model(model, self.device, self.config())
        except Exception as e:
            raise OfconvertError(f"OpenVINO cannot compile {self.onnx_path}: {first_line(e)}") from None
        got = self._compiled[shape] = (compiled, compiled.create_infer_request())
        return got

    # -- running ------------------------------------------------------------
    def infer_impl(self, x):
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        _, request = self._compile(tuple(x.shape) if self.static_shapes else None)
        request.infer({0: x}, share_inputs=True)
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)

    def make_step(self, x, device_input=False):
        """A zero-argument callable running batch ``x`` once (for timing), its shape
        compiled now so that no timed call compiles. Host input only (a CPU backend)."""
        if not self.is_active:
            raise RuntimeError(f"runner {self.name} is not active")
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        self._compile(tuple(x.shape) if self.static_shapes else None)
        return lambda: self.infer(x)

    def providers_used(self):
        """What runs it, for reports: ["OpenVINO <device> (<precision it computes in>, N threads)"]."""
        if not self._compiled:
            return []
        compiled = next(iter(self._compiled.values()))[0]
        prec = compiled.get_property("INFERENCE_PRECISION_HINT")
        threads = compiled.get_property("INFERENCE_NUM_THREADS")
        return [f"OpenVINO {self.device} ({getattr(prec, 'type_name', prec)} arithmetic, {threads} threads)"]

    def deactivate_impl(self):
        self._compiled = {}
        self.model = self.core = None

    def metadata(self):
        """The ONNX metadata_props (``ofconvert.preprocess`` among them)."""
        from ..artifacts import read_onnx_metadata

        return read_onnx_metadata(self.onnx_path)[0]
