"""The TensorRT side of the engine builder (the only builder code that touches
``tensorrt``), plus the cuda-python calls both the builder and the runner need.

Written against the documented TensorRT 10.x / 11.x Python API (checked calls and
versions: docs/tensorrt.md). ``tensorrt`` and ``cuda-python`` are imported lazily,
inside functions: importing this module works everywhere. Decisions (profile,
strategy, caches, sidecar) are made in ``engine.py``; this module only executes
a ``BuildRequest``.
"""
import dataclasses
import logging
from typing import Optional, Tuple

from .errors import BackendUnavailableError, CalibrationCacheError, OfconvertError

LOG = logging.getLogger("ofconvert.tensorrt")

CUDA_PYTHON_HINT = ("cuda-python is not installed (needed for GPU queries, device buffers and streams "
                    "next to TensorRT): pip install cuda-python")


# ---------------------------------------------------------------------------
# Imports
# ---------------------------------------------------------------------------
def load_tensorrt():
    """The ``tensorrt`` module, or BackendUnavailableError naming what to install."""
    from .trt_info import TRT_INSTALL_HINT

    try:
        import tensorrt as trt
    except (ImportError, OSError):  # OSError: the wheel is there but libnvinfer is not loadable
        raise BackendUnavailableError(TRT_INSTALL_HINT) from None
    if not hasattr(trt, "Builder"):  # a namespace/stub package, not the real bindings
        raise BackendUnavailableError(TRT_INSTALL_HINT)
    return trt


def tensorrt_version(trt) -> str:
    return str(trt.__version__)


def tensorrt_major(trt) -> int:
    from .trt_info import parse_version

    return parse_version(trt.__version__)[0]


def load_cudart():
    """cuda-python's runtime module (``cuda.bindings.runtime``; ``cuda.cudart`` before cuda-python 12.6)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise BackendUnavailableError(CUDA_PYTHON_HINT) from None
    return cudart


def cuda_call(cudart, result, what, error=RuntimeError):
    """Unpack a cuda-python ``(cudaError_t, *values)`` tuple, raising on error."""
    err, values = result[0], result[1:]
    if err != cudart.cudaError_t.cudaSuccess:
        name = cudart.cudaGetErrorName(err)[1]
        name = name.decode() if isinstance(name, bytes) else str(name)
        raise error(f"CUDA {what} failed: {name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def gpu_info(device=0) -> dict:
    """{"name", "compute_capability", "device"} of a CUDA device."""
    cudart = load_cudart()
    prop = cuda_call(cudart, cudart.cudaGetDeviceProperties(device), f"cudaGetDeviceProperties({device})",
                     error=BackendUnavailableError)
    name = prop.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace")
    return {"name": str(name).strip(), "compute_capability": f"{prop.major}.{prop.minor}", "device": int(device)}


# ---------------------------------------------------------------------------
# Logger
# ---------------------------------------------------------------------------
def make_logger(trt):
    """A trt.ILogger that forwards to Python logging and keeps the error messages
    (so a failed build can say why in one line)."""

    class CollectingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)  # documented: explicitly initialise the trampoline base
            self.errors = []

        def log(self, severity, msg):
            sev = int(severity)
            if sev <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg))
                LOG.error(msg)
            elif sev == int(trt.ILogger.Severity.WARNING):
                LOG.warning(msg)
            elif sev == int(trt.ILogger.Severity.INFO):
                LOG.info(msg)
            else:
                LOG.debug(msg)

        def last_error(self):
            return self.errors[-1].splitlines()[0] if self.errors else "see the TensorRT log above"

    return CollectingLogger()


# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BuildRequest:
    onnx_path: str
    plan: object                      # engine.BuildPlan
    input_name: str
    shapes: Tuple[tuple, tuple, tuple]  # min, opt, max input shapes
    workspace_bytes: Optional[int] = None
    timing_cache: Optional[bytes] = None    # None: no timing cache; b"": start an empty one
    calibration_cache: Optional[bytes] = None  # plan.calibrator: cache re-targeted to this TensorRT


@dataclasses.dataclass(frozen=True)
class BuildResult:
    engine: bytes
    timing_cache: Optional[bytes]


def make_cache_calibrator(trt, cache: bytes, batch_size: int):
    """IInt8EntropyCalibrator2 (TensorRT 10; removed in 11) that answers
    read_calibration_cache with our cache and has no data: if TensorRT asks for
    batches, the cache did not fit the network."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches_requested = 0

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names):
            self.batches_requested += 1
            return None  # no calibration data: ofconvert calibrates with its own tool

        def read_calibration_cache(self):
            return cache

        def write_calibration_cache(self, data):
            pass  # never overwrite the project's cache

    return CacheCalibrator()


def _attach_timing_cache(config, data: bytes):
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return cache
    LOG.warning("TensorRT rejected the timing cache (another TensorRT version or GPU?); starting an empty one")
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def build_serialized_engine(trt, req: BuildRequest) -> BuildResult:
    """Parse the ONNX, configure the builder as ``req.plan`` says, build."""
    major = tensorrt_major(trt)
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    if req.plan.strongly_typed and major < 11:  # deprecated (always on, ignored) in TensorRT 11
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(req.onnx_path):
        errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        first = errs[0].splitlines()[0] if errs else logger.last_error()
        raise OfconvertError(f"TensorRT {trt.__version__} cannot parse {req.onnx_path}: {first}")

    config = builder.create_builder_config()
    if req.workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(req.workspace_bytes))
    for name in req.plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, name))

    profile = builder.create_optimization_profile()
    profile.set_shape(req.input_name, *[tuple(int(d) for d in s) for s in req.shapes])
    if config.add_optimization_profile(profile) < 0:
        raise OfconvertError(f"TensorRT refused the optimization profile {req.shapes} for {req.input_name!r}: "
                             f"{logger.last_error()}")

    calibrator = None
    if req.plan.calibrator:
        calibrator = make_cache_calibrator(trt, req.calibration_cache, batch_size=req.shapes[1][0])
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)  # dynamic batch: the calibrator needs a profile

    timing = _attach_timing_cache(config, req.timing_cache) if req.timing_cache is not None else None

    plan = builder.build_serialized_network(network, config)
    if calibrator is not None and calibrator.batches_requested:
        raise CalibrationCacheError("TensorRT did not accept the calibration cache for this network and asked for "
                                    "calibration data; regenerate the cache from this ONNX")
    if plan is None:
        raise OfconvertError(f"TensorRT {trt.__version__} failed to build an engine from {req.onnx_path}: "
                             f"{logger.last_error()}")
    # the builder adds its measurements to the cache attached to the config
    timing_bytes = bytes(memoryview(config.get_timing_cache().serialize())) if timing is not None else None
    return BuildResult(engine=bytes(memoryview(plan)), timing_cache=timing_bytes)
