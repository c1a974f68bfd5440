"""One graph toolkit for every ONNX pass of the package (pure onnx + numpy):

* ``index``: ``GraphIndex`` (producers, consumers, constants), built once per pass;
* ``cleanup``: unused initializers / Constant nodes, topological sort;
* ``folds``: BatchNormalization into Conv, bias Adds into Conv / Gemm, zero Pads into
  Conv, constant subgraphs.

The dynamic batch / image size (``dynamic_batch``, ``dynamic_dims``) and the
precision rewrites (``precision``) are built on these.
"""
from .cleanup import drop_unused_constant_nodes, remove_unused_initializers, topological_sort
from .folds import FOLDABLE, fold_batchnorm, fold_bias_add, fold_constants, fold_zero_pads
from .index import GraphIndex

__all__ = ["GraphIndex", "FOLDABLE", "drop_unused_constant_nodes", "fold_batchnorm", "fold_bias_add",
           "fold_constants", "fold_zero_pads", "remove_unused_initializers", "topological_sort"]
