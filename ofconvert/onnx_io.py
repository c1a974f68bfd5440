"""The one loading layer (Polygraphy's loader style): ``load_onnx`` opens an ONNX
file with one error for every way it can fail; ``ort_session`` makes an ONNX
Runtime CPU session with one options recipe per purpose. The rest of the package
opens models and sessions through these two."""
import os

from .errors import OfconvertError, first_line

#: the oldest opset ofconvert writes and reads (attributes moved to inputs at 13: Q/DQ per-axis, Split...)
MIN_OPSET = 13

#: purpose -> (graph optimization level, inter-op threads or None): one recipe each
PURPOSES = {
    "run": ("ORT_ENABLE_ALL", None),        # inference as a user runs it (runners, validation, export checks)
    "reference": ("ORT_DISABLE_ALL", None),  # the graph exactly as written (the validator's fp32 rounding spread)
    "statistics": ("ORT_ENABLE_BASIC", None),  # calibration: intermediate tensors read as outputs
    "candidate": ("ORT_ENABLE_ALL", 1),     # a flip-budget candidate: Q/DQ fusions, one inter-op thread
    "runner": (None, None),                 # a runner (ort-cpu/cuda/trt): its own options, providers, level
}


def load_onnx(path, external_data=True):
    """``onnx.ModelProto`` of ``path``; OfconvertError (one line) when it is missing,
    a folder, or not a readable ONNX model."""
    import onnx

    p = os.fspath(path)
    if os.path.isdir(p):
        raise OfconvertError(f"{p} is a folder, not an ONNX file")
    if not os.path.isfile(p):
        raise OfconvertError(f"ONNX file not found: {p}")
    try:
        return onnx.load(p, load_external_data=external_data)
    except Exception as e:   # DecodeError, OSError, external data missing...
        why = first_line(e)
        raise OfconvertError(f"cannot read ONNX {p}: {why[:200]}") from None


def ort_session(model, purpose="run", threads=None, providers=("CPUExecutionProvider",), options=None):
    """An ``onnxruntime.InferenceSession`` of ``model`` (a path, bytes or a ModelProto)
    set up for ``purpose`` (PURPOSES); ``options``: a SessionOptions to start from."""
    import onnxruntime as ort

    if purpose not in PURPOSES:
        raise OfconvertError(f"unknown session purpose {purpose!r}; one of {', '.join(PURPOSES)}")
    level, inter = PURPOSES[purpose]
    so = options or ort.SessionOptions()
    if level is not None:
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = int(threads)
    if inter:
        so.inter_op_num_threads = inter
    src = model.SerializeToString() if hasattr(model, "SerializeToString") else model
    if isinstance(src, os.PathLike):
        src = os.fspath(src)
    return ort.InferenceSession(src, sess_options=so, providers=list(providers))
