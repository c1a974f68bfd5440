"""Folds: the layer forms ONNX Runtime's and TensorRT's int8 fusions need, and
constant subgraphs evaluated once (pure onnx + numpy)."""
import numpy as np
from onnx import numpy_helper

from .cleanup import remove_unused_initializers
from .index import GraphIndex

FOLDABLE = {"Unsqueeze", "Squeeze", "Reshape", "Transpose", "Cast", "Concat", "Identity", "Mul", "Add", "Sub",
            "Div", "Neg", "Sqrt", "Reciprocal", "Pow", "Slice", "Gather", "Flatten"}
# never Expand / Tile: folding `cls_token.expand(B, -1, -1)` would bake the batch into a float constant


def fold_constants(model):
    """Evaluate nodes whose inputs are all initializers (shape-only ops and
    arithmetic on weights, e.g. the Unsqueeze of a bias) with onnx's reference
    implementation; their outputs become initializers. Returns the count.
    (oneflow-onnx's own optimizer did this, and more, wrongly: see exporter.)"""
    from onnx.reference import ReferenceEvaluator

    g = model.graph
    consts = {t.name: t for t in g.initializer}
    keep, folded = [], 0
    for n in g.node:
        ins = [i for i in n.input if i]
        if n.op_type in FOLDABLE and n.domain in ("", "ai.onnx") and ins and all(i in consts for i in ins):
            try:
                feeds = {i: numpy_helper.to_array(consts[i]) for i in ins}
                outs = ReferenceEvaluator(n).run(None, feeds)
            except Exception:  # leave it to the runtime
                keep.append(n)
                continue
            for name, val in zip(n.output, outs):
                t = numpy_helper.from_array(np.asarray(val), name)
                g.initializer.append(t)
                consts[name] = t
            folded += 1
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    remove_unused_initializers(g)
    return folded


def fold_batchnorm(model):
    """Fold inference BatchNormalization into the preceding Conv (when the Conv
    output feeds only that BN and all parameters are constants), as exporters
    from other frameworks do in eval mode. Keeps Q/DQ placement and TensorRT's
    fusions simple. Returns the number of folded nodes."""
    g = model.graph
    idx = GraphIndex(g)
    inits, consumers, producer, graph_outputs = idx.initializers, idx.consumers, idx.producer, idx.outputs
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
    idx = GraphIndex(g)
    inits, consumers, producer, graph_outputs = idx.initializers, idx.consumers, idx.producer, idx.outputs
    from ..onnx_fix import tensor_ranks

    ranks = tensor_ranks(model)
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


def fold_zero_pads(model):
    """In place: a constant-mode Pad of zeros on the spatial axes only, whose output
    feeds only Convs (``auto_pad`` unset) and is no graph output, becomes those
    Convs' ``pads`` attribute (asymmetric allowed) and is removed -> {Pad input:
    Pad output} of the folded Pads. ONNX Runtime's ``quant_pre_process`` does the
    same; without it the CPU flavour runs each as a separate uint8 Pad (and the
    float model as a copy per Pad). The Pad's input carries the same values as its
    output (plus zeros), so the calibration range is the same tensor's."""
    idx = GraphIndex(model.graph)
    folded = {}
    for pad in [n for n in model.graph.node if n.op_type == "Pad"]:
        spatial = _foldable_spatial_pads(pad, idx)
        if spatial is None:
            continue
        for conv in idx.consumers[pad.output[0]]:
            _add_conv_pads(conv, spatial)
            conv.input[0] = pad.input[0]
        folded[pad.input[0]] = pad.output[0]
        model.graph.node.remove(pad)
    if folded:
        remove_unused_initializers(model.graph)   # the folded Pads' amounts
    return folded


def _zero_pad_amounts(pad, idx):
    """A Pad node's ``pads`` (begin..., end...) when it pads with zeros in constant
    mode on every axis (no opset-18 ``axes``), else None."""
    attrs = {a.name: a for a in pad.attribute}
    if "mode" in attrs and attrs["mode"].s != b"constant":
        return None
    if len(pad.input) < 2:                                # opset < 11: attributes
        zero = "value" not in attrs or attrs["value"].f == 0
        return list(attrs["pads"].ints) if zero and "pads" in attrs else None
    value, axes = (list(pad.input[2:4]) + ["", ""])[:2]
    if axes or (value and not idx.is_zero(value)):
        return None
    amounts = idx.constant(pad.input[1])
    return None if amounts is None else [int(v) for v in amounts.ravel()]


def _foldable_spatial_pads(pad, idx):
    """The spatial part of ``pad``'s zero padding, [x1_begin, ..., x1_end, ...],
    when every reader of its output is a Conv that can take it, else None."""
    p, convs = _zero_pad_amounts(pad, idx), idx.consumers.get(pad.output[0], [])
    if p is None or not convs or pad.output[0] in idx.outputs:
        return None
    r = len(p) // 2
    if r < 3 or min(p) < 0 or any(p[i] or p[r + i] for i in (0, 1)):   # batch / channel padded
        return None
    spatial = p[2:r] + p[r + 2:]
    if all(c.op_type == "Conv" and c.input[0] == pad.output[0] and _auto_pad_unset(c)
           and len(_conv_pads(c, len(spatial))) == len(spatial) for c in convs):
        return spatial
    return None


def _auto_pad_unset(conv):
    return all(a.s in (b"", b"NOTSET") for a in conv.attribute if a.name == "auto_pad")


def _conv_pads(conv, n):
    return next((list(a.ints) for a in conv.attribute if a.name == "pads"), [0] * n)


def _add_conv_pads(conv, spatial):
    from onnx import helper

    new = [a + b for a, b in zip(_conv_pads(conv, len(spatial)), spatial)]
    for a in [a for a in conv.attribute if a.name == "pads"]:
        conv.attribute.remove(a)
    conv.attribute.append(helper.make_attribute("pads", new))
