"""ONNX Runtime runner: CPU, CUDA and TensorRT execution providers.

fp32, fp16 (the runner feeds the dtype the model declares) and int8 Q/DQ models
(CPU: ONNX Runtime's QDQ kernels) all run through the same class.
"""
import os

import numpy as np

from ..errors import BackendUnavailableError, OfconvertError, first_line
from ..options import check_keywords
from .base import BaseRunner

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}

_ORT_TO_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                 "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def _import_ort():
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - onnxruntime is a hard dependency
        raise BackendUnavailableError(f"onnxruntime is not installed ({e}); pip install onnxruntime") from None
    return ort


class OnnxRuntimeRunner(BaseRunner):
    """Runs an ONNX file with one execution provider.

    provider: "cpu", "cuda" or "trt". provider_options: passed to that provider
    (e.g. ``{"cudnn_conv_algo_search": "EXHAUSTIVE"}``). threads: intra-op threads
    (CPU). io_binding: bind inputs/outputs (CUDA: outputs stay on the device until
    copied back once per batch). cuda_graph: capture the model in a CUDA graph and
    replay it (CUDA only; implies IO binding to fixed device buffers, one per batch
    shape; fails at load when a node falls back to the CPU). The CPU provider is
    always kept as a fallback for nodes the chosen provider does not take (except
    with cuda_graph, where ONNX Runtime requires every node on the GPU).
    optimized_model_path: ONNX Runtime writes the graph it actually runs there
    (after its fusions and layout changes; for profiling, docs/gpu.md).
    """

    def __init__(self, onnx_path, provider="cpu", provider_options=None, threads=None,
                 io_binding=False, graph_optimization="all", name=None, **how):
        check_keywords(how, ("cuda_graph", "optimized_model_path"), "OnnxRuntimeRunner()")
        cuda_graph = how.get("cuda_graph", False)
        optimized_model_path = how.get("optimized_model_path")
        if cuda_graph and provider != "cuda":
            raise OfconvertError("cuda_graph needs the CUDA provider")
        if provider not in PROVIDERS:
            raise OfconvertError(f"unknown ONNX Runtime provider {provider!r}; known: {', '.join(PROVIDERS)}")
        super().__init__(name or f"ort-{provider}")
        self.backend = f"ort-{provider}"
        self.onnx_path = str(onnx_path)
        self.provider = provider
        self.provider_options = dict(provider_options or {})
        self.threads = threads
        self.io_binding = bool(io_binding or cuda_graph)
        self.cuda_graph = bool(cuda_graph)
        self._bound = {}  # batch shape -> (input OrtValue, output OrtValue, binding); cuda_graph only
        self.graph_optimization = graph_optimization
        self.optimized_model_path = optimized_model_path
        self.session = None

    def activate_impl(self):
        from ..onnx_io import ort_session

        ort = _import_ort()
        if not os.path.isfile(self.onnx_path):
            raise OfconvertError(f"ONNX file not found: {self.onnx_path}")
        wanted = PROVIDERS[self.provider]
        available = ort.get_available_providers()
        if wanted not in available:
            hint = {"cuda": "install onnxruntime-gpu built for your CUDA (see docs/gpu.md)",
                    "trt": "install onnxruntime-gpu and TensorRT"}.get(self.provider, "")
            raise BackendUnavailableError(
                f"ONNX Runtime provider {wanted} is not available here (available: {', '.join(available)}); {hint}")
        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[self.graph_optimization]
        if self.threads:
            so.intra_op_num_threads = int(self.threads)
        so.log_severity_level = 3
        if self.optimized_model_path:
            so.optimized_model_filepath = os.fspath(self.optimized_model_path)
        options = dict(self.provider_options)
        if self.cuda_graph:
            options["enable_cuda_graph"] = "1"
        providers = [(wanted, options)]
        if wanted != "CPUExecutionProvider" and not self.cuda_graph:
            providers.append(("CPUExecutionProvider", {}))
        try:
            self.session = ort_session(self.onnx_path, purpose="runner", providers=providers, options=so)
        except Exception as e:  # ORT raises its own exception types for bad files
            raise OfconvertError(f"ONNX Runtime cannot load {self.onnx_path}: {first_line(e)}") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = _ORT_TO_NUMPY.get(inp.type, np.float32)
        out = self.session.get_outputs()[0]
        self.output_name = out.name
        self.output_dtype = _ORT_TO_NUMPY.get(out.type, np.float32)
        self.output_meta = out
        self.input_meta = inp

    def providers_used(self):
        """Execution providers of the live session, in priority order."""
        return list(self.session.get_providers()) if self.session else []

    def _output_shape(self, batch):
        shape = [batch if i == 0 and not isinstance(d, int) else d for i, d in enumerate(self.output_meta.shape)]
        if not all(isinstance(d, int) and d > 0 for d in shape):
            raise OfconvertError(f"{self.name}: CUDA graphs need a static output shape, got {self.output_meta.shape}")
        return shape

    def _fixed_binding(self, x):
        """Device input/output buffers at fixed addresses for one batch shape (what
        CUDA graph replay needs); the input buffer is filled from ``x``."""
        ort = _import_ort()
        key = tuple(x.shape)
        if self._bound and key not in self._bound:
            raise OfconvertError(f"{self.name}: a CUDA-graph session runs one batch shape "
                                 f"({next(iter(self._bound))}); create another runner for {key}")
        if key not in self._bound:
            x_dev = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
            y_dev = ort.OrtValue.ortvalue_from_shape_and_type(self._output_shape(x.shape[0]), self.output_dtype,
                                                              "cuda", 0)
            b = self.session.io_binding()
            b.bind_ortvalue_input(self.input_name, x_dev)
            b.bind_ortvalue_output(self.output_name, y_dev)
            self._bound[key] = (x_dev, y_dev, b)
        else:
            self._bound[key][0].update_inplace(x)
        return self._bound[key]

    def make_step(self, x, device_input=False):
        """A zero-argument callable running batch ``x`` once, synchronously (for timing).

        device_input=False: each call feeds ``x`` from host memory and copies the
        logits back (what ``infer`` does). device_input=True (CUDA): ``x`` is copied
        to the GPU once, each call runs on it and waits for the GPU, logits stay on
        the device."""
        if not self.is_active:
            raise RuntimeError(f"runner {self.name} is not active")
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        if self.provider == "cpu" or not device_input:
            return lambda: self.infer(x)
        sess = self.session
        if self.cuda_graph:
            x_dev, _, b = self._fixed_binding(x)
        else:
            x_dev = _import_ort().OrtValue.ortvalue_from_numpy(x, "cuda", 0)
            b = sess.io_binding()
            b.bind_ortvalue_input(self.input_name, x_dev)
            b.bind_output(self.output_name, "cuda", 0)

        def step(_keep=x_dev):  # the closure keeps the device input alive
            sess.run_with_iobinding(b)
            b.synchronize_outputs()
        return step

    def infer_impl(self, x):
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        if self.cuda_graph:
            _, y_dev, b = self._fixed_binding(x)
            self.session.run_with_iobinding(b)
            out = y_dev.numpy()
        elif self.io_binding:
            b = self.session.io_binding()
            b.bind_cpu_input(self.input_name, x)
            b.bind_output(self.output_name, "cuda" if self.provider != "cpu" else "cpu")
            self.session.run_with_iobinding(b)
            out = b.copy_outputs_to_cpu()[0]
        else:
            out = self.session.run([self.output_name], {self.input_name: x})[0]
        return out.astype(np.float32, copy=False)

    def deactivate_impl(self):
        self._bound = {}
        self.session = None

    def metadata(self):
        """The ONNX metadata_props (``ofconvert.preprocess`` among them)."""
        return dict(self.session.get_modelmeta().custom_metadata_map) if self.session else {}
