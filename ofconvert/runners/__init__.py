"""Runners: one per backend, same interface (see ``base.BaseRunner``).

Heavy frameworks (oneflow, onnxruntime, tensorrt) are imported lazily inside the
runner modules, so ``import ofconvert.runners`` works everywhere.
"""
from .base import BaseRunner, make_runner  # noqa: F401
