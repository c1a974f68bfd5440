"""OneFlow runner: a zoo model (by name) or a user's ``oneflow.nn.Module``.

mode="eager" runs the module directly; mode="graph" compiles an ``nn.Graph``
per batch size (OneFlow's static-graph mode, usually faster).
"""
import numpy as np

from ..errors import OfconvertError
from .base import BaseRunner


class OneFlowRunner(BaseRunner):
    backend = "oneflow"

    def __init__(self, model, weights=None, device="cpu", mode="eager", name=None, input_shape=None):
        super().__init__(name or "oneflow")
        if mode not in ("eager", "graph"):
            raise OfconvertError(f"OneFlow mode must be 'eager' or 'graph', got {mode!r}")
        self.model, self.weights, self.device, self.mode = model, weights, device, mode
        self.input_shape = input_shape   # the user's file.py:Class without a declared shape
        self.module = None
        self.config = None
        self._graphs = {}

    def activate_impl(self):
        from ..zoo import get_model, import_oneflow

        self.flow = import_oneflow()
        if isinstance(self.model, str):
            self.module, self.config = get_model(self.model, weights=self.weights, input_shape=self.input_shape)
        else:
            self.module = self.model
        self.module.eval()
        if self.device != "cpu":
            self.module.to(self.device)

    def _graph(self, batch):
        g = self._graphs.get(batch)
        if g is None:
            from ..models.wrappers import ModuleGraph

            g = self._graphs[batch] = ModuleGraph(self.module)
        return g

    def infer_impl(self, x):
        flow = self.flow
        t = flow.tensor(np.ascontiguousarray(x, dtype=np.float32), device=self.device)
        with flow.no_grad():
            y = self._graph(x.shape[0])(t) if self.mode == "graph" else self.module(t)
        return y.numpy().astype(np.float32, copy=False)

    def synchronize(self):
        if self.device != "cpu":
            self.flow.cuda.synchronize()

    def deactivate_impl(self):
        self.module = None
        self._graphs.clear()
