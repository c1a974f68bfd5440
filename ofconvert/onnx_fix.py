"""Graph surgery on exported ONNX models (pure onnx + numpy; no OneFlow).

* ``set_metadata`` / ``get_metadata``: ``metadata_props`` as a dict.
* ``tensor_ranks``: ranks from shape inference.
(Folds, clean-up and ordering live in ``ofconvert.graph``; input/output names and
declared dims in ``export_io``; the deterministic graph form in ``dynamic_batch``, the
dynamic batch / image size in ``dynamic_dims``.)
"""
import onnx
from onnx import TensorProto, helper


def set_metadata(model, props):
    keep = {p.key: p.value for p in model.metadata_props}
    keep.update({k: str(v) for k, v in props.items()})
    del model.metadata_props[:]
    for k, v in keep.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    return model


def get_metadata(model):
    return {p.key: p.value for p in model.metadata_props}


def tensor_ranks(model):
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
            probe.graph.value_info.append(
                helper.make_tensor_value_info(n.output[0], elem, [None] * st.shape.dim[0].dim_value))
            added = True
    if added:
        shapes = infer(probe)
    return {name: len(tt.shape.dim) for name, tt in shapes.items() if tt.HasField("shape")}
