"""Decisions about a TensorRT engine, made without TensorRT: the optimization
profile, what the ONNX file is (inputs, dtype, flavour), the build
strategy for the installed TensorRT version and the options of one build.
Nothing here imports ``tensorrt`` or ``polygraphy``."""
import dataclasses
import json
import operator
import os
from typing import Optional, Tuple

from ..artifacts.names import FLAVOURS, Flavour
from ..config import PRECISIONS
from ..errors import BackendUnavailableError, CalibrationCacheError, OfconvertError
from ..trt_info import parse_version

MAX_BATCH_LIMIT = 4096


# ---------------------------------------------------------------------------
# Optimization profile
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Profile:
    """Batch sizes of the engine's single optimization profile, and the (min, opt,
    max) (H, W) of an ONNX exported with a dynamic image size."""

    min: int
    opt: int
    max: int
    sizes: Optional[tuple] = None     # ((h, w) min, (h, w) opt, (h, w) max)

    def shapes(self, sample_shape):
        """(min, opt, max) full input shapes for a per-sample shape like (3, 224, 224)."""
        rest = tuple(int(d) for d in sample_shape)
        if self.sizes is None:
            return tuple((n,) + rest for n in (self.min, self.opt, self.max))
        return tuple((n,) + rest[:-2] + tuple(hw) for n, hw in zip((self.min, self.opt, self.max), self.sizes))

    def to_dict(self):
        d = {"min": self.min, "opt": self.opt, "max": self.max}
        if self.sizes is not None:
            d["sizes"] = [list(hw) for hw in self.sizes]
        return d


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


def compute_profile(batch=8, max_batch=None, fixed_batch=None, sizes=None) -> Profile:
    """min 1, opt ``batch``, max ``max_batch`` (default: ``batch``).

    ``fixed_batch``: the ONNX input's batch dimension when it is static; the
    profile is then pinned to it (and any other request is a user error).
    ``sizes``: ((h, w) min, opt, max) of a dynamic image size (``OnnxInfo.profile_sizes``).
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
        return Profile(fixed_batch, fixed_batch, fixed_batch, sizes)
    return Profile(1, batch, max_b, sizes)



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
    flavour: Flavour                  # what it holds: fp32, fp16, int8 (TensorRT Q/DQ), int8-cpu
    metadata: dict
    size_ranges: Optional[dict] = None   # {"height": (min, opt, max), "width": ...}: dynamic H/W (export metadata)

    @property
    def profile_sizes(self):
        """((h, w) min, opt, max) for the profile, None for a fixed image size."""
        if not self.size_ranges:
            return None
        h, w = self.sample_shape[-2:]
        rh, rw = self.size_ranges.get("height", (h, h, h)), self.size_ranges.get("width", (w, w, w))
        return tuple((int(rh[i]), int(rw[i])) for i in range(3))

    @property
    def preprocess(self):
        """The ``ofconvert.preprocess`` metadata as a dict (None when absent or unreadable)."""
        from ..config import METADATA_KEY

        raw = self.metadata.get(METADATA_KEY)
        if not raw:
            return None
        try:
            d = json.loads(raw)
        except ValueError:
            return None
        return d if isinstance(d, dict) else None


def inspect_onnx(onnx_path) -> OnnxInfo:
    """Input/output names, per-sample shape, dtype, flavour and metadata."""
    from ..onnx_io import load_onnx

    path = os.fspath(onnx_path)
    model = load_onnx(path, external_data=False)   # missing, unreadable: one line
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
    from ..onnx_fix import get_metadata

    meta = get_metadata(model)
    sample = dims[1:]
    ranges = _size_ranges(meta, path)
    if ranges:
        sample = [sample[0] if sample[0] is not None else 3] + [
            ranges[k][1] if k in ranges else d for k, d in zip(("height", "width"), sample[1:])]
    if any(d is None for d in sample):
        sample = _sample_shape_from_metadata(meta, sample, path, inp.name)
    from ..graph.precision import onnx_precision

    return OnnxInfo(path=path, input_name=inp.name, input_dtype=_ONNX_DTYPES[tt.elem_type],
                    sample_shape=tuple(int(d) for d in sample), fixed_batch=dims[0],
                    output_name=out.name, flavour=Flavour(onnx_precision(model)), metadata=meta, size_ranges=ranges)


def _size_ranges(meta, path):
    """The ``ofconvert.dynamic_size`` metadata: {"height": (min, opt, max), ...} or None."""
    raw = meta.get("ofconvert.dynamic_size")
    if not raw:
        return None
    try:
        d = json.loads(raw)
        out = {k: tuple(int(x) for x in d[k]) for k in ("height", "width") if k in d}
        if not out or any(len(v) != 3 or not 0 < v[0] <= v[1] <= v[2] for v in out.values()):
            raise ValueError
    except (ValueError, TypeError, KeyError):
        raise OfconvertError(f"{path}: unreadable ofconvert.dynamic_size metadata {raw!r:.80}") from None
    return out


def _sample_shape_from_metadata(meta, sample, path, name):
    from ..config import METADATA_KEY

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


_WEAK_FLAGS = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8",)}
_TYPED_ONNX_HINT = {"fp16": "the fp16 ONNX (ofconvert.precision.to_fp16)",
                    "int8": "the Q/DQ ONNX (ofconvert.precision.quantize_qdq)"}


def plan_build(tensorrt_version, precision, onnx_flavour, has_calib_cache=False, strongly_typed=None) -> BuildPlan:
    """Pick the build strategy for an ONNX holding ``onnx_flavour`` (a Flavour value:
    its Q/DQ int8 flavours are int8 to TensorRT).

    TensorRT >= 11 (weak typing removed): strongly typed network from an ONNX
    whose types already say the precision (fp32 / fp16 / Q/DQ).
    TensorRT 10: the same by default; ``strongly_typed=False`` or an fp32 ONNX
    with fp16/int8 asked for: weak typing with FP16/INT8 builder flags (int8 from
    an fp32 ONNX reads the calibration cache through a calibrator).
    """
    if precision not in PRECISIONS:
        raise OfconvertError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if onnx_flavour not in FLAVOURS:
        raise ValueError(f"onnx_flavour must be one of {FLAVOURS}, got {onnx_flavour!r}")
    major = parse_version(tensorrt_version)[0]
    if major < 10:
        raise BackendUnavailableError(f"TensorRT {tensorrt_version} is too old: ofconvert needs TensorRT 10 or 11 "
                                      "(pip install 'tensorrt>=10')")
    weak_available = major < 11
    if strongly_typed is False and not weak_available:
        raise OfconvertError(f"TensorRT {tensorrt_version} builds strongly typed networks only (weak typing was "
                             "removed in TensorRT 11); do not ask for a weakly typed build")
    held = Flavour(onnx_flavour).precision   # what the ONNX computes in
    if held != "fp32" and held != precision:
        what = "has Q/DQ nodes (int8)" if held == "int8" else "is fp16"
        raise OfconvertError(f"the ONNX {what} but precision {precision!r} was asked for; "
                             f"build it with precision={held!r} or pass the matching ONNX")
    if held == precision:
        if strongly_typed is False:
            return BuildPlan(False, _WEAK_FLAGS[precision])
        return BuildPlan(True)
    # fp32 ONNX, fp16/int8 wanted: only weak typing can lower the precision.
    if not weak_available or strongly_typed:
        why = (f"TensorRT {tensorrt_version} has no FP16/INT8 builder flags (removed in 11)" if not weak_available
               else "a strongly typed network keeps the fp32 types of the ONNX")
        raise OfconvertError(f"{precision} from an fp32 ONNX is not possible: {why}; "
                             f"pass {_TYPED_ONNX_HINT[precision]}")
    if precision == "fp16":
        return BuildPlan(False, ("FP16",))
    if not has_calib_cache:
        raise OfconvertError("int8 from an fp32 ONNX needs calib_cache (a TensorRT calibration cache, "
                             "see ofconvert.calibration) or the Q/DQ ONNX")
    return BuildPlan(False, ("INT8",), calibrator=True)



# ---------------------------------------------------------------------------
# Options of one build
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
            positive_mb(self.workspace_mb)
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


def positive_mb(value):
    return _whole_number(value, "--workspace", 1, 1 << 20, unit=" of MiB")
