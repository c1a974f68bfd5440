"""TensorRT engines: everything around TensorRT that can be decided and tested
without it.

This module never imports ``tensorrt``. It computes the optimization profile,
picks the build strategy for the installed TensorRT version, validates and
re-targets the calibration cache, wires the timing cache, writes the engine and
its JSON sidecar atomically and checks a sidecar against the running TensorRT
and GPU. The calls into TensorRT itself live in ``engine_trt.py`` (builder) and
``runners/tensorrt.py`` (runner). See docs/tensorrt.md.

Public entry: ``build_engine(onnx_path, engine_path, precision=..., ...)``.
"""
import dataclasses
import datetime
import json
import operator
import os
import re
from typing import Optional, Tuple

from . import __version__, fileio
from .config import PRECISIONS
from .trt_info import parse_version
from .errors import (BackendUnavailableError, CalibrationCacheError, EngineCompatibilityError,
                     OfconvertError)

ONNX_KINDS = ("fp32", "fp16", "qdq")
SIDECAR_FORMAT = "ofconvert-trt-engine/1"
MAX_BATCH_LIMIT = 4096
#: Folder of the default timing caches (one file per TensorRT version and GPU).
TIMING_CACHE_ENV = "OFCONVERT_TRT_CACHE"
CALIBRATOR_ALGORITHM = "EntropyCalibration2"


# ---------------------------------------------------------------------------
# Optimization profile
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Profile:
    """Batch sizes of the engine's single optimization profile."""

    min: int
    opt: int
    max: int

    def shapes(self, sample_shape):
        """(min, opt, max) full input shapes for a per-sample shape like (3, 224, 224)."""
        rest = tuple(int(d) for d in sample_shape)
        return tuple((n,) + rest for n in (self.min, self.opt, self.max))

    def to_dict(self):
        return {"min": self.min, "opt": self.opt, "max": self.max}


def _whole_number(value, flag, lo, hi, unit=""):
    """``value`` as an int in [lo, hi], else a one-line OfconvertError naming ``flag``."""
    if isinstance(value, bool):
        raise OfconvertError(f"{flag} must be a whole number{unit}, got {value!r}")
    try:
        n = operator.index(value)
    except TypeError:
        raise OfconvertError(f"{flag} must be a whole number{unit}, got {value!r}") from None
    if n < lo:
        raise OfconvertError(f"{flag} must be >= {lo}, got {n}")
    if n > hi:
        raise OfconvertError(f"{flag} must be <= {hi}, got {n}")
    return n


def _batch_value(value, flag):
    return _whole_number(value, flag, 1, MAX_BATCH_LIMIT)


def compute_profile(batch=8, max_batch=None, fixed_batch=None) -> Profile:
    """min 1, opt ``batch``, max ``max_batch`` (default: ``batch``).

    ``fixed_batch``: the ONNX input's batch dimension when it is static; the
    profile is then pinned to it (and any other request is a user error).
    """
    batch = _batch_value(batch, "--batch")
    max_b = batch if max_batch is None else _batch_value(max_batch, "--max-batch")
    if max_b < batch:
        raise OfconvertError(f"--max-batch ({max_b}) must be >= --batch ({batch})")
    if fixed_batch is not None:
        if batch != fixed_batch or max_b != fixed_batch:
            raise OfconvertError(
                f"the ONNX input has a fixed batch of {fixed_batch}; export it with a dynamic batch "
                f"or use --batch {fixed_batch} --max-batch {fixed_batch}")
        return Profile(fixed_batch, fixed_batch, fixed_batch)
    return Profile(1, batch, max_b)


# ---------------------------------------------------------------------------
# What the ONNX file is
# ---------------------------------------------------------------------------
_ONNX_DTYPES = {1: "float32", 10: "float16"}   # onnx.TensorProto.FLOAT / FLOAT16


@dataclasses.dataclass(frozen=True)
class OnnxInfo:
    path: str
    input_name: str
    input_dtype: str                  # "float32" | "float16"
    sample_shape: Tuple[int, int, int]
    fixed_batch: Optional[int]        # None when the batch dimension is dynamic
    output_name: str
    kind: str                         # "fp32" | "fp16" | "qdq"
    metadata: dict

    @property
    def preprocess(self):
        """The ``ofconvert.preprocess`` metadata as a dict (None when absent or unreadable)."""
        from .config import METADATA_KEY

        raw = self.metadata.get(METADATA_KEY)
        if not raw:
            return None
        try:
            d = json.loads(raw)
        except ValueError:
            return None
        return d if isinstance(d, dict) else None


def inspect_onnx(onnx_path) -> OnnxInfo:
    """Input/output names, per-sample shape, dtype, precision kind and metadata."""
    import onnx

    path = os.fspath(onnx_path)
    if not os.path.isfile(path):
        raise OfconvertError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends
        raise OfconvertError(f"not a readable ONNX file: {path} ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    g = model.graph
    inits = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1 or not g.output:
        raise OfconvertError(f"{path}: expected one image input and an output, found inputs "
                             f"{[i.name for i in inputs]} and {len(g.output)} outputs")
    inp, out = inputs[0], g.output[0]
    tt = inp.type.tensor_type
    if tt.elem_type not in _ONNX_DTYPES:
        raise OfconvertError(f"{path}: input {inp.name!r} has ONNX element type {tt.elem_type}; "
                             "expected float32 or float16")
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
    if len(dims) != 4:
        raise OfconvertError(f"{path}: input {inp.name!r} has rank {len(dims)}; expected NCHW")
    from .onnx_fix import get_metadata

    meta = get_metadata(model)
    sample = dims[1:]
    if any(d is None for d in sample):
        sample = _sample_shape_from_metadata(meta, sample, path, inp.name)
    ops = {n.op_type for n in g.node}
    if ops & {"QuantizeLinear", "DequantizeLinear"}:
        kind = "qdq"
    elif tt.elem_type == 10 or any(t.data_type == 10 for t in g.initializer):
        kind = "fp16"
    else:
        kind = "fp32"
    return OnnxInfo(path=path, input_name=inp.name, input_dtype=_ONNX_DTYPES[tt.elem_type],
                    sample_shape=tuple(int(d) for d in sample), fixed_batch=dims[0],
                    output_name=out.name, kind=kind, metadata=meta)


def _sample_shape_from_metadata(meta, sample, path, name):
    from .config import METADATA_KEY

    try:
        size = int(json.loads(meta.get(METADATA_KEY, "{}"))["input_size"])
    except (ValueError, KeyError, TypeError):
        raise OfconvertError(f"{path}: input {name!r} has dynamic C/H/W and no {METADATA_KEY} metadata; "
                             "export it with a fixed image size") from None
    c = sample[0] if sample[0] is not None else 3
    return [c, size, size]


# ---------------------------------------------------------------------------
# Build strategy by TensorRT version
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """How to turn the ONNX into an engine.

    strongly_typed: network created strongly typed (tensor types come from the
    ONNX: fp16 ONNX -> fp16 kernels, Q/DQ ONNX -> int8). Always True on TensorRT 11.
    flags: BuilderFlag names to set (TensorRT 10 weak typing only).
    calibrator: attach an IInt8EntropyCalibrator2 that hands TensorRT our cache
    (TensorRT 10, int8 from the fp32 ONNX: implicit quantization).
    """

    strongly_typed: bool
    flags: Tuple[str, ...] = ()
    calibrator: bool = False

    def describe(self):
        if self.strongly_typed:
            return "strongly typed network"
        extra = " + int8 calibrator reading the cache" if self.calibrator else ""
        return f"weakly typed network, flags {'+'.join(self.flags) or 'none'}{extra}"

    def to_dict(self):
        return {"strongly_typed": self.strongly_typed, "flags": list(self.flags), "calibrator": self.calibrator}


_PRECISION_OF_KIND = {"fp32": "fp32", "fp16": "fp16", "qdq": "int8"}
_WEAK_FLAGS = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8",)}
_TYPED_ONNX_HINT = {"fp16": "the fp16 ONNX (ofconvert.precision.to_fp16)",
                    "int8": "the Q/DQ ONNX (ofconvert.precision.quantize_qdq)"}


def plan_build(tensorrt_version, precision, onnx_kind, has_calib_cache=False, strongly_typed=None) -> BuildPlan:
    """Pick the build strategy.

    TensorRT >= 11 (weak typing removed): strongly typed network from an ONNX
    whose types already say the precision (fp32 / fp16 / Q/DQ).
    TensorRT 10: the same by default; ``strongly_typed=False`` or an fp32 ONNX
    with fp16/int8 asked for: weak typing with FP16/INT8 builder flags (int8 from
    an fp32 ONNX reads the calibration cache through a calibrator).
    """
    if precision not in PRECISIONS:
        raise OfconvertError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if onnx_kind not in ONNX_KINDS:
        raise ValueError(f"onnx_kind must be one of {ONNX_KINDS}, got {onnx_kind!r}")
    major = parse_version(tensorrt_version)[0]
    if major < 10:
        raise BackendUnavailableError(f"TensorRT {tensorrt_version} is too old: ofconvert needs TensorRT 10 or 11 "
                                      "(pip install 'tensorrt>=10')")
    weak_available = major < 11
    if strongly_typed is False and not weak_available:
        raise OfconvertError(f"TensorRT {tensorrt_version} builds strongly typed networks only (weak typing was "
                             "removed in TensorRT 11); do not ask for a weakly typed build")
    kind_precision = _PRECISION_OF_KIND[onnx_kind]
    if kind_precision != "fp32" and kind_precision != precision:
        what = "has Q/DQ nodes (int8)" if onnx_kind == "qdq" else "is fp16"
        raise OfconvertError(f"the ONNX {what} but precision {precision!r} was asked for; "
                             f"build it with precision={kind_precision!r} or pass the matching ONNX")
    if kind_precision == precision:
        if strongly_typed is False:
            return BuildPlan(False, _WEAK_FLAGS[precision])
        return BuildPlan(True)
    # fp32 ONNX, fp16/int8 wanted: only weak typing can lower the precision.
    if not weak_available or strongly_typed:
        why = (f"TensorRT {tensorrt_version} has no FP16/INT8 builder flags (removed in 11)" if not weak_available
               else "a strongly typed network keeps the fp32 types of the ONNX")
        raise OfconvertError(f"{precision} from an fp32 ONNX is not possible: {why}; pass {_TYPED_ONNX_HINT[precision]}")
    if precision == "fp16":
        return BuildPlan(False, ("FP16",))
    if not has_calib_cache:
        raise OfconvertError("int8 from an fp32 ONNX needs calib_cache (a TensorRT calibration cache, "
                             "see ofconvert.calibration) or the Q/DQ ONNX")
    return BuildPlan(False, ("INT8",), calibrator=True)


# ---------------------------------------------------------------------------
# Calibration cache (TensorRT text format, parsed by ofconvert.calibration)
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CalibrationCache:
    path: str
    header_version: int
    algorithm: str
    scales: dict           # tensor name -> float32 scale (dynamic range = scale * 127)

    def for_tensorrt(self, tensorrt_version) -> bytes:
        """The cache with its header re-targeted to the installed TensorRT: TensorRT
        ignores a cache whose header names another version and then asks the
        calibrator for data it does not have."""
        from .calibration import format_cache

        return format_cache(self.scales, version=tensorrt_version_int(tensorrt_version),
                            calibrator=CALIBRATOR_ALGORITHM).encode("ascii")


def tensorrt_version_int(version) -> int:
    """NV_TENSORRT_VERSION as written in cache headers: 8.6.1 -> 8601, 10.3.0 -> 100300."""
    from .calibration import trt_version_number

    return trt_version_number(version)


def calibration_cache_header(version) -> str:
    return f"TRT-{tensorrt_version_int(version)}-{CALIBRATOR_ALGORITHM}"


def read_calibration_cache(path) -> CalibrationCache:
    """A TensorRT calibration cache made for our IInt8EntropyCalibrator2 (header
    ``TRT-<ver>-EntropyCalibration2``, then ``<tensor>: <hex float32 scale>`` lines);
    CalibrationCacheError otherwise."""
    from .calibration import read_cache_with_header

    path = os.fspath(path)
    header, scales = read_cache_with_header(path)
    if header["calibrator"] != CALIBRATOR_ALGORITHM:
        raise CalibrationCacheError(f"{path} was made for {header['calibrator']}; ofconvert's TensorRT calibrator "
                                    f"is {CALIBRATOR_ALGORITHM} (regenerate the cache)")
    if not scales:
        raise CalibrationCacheError(f"{path} has a header but no tensor scales")
    return CalibrationCache(path=path, header_version=header["version"], algorithm=header["calibrator"],
                            scales=scales)


# ---------------------------------------------------------------------------
# Timing cache
# ---------------------------------------------------------------------------
def _slug(text):
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-").lower() or "gpu"


def timing_cache_name(tensorrt_version, gpu):
    """File name keyed by what a timing cache is valid for: TensorRT version and GPU."""
    cc = str(gpu.get("compute_capability", "")).replace(".", "")
    return f"timing-trt{'.'.join(map(str, parse_version(tensorrt_version)))}-{_slug(gpu.get('name', ''))}-sm{cc}.cache"


def default_timing_cache_dir():
    return os.environ.get(TIMING_CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "ofconvert", "tensorrt")


def resolve_timing_cache(timing_cache, tensorrt_version, gpu):
    """Where the builder reads and writes its timing cache (None: no timing cache).

    None -> the default per-user folder (``$OFCONVERT_TRT_CACHE`` or
    ~/.cache/ofconvert/tensorrt), one file per TensorRT version and GPU, so that
    every build on this machine reuses the measured tactics;
    False -> no timing cache; an existing folder (or a path ending in a
    separator) -> the keyed file inside it; anything else -> that file.
    """
    if timing_cache is False:
        return None
    name = timing_cache_name(tensorrt_version, gpu)
    if timing_cache is None:
        return os.path.join(default_timing_cache_dir(), name)
    p = os.fspath(timing_cache)
    if not p:
        return None
    if os.path.isdir(p) or p.endswith(("/", os.sep)):
        return os.path.join(p, name)
    return p


def read_timing_cache(path) -> bytes:
    if not path or not os.path.isfile(path):
        return b""
    with open(path, "rb") as f:
        return f.read()


# ---------------------------------------------------------------------------
# Sidecar and compatibility
# ---------------------------------------------------------------------------
def sidecar_path(engine_path):
    return os.fspath(engine_path) + ".json"


def write_engine(engine_path, engine_bytes: bytes, sidecar: dict) -> dict:
    """Write the engine, then its sidecar (with the engine's size and sha256),
    each atomically. A half-finished pair is detected by ``read_sidecar``."""
    import hashlib

    engine_path = os.fspath(engine_path)
    sidecar = dict(sidecar)
    sidecar["engine"] = {"file": os.path.basename(engine_path), "bytes": len(engine_bytes),
                         "sha256": hashlib.sha256(engine_bytes).hexdigest()}
    fileio.write_bytes(engine_path, engine_bytes)
    fileio.write_json(sidecar_path(engine_path), sidecar)
    return sidecar


def read_sidecar(engine_path, verify_hash=True) -> dict:
    """The sidecar of ``engine_path``; EngineCompatibilityError when it is missing,
    unreadable or describes another file."""
    engine_path = os.fspath(engine_path)
    if not os.path.isfile(engine_path):
        raise OfconvertError(f"engine file not found: {engine_path}")
    sp = sidecar_path(engine_path)
    if not os.path.isfile(sp):
        raise EngineCompatibilityError(f"no sidecar {sp}: cannot tell which TensorRT and GPU built {engine_path}; "
                                       "rebuild it with ofconvert --to trt")
    try:
        with open(sp, encoding="utf-8") as f:
            sc = json.load(f)
    except (OSError, ValueError) as e:
        raise EngineCompatibilityError(f"unreadable sidecar {sp}: {e}") from None
    if not isinstance(sc, dict) or sc.get("format") != SIDECAR_FORMAT:
        raise EngineCompatibilityError(f"{sp} is not an ofconvert engine sidecar (format {SIDECAR_FORMAT})")
    if verify_hash:
        want = (sc.get("engine") or {}).get("sha256")
        if want != fileio.sha256_file(engine_path):
            raise EngineCompatibilityError(f"{engine_path} does not match its sidecar {sp} (sha256 differs): "
                                           "the engine was replaced or half-written; rebuild it")
    return sc


def _norm_gpu(name):
    return " ".join(str(name).split()).casefold()


def check_compatibility(sidecar: dict, tensorrt_version, gpu: dict, engine_path="engine"):
    """Raise EngineCompatibilityError when the engine was built by another TensorRT
    version or for another GPU than the ones here (TensorRT engines are tied to both)."""
    built = sidecar.get("tensorrt_version")
    if not built or parse_version(built) != parse_version(tensorrt_version):
        raise EngineCompatibilityError(
            f"{engine_path} was built with TensorRT {built} but TensorRT {tensorrt_version} is installed; "
            "rebuild it here (ofconvert MODEL --to trt)")
    bgpu = sidecar.get("gpu") or {}
    same_cc = str(bgpu.get("compute_capability")) == str(gpu.get("compute_capability"))
    if not same_cc or _norm_gpu(bgpu.get("name", "")) != _norm_gpu(gpu.get("name", "")):
        raise EngineCompatibilityError(
            f"{engine_path} was built for {bgpu.get('name')} (compute capability {bgpu.get('compute_capability')}) "
            f"but this GPU is {gpu.get('name')} (compute capability {gpu.get('compute_capability')}); rebuild it here")


def make_sidecar(info: OnnxInfo, options: "EngineOptions", plan: BuildPlan, profile: Profile,
                 tensorrt_version, gpu: dict, timing_cache_path=None, build_seconds=None) -> dict:
    shapes = profile.shapes(info.sample_shape)
    calib = None
    if options.calib_cache:
        calib = {"file": os.path.abspath(options.calib_cache), "sha256": fileio.sha256_file(options.calib_cache)}
    return {
        "format": SIDECAR_FORMAT,
        "ofconvert_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tensorrt_version": str(tensorrt_version),
        "gpu": {"name": gpu.get("name"), "compute_capability": str(gpu.get("compute_capability"))},
        "precision": options.precision,
        "build": dict(plan.to_dict(), workspace_mb=options.workspace_mb, timing_cache=timing_cache_path,
                      seconds=None if build_seconds is None else round(build_seconds, 2)),
        "profile": {"input": info.input_name, "min": list(shapes[0]), "opt": list(shapes[1]), "max": list(shapes[2])},
        "io": {"input": {"name": info.input_name, "dtype": info.input_dtype, "sample_shape": list(info.sample_shape)},
               "output": {"name": info.output_name}},
        "onnx": {"file": os.path.abspath(info.path), "sha256": fileio.sha256_file(info.path), "kind": info.kind},
        "calibration_cache": calib,
        "model": info.metadata.get("ofconvert.model"),
        "preprocess": info.preprocess,
        "onnx_metadata": dict(info.metadata),
    }


# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EngineOptions:
    """Options of one engine build (``build_engine`` is the thin keyword entry).

    timing_cache: None = default per-user cache (see ``resolve_timing_cache``),
    False = none, or a file / folder path. strongly_typed: None = choose by
    TensorRT version and ONNX (see ``plan_build``).
    """

    precision: str = "fp32"
    calib_cache: Optional[str] = None
    batch: int = 8
    max_batch: Optional[int] = None
    workspace_mb: Optional[int] = None
    timing_cache: object = None
    strongly_typed: Optional[bool] = None

    def validate(self):
        if self.precision not in PRECISIONS:
            raise OfconvertError(f"unknown precision {self.precision!r}; known: {', '.join(PRECISIONS)}")
        if self.workspace_mb is not None:
            _positive_mb(self.workspace_mb)
        if self.calib_cache is not None:
            if self.precision != "int8":
                raise OfconvertError(f"a calibration cache is for int8 builds, not {self.precision}")
            if not os.path.isfile(os.fspath(self.calib_cache)):
                raise CalibrationCacheError(f"calibration cache not found: {os.fspath(self.calib_cache)}")
        if self.strongly_typed not in (None, True, False):
            raise OfconvertError(f"strongly_typed must be None, True or False, got {self.strongly_typed!r}")
        compute_profile(self.batch, self.max_batch)
        return self

    @property
    def workspace_bytes(self):
        return None if self.workspace_mb is None else int(self.workspace_mb) << 20


def _positive_mb(value):
    return _whole_number(value, "--workspace", 1, 1 << 20, unit=" of MiB")


def require_tensorrt() -> str:
    """The installed TensorRT version, or BackendUnavailableError (one line naming what
    to install). Lets a pipeline fail before its slow steps (export, calibration)."""
    from . import engine_trt

    return engine_trt.tensorrt_version(engine_trt.load_tensorrt())


def build_engine(onnx_path, engine_path, precision="fp32", calib_cache=None, batch=8, max_batch=None,
                 workspace_mb=None, timing_cache=None, strongly_typed=None) -> dict:
    """Build a TensorRT engine from ``onnx_path`` into ``engine_path`` (+ ``.json``
    sidecar) and return the sidecar dict.

    precision: fp32 | fp16 | int8. Pass the ONNX whose types say the precision
    (fp16 ONNX, Q/DQ ONNX for int8); on TensorRT 10 an fp32 ONNX also works
    (FP16/INT8 builder flags, int8 then needs ``calib_cache``).
    Raises BackendUnavailableError (one line naming what to install) without TensorRT.
    """
    options = EngineOptions(precision=precision, calib_cache=calib_cache, batch=batch, max_batch=max_batch,
                            workspace_mb=workspace_mb, timing_cache=timing_cache, strongly_typed=strongly_typed)
    return build_engine_from_options(onnx_path, engine_path, options)


def build_engine_from_options(onnx_path, engine_path, options: EngineOptions) -> dict:
    import time

    from . import engine_trt

    options = options.validate()
    info = inspect_onnx(onnx_path)
    profile = compute_profile(options.batch, options.max_batch, info.fixed_batch)
    trt = engine_trt.load_tensorrt()
    version = engine_trt.tensorrt_version(trt)
    plan = plan_build(version, options.precision, info.kind, options.calib_cache is not None, options.strongly_typed)
    calib_bytes = None
    if plan.calibrator:
        cache = read_calibration_cache(options.calib_cache)
        if info.input_name not in cache.scales:
            raise CalibrationCacheError(f"{cache.path} has no scale for the model input {info.input_name!r}: "
                                        "it was made for another model")
        calib_bytes = cache.for_tensorrt(version)
    gpu = engine_trt.gpu_info()
    tc_path = resolve_timing_cache(options.timing_cache, version, gpu)
    request = engine_trt.BuildRequest(
        onnx_path=info.path, plan=plan, input_name=info.input_name, shapes=profile.shapes(info.sample_shape),
        workspace_bytes=options.workspace_bytes, timing_cache=None if tc_path is None else read_timing_cache(tc_path),
        calibration_cache=calib_bytes)
    t0 = time.perf_counter()
    result = engine_trt.build_serialized_engine(trt, request)
    seconds = time.perf_counter() - t0
    sidecar = make_sidecar(info, options, plan, profile, version, gpu, tc_path, seconds)
    sidecar = write_engine(engine_path, result.engine, sidecar)
    if tc_path and result.timing_cache:
        fileio.write_bytes(tc_path, result.timing_cache)
    return sidecar


# ---------------------------------------------------------------------------
# ONNX Runtime's TensorRT execution provider
# ---------------------------------------------------------------------------
def ort_trt_provider_options(precision="fp32", calib_cache=None, engine_cache_dir=None, timing_cache_dir=None,
                             workspace_mb=None, profile: Optional[Profile] = None, onnx_path=None) -> dict:
    """Provider options for ``OnnxRuntimeRunner(provider="trt", provider_options=...)``.

    Option names are those of ONNX Runtime's TensorrtExecutionProvider
    (onnxruntime.ai/docs/execution-providers/TensorRT-ExecutionProvider.html).
    int8 with ``calib_cache`` (for an fp32 ONNX; ORT refuses a table for a Q/DQ
    model): our cache is a native TensorRT table; ORT opens it at
    ``join(trt_engine_cache_path, trt_int8_calibration_table_name)``, so the name
    is given relative to the cache folder (the cache's own folder when no
    engine cache is asked for). engine_cache_dir: ORT caches its engines there
    (and its timing cache, unless timing_cache_dir says elsewhere).
    profile + onnx_path: explicit min/opt/max shapes for the dynamic batch.
    """
    if precision not in PRECISIONS:
        raise OfconvertError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    info = inspect_onnx(onnx_path) if onnx_path is not None else None
    opts = {}
    if precision == "fp16":
        opts["trt_fp16_enable"] = True
    if precision == "int8":
        opts["trt_int8_enable"] = True
    if engine_cache_dir is not None:
        engine_cache_dir = os.path.abspath(os.fspath(engine_cache_dir))
        # ORT writes engines here, and 'cache/../table' only resolves when 'cache' exists
        try:
            os.makedirs(engine_cache_dir, exist_ok=True)
        except OSError as e:
            raise OfconvertError(f"cannot create the engine cache folder {engine_cache_dir}: {e.strerror}") from None
        opts["trt_engine_cache_enable"] = True
        opts["trt_engine_cache_path"] = engine_cache_dir
        if timing_cache_dir is None:
            timing_cache_dir = engine_cache_dir
    if timing_cache_dir is not None:
        opts["trt_timing_cache_enable"] = True
        opts["trt_timing_cache_path"] = os.path.abspath(os.fspath(timing_cache_dir))
    if calib_cache is not None:
        if precision != "int8":
            raise OfconvertError(f"a calibration cache is for int8, not {precision}")
        if info is not None and info.kind == "qdq":
            raise OfconvertError("ONNX Runtime's TensorRT provider refuses a calibration table for a Q/DQ model; "
                                 "pass the fp32 ONNX with the cache, or the Q/DQ ONNX without it")
        cache = read_calibration_cache(calib_cache)
        table = os.path.abspath(cache.path)
        root = opts.get("trt_engine_cache_path") or os.path.dirname(table)
        try:
            name = os.path.relpath(table, root)
        except ValueError:  # another drive (Windows): an absolute name replaces the root when joined
            name = table
        opts["trt_engine_cache_path"] = root
        opts["trt_int8_calibration_table_name"] = name
        opts["trt_int8_use_native_calibration_table"] = True
    elif precision == "int8" and info is not None and info.kind != "qdq":
        raise OfconvertError("int8 through ONNX Runtime's TensorRT provider needs the Q/DQ ONNX "
                             "or a calibration cache for the fp32 ONNX")
    if workspace_mb is not None:
        opts["trt_max_workspace_size"] = _positive_mb(workspace_mb) << 20
    if profile is not None:
        if info is None:
            raise OfconvertError("explicit profile shapes need onnx_path (for the input name and image size)")
        for key, shape in zip(("min", "opt", "max"), profile.shapes(info.sample_shape)):
            opts[f"trt_profile_{key}_shapes"] = f"{info.input_name}:{'x'.join(map(str, shape))}"
    return opts
