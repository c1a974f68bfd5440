"""Small OneFlow wrappers for zoo models (imports oneflow: load lazily)."""
import oneflow as flow
import oneflow.nn as nn


class ModuleGraph(nn.Graph):
    """``nn.Graph`` running one module on one input (OneFlow's static-graph mode;
    what oneflow-onnx converts, and the OneFlow runner's ``mode="graph"``)."""

    def __init__(self, module):
        super().__init__()
        self.m = module

    def build(self, x):
        return self.m(x)


def flatten_outputs(y, key=None):
    """A forward's result -> ``[(name or None, tensor), ...]`` in order: dict keys
    name their values (``key.i`` inside a nested tuple, ``key.sub`` inside a
    nested dict), tuple/list entries are unnamed, ``None`` entries are dropped."""
    if y is None:
        return []
    if isinstance(y, dict):
        out = []
        for k, v in y.items():
            out.extend(flatten_outputs(v, str(k) if key is None else f"{key}.{k}"))
        return out
    if isinstance(y, (tuple, list)):
        out = []
        for i, v in enumerate(y):
            out.extend(flatten_outputs(v, None if key is None else f"{key}.{i}"))
        return out
    return [(key, y)]


class TraceGraph(nn.Graph):
    """``nn.Graph`` of one module on any number of inputs, what the exporter
    converts: the outputs flattened (``flatten_outputs``; their names in
    ``output_keys``), each through an identity op so that a buffer or parameter
    returned as it is (SSD's priors) is an op's output, as oneflow-onnx needs."""

    def __init__(self, module):
        super().__init__()
        self.m = module
        self.output_keys = None

    def build(self, *xs):
        flat = flatten_outputs(self.m(*xs))
        self.output_keys = [k for k, _ in flat]
        return tuple(flow._C.identity(t) for _, t in flat)   # noqa: SLF001 (OneFlow's identity op: one traced node)


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
    """Return a model's outputs as a tensor, a tuple of tensors or a dict (whose
    keys the exporter makes output names: flowvision's segmentation models
    return ``{"out": ..., "aux": ...}``); ``None`` entries are dropped."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        y = self.model(x)
        if isinstance(y, dict):
            y = {k: v for k, v in y.items() if v is not None}
            return y if len(y) != 1 else next(iter(y.values()))
        if isinstance(y, (tuple, list)):
            y = tuple(t for t in y if t is not None)     # googlenet's aux outputs are None in eval
            return y[0] if len(y) == 1 else y
        return y
