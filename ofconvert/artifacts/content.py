"""The precision of a file read from its content, never its name: ONNX Q/DQ and
float16 tensors, a TensorRT engine's sidecar; ``check_precision`` / ``describe``
refuse a mislabelled file (``PrecisionMismatchError``)."""
import os

from ..errors import EngineCompatibilityError, OfconvertError
from .names import _DESCRIPTION, ENGINE_EXTS, PrecisionMismatchError

_SHA_CACHE = {}
_PRECISION_CACHE = {}   # ONNX files: (path, size, mtime) -> precision


def sha256(path):
    """sha256 of a file (memoised on path, size and mtime)."""
    from ..fileio import sha256_file

    path = os.path.abspath(os.fspath(path))
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(path)
    return _SHA_CACHE[key]


def _engine_sidecar(path):
    """The ofconvert engine sidecar describing ``path``, None when there is no such
    sidecar (e.g. an ONNX export report), EngineCompatibilityError when it exists
    but describes another file."""
    import json

    from ..trt.sidecar import SIDECAR_FORMAT, sidecar_path

    sp = sidecar_path(path)
    if not os.path.isfile(sp):
        return None
    try:
        with open(sp, encoding="utf-8") as f:
            sc = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(sc, dict) or sc.get("format") != SIDECAR_FORMAT:
        return None
    if (sc.get("engine") or {}).get("sha256") != sha256(path):
        raise EngineCompatibilityError(f"{path} does not match its sidecar {sp} (sha256 differs): its precision "
                                       "is unknown; rebuild it with ofconvert --to trt")
    return sc


def detect_precision(path):
    """"fp32", "fp16", "int8" (Q/DQ, int8 activations: TensorRT style) or "int8-cpu"
    (Q/DQ with uint8 activations) for an ONNX file, or a TensorRT engine's precision
    from its sidecar, read from the content, never the name. OfconvertError when the
    file is missing or unreadable."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise OfconvertError(f"file not found: {path}")
    sc = _engine_sidecar(path)
    if sc is not None:
        prec = sc.get("precision")
        if prec not in ("fp32", "fp16", "int8"):
            raise EngineCompatibilityError(f"the sidecar of {path} names no precision (got {prec!r})")
        return prec
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _PRECISION_CACHE:
        from ..graph.precision import onnx_precision

        _PRECISION_CACHE[key] = onnx_precision(_load_onnx(path))
    return _PRECISION_CACHE[key]


def _load_onnx(path):
    from ..onnx_io import load_onnx

    try:
        model = load_onnx(path, external_data=False)
    except OfconvertError as e:  # DecodeError & co
        if path.endswith(ENGINE_EXTS):
            raise EngineCompatibilityError(f"no ofconvert sidecar {path}.json: cannot tell the precision of the "
                                           f"engine {path}; rebuild it with ofconvert --to trt") from None
        raise OfconvertError(f"cannot tell the precision of {path}: not a readable ONNX model "
                             f"({str(e).rsplit(': ', 1)[-1]})") from None
    if not model.graph.node and not model.graph.input:
        raise OfconvertError(f"cannot tell the precision of {path}: not an ONNX model (empty graph)")
    return model


def describe_precision(prec, engine=False):
    """Words for a precision in messages: "an int8 (Q/DQ) model"."""
    if engine:
        return f"{'an' if prec in ('fp32', 'fp16', 'int8') else 'a'} {prec} TensorRT engine"
    return f"{_DESCRIPTION.get(prec, prec)} model"


def check_precision(path, expected, role=None):
    """Refuse ``path`` (PrecisionMismatchError, one line) unless its content is
    ``expected`` (a flavour); returns the detected precision."""
    got = detect_precision(path)
    if got != expected:
        engine = _is_engine(path)
        raise PrecisionMismatchError(f"{path} is {describe_precision(got, engine)}, not {expected}"
                                     + (f" ({role})" if role else "")
                                     + "; rename or rebuild it (" + ("<stem>.<precision>.engine" if engine else
                                                                     "<stem>.onnx is always fp32") + ")")
    return got


def _is_engine(path):
    try:
        return _engine_sidecar(path) is not None
    except OfconvertError:
        return True


def describe(path, expected=None):
    """``{"path", "sha256", "precision"}`` of a file (precision: detected from the
    content); with ``expected`` a mismatch raises PrecisionMismatchError."""
    prec = check_precision(path, expected) if expected else detect_precision(path)
    return {"path": os.path.abspath(os.fspath(path)), "sha256": sha256(path), "precision": prec}


def check_overwrite(path, flavour_to_write):
    """Refuse to replace an existing file that holds another precision than the one
    about to be written there (a user's file, or one mislabelled by an older
    ofconvert). A file whose precision cannot be read is left to the writer."""
    if not os.path.isfile(path):
        return
    try:
        got = detect_precision(path)
    except OfconvertError:
        return
    if got != flavour_to_write:
        engine = _is_engine(path)
        thing = "engine" if engine else "model"
        raise PrecisionMismatchError(f"{path} is {describe_precision(got, engine)}, not {flavour_to_write}: this run "
                                     f"would use or overwrite it as the {flavour_to_write} {thing}; move it away "
                                     "first" + ("" if engine else " (<stem>.onnx is always fp32)"))
