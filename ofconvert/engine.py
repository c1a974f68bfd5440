"""TensorRT engines: the public entry (``build_engine``) over the layers in
``ofconvert/trt/``: decisions (``plan``: profile, ONNX inspection, strategy by
TensorRT version, options), caches (``caches``: calibration-cache re-targeting,
timing-cache keying), the sidecar and compatibility check (``sidecar``) and the
execution through Polygraphy (``backend``, the only module that imports
``tensorrt``/``polygraphy``, lazily). Importing this module imports neither.
The runner is ``ofconvert.runners.tensorrt``; see docs/tensorrt.md.
"""
from typing import Optional

from . import fileio
from .errors import CalibrationCacheError
from .options import options_with
from .trt.caches import (
    CALIBRATOR_ALGORITHM,
    TIMING_CACHE_ENV,
    CalibrationCache,
    calibration_cache_header,
    default_timing_cache_dir,
    read_calibration_cache,
    read_timing_cache,
    resolve_timing_cache,
    tensorrt_version_int,
    timing_cache_name,
)
from .trt.plan import (
    MAX_BATCH_LIMIT,
    BuildPlan,
    EngineOptions,
    OnnxInfo,
    Profile,
    compute_profile,
    inspect_onnx,
    plan_build,
)
from .trt.sidecar import SIDECAR_FORMAT, check_compatibility, make_sidecar, read_sidecar, sidecar_path, write_engine
from .trt_info import parse_version

__all__ = ["build_engine", "require_tensorrt",
           # plan
           "MAX_BATCH_LIMIT", "BuildPlan", "EngineOptions", "OnnxInfo", "Profile", "compute_profile",
           "inspect_onnx", "plan_build",
           # caches
           "CALIBRATOR_ALGORITHM", "TIMING_CACHE_ENV", "CalibrationCache", "calibration_cache_header",
           "default_timing_cache_dir", "read_calibration_cache", "read_timing_cache", "resolve_timing_cache",
           "tensorrt_version_int", "timing_cache_name",
           # sidecar
           "SIDECAR_FORMAT", "check_compatibility", "make_sidecar", "read_sidecar", "sidecar_path", "write_engine",
           "parse_version"]


def require_tensorrt() -> str:
    """The installed TensorRT version, or BackendUnavailableError (one line naming what
    to install). Lets a pipeline fail before its slow steps (export, calibration)."""
    from .trt import backend

    return backend.tensorrt_version(backend.load_tensorrt())


def build_engine(onnx_path, engine_path, options: Optional[EngineOptions] = None, **settings) -> dict:
    """Build a TensorRT engine from ``onnx_path`` into ``engine_path`` (+ ``.json``
    sidecar) and return the sidecar dict. ``options``: an :class:`EngineOptions`;
    ``settings``: its fields by keyword (``precision="fp16", batch=8``), replacing
    the options' ones.

    precision: fp32 | fp16 | int8. Pass the ONNX whose types say the precision
    (fp16 ONNX, Q/DQ ONNX for int8); on TensorRT 10 an fp32 ONNX also works
    (FP16/INT8 builder flags, int8 then needs ``calib_cache``, an existing TensorRT
    calibration cache that is read, never written). workspace_mb: workspace pool
    limit (MiB). timing_cache: None = the default per-user cache, False = none, or
    a file / folder. strongly_typed: None = by TensorRT version and ONNX (``plan_build``).
    Raises BackendUnavailableError (one line naming what to install) without TensorRT.
    """
    import time

    from .trt import backend

    options = options_with(EngineOptions, options, settings, "build_engine()").validate()
    info = inspect_onnx(onnx_path)
    profile = compute_profile(options.batch, options.max_batch, info.fixed_batch, info.profile_sizes)
    trt = backend.load_tensorrt()
    version = backend.tensorrt_version(trt)
    plan = plan_build(version, options.precision, info.flavour, options.calib_cache is not None, options.strongly_typed)
    calib_bytes = None
    if plan.calibrator:
        cache = read_calibration_cache(options.calib_cache)
        if info.input_name not in cache.scales:
            raise CalibrationCacheError(f"{cache.path} has no scale for the model input {info.input_name!r}: "
                                        "it was made for another model")
        calib_bytes = cache.for_tensorrt(version)
    gpu = backend.gpu_info()
    tc_path = resolve_timing_cache(options.timing_cache, version, gpu)
    if tc_path:
        fileio.check_writable_dir(tc_path)   # one line now rather than after a long build
    request = backend.BuildRequest(
        onnx_path=info.path, plan=plan, input_name=info.input_name, shapes=profile.shapes(info.sample_shape),
        workspace_bytes=options.workspace_bytes, timing_cache=None if tc_path is None else read_timing_cache(tc_path),
        timing_cache_path=tc_path, calibration_cache=calib_bytes)
    t0 = time.perf_counter()
    engine = backend.build_serialized_engine(trt, request)
    seconds = time.perf_counter() - t0
    sidecar = make_sidecar(info, options, plan, profile, version, gpu, tc_path, seconds)
    return write_engine(engine_path, engine, sidecar)
