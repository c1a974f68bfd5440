"""Graph surgery on exported ONNX models (pure onnx + numpy; no OneFlow).

* ``rename_io``: input -> ``input``, outputs -> ``logits`` (or the names given),
  dim 0 -> ``batch``.
* ``set_metadata`` / ``get_metadata``: ``metadata_props`` as a dict.
* ``tensor_ranks``: ranks from shape inference.
(Folds, clean-up and ordering live in ``ofconvert.graph``; the dynamic batch and the
deterministic graph form in ``dynamic_batch``.)
"""
import onnx
from onnx import TensorProto, helper

from .errors import ExportError


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
