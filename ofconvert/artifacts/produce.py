"""Locating the model file a backend runs, and producing a missing one.

``locate(folder, stem, precision, backend)`` is what the benchmark and the
evaluator call for every cell: the file named by the scheme (``model_path``),
checked to hold that precision; a missing one is produced through the conversion
pipeline (``ofconvert.convert``: export, fp16, calibration + Q/DQ, engine build)
in a worker process (``isolation.run_worker``: the export loads OneFlow, which
must not share a process with what runs next). ``check_existing`` refuses a
mislabelled file before anything is produced or run.
"""
import importlib.util
import os

from ..errors import BackendUnavailableError, OfconvertError
from ..options import check_keywords
from .content import check_precision, describe, sha256
from .names import PrecisionMismatchError, engine_name, flavour, onnx_name


def read_onnx_metadata(path):
    """``metadata_props`` of an ONNX file as a dict (weights not loaded); one-line
    OfconvertError for a file that is not a readable model."""
    from ..onnx_fix import get_metadata
    from ..onnx_io import load_onnx

    model = load_onnx(path, external_data=False)   # a corrupt file: one line
    return get_metadata(model), model


def onnx_input_size(path):
    """Input size of an image-model ONNX: its ``ofconvert.preprocess`` metadata, else
    its static H; None when dynamic. OfconvertError unless it takes one NCHW RGB input."""
    from ..config import METADATA_KEY, PreprocessConfig

    meta, m = read_onnx_metadata(path)
    if METADATA_KEY in meta:
        return PreprocessConfig.from_json(meta[METADATA_KEY]).input_size
    if len(m.graph.input) != 1:
        raise OfconvertError(f"{path}: image models take one input; this one has {len(m.graph.input)} inputs")
    dims = m.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != 4 or (dims[1].dim_value not in (0, 3)):
        shape = [d.dim_value or d.dim_param or "?" for d in dims]
        raise OfconvertError(f"{path}: input shape {shape} is not an NCHW RGB image; image models take (N, 3, H, W)")
    return dims[2].dim_value or None


def expected_flavour(precision, backend):
    """What the file of (precision, backend) must hold: int8 on ort-cpu / openvino is "int8-cpu"."""
    return precision if backend == "trt" else flavour(precision, backend)


def model_path(folder, stem, precision, backend, max_batch=None):
    """Where (precision, backend) of ``stem`` lives: ``<stem>.onnx`` & co for ONNX
    Runtime, ``<stem>.<precision>[.b<max_batch>].engine`` for TensorRT; oneflow runs
    the zoo model itself (returns ``stem``)."""
    if backend == "oneflow":
        return stem
    if backend == "trt":
        return os.path.join(folder, engine_name(stem, precision, max_batch))
    return os.path.join(folder, onnx_name(stem, precision, backend))


def _check(path, precision, backend):
    """check_precision; an engine without a usable sidecar is left to its runner."""
    try:
        return check_precision(path, expected_flavour(precision, backend))
    except PrecisionMismatchError:
        raise
    except OfconvertError:
        if backend != "trt":
            raise
        return "unknown"


def check_existing(folder, stem, precision, backend, max_batch=None, produce=True):
    """Refuse (PrecisionMismatchError) the file of (precision, backend) when its
    content is another precision, and a mislabelled ``<stem>.onnx`` that a missing
    file would be produced from. Called for every cell before anything is produced,
    decoded or run."""
    if backend == "oneflow":
        return
    path = model_path(folder, stem, precision, backend, max_batch)
    if os.path.isfile(path):
        _check(path, precision, backend)
    elif produce:
        source = os.path.join(folder, onnx_name(stem, "fp32"))
        if os.path.isfile(source) and source != path:
            check_precision(source, "fp32", role=f"the source of {os.path.basename(path)}")


def _why_not(stem, precision, backend, folder, calib, source=None):
    """Why a missing file cannot be produced here (the end of a sentence), or None."""
    from ..config import get_config

    try:
        get_config((source or {}).get("model", stem), (source or {}).get("input_shape"))
    except OfconvertError:
        return " (not a zoo model, cannot produce it)"
    if (importlib.util.find_spec("oneflow") is None
            and not os.path.isfile(os.path.join(folder, onnx_name(stem, "fp32")))):
        return ", and OneFlow is not installed here to export it"
    if backend == "trt" and importlib.util.find_spec("tensorrt") is None:
        return ", and TensorRT is not installed here to build it"
    if precision == "int8" and not calib:
        return "; pass --calib (calibration images) to produce it"
    return None


_HOW = ("calib_images", "batches", "log", "source")


def _how(how):
    """The optional keywords of produce/locate (calib_images, batches, log, source), validated."""
    check_keywords(how, _HOW, "produce() / locate()")
    return tuple(how.get(k) for k in _HOW)


def produce(stem, precision, backend, folder, calib=None, **how):
    """Keywords (``how``): calib_images, batches, log, source.
Produce ``model_path(...)`` through ``ofconvert.convert`` in a worker process.
    ``source``: ConvertOptions fields of a model that is not the zoo name ``stem``
    (the user's ``file.py:Class``: model, input_shape, model_args).
    BackendUnavailableError(reason) when it cannot be produced here or producing failed."""
    from ..isolation import WorkerFailed, run_worker

    calib_images, batches, log, source = _how(how)
    max_batch = max(batches) if backend == "trt" and batches else None
    path = model_path(folder, stem, precision, backend, max_batch)
    missing = f"{os.path.basename(path)} not found in {os.path.abspath(folder)}"
    why = _why_not(stem, precision, backend, folder, calib, source)
    if why:
        raise BackendUnavailableError(missing + why)
    if log:
        log(f"producing {path} (ofconvert.convert, {precision}) ...")
    opts = {"model": stem, "to": "trt" if backend == "trt" else "onnx", "precision": precision, "validate": False,
            # int8 ONNX: convert writes <stem>.int8.onnx and <stem>.int8-cpu.onnx from the first
            "output": (path if backend == "trt" or precision != "int8"
                       else os.path.join(folder, onnx_name(stem, "int8"))),
            "calib": os.path.abspath(calib) if precision == "int8" else None,
            "calib_images": calib_images if precision == "int8" else None}
    if max_batch:
        opts.update(batch=min(batches), max_batch=max_batch)
    opts.update(source or {})
    try:
        run_worker("ofconvert.artifacts.produce:produce_job", opts)
    except WorkerFailed as e:
        raise BackendUnavailableError(f"{missing}; producing it failed: {e.reason}") from None
    if not os.path.isfile(path):
        raise BackendUnavailableError(f"{missing}; producing it did not write it")
    return path


def produce_job(opts, emit):
    """Worker side of :func:`produce`."""
    from ..pipeline import ConvertOptions, convert

    try:
        convert(ConvertOptions(**opts), log=lambda *a: None)
    except ImportError as e:
        raise BackendUnavailableError(f"cannot produce it here ({e})") from None
    return {"output": opts["output"]}


def locate(folder, stem, precision, backend, produce_missing=True, calib=None, **how):
    """Keywords (``how``): calib_images, batches, log, source (as for :func:`produce`).
``{"path", "sha256", "precision"}`` of the file (precision, backend) of
    ``stem`` runs, produced when missing; the precision is read from the content
    ("unknown" for an engine without a usable sidecar, which its runner refuses).
    PrecisionMismatchError for a mislabelled file; BackendUnavailableError(reason)
    when it is missing and cannot be produced."""
    batches = _how(how)[1]
    max_batch = max(batches) if backend == "trt" and batches else None
    path = model_path(folder, stem, precision, backend, max_batch)
    if not os.path.isfile(path):
        if not produce_missing:
            raise BackendUnavailableError(f"{os.path.basename(path)} not found in {os.path.abspath(folder)}")
        produce(stem, precision, backend, folder, calib, **how)
    if _check(path, precision, backend) == "unknown":
        return {"path": os.path.abspath(path), "sha256": sha256(path), "precision": "unknown"}
    return describe(path)
