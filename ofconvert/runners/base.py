"""Runner interface (Polygraphy style): public methods wrap ``*_impl``.

A runner turns a float batch (NCHW, the model's preprocessing already applied)
into logits (float32, N x classes). ``activate`` loads the model/engine (may be
slow), ``infer`` runs one batch, ``deactivate`` frees it. Runners are context
managers.
"""
import time

import numpy as np

from ..errors import OfconvertError


class BaseRunner:
    #: short backend name, e.g. "ort-cpu", "oneflow", "trt"
    backend = "base"

    def __init__(self, name=None):
        self.name = name or self.backend
        self.is_active = False
        self.last_inference_time = None

    # -- public API ---------------------------------------------------------
    def activate(self):
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
        return self

    def infer(self, x):
        if not self.is_active:
            raise RuntimeError(f"runner {self.name} is not active; call activate() or use it as a context manager")
        x = np.asarray(x)
        if x.ndim != 4:
            raise OfconvertError(f"{self.name}: expected an NCHW batch, got shape {x.shape}")
        t0 = time.perf_counter()
        out = self.infer_impl(x)
        self.last_inference_time = time.perf_counter() - t0
        return out

    def deactivate(self):
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def __enter__(self):
        return self.activate()

    def __exit__(self, *exc):
        self.deactivate()

    # -- to implement -------------------------------------------------------
    #: numpy dtype the model's input expects (float16 models take float16)
    input_dtype = np.float32

    def activate_impl(self):
        raise NotImplementedError

    def infer_impl(self, x):
        raise NotImplementedError

    def deactivate_impl(self):
        pass
