"""ImageNet accuracy and reference-mismatch evaluation of models x backends x precisions.

    from ofconvert.evaluation import evaluate, EvalOptions
    rows = evaluate("imagenet-val/", ["efficientnet_lite0"], backends=["oneflow", "ort-cpu"],
                    precisions=["fp32", "fp16"], options=EvalOptions(models_dir="models/"))

Pipeline: the dataset (``ofconvert.datasets``) is decoded once per preprocessing
into the uint8 cache (``ofconvert.preprocache``); each *variant* (backend x
precision) then reads that cache batch by batch, normalises one batch at a time
(never the whole set as float32) and keeps only the top-5 class ids. Variants of
one backend run in their own worker process (``ofconvert.isolation``: OneFlow and
ONNX Runtime in one process slow each other down 2-3x, and a crashing backend
cannot take the run down). Every variant's top-1 prediction is compared with the
reference variant's (default ``oneflow:fp32``; ``ort-cpu:fp32`` without OneFlow).

Model files are located, checked and produced by ``ofconvert.artifacts`` (one
naming scheme; a file whose content is another precision than its name says stops
the run before any image is decoded); each row records the file's path, sha256
and detected precision.

Modules: ``variants`` (Variant, EvalOptions, EvalRow, model files), ``evaluator``
(Evaluator, evaluate), ``worker`` (inference in the backend process), ``report``
(markdown, CSV, PNG), ``cli`` (``ofconvert eval``).
"""
from ..lazy import lazy_getattr

# public name -> module (loaded on first use: `ofconvert eval --help` loads no numpy)
_LAZY = {"Evaluator": ".evaluator", "evaluate": ".evaluator", "run_jobs": ".worker", "TOPK": ".worker",
         "main": ".cli"}
_LAZY.update({n: ".report" for n in ("CSV_FIELDS", "format_csv", "format_files", "format_markdown",
                                     "report_context", "write_reports")})
_LAZY.update({n: ".variants" for n in ("DEFAULT_REFERENCE", "FALLBACK_REFERENCE", "EvalOptions", "EvalRow",
                                       "Variant", "expand_variants", "model_file", "model_info",
                                       "oneflow_available")})
__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
