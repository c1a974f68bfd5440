"""``GraphIndex``: who produces and who consumes each tensor of an ONNX graph, and
its constants as arrays -- the bookkeeping every graph pass needs, built once."""
from onnx import numpy_helper


class GraphIndex:
    """Producer and consumers of every tensor of ``graph`` (a snapshot: rebuild it
    after rewriting the graph), its initializers by name, its graph outputs."""

    def __init__(self, graph):
        self.graph = graph
        self.producer = {}
        self.consumers = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
            for o in n.output:
                if o:
                    self.producer[o] = n
        self.initializers = {t.name: t for t in graph.initializer}
        self.outputs = {o.name for o in graph.output}

    def is_constant(self, name):
        """Whether ``name`` is an initializer or a ``Constant`` node's output."""
        if name in self.initializers:
            return True
        n = self.producer.get(name)
        return n is not None and n.op_type == "Constant"

    def is_zero(self, name):
        """Whether ``name`` is a constant whose every element is zero."""
        v = self.constant(name)
        return v is not None and not v.any()

    def constant(self, name):
        """An initializer or a ``Constant`` node's value as a numpy array, or None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        n = self.producer.get(name)
        if n is not None and n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
        return None

    def constants(self):
        """{name: array} of every initializer and Constant-node output."""
        out = {t: numpy_helper.to_array(v) for t, v in self.initializers.items()}
        for n in self.graph.node:
            if n.op_type == "Constant" and n.output:
                v = self.constant(n.output[0])
                if v is not None:
                    out[n.output[0]] = v
        return out
