"""Inputs and outputs of an export as the user wrote them (no OneFlow at import).

* ``IOSpec``: one or several per-sample input shapes (``input_shape=[(3, H, W),
  (3, H, W)]``; CLI ``--input-shape`` once per input), their names (``input``, or
  ``input0``, ``input1``...; ``input_names=``) and, with a dynamic image size,
  the (min, opt, max) of H and W (``dynamic_size=True`` or ranges like
  ``(3, (224, 640), (224, 640))`` / ``3,224-640,224-640``).
* ``trace_points``: where the module is traced (batch 2 and 3; H + step and
  W + step, step the largest of 32, 16, ... dividing the size, so a model's
  stride is respected; one point moving both, the check).
* ``check_arity``: a forward that needs more inputs than shapes were given is
  one line naming its parameters.
* ``output_names``: dict keys name the outputs; tuples give ``output0``...
  (``logits`` alone) unless ``output_names`` says otherwise.
* ``declare_io``: names and declared shapes: ``batch`` on the axis that really
  carries the batch (found from the traces, as for constants), ``height`` /
  ``width``, exact sizes or symbolic expressions elsewhere.
"""
import dataclasses
import inspect
import json
import math
import operator
from typing import Optional

from .errors import ExportError, OfconvertError

TRACE_BATCHES = (2, 3)
SIZE_KEYS = ("height", "width")


@dataclasses.dataclass(frozen=True)
class IOSpec:
    shapes: tuple                      # per-sample shapes, one per input
    names: tuple                       # input names
    sizes: Optional[dict] = None       # {"height": (min, opt, max), "width": (min, opt, max)}: dynamic H and/or W

    @property
    def image_inputs(self):
        """Indices of the (C, H, W) inputs: those whose H and W are dynamic."""
        return [i for i, s in enumerate(self.shapes) if len(s) == 3]

    def to_json(self):
        return json.dumps({k: list(v) for k, v in self.sizes.items()}, sort_keys=True) if self.sizes else None


def is_several(input_shape):
    """``[(3, H, W), (3, H, W)]`` (several inputs) rather than one shape."""
    return (isinstance(input_shape, (list, tuple)) and len(input_shape) > 0
            and all(isinstance(s, (list, tuple)) for s in input_shape)
            and all(len(s) and not isinstance(s[0], (list, tuple)) for s in input_shape))


def split_shapes(input_shape):
    """The list of raw shapes (entries: ints or (lo, hi) ranges) of ``input_shape``."""
    if input_shape is None:
        return None
    return [tuple(s) for s in input_shape] if is_several(input_shape) else [tuple(input_shape)]


def _positive(d):
    try:
        return not isinstance(d, bool) and operator.index(d) > 0
    except TypeError:
        return False


def _bad_shape(raw):
    return OfconvertError(f"input_shape must be a tuple of positive ints without the batch, e.g. (3, 224, 224); "
                          f"got {raw!r}")


def check_shape(raw):
    """A raw per-sample shape -> ``(shape at the low end, {axis: (lo, hi)})``;
    ranges only on H and W of a (C, H, W) shape (or batch + C, H, W)."""
    try:
        t = tuple(raw)
    except TypeError:
        raise _bad_shape(raw) from None
    shape, ranges = [], {}
    for axis, d in enumerate(t):
        if isinstance(d, (list, tuple)):
            if len(d) != 2 or not all(_positive(x) for x in d):
                raise _bad_shape(raw)
            lo, hi = int(d[0]), int(d[1])
            if lo > hi or axis < len(t) - 2 or len(t) not in (3, 4):
                raise OfconvertError(f"input shape {raw!r}: a range lo-hi (lo <= hi) is for H and W of C,H,W only")
            ranges[axis - len(t)] = (lo, hi)
            d = lo
        elif not _positive(d):
            raise _bad_shape(raw)
        shape.append(int(d))
    if not shape:
        raise _bad_shape(raw)
    return tuple(shape), ranges


def step_of(size):
    """The stride the traces respect: the largest of 32, 16, ..., 1 dividing ``size``."""
    return math.gcd(int(size), 32)


def default_range(size):
    """(min, opt, max) of a dynamic H or W given one size: half to twice it."""
    st = step_of(size)
    return (max(st, size // 2 // st * st), size, 2 * size)


def input_names(n, names):
    if names is None:
        return ("input",) if n == 1 else tuple(f"input{i}" for i in range(n))
    names = [s.strip() for s in names.split(",")] if isinstance(names, str) else list(names)
    if len(names) != n or not all(isinstance(x, str) and x for x in names) or len(set(names)) != n:
        raise OfconvertError(f"input_names: {n} distinct non-empty name(s) for {n} input(s), got {names!r}")
    return tuple(names)


def make_spec(shapes, names=None, dynamic_size=None):
    """``IOSpec`` of per-sample shapes (raw: ranges allowed) -> one line on a mistake."""
    checked = [check_shape(s) for s in shapes]
    ranged = [r for _, r in checked if r]
    if dynamic_size not in (None, True, False):
        raise OfconvertError(f"dynamic_size must be True or False, got {dynamic_size!r}")
    sizes = None
    if ranged or dynamic_size:
        images = [s for s, _ in checked if len(s) == 3]
        if not images:
            raise OfconvertError("a dynamic image size needs a (C, H, W) input; this model's inputs are "
                                 + ", ".join(str(s) for s, _ in checked))
        if len({s[1:] for s in images}) > 1 or len({tuple(sorted(r.items())) for r in ranged}) > 1 \
                or len(ranged) not in (0, len(images)):
            raise OfconvertError("a dynamic image size needs every (C, H, W) input at the same H and W (and ranges)")
        r = ranged[0] if ranged else {}
        h, w = images[0][1:]
        sizes = {"height": _range(r.get(-2), h), "width": _range(r.get(-1), w)} if dynamic_size else \
            {k: (v[0], v[0], v[1]) for k, v in (("height", r.get(-2)), ("width", r.get(-1))) if v}
    return IOSpec(tuple(s for s, _ in checked), input_names(len(checked), names), sizes)


def _range(r, size):
    return (r[0], r[0], r[1]) if r else default_range(size)


def check_arity(module, n):
    """One line when ``module.forward`` needs more inputs than ``n`` shapes (or fewer)."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return
    pos = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p.name for p in pos if p.default is p.empty]
    varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    if n < len(required):
        raise ExportError(f"forward takes {len(required)} inputs ({', '.join(required)}); give one --input-shape "
                          f"per input (input_shape=[(C, H, W), (C, H, W)])")
    if n > len(pos) and not varargs:
        raise ExportError(f"forward takes {len(pos)} input(s) ({', '.join(p.name for p in pos)}) but {n} input "
                          f"shapes were given")


def trace_points(spec: IOSpec):
    """``[(values, full input shapes), ...]``: the base point first, then one point
    per moved variable (batch; H; W) and the check points moving H and W, and
    the batch with them."""
    b0, b1 = TRACE_BATCHES
    if not spec.sizes:
        return [({"batch": b}, [(b,) + s for s in spec.shapes]) for b in (b0, b1)]
    base = dict(zip(SIZE_KEYS, spec.shapes[spec.image_inputs[0]][1:]))
    moves = [{k: base[k] + step_of(base[k])} for k in SIZE_KEYS if k in spec.sizes]
    checks = [dict(moves[0], **moves[1])] if len(moves) == 2 else []
    checks.append(dict(dict(checks[0] if checks else moves[0]), batch=b1))   # a product N*H shows here
    points = [{"batch": b0}, {"batch": b1}] + moves + checks
    return [(dict(dict(base, batch=b0), **p), _shapes_at(spec, dict(dict(base, batch=b0), **p))) for p in points]


def _shapes_at(spec, v):
    return [(v["batch"],) + ((s[0], v["height"], v["width"]) if len(s) == 3 else s) for s in spec.shapes]


def validation_sizes(spec: IOSpec, traced):
    """(H, W) sizes, none of them traced, where a dynamic-size export is validated:
    the largest of the ranges and a non-square corner of them."""
    if not spec.sizes:
        return []
    h, w = spec.shapes[spec.image_inputs[0]][1:]
    (h0, _, h1), (w0, _, w1) = spec.sizes.get("height", (h, h, h)), spec.sizes.get("width", (w, w, w))
    sh = step_of(h) if "height" in spec.sizes else 0
    sw = step_of(w) if "width" in spec.sizes else 0
    cands = [(h1, w1), (h0, w1), (h1, w0), (h0, w0), (h1 + sh, w1 + sw), (h1 + sh, w0), (h0, w1 + sw)]
    out = []
    for c in cands:
        if c not in traced and c not in out:
            out.append(c)
    return out[:2]


def output_names(keys, names):
    """Names of the flattened outputs: ``names`` when given, else the dict keys
    (``output<i>`` where an output has no key), ``logits`` for one unnamed output."""
    n = len(keys)
    if names is not None:
        names = [names] if isinstance(names, str) else list(names)
        if not all(isinstance(x, str) and x for x in names):
            raise OfconvertError(f"output_names must be non-empty strings, got {names!r}")
        return names
    if n == 1 and keys[0] is None:
        return ["logits"]
    out = [k if k is not None else f"output{i}" for i, k in enumerate(keys)]
    return out if len(set(out)) == n else [f"output{i}" for i in range(n)]


def output_shapes(model):
    """[[dim, ...] per graph output] as traced (ints)."""
    return [[d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in model.graph.output]


def declare_io(model, spec: IOSpec, out_names, traces, traced_shapes):
    """Name the inputs and outputs and declare their shapes (see module doc)."""
    from .dynamic_dims import fit_dims

    g = model.graph
    if len(out_names) != len(g.output):
        raise ExportError(f"the model has {len(g.output)} outputs but {len(out_names)} output name(s) "
                          f"were given: {list(out_names)}")
    if len(set(out_names) | set(spec.names)) != len(out_names) + len(spec.names):
        raise ExportError(f"input/output names must be distinct, got {list(spec.names) + list(out_names)}")
    _rename_all(g, [vi.name for vi in g.input] + [vi.name for vi in g.output], list(spec.names) + list(out_names))
    for i, vi in enumerate(g.input):
        dims = ["batch"] + list(spec.shapes[i])
        if spec.sizes and len(spec.shapes[i]) == 3:
            dims[2:] = [k if k in spec.sizes else d for k, d in zip(SIZE_KEYS, dims[2:])]
        _set_dims(vi, dims)
    for k, vi in enumerate(g.output):
        _set_dims(vi, fit_dims([s[k] for s in traced_shapes], traces, f"output {out_names[k]!r}"))
    del g.value_info[:]    # intermediate shapes were recorded at one traced size
    return model


def _set_dims(vi, dims):
    shape = vi.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, int):
            dim.dim_value = d
        else:
            dim.dim_param = d


def _rename_all(g, old, new):
    """Rename tensors ``old[i]`` -> ``new[i]`` everywhere (no clash between steps)."""
    tmp = {o: f"ofc_io_tmp{i}" for i, o in enumerate(old)}
    for mapping in (tmp, {tmp[o]: n for o, n in zip(old, new)}):
        for n in g.node:
            n.input[:] = [mapping.get(x, x) for x in n.input]
            n.output[:] = [mapping.get(x, x) for x in n.output]
        for vi in list(g.input) + list(g.output):
            vi.name = mapping.get(vi.name, vi.name)
