"""INT8 calibration: activation ranges of an fp32 ONNX model, stored as a TensorRT
calibration cache (+ a JSON sidecar) that later runs reuse without decoding images.

Three layers, kept apart (ONNX Runtime quantization style), one module each:

* :mod:`.reader` -- the **data reader** (:class:`ImageCalibrationDataReader`): images
  from a folder (recursive) or a manifest, the model's own preprocessing, a
  deterministic order, bad files skipped and counted; the set's content hash;
  ``build_calib_set`` (``ofconvert calib-set``);
* :mod:`.ranges` -- the **algorithms** (:class:`RangeCollector`): minmax, percentile
  and entropy (KL, TensorRT's EntropyCalibration2 recipe) over streamed 2048-bin
  histograms of |x|; which tensors get a range; the model fingerprint;
* :mod:`.cache` -- the **cache** (:func:`write_cache`, :func:`read_cache`,
  :func:`validate_scales`, :func:`check_cache`): TensorRT's text format, validated
  against the model before it is ever used.

This module holds the orchestration (:func:`calibrate`) and the value objects
(:class:`CalibrationOptions`, :class:`CalibrationResult`) and re-exports the public
names of the three layers. Cache format: see :mod:`.cache` and docs/precision.md.
"""
import dataclasses
import os
import time
from typing import Dict, Optional

import numpy as np

from ..errors import OfconvertError
from .cache import (
    SIDECAR_FORMAT,
    TRT_CACHE_VERSION,
    TRT_CALIBRATOR_NAME,
    check_cache,
    default_cache_path,
    format_cache,
    parse_cache,
    read_cache,
    read_cache_with_header,
    read_means,
    read_sidecar_means,
    sidecar_path_for,
    trt_version_number,
    validate_scales,
    write_cache,
)
from .ranges import (
    INT8_MAX,
    METHODS,
    MIN_AMAX,
    RangeCollector,
    Statistics,
    bounded_tensors,
    calibration_plan,
    calibration_tensors,
    collect_ranges,
    collect_statistics,
    entropy_amax,
    model_fingerprint,
    model_input_name,
)
from .reader import (
    MANIFEST_NAME,
    ImageCalibrationDataReader,
    build_calib_set,
    calibration_set_hash,
    list_calibration_images,
)

__all__ = [
    "CalibrationOptions", "CalibrationResult", "calibrate",
    # cache
    "SIDECAR_FORMAT", "TRT_CACHE_VERSION", "TRT_CALIBRATOR_NAME", "check_cache", "default_cache_path",
    "format_cache", "parse_cache", "read_cache", "read_cache_with_header", "read_means", "read_sidecar_means",
    "sidecar_path_for",
    "trt_version_number", "validate_scales", "write_cache",
    # ranges
    "INT8_MAX", "METHODS", "MIN_AMAX", "RangeCollector", "Statistics", "calibration_plan", "calibration_tensors",
    "bounded_tensors", "collect_ranges", "collect_statistics", "entropy_amax", "model_fingerprint", "model_input_name",
    # reader
    "MANIFEST_NAME", "ImageCalibrationDataReader", "build_calib_set", "calibration_set_hash",
    "list_calibration_images",
]



@dataclasses.dataclass(frozen=True)
class CalibrationOptions:
    """Algorithm knobs (defaults match TensorRT / NVIDIA's PTQ recipe)."""

    batch_size: int = 8
    num_bins: int = 2048          # histogram bins over [0, max|x|]
    num_quant_bins: int = 128     # int8 magnitude levels (entropy search target)
    percentile: float = 99.99     # for method="percentile"
    threads: Optional[int] = None  # ONNX Runtime intra-op threads (None: its default)

    def key(self):
        return {"num_bins": self.num_bins, "num_quant_bins": self.num_quant_bins, "percentile": self.percentile}


@dataclasses.dataclass
class CalibrationResult:
    cache_path: str
    sidecar_path: str
    scales: Dict[str, float]      # tensor name -> scale (dynamic range = scale * 127)
    reused: bool
    method: str
    num_images: int               # images actually used (decoded) for the ranges
    skipped: int                  # unreadable files skipped
    elapsed_s: float = 0.0
    #: {tensor: per-channel mean} over the same images (bias correction, precision/bias.py);
    #: None for a cache written before they were kept
    means: Optional[Dict[str, list]] = None

    def dynamic_ranges(self):
        return {k: v * INT8_MAX for k, v in self.scales.items()}



def preprocess_from_model(model):
    from ..config import METADATA_KEY, PreprocessConfig
    from ..onnx_fix import get_metadata

    meta = get_metadata(model)
    if METADATA_KEY not in meta:
        raise OfconvertError(f"no preprocessing given and the ONNX has no {METADATA_KEY!r} metadata")
    return PreprocessConfig.from_json(meta[METADATA_KEY])



#: the last pass's statistics, keyed by what they depend on (model, image files and their
#: content, preprocessing, options; not the method): calibrating the same model on the same
#: files with another method (--max-flips calibrates every method) reuses the pass instead
#: of decoding and running the images again
_LAST_PASS = {}


def _statistics(model, paths, preprocess, options, expect):
    """:class:`~.ranges.Statistics` of ``model`` over ``paths``: the previous pass when
    it was over the same model, images, preprocessing and options."""
    import json

    key = json.dumps({**{k: v for k, v in expect.items() if k != "method"},
                      "paths": [os.path.abspath(p) for p in paths]}, sort_keys=True, default=str)
    stats = _LAST_PASS.get(key)
    if stats is None:
        _LAST_PASS.clear()
        from ..models.raw_input import is_raw_model

        reader = ImageCalibrationDataReader(paths, preprocess, model_input_name(model), options.batch_size,
                                            raw=is_raw_model(model))
        # histograms always: every method then comes from this one pass
        stats = Statistics(model, reader, "entropy", options)
        _LAST_PASS[key] = stats
    return stats


def calibrate(onnx_path, data, preprocess, method="entropy", num_images=None, cache_path=None,
              regenerate=False, options: Optional[CalibrationOptions] = None) -> CalibrationResult:
    """Calibrate ``onnx_path`` (fp32) on ``data`` and write/reuse the cache.

    A cache at ``cache_path`` (default ``<stem>.<method>.calib.cache`` beside the ONNX)
    whose sidecar matches the model (fingerprint: graph + weight values, see
    :func:`model_fingerprint`), calibration-set hash, method, preprocessing and
    options, and whose tensors are exactly the model's, is reused without decoding
    any image (:func:`check_cache`). Any mismatch raises CalibrationCacheError, or
    recalibrates when ``regenerate`` is true.
    """
    from ..fileio import write_json
    from ..onnx_io import load_onnx

    t0 = time.perf_counter()
    options = options or CalibrationOptions()
    if method not in METHODS:
        raise OfconvertError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")
    onnx_path = os.fspath(onnx_path)
    model = load_onnx(onnx_path)   # missing, unreadable: one line
    preprocess = preprocess or preprocess_from_model(model)
    cache_path = os.fspath(cache_path) if cache_path else default_cache_path(onnx_path, method)
    sidecar = sidecar_path_for(cache_path)
    tensors = calibration_tensors(model)
    paths = list_calibration_images(data, num_images)
    expect = {
        "method": method,
        "model_fingerprint": model_fingerprint(model),
        "calib_set_sha256": calibration_set_hash(paths),
        "num_listed": len(paths),
        "preprocess": preprocess.key(),
        "options": options.key(),
    }

    if os.path.exists(cache_path) and not regenerate:
        scales, meta = check_cache(cache_path, tensors, expect)
        return CalibrationResult(cache_path, sidecar, scales, True, method, int(meta.get("num_images", 0)),
                                 int(meta.get("skipped", 0)), time.perf_counter() - t0, read_means(meta, tensors))

    stats = _statistics(model, paths, preprocess, options, expect)
    amax, means = stats.ranges(method), stats.means
    del model
    # round-trip through float32 so the returned scales equal what a reader of the cache gets
    scales = {t: float(np.float32(a / INT8_MAX)) for t, a in amax.items()}
    write_cache(cache_path, scales)
    elapsed = time.perf_counter() - t0
    write_json(sidecar, _sidecar(onnx_path, cache_path, data, preprocess, expect, stats, scales, elapsed))
    return CalibrationResult(cache_path, sidecar, scales, False, method, stats.num_used, len(stats.skipped),
                             elapsed, means)


def _sidecar(onnx_path, cache_path, data, preprocess, expect, stats, scales, elapsed):
    """The cache's ``.json`` sidecar (what :func:`check_cache` compares before a reuse)."""
    from ..fileio import sha256_file

    return dict(format=SIDECAR_FORMAT, cache=os.path.basename(cache_path), model=os.path.basename(onnx_path),
                header=f"TRT-{TRT_CACHE_VERSION}-{TRT_CALIBRATOR_NAME}", model_sha256=sha256_file(onnx_path),
                **expect,
                preprocess_config=preprocess.to_dict(),
                calib_source=(f"{len(data)} listed images" if isinstance(data, (list, tuple))
                              else os.path.abspath(os.fspath(data))),
                num_images=stats.num_used, skipped=len(stats.skipped),
                skipped_files=[os.path.basename(p) for p in stats.skipped[:20]],
                num_tensors=len(scales), cache_sha256=sha256_file(cache_path), elapsed_s=round(elapsed, 3),
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), channel_means=stats.means)

