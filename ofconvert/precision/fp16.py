"""fp16: float16 weights and activations through ONNX Runtime's copy of
onnxconverter-common's converter (no extra dependency); nodes named in
``exclude`` stay float32."""
from ..graph import topological_sort
from ..onnx_fix import set_metadata
from .common import FLOAT_NODES_KEY, PRECISION_KEY, _load, _save, node_key


def to_fp16(src, dst, keep_io_types=False, exclude=()):
    """Write an fp16 copy of ``src`` to ``dst``. ``keep_io_types``: keep float32 input
    and output (Cast nodes inside) instead of float16 I/O. metadata_props are kept,
    plus ``ofconvert.precision = fp16``. ``exclude``: node names kept in float32."""
    model = _load(src)
    return _save(_to_fp16_impl(model, keep_io_types, exclude), dst)


def fp16_model(model, keep_io_types=False, exclude=()):
    """:func:`to_fp16` on a ModelProto (copied, never modified) -> ModelProto."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    return _to_fp16_impl(m, keep_io_types, exclude)


def _to_fp16_impl(model, keep_io_types, exclude=()):
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as e:  # pragma: no cover - onnxruntime is a hard dependency
        from ..errors import BackendUnavailableError

        raise BackendUnavailableError(f"fp16 conversion needs onnxruntime ({e})") from None
    meta = [(p.key, p.value) for p in model.metadata_props]
    exclude = sorted(exclude or ())
    unnamed = [n for n in model.graph.node if not n.name and node_key(n) in exclude]
    for n in unnamed:   # the converter blocks by node name
        n.name = node_key(n)
    from ..models.raw_input import drop_round_trips, preprocess_nodes

    # a raw-image input stays uint8 and its normalisation float32 (the float-input model's exact input)
    front = preprocess_nodes(model)
    block = sorted(set(exclude) | set(front))
    out = convert_float_to_float16(model, keep_io_types=bool(keep_io_types), node_block_list=block or None)
    if front:
        drop_round_trips(out, front)
    del out.metadata_props[:]
    for k, v in meta:
        out.metadata_props.add(key=k, value=v)
    meta = {PRECISION_KEY: "fp16" + ("-fp32io" if keep_io_types else "")}
    if exclude:
        meta[FLOAT_NODES_KEY] = ",".join(exclude)
    set_metadata(out, meta)
    topological_sort(out.graph)  # the converter appends its I/O Casts at the end
    return out
