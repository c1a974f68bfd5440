"""One naming scheme for every file ofconvert writes or looks for, and the
precision of a file read from its content.

Names, in one folder, for a model stem ``<stem>`` (the zoo name by default):

=============================  ==========================================================
``<stem>.onnx``                fp32 -- ALWAYS fp32: a name without a precision means fp32
``<stem>.fp16.onnx``           fp16 weights and activations
``<stem>.int8.onnx``           int8 Q/DQ for TensorRT, ort-cuda, ort-trt: int8 activations
                               with zero point 0 (symmetric)
``<stem>.int8-cpu.onnx``       int8 Q/DQ for ONNX Runtime's CPU provider and OpenVINO:
                               uint8 activations
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

Modules: ``names`` (the scheme), ``content`` (precision from the content),
``produce`` (locating a model file for a backend, producing a missing one through
the conversion pipeline in a worker process: ``locate``).
"""

from .content import (  # noqa: F401
                      check_overwrite,
                      check_precision,
                      describe,
                      describe_precision,
                      detect_precision,
                      sha256,
)
from .names import (  # noqa: F401
                      ENGINE_EXTS,
                      FLAVOURS,
                      ONNX_SUFFIX,
                      Flavour,
                      PrecisionMismatchError,
                      artifact_paths,
                      check_output_name,
                      engine_name,
                      flavour,
                      name_tag,
                      onnx_name,
                      parse_name,
)
from .produce import check_existing, expected_flavour, locate, model_path, onnx_input_size, produce, read_onnx_metadata  # noqa: F401

__all__ = ["ENGINE_EXTS", "FLAVOURS", "ONNX_SUFFIX", "PrecisionMismatchError", "artifact_paths", "check_existing",
           "check_output_name", "check_overwrite", "check_precision", "describe", "describe_precision",
           "detect_precision", "engine_name", "Flavour", "expected_flavour", "flavour", "locate", "model_path",
           "name_tag", "onnx_input_size", "onnx_name", "parse_name", "produce", "read_onnx_metadata", "sha256"]
