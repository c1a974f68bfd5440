"""One naming scheme for every file ofconvert writes or looks for, and the
precision of a file read from its content.

Names, in one folder, for a model stem ``<stem>`` (the zoo name by default):

=============================  ==========================================================
``<stem>.onnx``                fp32 -- ALWAYS fp32: a name without a precision means fp32
``<stem>.fp16.onnx``           fp16 weights and activations
``<stem>.int8.onnx``           int8 Q/DQ for TensorRT, ort-cuda, ort-trt: int8 activations
                               with zero point 0 (symmetric)
``<stem>.int8-cpu.onnx``       int8 Q/DQ for ONNX Runtime's CPU provider: uint8 activations
``<stem>.<precision>.engine``  TensorRT engine (fp32 / fp16 / int8) + ``.engine.json``
                               sidecar; the benchmark's engines add their profile's max
                               batch: ``<stem>.<precision>.b<N>.engine``
=============================  ==========================================================

A name never lies. ``ofconvert MODEL -o PATH`` checks PATH before any work: it
must end in ``.onnx`` (``--to onnx``) or ``.engine`` / ``.plan`` (``--to trt``) and
carry the suffix of the precision it will hold (``--int8 -o lite0.onnx`` is
refused: "use -o lite0.int8.onnx"; ``--int8 -o lite0.int8-cpu.onnx`` is fine, the
CPU flavour is int8 too). The other artefacts of the run (the fp32 export, the
other int8 flavour, the ONNX an engine is built from) take the names above beside
it. An existing file that a run would replace with another precision is refused
too, instead of being overwritten.

:func:`detect_precision` reads what a file holds, never its name: an ONNX model
with QuantizeLinear/DequantizeLinear (or QLinear*/integer) nodes is ``"int8"``
when its activations are quantized to int8 and ``"int8-cpu"`` when any is uint8;
one with float16 initializers, inputs, outputs or constants is ``"fp16"``; else
``"fp32"``. A TensorRT engine's precision comes from its sidecar JSON
(``ofconvert.engine.read_sidecar``), which must describe this very file (sha256).
The benchmark and the evaluator check every file they locate with it and refuse a
mislabelled one (:class:`PrecisionMismatchError`, a one-line user error); their
reports list each file's path, sha256 and detected precision (:func:`describe`).
"""
import os
import re

from .errors import EngineCompatibilityError, OfconvertError

#: what a file can hold; "int8-cpu" is int8 with uint8 activations (ONNX Runtime CPU)
FLAVOURS = ("fp32", "fp16", "int8", "int8-cpu")
ONNX_SUFFIX = {"fp32": ".onnx", "fp16": ".fp16.onnx", "int8": ".int8.onnx", "int8-cpu": ".int8-cpu.onnx"}
ENGINE_EXTS = (".engine", ".plan")
_PRECISION_TAGS = (".int8-cpu", ".fp32", ".fp16", ".int8")
_BATCH_TAG = re.compile(r"\.b\d+$")

_DESCRIPTION = {"fp32": "an fp32", "fp16": "an fp16", "int8": "an int8 (Q/DQ)",
                "int8-cpu": "an int8-cpu (Q/DQ, uint8 activations)"}


class PrecisionMismatchError(OfconvertError):
    """A file whose content is not the precision its name (or its role) says."""


# ---------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------
def flavour(precision, backend="trt"):
    """The file flavour holding ``precision`` for ``backend``: int8 on ort-cpu is
    "int8-cpu" (uint8 activations), on every other backend "int8"."""
    if precision == "int8" and backend == "ort-cpu":
        return "int8-cpu"
    if precision not in FLAVOURS:
        raise OfconvertError(f"unknown precision {precision!r}; known: {', '.join(FLAVOURS)}")
    return precision


def onnx_name(stem, precision, backend="trt"):
    """The file name every tool uses for ``stem``'s ONNX at (precision, backend):
    ``<stem>.onnx`` (fp32), ``.fp16.onnx``, ``.int8.onnx`` (TensorRT / CUDA: int8
    activations) or ``.int8-cpu.onnx`` (ort-cpu: uint8 activations). ``precision``
    may also be a flavour ("int8-cpu")."""
    return stem + ONNX_SUFFIX[flavour(precision, backend)]


def engine_name(stem, precision, max_batch=None):
    """``<stem>.<precision>.engine`` (``<stem>.<precision>.b<max_batch>.engine`` with max_batch)."""
    if precision not in ("fp32", "fp16", "int8"):
        raise OfconvertError(f"no TensorRT engine precision {precision!r}; one of fp32, fp16, int8")
    return f"{stem}.{precision}" + (f".b{int(max_batch)}" if max_batch else "") + ".engine"


def parse_name(path):
    """What a file name claims: ``(stem, kind, flavour)``; kind "onnx", "engine" or
    None (another extension: nothing claimed, stem = the whole name, flavour None).
    A name without a precision tag claims fp32 (:func:`name_tag` tells whether the
    tag was written out)."""
    base = os.path.basename(os.fspath(path))
    kind = None
    if base.endswith(".onnx"):
        kind, rest = "onnx", base[:-len(".onnx")]
    else:
        for ext in ENGINE_EXTS:
            if base.endswith(ext):
                kind, rest = "engine", _BATCH_TAG.sub("", base[:-len(ext)])
                break
    if kind is None:
        return base, None, None
    stem, tag = _split_tag(rest)
    return stem, kind, tag or "fp32"


def name_tag(path):
    """The explicit precision tag of a file name (".int8" -> "int8"), or None."""
    base = os.path.basename(os.fspath(path))
    for ext in (".onnx",) + ENGINE_EXTS:
        if base.endswith(ext):
            rest = base[:-len(ext)]
            if ext != ".onnx":
                rest = _BATCH_TAG.sub("", rest)
            return _split_tag(rest)[1]
    return None


def _split_tag(rest):
    for tag in _PRECISION_TAGS:
        if rest.endswith(tag) and len(rest) > len(tag):
            return rest[:-len(tag)], tag[1:]
    return rest, None


def check_output_name(output, precision, to="onnx"):
    """Refuse (OfconvertError, one line) an ``-o`` path whose name does not say what
    it will hold. Returns (folder, stem, role): role is the flavour of the ONNX it
    holds (``--to onnx``) or "engine"."""
    shown = os.fspath(output)
    folder = os.path.dirname(shown)
    stem, kind, claimed = parse_name(shown)
    if kind is None:   # "-o lite0.int8": suggest lite0.int8.onnx, not lite0.int8.int8.onnx
        stem = _split_tag(stem)[0]
    want_kind = "onnx" if to == "onnx" else "engine"
    if to == "onnx":
        wanted_flavours = ("int8", "int8-cpu") if precision == "int8" else (precision,)
        suggest = os.path.join(folder, onnx_name(stem, precision))
    else:
        wanted_flavours = (precision,)
        suggest = os.path.join(folder, engine_name(stem, precision))
    if kind != want_kind:
        writes = "an ONNX model" if to == "onnx" else "a TensorRT engine"
        if kind is None:
            ends = ".onnx" if to == "onnx" else ".engine (or .plan)"
            raise OfconvertError(f"-o {shown}: --to {to} writes {writes}, whose name ends in {ends}; use -o {suggest}")
        what = "an ONNX model" if kind == "onnx" else "a TensorRT engine"
        raise OfconvertError(f"-o {shown} names {what} but --to {to} writes {writes}; use -o {suggest}")
    if claimed not in wanted_flavours:
        thing = "model" if to == "onnx" else "engine"
        raise PrecisionMismatchError(f"-o {shown} would hold the {precision} {thing} but the name means {claimed}; "
                                     f"use -o {suggest}")
    if kind == "onnx" and name_tag(shown) == "fp32":
        raise PrecisionMismatchError(f"-o {shown}: an fp32 model is named <stem>.onnx (a name without a precision "
                                     f"means fp32); use -o {suggest}")
    return os.path.dirname(os.path.abspath(shown)), stem, (claimed if kind == "onnx" else "engine")


def artifact_paths(model, output=None, precision="fp32", to="onnx"):
    """Every artefact path of one conversion, by role: "fp32", "fp16", "int8",
    "int8-cpu" (ONNX) and "engine". With ``output`` (checked by
    :func:`check_output_name`) the final artefact is ``output`` itself and the others
    sit beside it under the stem its name gives; else ``./<model name>.*``."""
    if output:
        base_dir, stem, role = check_output_name(output, precision, to)
    else:
        base_dir, stem, role = os.path.abspath("."), model.split(":")[-1], None
    p = {f: os.path.join(base_dir, onnx_name(stem, f)) for f in FLAVOURS}
    p["engine"] = os.path.join(base_dir, engine_name(stem, precision))
    if output:
        p[role] = os.path.abspath(output)
    return p


# ---------------------------------------------------------------------------
# content
# ---------------------------------------------------------------------------
_SHA_CACHE = {}
_PRECISION_CACHE = {}   # ONNX files: (path, size, mtime) -> precision


def sha256(path):
    """sha256 of a file (memoised on path, size and mtime)."""
    from .fileio import sha256_file

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

    from .engine import SIDECAR_FORMAT, sidecar_path

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
        _PRECISION_CACHE[key] = _onnx_precision(_load_onnx(path))
    return _PRECISION_CACHE[key]


def _load_onnx(path):
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # DecodeError & co
        if path.endswith(ENGINE_EXTS):
            raise EngineCompatibilityError(f"no ofconvert sidecar {path}.json: cannot tell the precision of the "
                                           f"engine {path}; rebuild it with ofconvert --to trt") from None
        raise OfconvertError(f"cannot tell the precision of {path}: not a readable ONNX model "
                             f"({type(e).__name__})") from None
    if not model.graph.node and not model.graph.input:
        raise OfconvertError(f"cannot tell the precision of {path}: not an ONNX model (empty graph)")
    return model


_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger", "MatMulInteger",
              "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QGemm"}


def _graphs(g):
    yield g
    for n in g.node:
        for a in n.attribute:
            if a.type == a.GRAPH:
                yield from _graphs(a.g)
            for sub in a.graphs:
                yield from _graphs(sub)


def _onnx_precision(model):
    from onnx import TensorProto

    graphs = list(_graphs(model.graph))
    nodes = [n for g in graphs for n in g.node]
    if any(n.op_type in _QUANT_OPS for n in nodes):
        return "int8-cpu" if _uint8_activations(graphs) else "int8"
    f16 = TensorProto.FLOAT16
    for g in graphs:
        if any(t.data_type == f16 for t in g.initializer):
            return "fp16"
        if any(v.type.tensor_type.elem_type == f16 for v in list(g.input) + list(g.output)):
            return "fp16"
        for n in g.node:
            if n.op_type == "Constant" and any(a.t.data_type == f16 for a in n.attribute if a.name == "value"):
                return "fp16"
            if n.op_type == "Cast" and any(a.name == "to" and a.i == f16 for a in n.attribute):
                return "fp16"
    return "fp32"


def _uint8_activations(graphs):
    """True when a QuantizeLinear (activations: weights are stored quantized) or
    DynamicQuantizeLinear produces uint8: its zero point is uint8 (ONNX's default
    when it has none)."""
    from onnx import TensorProto

    dtype_of = {}
    for g in graphs:
        for t in g.initializer:
            dtype_of[t.name] = t.data_type
        for n in g.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        dtype_of[n.output[0]] = a.t.data_type
    for g in graphs:
        for n in g.node:
            if n.op_type == "DynamicQuantizeLinear":
                return True
            if n.op_type == "QuantizeLinear":
                out_dtype = next((a.i for a in n.attribute if a.name == "output_dtype"), 0)
                zp = n.input[2] if len(n.input) > 2 and n.input[2] else None
                dt = out_dtype or (dtype_of.get(zp, TensorProto.UINT8) if zp else TensorProto.UINT8)
                if dt == TensorProto.UINT8:
                    return True
    return False


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
