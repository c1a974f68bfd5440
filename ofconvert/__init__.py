"""ofconvert: OneFlow image models to ONNX, ONNX Runtime and TensorRT."""
__version__ = "0.1.0"


def __getattr__(name):  # lazy: ``ofconvert.benchmark`` without importing the benchmark module up front
    if name == "benchmark":
        from .bench import benchmark

        return benchmark
    raise AttributeError(f"module 'ofconvert' has no attribute {name!r}")
