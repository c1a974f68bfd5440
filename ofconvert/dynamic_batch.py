"""Deterministic graphs for traced ONNX models (pure onnx + numpy).

oneflow-onnx converts one *trace* of a module, at one batch size. Two problems
follow, solved without OneFlow (the second in ``dynamic_dims.make_dynamic``):

* ``canonicalize``: node order and names come from process-wide counters, so
  two exports of one model (or two traces in one export) may list the same graph
  differently. The canonical form orders nodes by a depth-first walk from the
  outputs (inputs visited in order), drops dead nodes, and names every node,
  tensor and initializer from that order. Same graph => same bytes.
* the dynamic batch (``dynamic_dims``): the traced batch is baked into constants (Reshape /
  Expand / Tile / ConstantOfShape shapes, Slice ends, Split sizes, Range
  limits...). Given the same module traced at two batch sizes, every integer
  constant entry that differs between the traces must be ``k * batch + c`` with
  integer ``k``, ``c`` (``x[:-1]`` on the batch: ``batch - 1``); it is replaced
  by that expression of ``Shape(input)[0]`` computed in the graph. Anything else
  that differs (a float constant, an attribute, a non-integer slope) stops the
  export with an error naming the node: never a silently fixed batch.
"""
import onnx


def module_path(node_name):
    """OneFlow op names look like ``m.layer1.0.conv1-conv2d-3`` (``m`` is our
    nn.Graph wrapper's attribute): return ``layer1.0.conv1`` ("" for the top)."""
    head = node_name.split("-", 1)[0]
    if head == "m":
        return ""
    return head[2:] if head.startswith("m.") else ""


def _scope(node_name):
    p = module_path(node_name)
    return (p + "/") if p else ""


def _drop_identities(g):
    """Rewire around Identity nodes whose output is not a graph output."""
    outs = {o.name for o in g.output}
    alias = {}
    keep = []
    for n in g.node:
        if n.op_type == "Identity" and n.output[0] not in outs:
            alias[n.output[0]] = n.input[0]
        else:
            keep.append(n)

    def resolve(x):
        while x in alias:
            x = alias[x]
        return x

    for n in keep:
        n.input[:] = [resolve(x) for x in n.input]
    del g.node[:]
    g.node.extend(_collapse_output_identities(g, keep))


def _collapse_output_identities(g, nodes):
    """``op -> Identity -> graph output`` (the exporter traces every output through
    an identity): the op writes the output itself. Identities over a constant, a
    graph input or a tensor another output already took stay."""
    outs, ins = {o.name for o in g.output}, {i.name for i in g.input}
    producer = {o: n for n in nodes for o in n.output}
    rename, keep = {}, []
    for n in nodes:
        x = n.input[0] if n.op_type == "Identity" and n.input else None
        if x is not None and n.output[0] in outs and x in producer and x not in outs and x not in ins \
                and x not in rename and producer[x].op_type != "Identity":
            rename[x] = n.output[0]
            continue
        keep.append(n)
    for n in keep:
        n.input[:] = [rename.get(x, x) for x in n.input]
        n.output[:] = [rename.get(x, x) for x in n.output]
    return keep


def canonicalize(model):
    """Deterministic node order and names (in place); returns ``model``."""
    g = model.graph
    _drop_identities(g)
    producer = {o: n for n in g.node for o in n.output if o}
    inits = {t.name: t for t in g.initializer}
    order, done = [], set()
    for out in g.output:
        root = producer.get(out.name)
        if root is None or id(root) in done:
            continue
        stack = [(root, 0)]
        on_stack = {id(root)}
        while stack:
            node, k = stack.pop()
            if k < len(node.input):
                stack.append((node, k + 1))
                child = producer.get(node.input[k])
                if child is not None and id(child) not in done and id(child) not in on_stack:
                    on_stack.add(id(child))
                    stack.append((child, 0))
                continue
            done.add(id(node))
            order.append(node)
    renames = {}
    for i, vi in enumerate(g.input):
        renames[vi.name] = f"input{i}"
    for i, vi in enumerate(g.output):
        if vi.name not in renames:
            renames[vi.name] = f"output{i}"
    for i, n in enumerate(order):
        base = f"{_scope(n.name)}{n.op_type}_{i}"
        n.name = base
        for j, o in enumerate(n.output):
            if o and o not in renames:
                renames[o] = f"{base}:{j}"
    new_inits, seen = [], set()
    for n in order:
        for k, x in enumerate(n.input):
            if x in inits and x not in seen:
                seen.add(x)
                renames[x] = f"{n.name}.in{k}"
                new_inits.append(inits[x])
    for n in order:
        n.input[:] = [renames.get(x, x) for x in n.input]
        n.output[:] = [renames.get(x, x) for x in n.output]
    for t in new_inits:
        t.name = renames[t.name]
    for vi in list(g.input) + list(g.output):
        vi.name = renames.get(vi.name, vi.name)
    nodes = [_copy(n) for n in order]
    del g.node[:]
    g.node.extend(nodes)
    inits_sorted = [_copy(t, onnx.TensorProto) for t in new_inits]
    del g.initializer[:]
    g.initializer.extend(inits_sorted)
    del g.value_info[:]
    return model


def _copy(msg, cls=onnx.NodeProto):
    c = cls()
    c.CopyFrom(msg)
    return c
