"""Test-only stand-in for the ``tensorrt`` Python module, in two flavours.

It implements exactly the API surface that Polygraphy 0.53 (``polygraphy/backend/trt``:
loader.py, config.py, profile.py, runner.py, util.py, ``polygraphy/datatype/tensorrt.py``)
and ofconvert (``ofconvert/trt/backend.py``, ``ofconvert/runners/tensorrt.py``) call,
with the semantics documented by NVIDIA, and records every call (``module._record``).
It is never importable as ``tensorrt``: ``installed(version)`` builds a module object
and puts it in ``sys.modules["tensorrt"]`` only for the duration of a test.

Flavours (``make_module(version)``):

* **10.x** -- ``BuilderFlag.FP16/INT8``, ``IInt8EntropyCalibrator2``,
  ``IBuilderConfig.int8_calibrator`` / ``set_calibration_profile``, weakly typed
  networks unless created with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``.
* **11.x** -- no FP16/INT8 (nor FP8/BF16/INT4/FP4/OBEY_/PREFER_PRECISION_CONSTRAINTS/
  DIRECT_IO) builder flags, no calibrators, no ``int8_calibrator``/calibration profile:
  every network is strongly typed (``STRONGLY_TYPED`` exists, deprecated, ignored).

Sources (NVIDIA TensorRT Python API reference; ``latest`` = 10.x, ``11.4.0`` = 11.x;
the same page names exist for both under ``.../tensorrt/<ver>/_static/python-api/``):

* Builder, NetworkDefinitionCreationFlag -- infer/Core/Builder.html
* IBuilderConfig, BuilderFlag, MemoryPoolType, DeviceType, ProfilingVerbosity -- infer/Core/BuilderConfig.html
* INetworkDefinition, ITensor, ILayer, LayerType -- infer/Graph/Network.html, infer/Graph/Tensor.html,
  infer/Graph/Layers.html
* IOptimizationProfile -- infer/Core/OptimizationProfile.html
* ITimingCache (combine, serialize, reset) -- infer/Core/TimingCache.html
  (https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/TimingCache.html)
* IHostMemory -- infer/FoundationalTypes/HostMemory.html
* OnnxParser (parse, parse_from_file, num_errors, get_error, flags, clear_flag), OnnxParserFlag --
  parsers/Onnx/pyOnnx.html
* Runtime (deserialize_cuda_engine), ICudaEngine (num_io_tensors, get_tensor_name/mode/dtype/shape/
  format/profile_shape, is_shape_inference_io, create_execution_context) -- infer/Core/Runtime.html,
  infer/Core/Engine.html
* IExecutionContext (set_input_shape, get_tensor_shape, set/get_tensor_address, set_output_allocator,
  execute_async_v3, set_all_tensors_debug_state, set_debug_listener), IOutputAllocator
  (reallocate_output_async, notify_shape), IDebugListener -- infer/Core/ExecutionContext.html
  (https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/ExecutionContext.html,
  https://docs.nvidia.com/deeplearning/tensorrt/11.4.0/_static/python-api/infer/Core/ExecutionContext.html)
* Logger / ILogger (Severity) -- infer/Core/Logger.html; init_libnvinfer_plugins -- infer/Plugin/IPluginRegistry.html
* IInt8EntropyCalibrator2 (get_batch_size, get_batch, read/write_calibration_cache), CalibrationAlgoType --
  infer/Int8/EntropyCalibrator2.html (10.x only; deprecated since 10.1)
* DataType and the ``trt.float32``/``float16``/``int8``/``int32``/... aliases -- infer/FoundationalTypes/DataType.html
* What 11 removed: "Removed Python APIs and Replacements",
  https://docs.nvidia.com/deeplearning/tensorrt/11.4.0/api/migration/tensorrt-10x-to-11x-python-api-reference.html
* NV_TENSORRT_VERSION in calibration-cache headers (major*10000+minor*100+patch from 10.0) and the
  "cache of another version is ignored, then the calibrator is asked for batches" behaviour --
  Developer Guide, "INT8 Calibration Using Python"; engines only deserialise in the TensorRT version
  that built them -- Developer Guide, "Version Compatibility".

Execution: a "built engine" serialises the network's ONNX; ``execute_async_v3``
runs it with ONNX Runtime (CPU) on the bytes behind the tensor addresses, so the
runner's results are real numbers that tests can compare. Device memory comes from
``tests/fake_tensorrt/cudart.py`` (the libcudart seam).
"""
import base64
import contextlib
import ctypes
import enum
import json
import sys
import types

import numpy as np

MAGIC = b"FAKETRT1"


class Record:
    """Everything the stand-in saw, for the tests' assertions."""

    def __init__(self):
        self.calls = []          # (api name, detail) in call order
        self.networks = []       # FakeNetwork objects
        self.builds = []         # one dict per build_serialized_network
        self.contexts = []       # FakeContext objects
        self.calibrator_caches = []  # bytes handed back by read_calibration_cache
        self.calibrator_batches = 0

    def names(self):
        return [c[0] for c in self.calls]


def _version_number(version):
    parts = [int(x) for x in version.split(".")[:3]]
    return parts[0] * 10000 + parts[1] * 100 + parts[2]


def make_module(version="10.3.0.26"):
    """A fresh ``tensorrt`` stand-in module for ``version`` (10.x or 11.x)."""
    major = int(version.split(".")[0])
    if major not in (10, 11):
        raise ValueError("the stand-in models TensorRT 10.x and 11.x only")
    m = types.ModuleType("tensorrt")
    m.__version__ = version
    m.__file__ = __file__
    rec = m._record = Record()

    def call(name, detail=None):
        rec.calls.append((name, detail))

    # -- enums -----------------------------------------------------------------
    flags10 = ["FP16", "INT8", "DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS",
               "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO",
               "REJECT_EMPTY_ALGORITHMS", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "FP8",
               "ERROR_ON_TIMING_CACHE_MISS", "BF16", "DISABLE_COMPILATION_CACHE", "STRIP_PLAN", "REFIT_IDENTICAL",
               "WEIGHT_STREAMING", "INT4", "REFIT_INDIVIDUAL", "STRICT_NANS", "MONITOR_MEMORY", "FP4"]
    removed11 = {"FP16", "INT8", "FP8", "BF16", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
                 "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO"}
    m.BuilderFlag = enum.IntEnum("BuilderFlag", [(n, i) for i, n in enumerate(flags10)
                                                 if major < 11 or n not in removed11])
    m.NetworkDefinitionCreationFlag = enum.IntEnum(
        "NetworkDefinitionCreationFlag", [("EXPLICIT_BATCH", 0), ("STRONGLY_TYPED", 1)])
    m.MemoryPoolType = enum.IntEnum("MemoryPoolType", [("WORKSPACE", 0), ("DLA_MANAGED_SRAM", 1),
                                                       ("DLA_LOCAL_DRAM", 2), ("DLA_GLOBAL_DRAM", 3),
                                                       ("TACTIC_DRAM", 4), ("TACTIC_SHARED_MEMORY", 5)])
    m.TensorIOMode = enum.IntEnum("TensorIOMode", [("NONE", 0), ("INPUT", 1), ("OUTPUT", 2)])
    m.DeviceType = enum.IntEnum("DeviceType", [("GPU", 0), ("DLA", 1)])
    m.TensorFormat = enum.IntEnum("TensorFormat", [("LINEAR", 0), ("CHW2", 1), ("HWC8", 2), ("CHW4", 3),
                                                   ("CHW16", 4), ("CHW32", 5), ("HWC", 8)])
    m.ProfilingVerbosity = enum.IntEnum("ProfilingVerbosity", [("LAYER_NAMES_ONLY", 0), ("NONE", 1),
                                                               ("DETAILED", 2)])
    m.OnnxParserFlag = enum.IntEnum("OnnxParserFlag", [("NATIVE_INSTANCENORM", 0)])
    m.LayerType = enum.IntEnum("LayerType", [("CONVOLUTION", 0), ("ACTIVATION", 1), ("POOLING", 2),
                                             ("SHUFFLE", 3), ("MATRIX_MULTIPLY", 4), ("ELEMENTWISE", 5),
                                             ("SHAPE", 6), ("QUANTIZE", 7), ("DEQUANTIZE", 8), ("CAST", 9),
                                             ("CONSTANT", 10), ("UNARY", 11), ("REDUCE", 12),
                                             ("IDENTITY", 13), ("RESIZE", 14), ("CONCATENATION", 15)])
    m.DataType = enum.IntEnum("DataType", [("FLOAT", 0), ("HALF", 1), ("INT8", 2), ("INT32", 3), ("BOOL", 4),
                                           ("UINT8", 5), ("INT64", 8)])
    for alias, dt in (("float32", "FLOAT"), ("float16", "HALF"), ("int8", "INT8"), ("int32", "INT32"),
                      ("bool", "BOOL"), ("uint8", "UINT8"), ("int64", "INT64")):
        setattr(m, alias, m.DataType[dt])
    np_of = {m.float32: np.float32, m.float16: np.float16, m.int8: np.int8, m.int32: np.int32,
             m.int64: np.int64, m.uint8: np.uint8, m.bool: np.bool_}
    onnx_to_trt = {1: m.float32, 10: m.float16, 3: m.int8, 6: m.int32, 7: m.int64, 2: m.uint8, 9: m.bool}

    # -- logger ----------------------------------------------------------------
    class ILogger:
        class Severity(enum.IntEnum):
            INTERNAL_ERROR = 0
            ERROR = 1
            WARNING = 2
            INFO = 3
            VERBOSE = 4

        def __init__(self):
            pass

        def log(self, severity, msg):  # pragma: no cover - overridden
            pass

    class Logger(ILogger):
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (ILogger.Severity(i) for i in range(5))

        def __init__(self, min_severity=None):
            super().__init__()

    m.ILogger, m.Logger = ILogger, Logger

    def init_libnvinfer_plugins(logger, namespace):
        call("init_libnvinfer_plugins", namespace)
        return True

    m.init_libnvinfer_plugins = init_libnvinfer_plugins

    class IHostMemory(bytes):
        """Bytes-like (buffer protocol), usable as a context manager like the real one."""

        @property
        def nbytes(self):
            return len(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    m.IHostMemory = IHostMemory

    # -- network ---------------------------------------------------------------
    class ITensor:
        def __init__(self, name, dtype, shape):
            self.name, self.dtype, self.shape = name, dtype, tuple(shape)
            self.is_shape_tensor = False

    class ILayer:
        def __init__(self, name, type_):
            self.name, self.type = name, type_
            self.precision_is_set = False

    _layer_of_op = {"Conv": "CONVOLUTION", "Relu": "ACTIVATION", "GlobalAveragePool": "POOLING",
                    "Flatten": "SHUFFLE", "Gemm": "MATRIX_MULTIPLY", "QuantizeLinear": "QUANTIZE",
                    "DequantizeLinear": "DEQUANTIZE", "Cast": "CAST", "Add": "ELEMENTWISE",
                    # more ops TensorRT's ONNX parser imports (a user's model: mean over H/W, scale, Linear)
                    "Mul": "ELEMENTWISE", "ReduceSum": "REDUCE", "ReduceMean": "REDUCE", "MatMul": "MATRIX_MULTIPLY",
                    "Reshape": "SHUFFLE", "Identity": "IDENTITY",
                    # a UNet's (issue 22: dynamic H and W)
                    "MaxPool": "POOLING", "Resize": "RESIZE", "Concat": "CONCATENATION"}

    class INetworkDefinition:
        def __init__(self, flags):
            self.flags = int(flags)
            # 11.x: strongly typed always; 10.x: only when created with the flag
            self.strongly_typed = (major >= 11
                                   or bool(self.flags & (1 << int(m.NetworkDefinitionCreationFlag.STRONGLY_TYPED))))
            self.inputs, self.outputs, self.layers = [], [], []
            self.onnx = None
            self.name = "network"

        num_inputs = property(lambda self: len(self.inputs))
        num_outputs = property(lambda self: len(self.outputs))
        num_layers = property(lambda self: len(self.layers))

        def get_input(self, i):
            return self.inputs[i]

        def get_output(self, i):
            return self.outputs[i]

        def get_layer(self, i):
            return self.layers[i]

        def __iter__(self):
            return iter(self.layers)

        def get_flag(self, flag):
            if int(flag) == int(m.NetworkDefinitionCreationFlag.STRONGLY_TYPED):
                return self.strongly_typed
            return bool(self.flags & (1 << int(flag)))

    m.INetworkDefinition = INetworkDefinition

    class OnnxParser:
        def __init__(self, network, logger):
            call("OnnxParser", None)
            self.network, self.logger, self.errors = network, logger, []
            self.flags = 0

        num_errors = property(lambda self: len(self.errors))

        def get_error(self, i):
            return self.errors[i]

        def clear_flag(self, flag):
            self.flags &= ~(1 << int(flag))

        def parse_from_file(self, path):
            call("OnnxParser.parse_from_file", path)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                self.errors.append(f"Failed to open {path}: {e.strerror}")
                return False
            return self.parse(data, path)

        def parse(self, model, path=None):
            import onnx

            try:
                proto = onnx.load_from_string(bytes(model))
                onnx.checker.check_model(proto)
            except Exception as e:
                self.errors.append(f"ModelImporter: failed to parse the ONNX model: {type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else ''}")
                return False
            g, net = proto.graph, self.network
            supported = set(_layer_of_op)
            bad = [n.op_type for n in g.node if n.op_type not in supported]
            if bad:
                self.errors.append(f"In node 0 (importNode): UNSUPPORTED_NODE: No importer registered for op: {bad[0]}")
                return False
            inits = {t.name for t in g.initializer}
            for vi, into in ((g.input, net.inputs), (g.output, net.outputs)):
                for v in vi:
                    if v.name in inits:
                        continue
                    tt = v.type.tensor_type
                    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
                    into.append(ITensor(v.name, onnx_to_trt[tt.elem_type], dims))
            net.layers = [ILayer(n.name or f"{n.op_type}_{i}", m.LayerType[_layer_of_op[n.op_type]])
                          for i, n in enumerate(g.node)]
            net.onnx = bytes(model)
            return True

    m.OnnxParser = OnnxParser

    # -- profiles, timing cache, config ------------------------------------------
    class IOptimizationProfile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, min, opt, max):
            call("IOptimizationProfile.set_shape", (name, tuple(min), tuple(opt), tuple(max)))
            self.shapes[name] = (tuple(min), tuple(opt), tuple(max))

        def get_shape(self, name):
            return list(self.shapes[name])

        def __bool__(self):  # valid: min <= opt <= max in every dimension
            return bool(self.shapes) and all(
                len(a) == len(b) == len(c) and all(x <= y <= z for x, y, z in zip(a, b, c))
                for a, b, c in self.shapes.values())

    m.IOptimizationProfile = IOptimizationProfile

    device_key = "fake-gpu-sm90"

    class ITimingCache:
        """Entries are ``layer signature -> tactic``; the header names version and device."""

        def __init__(self, entries=None):
            self.entries = dict(entries or {})

        def serialize(self):
            call("ITimingCache.serialize", len(self.entries))
            doc = {"version": version, "device": device_key, "entries": self.entries}
            return IHostMemory(b"FAKETC1\n" + json.dumps(doc, sort_keys=True).encode())

        def combine(self, other, ignore_mismatch):
            call("ITimingCache.combine", (len(other.entries), ignore_mismatch))
            for k, v in other.entries.items():
                self.entries.setdefault(k, v)  # conflicting entries are skipped
            return True

        def reset(self):
            self.entries.clear()
            return True

    m.ITimingCache = ITimingCache

    def _parse_timing_cache(blob):
        """(entries, header ok) or None for a blob that is not a timing cache."""
        blob = bytes(blob)
        if not blob:
            return {}, True
        if not blob.startswith(b"FAKETC1\n"):
            return None
        doc = json.loads(blob[8:].decode())
        return doc["entries"], (doc["version"] == version and doc["device"] == device_key)

    class IBuilderConfig:
        def __init__(self):
            self._flags = {m.BuilderFlag.TF32}  # TensorRT's default: TF32 allowed
            self.pools = {}
            self.profiles = []
            self.timing_cache = None
            self.profiling_verbosity = m.ProfilingVerbosity.LAYER_NAMES_ONLY
            self.DLA_core = -1
            self.default_device_type = m.DeviceType.GPU

        def set_flag(self, flag):
            call("IBuilderConfig.set_flag", flag.name)
            self._flags.add(flag)

        def clear_flag(self, flag):
            call("IBuilderConfig.clear_flag", flag.name)
            self._flags.discard(flag)

        def get_flag(self, flag):
            return flag in self._flags

        def set_memory_pool_limit(self, pool, size):
            call("IBuilderConfig.set_memory_pool_limit", (pool.name, int(size)))
            self.pools[pool] = int(size)

        def get_memory_pool_limit(self, pool):
            return self.pools.get(pool, 80 << 30)

        def add_optimization_profile(self, profile):
            call("IBuilderConfig.add_optimization_profile", dict(profile.shapes))
            if not profile:
                return -1
            self.profiles.append(profile)
            return len(self.profiles) - 1

        num_optimization_profiles = property(lambda self: len(self.profiles))

        def create_timing_cache(self, blob):
            call("IBuilderConfig.create_timing_cache", len(bytes(blob)))
            parsed = _parse_timing_cache(blob)
            if parsed is None:
                return None  # (the real one logs an error)
            cache = ITimingCache(parsed[0])
            cache.header_ok = parsed[1]
            return cache

        def set_timing_cache(self, cache, ignore_mismatch):
            call("IBuilderConfig.set_timing_cache", (len(cache.entries), ignore_mismatch))
            if not getattr(cache, "header_ok", True) and not ignore_mismatch:
                return False
            self.timing_cache = cache
            return True

        def get_timing_cache(self):
            return self.timing_cache

    class IBuilderConfig10(IBuilderConfig):
        int8_calibrator = None

        def set_calibration_profile(self, profile):
            call("IBuilderConfig.set_calibration_profile", dict(profile.shapes))
            self.calibration_profile = profile
            return True

        def get_calibration_profile(self):
            return getattr(self, "calibration_profile", None)

    config_cls = IBuilderConfig10 if major < 11 else IBuilderConfig
    m.IBuilderConfig = config_cls

    # -- calibrator (10.x only) --------------------------------------------------
    if major < 11:
        m.CalibrationAlgoType = enum.IntEnum("CalibrationAlgoType", [("LEGACY_CALIBRATION", 0),
                                                                     ("ENTROPY_CALIBRATION", 1),
                                                                     ("ENTROPY_CALIBRATION_2", 2),
                                                                     ("MINMAX_CALIBRATION", 3)])

        class IInt8Calibrator:
            def __init__(self):
                pass

        class IInt8EntropyCalibrator2(IInt8Calibrator):
            def get_algorithm(self):
                return m.CalibrationAlgoType.ENTROPY_CALIBRATION_2

        m.IInt8Calibrator, m.IInt8EntropyCalibrator2 = IInt8Calibrator, IInt8EntropyCalibrator2

    # -- builder -------------------------------------------------------------------
    class Builder:
        def __init__(self, logger):
            call("Builder", None)
            self.logger = logger

        def create_network(self, flags=0):
            call("Builder.create_network", int(flags))
            net = INetworkDefinition(flags)
            rec.networks.append(net)
            return net

        def create_builder_config(self):
            call("Builder.create_builder_config", None)
            return config_cls()

        def create_optimization_profile(self):
            return IOptimizationProfile()

        def _error(self, msg):
            self.logger.log(Logger.ERROR, msg)
            return None

        def _calibrate(self, config, net):
            """Implicit quantization: the cache is used only when its header names this
            TensorRT and it has a scale for every network input; otherwise TensorRT
            asks the calibrator for batches."""
            cal = config.int8_calibrator
            cache = cal.read_calibration_cache()
            rec.calibrator_caches.append(None if cache is None else bytes(cache))
            header = f"TRT-{_version_number(version)}-EntropyCalibration2"
            lines = bytes(cache or b"").decode("ascii", "replace").splitlines()
            names = {ln.split(": ")[0] for ln in lines[1:]}
            if lines and lines[0] == header and all(t.name in names for t in net.inputs):
                return True
            cal.get_batch_size()
            rec.calibrator_batches += 1
            batch = cal.get_batch([t.name for t in net.inputs])
            if batch is None:
                self._error("Calibration failure occurred with no scaling factors detected.")
                return False
            cal.write_calibration_cache(b"")  # pragma: no cover - ofconvert's calibrator has no data
            return True  # pragma: no cover

        def build_serialized_network(self, network, config):
            flags = sorted(f.name for f in config._flags)
            call("Builder.build_serialized_network", flags)
            net = network
            build = {"flags": flags, "strongly_typed": net.strongly_typed, "network_flags": net.flags,
                     "pools": {p.name: v for p, v in config.pools.items()},
                     "profiles": [dict(p.shapes) for p in config.profiles], "timed": 0, "cache_hits": 0,
                     "calibrator": getattr(config, "int8_calibrator", None) is not None}
            rec.builds.append(build)
            if not config.profiles and any(-1 in t.shape for t in net.inputs):
                return self._error("Network has dynamic or shape inputs, but no optimization profile has been defined.")
            for t in net.inputs:
                prof = config.profiles[0].shapes.get(t.name)
                if prof is None or any(len(s) != len(t.shape) or any(d != -1 and d != x for d, x in zip(t.shape, s))
                                       for s in prof):
                    return self._error(f"{t.name}: optimization profile {prof} does not match "
                                       f"the input shape {t.shape}")
            if net.strongly_typed and ({"FP16", "INT8", "BF16", "FP8"} & set(flags)):
                return self._error("FP16/INT8 builder flags cannot be set for a strongly typed network")
            qdq = any(layer.type in (m.LayerType.QUANTIZE, m.LayerType.DEQUANTIZE) for layer in net)
            if "INT8" in flags and not qdq:
                if getattr(config, "int8_calibrator", None) is None:
                    return self._error("Int8 mode without a calibrator or dynamic ranges")
                if not self._calibrate(config, net):
                    return None
            if config.timing_cache is not None:  # every layer is timed once per cache
                precision = "int8" if qdq or "INT8" in flags else "fp16" if "FP16" in flags else "fp32"
                for layer in net:
                    key = f"{layer.type.name}:{layer.name}:{precision}:tf32={m.BuilderFlag.TF32 in config._flags}"
                    if key in config.timing_cache.entries:
                        build["cache_hits"] += 1
                    else:
                        config.timing_cache.entries[key] = f"tactic-{len(config.timing_cache.entries)}"
                        build["timed"] += 1
            doc = {"version": version, "inputs": [[t.name, int(t.dtype), list(t.shape)] for t in net.inputs],
                   "outputs": [[t.name, int(t.dtype), list(t.shape)] for t in net.outputs],
                   "profile": {k: [list(s) for s in v] for k, v in config.profiles[0].shapes.items()},
                   "flags": flags, "strongly_typed": net.strongly_typed,
                   "onnx": base64.b64encode(net.onnx).decode()}
            return IHostMemory(MAGIC + json.dumps(doc).encode())

    m.Builder = Builder

    # -- runtime -------------------------------------------------------------------
    class IOutputAllocator:
        def __init__(self):
            pass

    class IDebugListener:
        def __init__(self):
            pass

    m.IOutputAllocator, m.IDebugListener = IOutputAllocator, IDebugListener

    class ICudaEngine:
        def __init__(self, doc):
            self.doc = doc
            self.io = [(n, m.TensorIOMode.INPUT, m.DataType(d), tuple(s)) for n, d, s in doc["inputs"]]
            self.io += [(n, m.TensorIOMode.OUTPUT, m.DataType(d), tuple(s)) for n, d, s in doc["outputs"]]
            self._by_name = {t[0]: t for t in self.io}
            self._session = None

        num_io_tensors = property(lambda self: len(self.io))
        num_optimization_profiles = 1

        def get_tensor_name(self, i):
            return self.io[i][0]

        def get_tensor_mode(self, name):
            return self._by_name[name][1] if name in self._by_name else m.TensorIOMode.NONE

        def get_tensor_dtype(self, name):
            return self._by_name[name][2]

        def get_tensor_shape(self, name):
            return self._by_name[name][3]

        def get_tensor_profile_shape(self, name, profile_index):
            call("ICudaEngine.get_tensor_profile_shape", (name, profile_index))
            return [tuple(s) for s in self.doc["profile"][name]]

        def get_tensor_format(self, name, profile_index=0):
            return m.TensorFormat.LINEAR

        def is_shape_inference_io(self, name):
            return False

        def create_execution_context(self, strategy=None):
            call("ICudaEngine.create_execution_context", None)
            ctx = IExecutionContext(self)
            rec.contexts.append(ctx)
            return ctx

        def serialize(self):
            return IHostMemory(MAGIC + json.dumps(self.doc).encode())

        def session(self):
            if self._session is None:
                import onnxruntime as ort

                so = ort.SessionOptions()
                so.intra_op_num_threads = 1
                self._session = ort.InferenceSession(base64.b64decode(self.doc["onnx"]), sess_options=so,
                                                     providers=["CPUExecutionProvider"])
            return self._session

    class IExecutionContext:
        def __init__(self, engine):
            self.engine = engine
            self.shapes = {n: s for n, mode, _, s in engine.io if mode == m.TensorIOMode.INPUT}
            self.addresses = {}
            self.allocators = {}
            self.active_optimization_profile = 0
            self.executions = []   # input shapes of each execute_async_v3

        def set_input_shape(self, name, shape):
            call("IExecutionContext.set_input_shape", (name, tuple(shape)))
            lo, _, hi = self.engine.doc["profile"][name]
            if len(shape) != len(lo) or not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
                return False
            self.shapes[name] = tuple(int(d) for d in shape)
            return True

        def get_tensor_shape(self, name):
            if name in self.shapes:
                return self.shapes[name]
            out = self.engine.get_tensor_shape(name)
            batch = next(iter(self.shapes.values()))[0]
            return tuple(batch if d == -1 else d for d in out)

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = int(ptr)
            return True

        def get_tensor_address(self, name):
            return self.addresses.get(name, 0)

        def set_output_allocator(self, name, allocator):
            self.allocators[name] = allocator
            return True

        def set_all_tensors_debug_state(self, flag):
            return True

        def set_debug_listener(self, listener):
            return True

        def execute_async_v3(self, stream_handle):
            call("IExecutionContext.execute_async_v3", int(stream_handle))
            eng = self.engine
            feed = {}
            for name, mode, dtype, _ in eng.io:
                if mode != m.TensorIOMode.INPUT:
                    continue
                shape, npdt = self.shapes[name], np.dtype(np_of[dtype])
                if any(d < 0 for d in shape) or name not in self.addresses:
                    return False
                nbytes = int(np.prod(shape)) * npdt.itemsize
                feed[name] = np.frombuffer(ctypes.string_at(self.addresses[name], nbytes), npdt).reshape(shape)
            self.executions.append({k: v.shape for k, v in feed.items()})
            outs = eng.session().run(None, feed)
            for (name, mode, dtype, _), value in zip([t for t in eng.io if t[1] == m.TensorIOMode.OUTPUT], outs):
                value = np.ascontiguousarray(value, dtype=np_of[dtype])
                alloc = self.allocators.get(name)
                if alloc is None:
                    return False
                ptr = alloc.reallocate_output_async(name, 0, value.nbytes, 256, stream_handle)
                ctypes.memmove(int(ptr), value.ctypes.data, value.nbytes)
                alloc.notify_shape(name, tuple(value.shape))
            return True

    m.ICudaEngine, m.IExecutionContext = ICudaEngine, IExecutionContext

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            call("Runtime.deserialize_cuda_engine", None)
            data = bytes(data)
            if not data.startswith(MAGIC):
                self.logger.log(Logger.ERROR, "IRuntime::deserializeCudaEngine: Error Code 1: Serialization "
                                              "(Serialization assertion magicTagRead == kMAGIC_TAG failed.)")
                return None
            doc = json.loads(data[len(MAGIC):].decode())
            if doc["version"] != version:
                self.logger.log(Logger.ERROR, "IRuntime::deserializeCudaEngine: The engine plan file is not compatible "
                                              f"with this version of TensorRT, expecting library version {version} "
                                              f"got {doc['version']}, please rebuild.")
                return None
            return ICudaEngine(doc)

    m.Runtime = Runtime
    return m


@contextlib.contextmanager
def installed(version="10.3.0.26", gpu_name="NVIDIA H200", compute_capability=(9, 0)):
    """``sys.modules["tensorrt"]`` = a fresh stand-in, and libcudart = the fake in
    ``cudart.py``, for the duration of the block; everything restored after.

    Polygraphy resolves ``tensorrt`` lazily, once per ``LazyModule`` (each of its
    modules holds one) and caches a logger subclassing ``trt.ILogger``; both caches
    are reset on entry and exit so that each test sees its own flavour and nothing
    of it outlives the test."""
    from . import cudart

    saved = sys.modules.get("tensorrt")
    trt = make_module(version)
    sys.modules["tensorrt"] = trt
    _reset_polygraphy_caches()
    try:
        with cudart.installed(gpu_name, compute_capability) as lib:
            trt._cudart = lib
            yield trt
    finally:
        if saved is None:
            sys.modules.pop("tensorrt", None)
        else:  # pragma: no cover - a real tensorrt was imported
            sys.modules["tensorrt"] = saved
        _reset_polygraphy_caches()


def _reset_polygraphy_caches():
    import polygraphy.backend.trt.util as trt_util

    trt_util.TRT_LOGGER = None
    for name, mod in list(sys.modules.items()):
        if not name.startswith("polygraphy") or mod is None:
            continue
        for value in list(vars(mod).values()):
            if type(value).__name__ == "LazyModule":
                object.__setattr__(value, "module", None)
