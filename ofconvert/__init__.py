"""ofconvert: OneFlow image models to ONNX, ONNX Runtime and TensorRT."""
__version__ = "0.1.0"
