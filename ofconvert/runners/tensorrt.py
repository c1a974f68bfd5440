"""TensorRT runner: loads an engine built by ``ofconvert.engine`` and runs batches.

Before deserializing, the engine's sidecar is checked against the installed
TensorRT and the GPU (EngineCompatibilityError with what to do). Device buffers
and pinned host buffers are allocated once, for the profile's max batch; a batch
is copied host->device, run with ``execute_async_v3`` and copied back on one
CUDA stream, then the stream is synchronised once. Batches larger than the
engine's max batch are run in chunks.

CUDA memory and streams come from cuda-python (``cuda.bindings.runtime``), the
library TensorRT's own Python samples use; it and ``tensorrt`` are imported
lazily in ``activate``. Written against the TensorRT 10.x / 11.x Python API
(docs/tensorrt.md lists the calls and the versions checked).
"""
import ctypes
import os

import numpy as np

from ..errors import BackendUnavailableError, EngineCompatibilityError, OfconvertError
from .base import BaseRunner


class _PinnedDeviceBuffer:
    """``nbytes`` of page-locked host memory (seen as a numpy byte array) and of device memory."""

    def __init__(self, cudart, nbytes):
        from ..engine_trt import cuda_call

        self._cudart = cudart
        self.nbytes = int(nbytes)
        self.host_ptr = cuda_call(cudart, cudart.cudaMallocHost(self.nbytes), "cudaMallocHost")
        try:
            self.device_ptr = cuda_call(cudart, cudart.cudaMalloc(self.nbytes), "cudaMalloc")
        except Exception:
            cudart.cudaFreeHost(self.host_ptr)
            raise
        self.host = np.frombuffer((ctypes.c_uint8 * self.nbytes).from_address(self.host_ptr), dtype=np.uint8)

    def view(self, dtype, shape):
        """The first ``prod(shape)`` elements of the pinned host memory as ``dtype``."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape)) * dtype.itemsize
        return self.host[:count].view(dtype).reshape(shape)

    def free(self):
        if self.host_ptr is not None:
            self.host = None
            self._cudart.cudaFree(self.device_ptr)
            self._cudart.cudaFreeHost(self.host_ptr)
            self.host_ptr = self.device_ptr = None


def _stream_handle(stream):
    """cuda-python's cudaStream_t converts to the raw handle TensorRT takes."""
    return int(stream)


class TensorRTRunner(BaseRunner):
    """Runs a serialized TensorRT engine (``*.engine`` + ``*.engine.json`` sidecar).

    device: CUDA device index. check_compatibility: refuse an engine whose sidecar
    names another TensorRT version or GPU (and an engine without a sidecar).
    """

    backend = "trt"

    def __init__(self, engine_path, device=0, check_compatibility=True, name=None):
        super().__init__(name or "trt")
        self.engine_path = os.fspath(engine_path)
        self.device = int(device)
        self.check_compatibility = bool(check_compatibility)
        self.sidecar = None
        self._reset()

    def _reset(self):
        self.engine = self.context = self._runtime = self.stream = None
        self._cudart = self._trt = None
        self._input = None
        self._outputs = {}

    # -- BaseRunner ------------------------------------------------------------
    def activate_impl(self):
        from .. import engine as eng
        from ..engine_trt import cuda_call, gpu_info, load_cudart, load_tensorrt, make_logger, tensorrt_version

        if not os.path.isfile(self.engine_path):
            raise OfconvertError(f"engine file not found: {self.engine_path}")
        if self.check_compatibility:
            self.sidecar = eng.read_sidecar(self.engine_path)
        else:  # unchecked: use the sidecar for names and metadata when there is a usable one
            try:
                self.sidecar = eng.read_sidecar(self.engine_path, verify_hash=False)
            except EngineCompatibilityError:
                self.sidecar = None
        trt = self._trt = load_tensorrt()
        cudart = self._cudart = load_cudart()
        cuda_call(cudart, cudart.cudaSetDevice(self.device), f"cudaSetDevice({self.device})",
                  error=BackendUnavailableError)
        if self.check_compatibility:
            eng.check_compatibility(self.sidecar, tensorrt_version(trt), gpu_info(self.device), self.engine_path)
        try:
            self._load(trt, cudart, make_logger(trt))
        except BaseException:
            self.deactivate_impl()
            raise

    def _load(self, trt, cudart, logger):
        from ..engine_trt import cuda_call

        self._logger = logger
        self._runtime = trt.Runtime(logger)
        with open(self.engine_path, "rb") as f:
            self.engine = self._runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise EngineCompatibilityError(f"TensorRT {trt.__version__} cannot load {self.engine_path}: "
                                           f"{logger.last_error()}")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise OfconvertError(f"TensorRT could not create an execution context for {self.engine_path}: "
                                 f"{logger.last_error()} (out of GPU memory?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise OfconvertError(f"{self.engine_path}: expected one input and at least one output, "
                                 f"got inputs {inputs} and outputs {outputs}")
        self.input_name = inputs[0]
        want = ((self.sidecar or {}).get("io") or {}).get("output", {}).get("name")
        self.output_name = want if want in outputs else outputs[0]

        # One profile (index 0): allocate everything once, for its max batch.
        _, _, max_shape = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.max_shape = tuple(int(d) for d in max_shape)
        self.max_batch = self.max_shape[0]
        self.sample_shape = self.max_shape[1:]
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.stream = cuda_call(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
        if not self.context.set_input_shape(self.input_name, self.max_shape):
            raise OfconvertError(f"TensorRT refused input shape {self.max_shape}: {self._logger.last_error()}")
        self._batch = self.max_batch
        self._input = _PinnedDeviceBuffer(cudart, int(np.prod(self.max_shape)) * self.input_dtype.itemsize)
        for name in outputs:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape) or not shape or shape[0] != self.max_batch:
                raise OfconvertError(f"{self.engine_path}: output {name!r} has shape {shape}; ofconvert runs "
                                     "batch-major outputs whose shape follows the input (no IOutputAllocator)")
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            self._outputs[name] = (_PinnedDeviceBuffer(cudart, int(np.prod(shape)) * dtype.itemsize),
                                   dtype, shape[1:])
        for name, buf in [(self.input_name, self._input)] + [(n, o[0]) for n, o in self._outputs.items()]:
            if not self.context.set_tensor_address(name, buf.device_ptr):
                raise OfconvertError(f"TensorRT refused the device address of {name!r}: {self._logger.last_error()}")

    def infer_impl(self, x):
        if tuple(x.shape[1:]) != self.sample_shape:
            raise OfconvertError(f"{self.name}: the engine takes images of shape {self.sample_shape}, "
                                 f"got a batch of shape {tuple(x.shape)}")
        _, _, out_sample = self._outputs[self.output_name]
        if x.shape[0] == 0:
            return np.zeros((0,) + tuple(out_sample), np.float32)
        chunks = [self._run(x[i:i + self.max_batch]) for i in range(0, x.shape[0], self.max_batch)]
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def _run(self, chunk):
        from ..engine_trt import cuda_call

        cudart, stream = self._cudart, self.stream
        n = chunk.shape[0]
        host_in = self._input.view(self.input_dtype, (n,) + self.sample_shape)
        np.copyto(host_in, chunk, casting="same_kind")
        if n != self._batch:
            if not self.context.set_input_shape(self.input_name, (n,) + self.sample_shape):
                raise OfconvertError(f"TensorRT refused batch {n}: {self._logger.last_error()}")
            self._batch = n
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_call(cudart, cudart.cudaMemcpyAsync(self._input.device_ptr, self._input.host_ptr, host_in.nbytes,
                                                 h2d, stream), "cudaMemcpyAsync (input)")
        if not self.context.execute_async_v3(_stream_handle(stream)):
            raise RuntimeError(f"TensorRT execute_async_v3 failed: {self._logger.last_error()}")
        for buf, dtype, sample in self._outputs.values():
            nbytes = n * int(np.prod(sample)) * dtype.itemsize
            cuda_call(cudart, cudart.cudaMemcpyAsync(buf.host_ptr, buf.device_ptr, nbytes, d2h, stream),
                      "cudaMemcpyAsync (output)")
        cuda_call(cudart, cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        buf, dtype, sample = self._outputs[self.output_name]
        return buf.view(dtype, (n,) + tuple(sample)).astype(np.float32)  # copies out of the pinned buffer

    def deactivate_impl(self):
        # TensorRT objects first (context, then engine, then runtime), then the memory they pointed at
        self.context = None
        self.engine = None
        self._runtime = None
        for buf in [self._input] + [o[0] for o in self._outputs.values()]:
            if buf is not None:
                buf.free()
        if self.stream is not None and self._cudart is not None:
            self._cudart.cudaStreamDestroy(self.stream)
        self._reset()

    # -- extras ----------------------------------------------------------------
    def metadata(self):
        """The ONNX metadata_props the engine was built from (``ofconvert.preprocess`` among them)."""
        return dict((self.sidecar or {}).get("onnx_metadata") or {})
