"""ofconvert: OneFlow image models to ONNX, ONNX Runtime and TensorRT.

Public API (heavy modules load on first use):
    ofconvert.list_models(), ofconvert.get_config(name), ofconvert.get_model(name)
    ofconvert.export(model_or_name, "out.onnx", input_shape=(3, 224, 224), ...) -> ExportReport
        (or export(model_or_name, "out.onnx", ExportOptions(...)); keywords override its fields)
    ofconvert.validate(module, "out.onnx", config)        -> ValidationReport
        (or validate(module, "out.onnx", config, ValidateOptions(...)), likewise)
    ofconvert.convert(ConvertOptions(...))                -> ConvertResult
    ofconvert.build_engine(onnx_path, engine_path, ...)   -> sidecar dict
    ofconvert.make_runner(backend, model)                 -> runner
    ofconvert.benchmark(...), ofconvert.evaluate(...)     -> result rows
    ofconvert.quantize_to_budget(...)                     -> int8/fp16 files under a flip budget
"""
from .lazy import lazy_getattr

# Function names never equal a submodule's name (export -> exporter.py, validate ->
# validation.py, convert -> pipeline.py, evaluate -> evaluation.py), so importing a
# submodule can never shadow a public function.

__version__ = "0.1.0"

_LAZY = {
    "list_models": ".config", "get_config": ".config", "PreprocessConfig": ".config", "ModelConfig": ".config",
    "get_model": ".zoo",
    "export": ".exporter", "ExportReport": ".exporter", "ExportOptions": ".export_options",
    "validate": ".validation", "ValidationReport": ".validation", "ValidateOptions": ".export_options",
    "convert": ".pipeline", "ConvertOptions": ".pipeline",
    "build_engine": ".engine",
    "make_runner": ".runners",
    "benchmark": ".bench", "BenchOptions": ".bench",
    "evaluate": ".evaluation", "EvalOptions": ".evaluation",
    "calibrate": ".calibration",
    "to_fp16": ".precision", "quantize_qdq": ".precision",
    "quantize_to_budget": ".budget",
}

__all__ = sorted(_LAZY) + ["__version__"]


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
