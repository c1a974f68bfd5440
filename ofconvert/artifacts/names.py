"""File names: one scheme for every file ofconvert writes or looks for (see the
package docstring), and the check of an ``-o`` path against what it will hold."""
import enum
import os
import re

from ..errors import OfconvertError


class Flavour(str, enum.Enum):
    """What a model file holds -- the one word for it everywhere (names, content
    detection, produce, the TensorRT plan, the budget). A str, so ``"fp16" ==
    Flavour.FP16``; ``INT8`` is int8 with int8 activations (TensorRT's Q/DQ),
    ``INT8_CPU`` int8 with uint8 activations (ONNX Runtime / OpenVINO on the CPU)."""
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"
    INT8_CPU = "int8-cpu"

    def __str__(self):
        return self.value

    @property
    def precision(self):
        """The arithmetic: fp32, fp16 or int8 (both int8 flavours are int8)."""
        return "int8" if self.value.startswith("int8") else self.value

    @property
    def target(self):
        """The Q/DQ dialect :func:`ofconvert.precision.quantize_qdq` writes for it:
        ``"trt"`` (int8 activations) or ``"cpu"`` (uint8); None for fp32 / fp16."""
        return {"int8": "trt", "int8-cpu": "cpu"}.get(self.value)


#: what a file can hold, as strings
FLAVOURS = tuple(f.value for f in Flavour)
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
#: backends whose int8 file is the "int8-cpu" flavour (uint8 activations): ONNX Runtime's
#: CPU provider fuses only that pattern; OpenVINO runs both, the uint8 one faster (docs/cpu.md)
UINT8_BACKENDS = ("ort-cpu", "openvino")


def flavour(precision, backend="trt"):
    """The file flavour holding ``precision`` for ``backend``: int8 on ort-cpu and
    openvino is "int8-cpu" (uint8 activations), on every other backend "int8"."""
    if precision == "int8" and backend in UINT8_BACKENDS:
        return "int8-cpu"
    if precision not in FLAVOURS:
        raise OfconvertError(f"unknown precision {precision!r}; known: {', '.join(FLAVOURS)}")
    return precision


def onnx_name(stem, precision, backend="trt"):
    """The file name every tool uses for ``stem``'s ONNX at (precision, backend):
    ``<stem>.onnx`` (fp32), ``.fp16.onnx``, ``.int8.onnx`` (TensorRT / CUDA: int8
    activations) or ``.int8-cpu.onnx`` (ort-cpu, openvino: uint8 activations). ``precision``
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
