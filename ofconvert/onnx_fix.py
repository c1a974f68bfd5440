"""Graph surgery on exported ONNX models (pure onnx + numpy; no OneFlow).

* ``rename_io``: input -> ``input``, outputs -> ``logits`` (or the names given),
  dim 0 -> ``batch``.
* ``fold_batchnorm`` / ``fold_bias_add``: the layer forms int8 fusions need.
(The dynamic batch and the deterministic graph form live in ``dynamic_batch``.)
"""
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

from .errors import ExportError


from .dynamic_batch import remove_unused_initializers, topological_sort  # noqa: F401 (re-exported)


def _rename_tensor(g, old, new):
    for n in g.node:
        for i, x in enumerate(n.input):
            if x == old:
                n.input[i] = new
        for i, x in enumerate(n.output):
            if x == old:
                n.output[i] = new
    for vi in list(g.input) + list(g.output):
        if vi.name == old:
            vi.name = new


def rename_io(model, input_name="input", output_names=("logits",), batch_dim="batch"):
    """Name the input and outputs; mark dim 0 of every output that has the batch
    as dim 0 (all of them, in a traced image model) as ``batch_dim``."""
    g = model.graph
    if len(g.input) != 1:
        raise ExportError(f"expected one input, got {len(g.input)}")
    if len(output_names) != len(g.output):
        raise ExportError(f"the model has {len(g.output)} outputs but {len(output_names)} output name(s) "
                          f"were given: {list(output_names)}")
    if len(set(output_names)) != len(output_names) or input_name in output_names:
        raise ExportError(f"input/output names must be distinct, got {[input_name] + list(output_names)}")
    _rename_tensor(g, g.input[0].name, input_name)
    for vi, name in zip(list(g.output), output_names):
        _rename_tensor(g, vi.name, name)
    for vi in [g.input[0]] + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims):
            dims[0].ClearField("dim_value")
            dims[0].dim_param = batch_dim
    # intermediate shapes were recorded at the traced batch size: drop them
    del g.value_info[:]
    return model


def set_metadata(model, props):
    keep = {p.key: p.value for p in model.metadata_props}
    keep.update({k: str(v) for k, v in props.items()})
    del model.metadata_props[:]
    for k, v in keep.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    return model


def get_metadata(model):
    return {p.key: p.value for p in model.metadata_props}


def fold_batchnorm(model):
    """Fold inference BatchNormalization into the preceding Conv (when the Conv
    output feeds only that BN and all parameters are constants), as exporters
    from other frameworks do in eval mode. Keeps Q/DQ placement and TensorRT's
    fusions simple. Returns the number of folded nodes."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producer = {o: n for n in g.node for o in n.output}
    graph_outputs = {o.name for o in g.output}
    folded, drop = 0, set()
    for bn in list(g.node):
        if bn.op_type != "BatchNormalization" or any(bn.output[1:]):   # training-mode outputs in use
            continue
        conv = producer.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or len(consumers.get(conv.output[0], [])) != 1 \
                or conv.output[0] in graph_outputs:
            continue
        names = list(bn.input[1:5]) + [n for n in conv.input[1:] if n]
        if not all(n in inits for n in names):
            continue
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale, bias, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in bn.input[1:5])
        w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
        has_bias = len(conv.input) > 2 and conv.input[2]
        b = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if has_bias else np.zeros(w.shape[0])
        f = scale / np.sqrt(var + eps)
        w2 = (w * f.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
        b2 = ((b - mean) * f + bias).astype(np.float32)
        wname, bname = conv.output[0] + "_bnfold_w", conv.output[0] + "_bnfold_b"   # output names are unique
        g.initializer.extend([numpy_helper.from_array(w2, wname), numpy_helper.from_array(b2, bname)])
        del conv.input[1:]
        conv.input.extend([wname, bname])
        conv.output[0] = bn.output[0]
        drop.add(id(bn))
        folded += 1
    keep = [n for n in g.node if id(n) not in drop]
    del g.node[:]
    g.node.extend(keep)
    remove_unused_initializers(g)
    return folded


def _per_channel_vector(arr, channels):
    """``arr`` as a (channels,) vector if it broadcasts per channel on axis 1 of an
    NCHW / NC tensor ([C], [1,C], [1,C,1,1], [C,1,1]), else None."""
    a = np.asarray(arr)
    if a.size != channels:
        return None
    shape = tuple(a.shape)
    ok = (shape in ((channels,), (1, channels), (channels, 1, 1), (1, channels, 1, 1))) or channels == 1
    return a.reshape(channels) if ok else None


def fold_bias_add(model):
    """oneflow-onnx writes a layer's bias as a separate ``Add`` (Conv -> Add,
    MatMul -> Add). Fold it: Conv gets its bias input; a MatMul of a rank-2
    input with a constant weight becomes Gemm. ONNX Runtime's QDQ fusions
    (QLinearConv, QGemm) and TensorRT's need that form. Returns the count."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers, producer = {}, {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
        for o in n.output:
            producer[o] = n
    graph_outputs = {o.name for o in g.output}
    ranks = _tensor_ranks(model)
    folded, drop = 0, set()
    for add in list(g.node):
        if add.op_type != "Add" or len(add.input) != 2:
            continue
        for k in (0, 1):
            src, const = add.input[k], add.input[1 - k]
            node = producer.get(src)
            if node is None or const not in inits or src in graph_outputs or len(consumers.get(src, [])) != 1:
                continue
            if node.op_type == "Conv" and node.input[1] in inits:
                c = inits[node.input[1]].dims[0]
                vec = _per_channel_vector(numpy_helper.to_array(inits[const]), c)
                if vec is None:
                    continue
                has_bias = len(node.input) > 2 and node.input[2]
                old = numpy_helper.to_array(inits[node.input[2]]) if has_bias else np.zeros(c, np.float32)
                bname = src + "_bias"
                g.initializer.append(numpy_helper.from_array((old + vec).astype(np.float32), bname))
                del node.input[2:]
                node.input.append(bname)
            elif node.op_type == "MatMul" and node.input[1] in inits and ranks.get(node.input[0]) == 2 \
                    and len(inits[node.input[1]].dims) == 2:
                n_out = inits[node.input[1]].dims[1]
                vec = _per_channel_vector(numpy_helper.to_array(inits[const]), n_out)
                if vec is None:
                    continue
                bname = src + "_bias"
                g.initializer.append(numpy_helper.from_array(vec.astype(np.float32), bname))
                node.op_type = "Gemm"
                node.input.append(bname)
            else:
                continue
            node.output[0] = add.output[0]
            drop.add(id(add))
            folded += 1
            break
    keep = [n for n in g.node if id(n) not in drop]
    del g.node[:]
    g.node.extend(keep)
    remove_unused_initializers(g)
    return folded


def _tensor_ranks(model):
    """{tensor: rank} from ONNX shape inference. onnx infers no rank for a Reshape
    whose shape is computed (our dynamic-batch subgraph) even when the shape's
    length is known: give those outputs their rank and infer again, so that it
    propagates downstream. Empty when inference fails."""
    from onnx import shape_inference

    def infer(m):
        try:
            inferred = shape_inference.infer_shapes(m)
        except Exception:
            return {}
        return {vi.name: vi.type.tensor_type for vi in list(inferred.graph.value_info) + list(inferred.graph.input)}

    shapes = infer(model)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    added = False
    for n in model.graph.node:
        if n.op_type != "Reshape":
            continue
        out, st = shapes.get(n.output[0]), shapes.get(n.input[1])
        if (out is None or not out.HasField("shape")) and st is not None and st.HasField("shape") \
                and len(st.shape.dim) == 1 and st.shape.dim[0].dim_value:
            elem = out.elem_type if out is not None else TensorProto.FLOAT
            probe.graph.value_info.append(helper.make_tensor_value_info(n.output[0], elem, [None] * st.shape.dim[0].dim_value))
            added = True
    if added:
        shapes = infer(probe)
    return {name: len(tt.shape.dim) for name, tt in shapes.items() if tt.HasField("shape")}
