"""Raw-image input (``--input-format uint8-nhwc``): the exported ONNX takes the
resized / cropped uint8 NHWC images (what a camera, a video decoder or the
preprocessing cache of ``ofconvert.preprocache`` hands over) and does the cast,
the normalisation with the model's mean/std and the NCHW transpose inside.

``RawInput`` is a OneFlow module placed in front of the user's model before the
export, computing exactly what ``ofconvert.data.normalize`` computes on the host
(transpose, float32 cast, ``(x - 255 mean) * 1 / (255 std)``), so a raw-input
model and the float-input model see bitwise the same float32 input.

The tracer feeds float32; ``finish_onnx`` then declares the graph input uint8,
puts the Cast to float32 right after the uint8 transpose, and records the
format (``ofconvert.input_format``) and the preprocessing nodes
(``ofconvert.preprocess_nodes``, kept float32 by the fp16 conversion so the
normalised input is the same as the float-input model's) in the metadata.
"""
import numpy as np

from ..errors import OfconvertError

FORMATS = ("float-nchw", "uint8-nhwc")
RAW = "uint8-nhwc"
FORMAT_KEY = "ofconvert.input_format"
NODES_KEY = "ofconvert.preprocess_nodes"


def check_format(fmt):
    """None / "float-nchw" -> None (the usual float NCHW input); "uint8-nhwc" -> itself."""
    if fmt is None or fmt == "float-nchw":
        return None
    if fmt != RAW:
        raise OfconvertError(f"bad input format {fmt!r}; one of {', '.join(FORMATS)}")
    return RAW


def raw_shape(input_shape):
    """(C, H, W) of the float model -> (H, W, C) of the raw input."""
    c, h, w = input_shape
    if c != 3:
        raise OfconvertError(f"--input-format {RAW} is for RGB image models (3, H, W); this input is {input_shape}")
    return (h, w, c)


def config_at(config, input_shape):
    """``config`` whose preprocessing crops to the exported (C, H, W): the images the
    raw model takes are that size."""
    import dataclasses

    _, h, w = input_shape
    if h != w:
        raise OfconvertError(f"--input-format {RAW} takes square crops of the preprocessing; got {h}x{w}")
    if h == config.preprocess.input_size:
        return config
    return dataclasses.replace(config, preprocess=dataclasses.replace(config.preprocess, input_size=h))


def constants(preprocess):
    """(255 mean, 1 / (255 std)) as float32 (1, 3, 1, 1): data.normalize's numbers."""
    mean = np.asarray(preprocess.mean, np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(preprocess.std, np.float32) * 255.0)
    return mean.reshape(1, 3, 1, 1).astype(np.float32), inv_std.reshape(1, 3, 1, 1).astype(np.float32)


def wrap(module, preprocess):
    """``module`` behind a ``RawInput`` front (a new OneFlow module; ``module`` unchanged)."""
    from ..zoo import import_oneflow

    flow = import_oneflow()

    class RawInput(flow.nn.Module):
        """uint8 NHWC images -> the wrapped model's float NCHW input -> its outputs."""

        def __init__(self, model, mean, inv_std):
            super().__init__()
            self.model = model
            self.register_buffer("mean255", flow.tensor(mean))
            self.register_buffer("inv_std255", flow.tensor(inv_std))

        def forward(self, x):
            x = x.permute(0, 3, 1, 2).to(self.mean255.dtype)
            return self.model((x - self.mean255) * self.inv_std255)

    mean, inv_std = constants(preprocess)
    return RawInput(module, mean, inv_std)


def finish_onnx(model, preprocess):
    """Declare the traced graph's input uint8 and put the Cast to float32 right
    after its transpose (the tracer fed float32); record the format, the
    preprocessing and its nodes in the metadata. Modifies ``model``."""
    import onnx
    from onnx import TensorProto, helper

    from ..config import METADATA_KEY
    from ..onnx_fix import set_metadata

    g = model.graph
    inp = g.input[0]
    inp.type.tensor_type.elem_type = TensorProto.UINT8
    first = [n for n in g.node if inp.name in n.input and n.op_type != "Shape"]   # Shape: the dynamic batch
    start = first[0] if len(first) == 1 and first[0].op_type == "Transpose" else None
    src = start.output[0] if start is not None else inp.name
    cast_out = src + "_float"
    for n in g.node:
        if n is not start:
            n.input[:] = [cast_out if t == src else t for t in n.input]
    cast = helper.make_node("Cast", [src], [cast_out], name="raw_input_cast", to=TensorProto.FLOAT)
    pos = list(g.node).index(start) + 1 if start is not None else 0
    g.node.insert(pos, cast)
    _drop_float_casts(g, cast_out)
    chain = _chain(g, cast)
    set_metadata(model, {FORMAT_KEY: RAW, METADATA_KEY: preprocess.to_json(),
                         NODES_KEY: ",".join(n.name for n in chain)})
    onnx.checker.check_model(model)
    return model


def _drop_float_casts(g, name):
    """A Cast to float32 of the (already float32) cast output is an identity: bypass it."""
    from onnx import TensorProto

    for n in list(g.node):
        to = next((a.i for a in n.attribute if a.name == "to"), None)
        if n.op_type == "Cast" and list(n.input) == [name] and to == TensorProto.FLOAT:
            for m in g.node:
                m.input[:] = [name if t == n.output[0] else t for t in m.input]
            g.node.remove(n)


def _chain(g, cast):
    """The Cast and the element-wise Sub / Mul / Div after it that take only it
    (or the previous one) and constants: the normalisation kept in float32."""
    from ..graph import GraphIndex

    idx = GraphIndex(g)
    chain, cur = [cast], cast.output[0]
    while True:
        users = idx.consumers.get(cur, [])
        if len(users) != 1 or users[0].op_type not in ("Sub", "Mul", "Div", "Add"):
            return chain
        n = users[0]
        if any(t != cur and not idx.is_constant(t) for t in n.input):
            return chain
        chain.append(n)
        cur = n.output[0]


def drop_round_trips(model, names):
    """After the fp16 conversion: the converter casts each float32-kept node's output
    to float16 and back for the next kept node; between the preprocessing nodes
    ``names`` that double rounding is dropped (the normalised input is then the
    float-input model's, rounded to float16 once). Modifies ``model``."""
    from onnx import TensorProto

    g = model.graph
    kept = set(names)
    prod = {o: n for n in g.node for o in n.output}
    for down in [n for n in g.node if n.op_type == "Cast"]:
        up = prod.get(down.input[0])
        to = {c.name: next((a.i for a in c.attribute if a.name == "to"), None) for c in (up, down) if c is not None}
        if up is None or up.op_type != "Cast" or to.get(up.name) != TensorProto.FLOAT16 \
                or to.get(down.name) != TensorProto.FLOAT or getattr(prod.get(up.input[0]), "name", None) not in kept:
            continue
        users = [n for n in g.node if down.output[0] in n.input]
        if not users or not all(u.name in kept for u in users):
            continue
        for u in users:
            u.input[:] = [up.input[0] if t == down.output[0] else t for t in u.input]
        g.node.remove(down)
        if not any(up.output[0] in n.input for n in g.node) and up.output[0] not in {o.name for o in g.output}:
            g.node.remove(up)
    return model


def is_raw(meta):
    """Does an ONNX's metadata (dict) declare the raw uint8 NHWC input?"""
    return (meta or {}).get(FORMAT_KEY) == RAW


def is_raw_model(model):
    """Does a ModelProto take the raw uint8 NHWC input?"""
    return is_raw({p.key: p.value for p in model.metadata_props})


def preprocess_nodes(model):
    """Names of the preprocessing nodes of a raw-input ModelProto (none otherwise)."""
    meta = {p.key: p.value for p in model.metadata_props}
    return [s for s in meta.get(NODES_KEY, "").split(",") if s] if is_raw(meta) else []


def uint8_images(preprocess, n, use_real=True, seed=0):
    """(images uint8 (n, S, S, 3), real image paths, note): real images of the
    shared validation set when present (as the float validation uses), and seeded
    random pixels."""
    from ..data import load_crops, real_images
    from ..errors import DataError

    rng = np.random.default_rng(seed)
    s = preprocess.input_size
    random = rng.integers(0, 256, size=(n, s, s, 3), dtype=np.uint8)
    out, paths, note = {}, [], ""
    if use_real:
        try:
            listed = real_images(n)
            crops, skipped = load_crops(listed, preprocess)
            if not len(crops):
                raise DataError(f"none of the {len(skipped)} images could be read")
            out["real"], paths = [crops], [p for p in listed if p not in skipped]
        except (DataError, OSError, ValueError) as e:
            note, paths = f"real images unavailable ({e}); validated on random pixels only", []
    out["random"] = [random]
    return out, paths, note
