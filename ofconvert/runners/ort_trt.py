"""ONNX Runtime's TensorRT execution provider: the provider options for
``OnnxRuntimeRunner(onnx, provider="trt", provider_options=...)`` (beside the
runner that takes them). Option names are those of ONNX Runtime's
TensorrtExecutionProvider
(onnxruntime.ai/docs/execution-providers/TensorRT-ExecutionProvider.html)."""
import os
from typing import Optional

from ..config import PRECISIONS
from ..errors import OfconvertError
from ..trt.caches import read_calibration_cache
from ..trt.plan import Profile, inspect_onnx, positive_mb


def _cache_dirs(opts, engine_cache_dir, timing_cache_dir):
    """The engine / timing cache options of :func:`ort_trt_provider_options`, into ``opts``."""
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


def ort_trt_provider_options(precision="fp32", calib_cache=None, engine_cache_dir=None, timing_cache_dir=None,
                             workspace_mb=None, profile: Optional[Profile] = None, onnx_path=None) -> dict:
    """Provider options for ``OnnxRuntimeRunner(provider="trt", provider_options=...)``.

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
    _cache_dirs(opts, engine_cache_dir, timing_cache_dir)
    if calib_cache is not None:
        if precision != "int8":
            raise OfconvertError(f"a calibration cache is for int8, not {precision}")
        if info is not None and info.flavour.precision == "int8":
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
    elif precision == "int8" and info is not None and info.flavour.precision != "int8":
        raise OfconvertError("int8 through ONNX Runtime's TensorRT provider needs the Q/DQ ONNX "
                             "or a calibration cache for the fp32 ONNX")
    if workspace_mb is not None:
        opts["trt_max_workspace_size"] = positive_mb(workspace_mb) << 20
    if profile is not None:
        if info is None:
            raise OfconvertError("explicit profile shapes need onnx_path (for the input name and image size)")
        for key, shape in zip(("min", "opt", "max"), profile.shapes(info.sample_shape)):
            opts[f"trt_profile_{key}_shapes"] = f"{info.input_name}:{'x'.join(map(str, shape))}"
    return opts
