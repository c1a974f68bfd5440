"""Small OneFlow wrappers for zoo models (imports oneflow: load lazily)."""
import oneflow.nn as nn


class ModuleGraph(nn.Graph):
    """``nn.Graph`` running one module on one input (OneFlow's static-graph mode;
    what oneflow-onnx converts, and the OneFlow runner's ``mode="graph"``)."""

    def __init__(self, module):
        super().__init__()
        self.m = module

    def build(self, x):
        return self.m(x)


class LogitsOnly(nn.Module):
    """Return only the logits of a model whose forward returns a tuple
    (flowvision's Inception3 returns ``(logits, aux_logits)``)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        y = self.model(x)
        return y[0] if isinstance(y, (tuple, list)) else y


class TensorOutputs(nn.Module):
    """Return a model's outputs as a tensor or a tuple of tensors: dict outputs
    (flowvision's segmentation models return ``{"out": ..., "aux": ...}``) become a
    tuple in key order and ``None`` entries are dropped, which nn.Graph and the
    exporter handle."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        y = self.model(x)
        if isinstance(y, dict):
            y = tuple(y[k] for k in sorted(y))
        if isinstance(y, (tuple, list)):
            y = tuple(t for t in y if t is not None)     # googlenet's aux outputs are None in eval
            return y[0] if len(y) == 1 else y
        return y
