"""Graph clean-up and order: unused initializers and Constant nodes, topological sort."""
from onnx import NodeProto


def drop_unused_constant_nodes(g):
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [n for n in g.node if not (n.op_type == "Constant" and n.output[0] not in used)]
    del g.node[:]
    g.node.extend(keep)


def remove_unused_initializers(g):
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)


def topological_sort(graph):
    """Re-order ``graph.node`` topologically (stable: original order where possible)."""
    nodes = [_copy(n) for n in graph.node]
    avail = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    ordered, pending = [], nodes
    while pending:
        rest = []
        for n in pending:
            if all(i in avail for i in n.input):
                ordered.append(n)
                avail.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise RuntimeError(f"internal error: graph has a cycle or a dangling input at node {rest[0].name!r}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def _copy(node):
    c = NodeProto()
    c.CopyFrom(node)
    return c
