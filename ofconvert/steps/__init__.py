"""A conversion as steps (``ofconvert.pipeline.convert`` runs them top to bottom):

``preflight(opts) -> Plan`` (every check; the only look at the file system before
work) -> ``export_step`` (fp32 ONNX, validated, or reused) -> ``fp16_step`` or
``int8_step`` (calibration or the user's cache, plain or under a flip budget) ->
``engine_step`` (TensorRT). Each step reads the plan, writes into the run's stage
(``fileio.Stage``) and records what it made in the result; none calls back into
the pipeline. The stage is committed once, at the end: a run refused or failing
at any step leaves no file of its own.
"""
from .engine import engine_step
from .export import export_step
from .plan import Plan, preflight
from .quantize import fp16_step, int8_step

__all__ = ["Plan", "preflight", "export_step", "fp16_step", "int8_step", "engine_step"]
