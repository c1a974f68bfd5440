"""What the precision transforms share: metadata keys, the op families, loading /
saving a model, and the graph questions both the Q/DQ rewrite and the calibration
ask (which activations get a Q/DQ pair, which tensors reuse another's range, the
units a mixed-precision search keeps in float)."""
import os

import numpy as np

PRECISION_KEY = "ofconvert.precision"
#: comma-separated names of the nodes a mixed-precision model keeps in float (fp32)
FLOAT_NODES_KEY = "ofconvert.float_nodes"
#: number of layers whose bias was corrected for their weight-rounding error (precision/bias.py)
BIAS_CORRECTED_KEY = "ofconvert.bias_corrected"
TARGETS = ("trt", "cpu")
INT8_MAX = 127.0
_MIN_SCALE = 1e-6 / 127.0
_WEIGHT_OPS = ("Conv", "Gemm", "MatMul")
_POOL_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool")
#: ops whose input also gets a Q/DQ pair on the CPU target (so that ORT can keep int8 across them)
_CPU_EXTRA_OPS = _POOL_OPS + ("Pad",)
#: ops whose output keeps the input's quantization scale (ORT drops their Q/DQ pair)
_SCALE_PRESERVING = ("MaxPool", "Pad", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")
#: ops whose output is non-negative when their input is
_NONNEG_PASSTHROUGH = ("MaxPool", "Pad", "AveragePool", "GlobalAveragePool", "Reshape", "Flatten", "Transpose",
                       "Squeeze", "Unsqueeze")
from ..onnx_io import MIN_OPSET  # noqa: E402,F401 (re-exported by precision)


def _load(src):
    from ..onnx_io import load_onnx

    return load_onnx(src)


def _save(model, dst):
    import onnx

    from ..fileio import atomic_path

    try:
        onnx.checker.check_model(model)
    except Exception as e:  # our own rewrite produced an invalid model: a bug, not a user error
        raise RuntimeError(f"internal error: transformed model fails onnx.checker: {e}") from e
    with atomic_path(dst) as tmp:
        onnx.save(model, tmp)
    return os.fspath(dst)


def _onnx_opset(model):
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


# ---------------------------------------------------------------------------
# which activations get a Q/DQ pair (shared with the calibration)
# ---------------------------------------------------------------------------
def _graph_index(model):
    g = model.graph
    const = {t.name for t in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in g.node for o in n.output}
    return const, producer


def node_key(node):
    """The name a node is kept in float by (``exclude``): its name, else its first output."""
    return node.name or (node.output[0] if node.output else "")


def qdq_activations(model, target="trt", exclude=()):
    """Activation tensors (ONNX names, graph order) that :func:`quantize_qdq` puts a
    Q/DQ pair on for ``target``: inputs of Conv/Gemm/MatMul, both inputs of Adds of
    two activations (residual adds), and on "cpu" the inputs of pooling and Pad;
    nodes named in ``exclude`` (:func:`node_key`) ask for none."""
    const, _ = _graph_index(model)
    acts = []

    def add(t):
        if t and t not in const and t not in acts:
            acts.append(t)

    for n in model.graph.node:
        if exclude and node_key(n) in exclude:
            continue
        if n.op_type in ("Conv", "Gemm"):
            add(n.input[0])
        elif n.op_type == "MatMul":
            add(n.input[0])
            add(n.input[1])
        elif n.op_type == "Add" and len(n.input) == 2 and all(i and i not in const for i in n.input):
            add(n.input[0])
            add(n.input[1])
        elif target == "cpu" and n.op_type in _CPU_EXTRA_OPS:
            add(n.input[0])
    return acts


def _is_residual_add(node, const):
    return node.op_type == "Add" and len(node.input) == 2 and all(i and i not in const for i in node.input)


def qdq_layers(model):
    """The units a mixed-precision search keeps in float: ``{layer: [node keys]}`` in
    graph order. A layer is a Conv / Gemm / MatMul / residual Add (what gets Q/DQ on
    its inputs) together with the pooling / Pad nodes that only feed it (through
    Flatten / Reshape / ...): keeping a Conv in float must also drop the CPU
    flavour's Q/DQ pair in front of its Pad, or the float Conv would still see
    quantized input. A pooling / Pad node that feeds no single layer is its own unit."""
    const, _ = _graph_index(model)
    consumers = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    main = [n for n in model.graph.node if n.op_type in _WEIGHT_OPS or _is_residual_add(n, const)]
    layers = {node_key(n): [node_key(n)] for n in main}
    main_keys = set(layers)
    extra = {}
    for n in model.graph.node:
        if n.op_type not in _CPU_EXTRA_OPS:
            continue
        cur = n
        while True:
            cs = consumers.get(cur.output[0], [])
            if len(cs) != 1:
                cur = None
                break
            cur = cs[0]
            if node_key(cur) in main_keys or (cur.op_type not in _SCALE_PRESERVING + _CPU_EXTRA_OPS
                                               and cur.op_type not in _NONNEG_PASSTHROUGH):
                break
        if cur is not None and node_key(cur) in main_keys:
            layers[node_key(cur)].append(node_key(n))
        else:
            extra[node_key(n)] = [node_key(n)]
    order = {node_key(n): k for k, n in enumerate(model.graph.node)}
    layers.update(extra)
    return dict(sorted(layers.items(), key=lambda kv: order[kv[0]]))


def scale_sources(model, tensors):
    """{tensor: the tensor whose range it reuses}: through MaxPool / Pad (zero) /
    Reshape / Flatten / Transpose / Squeeze / Unsqueeze back to the first tensor
    computed otherwise (itself when it is not such an output)."""
    const, producer = _graph_index(model)
    zero = _zero_constants(model)
    out = {}
    for t in tensors:
        src, p = t, producer.get(t)
        while p is not None and p.op_type in _SCALE_PRESERVING and p.input and p.input[0] not in const and (
                p.op_type != "Pad" or len(p.input) < 3 or not p.input[2] or p.input[2] in zero):
            src = p.input[0]
            p = producer.get(src)
        out[t] = src
    return out


def _zero_constants(model):
    from onnx import numpy_helper

    pad_values = {n.input[2] for n in model.graph.node if n.op_type == "Pad" and len(n.input) > 2}
    zero = set()
    for t in model.graph.initializer:
        if t.name in pad_values and not np.any(numpy_helper.to_array(t)):
            zero.add(t.name)
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] in pad_values and n.attribute and \
                n.attribute[0].name == "value" and not np.any(numpy_helper.to_array(n.attribute[0].t)):
            zero.add(n.output[0])
    return zero


def fold_zero_pads(model):
    """In place: a constant-mode Pad of zeros on the spatial axes only, whose output
    feeds only Convs (``auto_pad`` unset) and is no graph output, becomes those
    Convs' ``pads`` attribute (asymmetric allowed) and is removed -> {Pad input:
    Pad output} of the folded Pads. ONNX Runtime's ``quant_pre_process`` does the
    same; without it the CPU flavour runs each as a separate uint8 Pad (and the
    float model as a copy per Pad). The Pad's input carries the same values as its
    output (plus zeros), so the calibration range is the same tensor's (see
    :func:`scale_sources`)."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant" and n.output}
    zero = _zero_constants(model)
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}

    def array(name):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        c = consts.get(name)
        if c is not None and c.attribute and c.attribute[0].name == "value":
            return numpy_helper.to_array(c.attribute[0].t)
        return None

    folded, drop = {}, []
    for pad in g.node:
        if pad.op_type != "Pad" or pad.output[0] in outputs:
            continue
        if next((a.s for a in pad.attribute if a.name == "mode"), b"constant") != b"constant":
            continue
        if len(pad.input) > 3 and pad.input[3]:          # opset 18 ``axes``
            continue
        if len(pad.input) > 2 and pad.input[2] and pad.input[2] not in zero:
            continue
        if len(pad.input) > 1:
            p = array(pad.input[1])
        else:                                             # opset < 11: attributes
            p = next((list(a.ints) for a in pad.attribute if a.name == "pads"), None)
            if any(a.name == "value" and a.f != 0 for a in pad.attribute):
                continue
        cs = consumers.get(pad.output[0], [])
        if p is None or not cs or any(c.op_type != "Conv" or c.input[0] != pad.output[0] or
                                      any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET")
                                          for a in c.attribute) for c in cs):
            continue
        p = [int(v) for v in np.asarray(p).ravel()]
        r = len(p) // 2
        if r < 3 or min(p) < 0 or any(p[i] or p[r + i] for i in (0, 1)):
            continue
        spatial = p[2:r] + p[r + 2:]                      # [x1_begin, x2_begin, ..., x1_end, x2_end, ...]
        for c in cs:
            old = next((a for a in c.attribute if a.name == "pads"), None)
            cur = list(old.ints) if old is not None else [0] * len(spatial)
            if len(cur) != len(spatial):
                break
        else:
            for c in cs:
                old = next((a for a in c.attribute if a.name == "pads"), None)
                cur = list(old.ints) if old is not None else [0] * len(spatial)
                new = [a + b for a, b in zip(cur, spatial)]
                if old is not None:
                    c.attribute.remove(old)
                c.attribute.append(helper.make_attribute("pads", new))
                c.input[0] = pad.input[0]
            folded[pad.input[0]] = pad.output[0]
            drop.append(pad)
    for pad in drop:
        g.node.remove(pad)
    return folded
