"""The only ofconvert module that calls TensorRT, and it does so through
Polygraphy's loaders (``polygraphy.backend.trt``): parse, configure, build,
deserialise; plus our cache-only calibrator and the GPU query (through
Polygraphy's CUDA wrapper). Decisions are made elsewhere (``plan``, ``caches``,
``sidecar``); this module executes a ``BuildRequest``.

``tensorrt`` and ``polygraphy`` are imported inside functions only. Polygraphy
prints its messages (TensorRT's errors included) to stdout; during our calls it
is quieted and its errors are collected so that a failure becomes one line of
one of our typed errors (``ofconvert.errors``).
"""
import contextlib
import ctypes
import dataclasses
import importlib
import io
import logging
import os
import re
import tempfile
from typing import Optional, Tuple

from ..errors import (
    BackendUnavailableError,
    CalibrationCacheError,
    EngineCompatibilityError,
    OfconvertError,
    first_line,
)

LOG = logging.getLogger("ofconvert.tensorrt")

POLYGRAPHY_HINT = "polygraphy is not installed (ofconvert drives TensorRT through it): pip install polygraphy"
CUDA_HINT = ("the CUDA runtime (libcudart) cannot be loaded or sees no GPU: TensorRT engines need an NVIDIA GPU "
             "and its driver (pip install nvidia-cuda-runtime-cu12 provides libcudart)")

# cudaDeviceGetAttribute attributes (CUDA runtime API, cudaDeviceAttr)
_CC_MAJOR, _CC_MINOR = 75, 76


# ---------------------------------------------------------------------------
# Imports, versions, GPU
# ---------------------------------------------------------------------------
def load_tensorrt():
    """The ``tensorrt`` module (with Polygraphy beside it), or BackendUnavailableError
    naming what to install."""
    from ..trt_info import TRT_INSTALL_HINT

    try:
        import tensorrt as trt
    except (ImportError, OSError):  # OSError: the wheel is there but libnvinfer is not loadable
        raise BackendUnavailableError(TRT_INSTALL_HINT) from None
    if not hasattr(trt, "Builder"):  # a namespace/stub package, not the real bindings
        raise BackendUnavailableError(TRT_INSTALL_HINT)
    try:
        importlib.import_module("polygraphy.backend.trt")
    except ImportError:
        raise BackendUnavailableError(POLYGRAPHY_HINT) from None
    return trt


def tensorrt_version(trt) -> str:
    return str(trt.__version__)


def tensorrt_major(trt) -> int:
    from ..trt_info import parse_version

    return parse_version(trt.__version__)[0]


def _cudart():
    """libcudart, as loaded by Polygraphy's CUDA wrapper (the one TrtRunner uses)."""
    from polygraphy import cuda
    from polygraphy.exception import PolygraphyException

    try:
        with quiet_polygraphy():
            return cuda.wrapper().handle
    except (OSError, PolygraphyException):
        raise BackendUnavailableError(CUDA_HINT) from None


def _cuda_check(status, what):
    if status != 0:
        raise BackendUnavailableError(f"CUDA {what} failed (cudaError {status}): no usable NVIDIA GPU here?")


def set_device(device=0):
    _cuda_check(_cudart().cudaSetDevice(int(device)), f"cudaSetDevice({device})")


def gpu_info(device=0) -> dict:
    """{"name", "compute_capability", "device"} of a CUDA device, from libcudart."""
    lib = _cudart()
    major, minor = ctypes.c_int(), ctypes.c_int()
    _cuda_check(lib.cudaDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, int(device)), "cudaDeviceGetAttribute")
    _cuda_check(lib.cudaDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, int(device)), "cudaDeviceGetAttribute")
    # cudaDeviceProp starts with `char name[256]` in every CUDA version; the rest of the
    # struct (about 1 KiB, its size varies by version) lands in the oversized buffer.
    props = ctypes.create_string_buffer(8192)
    _cuda_check(lib.cudaGetDeviceProperties(props, int(device)), "cudaGetDeviceProperties")
    name = props.raw[:256].split(b"\0", 1)[0].decode("utf-8", "replace").strip()
    return {"name": name, "compute_capability": f"{major.value}.{minor.value}", "device": int(device)}


# ---------------------------------------------------------------------------
# Polygraphy's logger and exceptions
# ---------------------------------------------------------------------------
_PREFIX = re.compile(r"^\[[^\]]{1,2}\]\s*")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _Collect(logging.Handler):
    def __init__(self, sink):
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record):
        text = _ANSI.sub("", _PREFIX.sub("", str(record.getMessage()))).strip()
        if text:
            self.sink.append(text)


@contextlib.contextmanager
def quiet_polygraphy():
    """Polygraphy prints everything to stdout/stderr; the CLI prints one line.
    Inside this block Polygraphy's messages go to Python logging instead, its
    errors (TensorRT's and the ONNX parser's among them) are collected in the
    yielded list, nothing is printed, and its settings are restored after."""
    from polygraphy.logger import G_LOGGER

    errors = []
    pylog = logging.getLogger("Polygraphy")
    handler = _Collect(errors)
    saved = (G_LOGGER._use_python_logging_system, G_LOGGER.colors, pylog.propagate)  # noqa: SLF001 (no getter)
    G_LOGGER.use_python_logging_system = True
    G_LOGGER.colors = False  # (else its first message prints a hint about the 'colored' module)
    pylog.addHandler(handler)
    pylog.propagate = False
    try:
        with G_LOGGER.verbosity(G_LOGGER.ERROR):
            yield errors
    finally:
        pylog.removeHandler(handler)
        G_LOGGER._use_python_logging_system, G_LOGGER.colors, pylog.propagate = saved  # noqa: SLF001


def _why(exc, errors):
    """The most specific one-line reason: the first TensorRT/parser error collected,
    else Polygraphy's own message."""
    msg = first_line(exc, default="see the TensorRT log")
    return first_line(errors[0], default="see the TensorRT log") if errors and errors[0] != msg else msg


# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BuildRequest:
    onnx_path: str
    plan: object                      # plan.BuildPlan
    input_name: str
    shapes: Tuple[tuple, tuple, tuple]  # min, opt, max input shapes
    workspace_bytes: Optional[int] = None
    timing_cache: Optional[bytes] = None    # None: no timing cache; b"": start an empty one
    timing_cache_path: Optional[str] = None  # where the builder's cache is saved (atomically)
    calibration_cache: Optional[bytes] = None  # plan.calibrator: cache re-targeted to this TensorRT


class _ReadOnlyBlob(io.BytesIO):
    mode = "rb"  # Polygraphy's load_file checks the mode of the file-like objects it reads


def make_cache_calibrator(trt, cache: bytes, batch_size: int):
    """IInt8EntropyCalibrator2 (TensorRT 10; removed in 11) that answers
    read_calibration_cache with our cache and has no data: if TensorRT asks for
    batches, the cache did not fit the network. It never writes a cache and never
    asks for images (ofconvert calibrates with its own tool)."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)  # documented: initialise the trampoline base
            self.batches_requested = 0

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names):
            self.batches_requested += 1
            return None  # no calibration data: TensorRT then stops calibrating

        def read_calibration_cache(self):
            return cache

        def write_calibration_cache(self, data):
            pass  # never overwrite the project's cache

    return CacheCalibrator()


def build_serialized_engine(trt, req: BuildRequest) -> bytes:
    """Parse the ONNX, configure the builder as ``req.plan`` says, build; the
    timing cache (if any) is merged by Polygraphy and written atomically."""
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath, Profile
    from polygraphy.exception import PolygraphyException

    from .. import fileio

    plan, version = req.plan, tensorrt_version(trt)
    calibrator = make_cache_calibrator(trt, req.calibration_cache, req.shapes[1][0]) if plan.calibrator else None
    profile = Profile().add(req.input_name, min=req.shapes[0], opt=req.shapes[1], max=req.shapes[2])
    config = CreateConfig(
        # TF32 on: TensorRT's own default, which our accuracy thresholds were set with
        # (fp32 engines: top-1 agreement 100 %, worst cosine >= 0.999 vs ONNX Runtime CPU);
        # Polygraphy's CreateConfig clears it unless asked, which would make fp32 engines
        # (and the fp32 layers of fp16/int8 ones) several times slower on Ampere and newer.
        tf32=True,
        fp16="FP16" in plan.flags, int8="INT8" in plan.flags, calibrator=calibrator, profiles=[profile],
        memory_pool_limits={trt.MemoryPoolType.WORKSPACE: int(req.workspace_bytes)} if req.workspace_bytes else None,
        # a file-like object: Polygraphy then leaves no lock file beside the user's cache
        load_timing_cache=None if req.timing_cache is None else _ReadOnlyBlob(req.timing_cache))
    # TensorRT 11 networks are always strongly typed and the creation flag is deprecated there
    network = NetworkFromOnnxPath(req.onnx_path, strongly_typed=plan.strongly_typed and tensorrt_major(trt) < 11)
    with quiet_polygraphy() as errors, contextlib.ExitStack() as stack:
        save = None
        if req.timing_cache is not None and req.timing_cache_path:
            # Polygraphy merges the builder's timing cache into this anonymous temp file;
            # the user's file is then replaced atomically, and only if there is a cache
            save = stack.enter_context(tempfile.TemporaryFile(mode="wb+", dir=os.path.dirname(
                os.path.abspath(req.timing_cache_path))))
        try:
            engine = EngineBytesFromNetwork(network, config, save_timing_cache=save)()
        except PolygraphyException as e:
            if calibrator is not None and calibrator.batches_requested:
                raise CalibrationCacheError("TensorRT did not accept the calibration cache for this network and asked "
                                            "for calibration data; regenerate the cache from this ONNX") from None
            if "parse ONNX" in str(e):
                raise OfconvertError(f"TensorRT {version} cannot parse {req.onnx_path}: {_why(e, errors)}") from None
            raise OfconvertError(f"TensorRT {version} failed to build an engine from {req.onnx_path}: "
                                 f"{_why(e, errors)}") from None
        if save is not None:
            save.seek(0)
            merged = save.read()
            if merged:
                fileio.write_bytes(req.timing_cache_path, merged)
            else:  # TensorRT refused the cache it was given (set_timing_cache: header mismatch)
                LOG.warning("TensorRT %s did not accept the timing cache %s (made by another TensorRT or for another "
                            "GPU); it was left as it was", version, req.timing_cache_path)
    return bytes(memoryview(engine))


# ---------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------
def activate_runner(engine_bytes: bytes, engine_path, version, name="trt"):
    """Polygraphy's TrtRunner over a deserialised engine, activated (its CUDA stream and
    output allocator ready). EngineCompatibilityError when TensorRT cannot load it."""
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    from polygraphy.exception import PolygraphyException

    with quiet_polygraphy() as errors:
        try:
            engine = EngineFromBytes(engine_bytes)()
        except PolygraphyException as e:
            raise EngineCompatibilityError(f"TensorRT {version} cannot load {engine_path}: {_why(e, errors)}; "
                                           "rebuild it here (ofconvert MODEL --to trt)") from None
        runner = TrtRunner(engine, name=name)
        try:
            runner.activate()
        except PolygraphyException as e:
            raise OfconvertError(f"TensorRT could not create an execution context for {engine_path}: "
                                 f"{_why(e, errors)} (out of GPU memory?)") from None
    return runner


def run(runner, feed):
    """``runner.infer(feed)``, quiet, Polygraphy's failures as OfconvertError."""
    from polygraphy.exception import PolygraphyException

    with quiet_polygraphy() as errors:
        try:
            return runner.infer(feed)
        except PolygraphyException as e:
            raise OfconvertError(f"TensorRT inference failed: {_why(e, errors)}") from None


def deactivate_runner(runner):
    # TrtRunner.deactivate frees its input buffers and stream but not the device
    # buffers of its output allocator (polygraphy 0.53: deleted, never freed, and
    # DeviceArray has no finaliser); free them so repeated activations do not leak.
    outputs = getattr(getattr(runner, "output_allocator", None), "buffers", {})
    with quiet_polygraphy():
        for buf in list(outputs.values()):
            if hasattr(buf, "free"):
                buf.free()
        runner.deactivate()
