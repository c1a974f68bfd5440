"""Precision transforms of an fp32 ONNX: fp16, and int8 Q/DQ from calibration scales.

* :func:`to_fp16` -- float16 weights and activations (ONNX Runtime's copy of
  onnxconverter-common's converter, so no extra dependency); the model's I/O can
  stay float32 (``keep_io_types``); ops without a float16 kernel stay float32.
* :func:`quantize_qdq` -- explicit quantization (QuantizeLinear/DequantizeLinear
  pairs), our own graph rewrite (see docs/precision.md for why):

  - weights of Conv (axis 0), Gemm and MatMul: per-channel symmetric int8 in
    [-127, 127] stored as int8 initializers behind a DequantizeLinear;
  - activations: per-tensor, one Q/DQ pair per tensor shared by all its consumers,
    scale from the calibration cache; on the inputs of Conv/Gemm/MatMul and on *both*
    inputs of residual Adds (so TensorRT can fuse the add into the conv epilogue);
  - BatchNormalization after a Conv is folded into the Conv first (a Q/DQ'd weight
    cannot be folded by TensorRT or ONNX Runtime afterwards).

  ``target="trt"``: int8 activations, zero point 0, float biases: what TensorRT's
  explicit-quantization mode takes. ``target="cpu"``: uint8 activations (zero point
  0 with scale amax/255 on non-negative tensors such as Relu/Clip outputs, 128
  otherwise), int8 weights, int32 biases, plus Q/DQ on pooling inputs: the pattern
  ONNX Runtime's CPU provider fuses into QLinearConv / QLinearAdd / QGemm.
"""
from ..graph import fold_zero_pads  # noqa: F401 (a graph fold the Q/DQ rewrite applies)
from .common import (  # noqa: F401
                     FLOAT_NODES_KEY,
                     INT8_MAX,
                     MIN_OPSET,
                     PRECISION_KEY,
                     TARGETS,
                     node_key,
                     qdq_activations,
                     qdq_layers,
                     scale_sources,
)
from .fp16 import fp16_model, to_fp16  # noqa: F401
from .qdq import quantize_model, quantize_qdq  # noqa: F401

__all__ = ["FLOAT_NODES_KEY", "INT8_MAX", "MIN_OPSET", "PRECISION_KEY", "TARGETS", "fold_zero_pads", "fp16_model",
           "node_key", "qdq_activations", "qdq_layers", "quantize_model", "quantize_qdq", "scale_sources", "to_fp16"]
