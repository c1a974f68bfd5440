"""The one loading layer (Polygraphy's loader style): ``load_onnx`` opens an ONNX
file with one error for every way it can fail; ``ort_session`` makes an ONNX
Runtime CPU session with one options recipe per purpose. The rest of the package
opens models and sessions through these two."""
import os

from .errors import OfconvertError

#: purpose -> how the session is set up (graph optimization level, threads)
PURPOSES = {
    "run": "ORT_ENABLE_ALL",          # inference as a user runs it (runners, validation)
    "check": "ORT_ENABLE_ALL",        # does ONNX Runtime load it at all (export), compare two graphs
    "reference": "ORT_DISABLE_ALL",   # the graph exactly as written (the validator's fp32 rounding spread)
    "statistics": "ORT_ENABLE_BASIC",  # calibration / budget passes reading intermediate tensors
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
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OfconvertError(f"cannot read ONNX {p}: {why[:200]}") from None


def ort_session(model, purpose="run", threads=None, providers=("CPUExecutionProvider",), options=None):
    """An ``onnxruntime.InferenceSession`` of ``model`` (a path, bytes or a ModelProto)
    set up for ``purpose`` (PURPOSES); ``options``: a SessionOptions to start from."""
    import onnxruntime as ort

    if purpose not in PURPOSES:
        raise OfconvertError(f"unknown session purpose {purpose!r}; one of {', '.join(PURPOSES)}")
    so = options or ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, PURPOSES[purpose])
    if threads:
        so.intra_op_num_threads = int(threads)
    src = model.SerializeToString() if hasattr(model, "SerializeToString") else model
    if isinstance(src, os.PathLike):
        src = os.fspath(src)
    return ort.InferenceSession(src, sess_options=so, providers=list(providers))
