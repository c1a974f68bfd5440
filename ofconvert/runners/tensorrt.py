"""TensorRT runner: an adapter over Polygraphy's ``TrtRunner`` for engines built by
``ofconvert.engine``.

What it adds to TrtRunner: before anything is deserialised, the engine's sidecar
is checked against the installed TensorRT and this GPU (EngineCompatibilityError
saying to rebuild); batches larger than the engine's max batch (profile 0) run in
chunks; inputs are cast to the engine's input dtype (fp16 engines take fp16);
outputs come back as float32 copies (TrtRunner reuses its host buffers); every
failure is one of our typed errors. TrtRunner brings the CUDA stream, device
buffers, output allocator and ``execute_async_v3``. ``tensorrt`` and ``polygraphy``
are imported in ``activate`` only.
"""
import os

import numpy as np

from ..errors import EngineCompatibilityError, OfconvertError
from .base import BaseRunner


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
        self._runner = None

    # -- BaseRunner ------------------------------------------------------------
    def activate_impl(self):
        from .. import engine as eng
        from ..trt import backend

        if not os.path.isfile(self.engine_path):
            raise OfconvertError(f"engine file not found: {self.engine_path}")
        if self.check_compatibility:
            self.sidecar = eng.read_sidecar(self.engine_path)
        else:  # unchecked: use the sidecar for names and metadata when there is a usable one
            try:
                self.sidecar = eng.read_sidecar(self.engine_path, verify_hash=False)
            except EngineCompatibilityError:
                self.sidecar = None
        trt = backend.load_tensorrt()
        version = backend.tensorrt_version(trt)
        backend.set_device(self.device)
        if self.check_compatibility:  # before TensorRT sees the bytes
            eng.check_compatibility(self.sidecar, version, backend.gpu_info(self.device), self.engine_path)
        with open(self.engine_path, "rb") as f:
            data = f.read()
        self._runner = backend.activate_runner(data, self.engine_path, version, name=self.name)
        try:
            self._bind(trt)
        except BaseException:
            self.deactivate_impl()
            raise

    def _bind(self, trt):
        from polygraphy.datatype import DataType

        engine = self._runner.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise OfconvertError(f"{self.engine_path}: expected one input and at least one output, "
                                 f"got inputs {inputs} and outputs {outputs}")
        self.input_name = inputs[0]
        want = ((self.sidecar or {}).get("io") or {}).get("output", {}).get("name")
        self.output_name = want if want in outputs else outputs[0]
        # one profile (index 0): its max batch is what one execution can take
        min_shape, _, max_shape = engine.get_tensor_profile_shape(self.input_name, 0)
        self.max_shape = tuple(int(d) for d in max_shape)
        self.max_batch = self.max_shape[0]
        self.sample_shape = self.max_shape[1:]
        self.min_sample_shape = tuple(int(d) for d in min_shape)[1:]   # below sample_shape: a dynamic H/W
        self._output_sample = tuple(max(int(d), 0) for d in engine.get_tensor_shape(self.output_name))[1:]
        dtype = DataType.from_dtype(engine.get_tensor_dtype(self.input_name), "tensorrt")
        self.input_dtype = np.dtype(DataType.to_dtype(dtype, "numpy"))

    def infer_impl(self, x):
        lo, hi = self.min_sample_shape, self.sample_shape
        if x.ndim != len(hi) + 1 or not all(a <= d <= b for a, d, b in zip(lo, x.shape[1:], hi)):
            what = f"shape {hi}" if lo == hi else f"shapes {lo} to {hi}"
            raise OfconvertError(f"{self.name}: the engine takes images of {what}, "
                                 f"got a batch of shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            return np.zeros((0,) + self._output_sample, np.float32)
        chunks = [self._run(x[i:i + self.max_batch]) for i in range(0, x.shape[0], self.max_batch)]
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def _run(self, chunk):
        from ..trt import backend

        feed = {self.input_name: np.ascontiguousarray(chunk, dtype=self.input_dtype)}
        out = backend.run(self._runner, feed)[self.output_name]
        return np.array(out, dtype=np.float32)  # a copy: TrtRunner reuses its host buffers

    def deactivate_impl(self):
        if self._runner is not None:
            from ..trt import backend

            runner, self._runner = self._runner, None
            backend.deactivate_runner(runner)

    # -- extras ----------------------------------------------------------------
    def metadata(self):
        """The ONNX metadata_props the engine was built from (``ofconvert.preprocess`` among them)."""
        return dict((self.sidecar or {}).get("onnx_metadata") or {})
