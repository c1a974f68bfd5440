"""What the precision transforms share: metadata keys, the op families, loading /
saving a model, and the graph questions both the Q/DQ rewrite and the calibration
ask (which activations get a Q/DQ pair, which tensors reuse another's range, the
units a mixed-precision search keeps in float)."""
import os

from ..graph import GraphIndex
from ..onnx_io import MIN_OPSET  # noqa: F401 (re-exported by precision)

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
def node_key(node):
    """The name a node is kept in float by (``exclude``): its name, else its first output."""
    return node.name or (node.output[0] if node.output else "")


def qdq_activations(model, target="trt", exclude=()):
    """Activation tensors (ONNX names, graph order) that :func:`quantize_qdq` puts a
    Q/DQ pair on for ``target``: inputs of Conv/Gemm/MatMul, both inputs of Adds of
    two activations (residual adds), and on "cpu" the inputs of pooling and Pad;
    nodes named in ``exclude`` (:func:`node_key`) ask for none."""
    idx = GraphIndex(model.graph)
    acts = []

    def add(t):
        if t and not idx.is_constant(t) and t not in acts:
            acts.append(t)

    for n in model.graph.node:
        if exclude and node_key(n) in exclude:
            continue
        if n.op_type in ("Conv", "Gemm"):
            add(n.input[0])
        elif n.op_type == "MatMul":
            add(n.input[0])
            add(n.input[1])
        elif _is_residual_add(n, idx):
            add(n.input[0])
            add(n.input[1])
        elif target == "cpu" and n.op_type in _CPU_EXTRA_OPS:
            add(n.input[0])
    return acts


def _is_residual_add(node, idx):
    """An Add of two activations (no constant operand)."""
    return node.op_type == "Add" and len(node.input) == 2 and all(i and not idx.is_constant(i) for i in node.input)


def qdq_layers(model):
    """The units a mixed-precision search keeps in float: ``{layer: [node keys]}`` in
    graph order. A layer is a Conv / Gemm / MatMul / residual Add (what gets Q/DQ on
    its inputs) together with the pooling / Pad nodes that only feed it (through
    Flatten / Reshape / ...): keeping a Conv in float must also drop the CPU
    flavour's Q/DQ pair in front of its Pad, or the float Conv would still see
    quantized input. A pooling / Pad node that feeds no single layer is its own unit."""
    idx = GraphIndex(model.graph)
    consumers = idx.consumers
    main = [n for n in model.graph.node if n.op_type in _WEIGHT_OPS or _is_residual_add(n, idx)]
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
    idx = GraphIndex(model.graph)
    out = {}
    for t in tensors:
        src, p = t, idx.producer.get(t)
        while p is not None and p.op_type in _SCALE_PRESERVING and p.input and not idx.is_constant(p.input[0]) \
                and (p.op_type != "Pad" or len(p.input) < 3 or not p.input[2] or idx.is_zero(p.input[2])):
            src = p.input[0]
            p = idx.producer.get(src)
        out[t] = src
    return out
