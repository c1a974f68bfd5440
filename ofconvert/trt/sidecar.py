"""The engine's JSON sidecar (what built it, for which GPU, from which ONNX, with
which preprocessing) and the compatibility check made before deserialising.
Without TensorRT."""
import datetime
import json
import os

from .. import __version__, fileio
from ..errors import EngineCompatibilityError, OfconvertError
from ..trt_info import parse_version
from .plan import BuildPlan, EngineOptions, OnnxInfo, Profile

SIDECAR_FORMAT = "ofconvert-trt-engine/1"


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
    io_input = {"name": info.input_name, "dtype": info.input_dtype, "sample_shape": list(info.sample_shape)}
    if info.size_ranges:   # a dynamic image size: the H/W (min, opt, max) the profile covers
        io_input["dynamic_size"] = {k: list(v) for k, v in info.size_ranges.items()}
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
        "io": {"input": io_input,
               "output": {"name": info.output_name}},
        "onnx": {"file": os.path.abspath(info.path), "sha256": fileio.sha256_file(info.path), "flavour": info.flavour},
        "calibration_cache": calib,
        "model": info.metadata.get("ofconvert.model"),
        "preprocess": info.preprocess,
        "onnx_metadata": dict(info.metadata),
    }
