"""Dynamic batch, height and width from several traces (pure onnx + numpy).

The module is traced at a base point (batch 2, the given H and W) and at points
that move one variable each (batch 3; H + step; W + step) plus, with a dynamic
image size, one point that moves H and W together (the check trace). Every
integer constant entry that differs between the traces must be an exact affine
function of the variables, ``c + k_b * batch + floor(p_h * H / q_h) + ...``
(integer slope for the batch, a rational one for H and W: ``H // 32`` has slope
1/32), and the check trace must agree with it (a flattened ``C*H*W`` does not:
refused, naming the node). Each such entry is computed in the graph from
``Shape(input)``. A float constant, an attribute or a constant's shape that
differs stops the export with one line naming the node: never a silently fixed
size. The same fit declares the output dimensions (``fit_dims``): ``batch`` on
the axis that really carries it, ``height``/``width``, an exact size, or a
symbolic expression.
"""
import dataclasses
import re
from fractions import Fraction

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from .errors import ExportError
from .graph import GraphIndex

VARIABLES = ("batch", "height", "width")
_WORD = {"batch": "the batch size", "height": "the image height", "width": "the image width"}


@dataclasses.dataclass
class Trace:
    """One canonical trace and the values of the variables it was traced at."""

    model: object
    values: dict          # {"batch": 2, "height": 64, "width": 64}


def moved(base, trace):
    """The variables whose value differs between ``base`` and ``trace``."""
    return [v for v in VARIABLES if v in trace.values and trace.values[v] != base.values.get(v)]


@dataclasses.dataclass(frozen=True)
class Affine:
    """``c + sum(sign * (|p| * value) // q)`` over the variables (exact at the traces)."""

    c: int
    terms: tuple          # ((variable, p, q), ...) with p != 0, q > 0

    def __call__(self, values):
        return self.c + sum(_term(p, q, values[v]) for v, p, q in self.terms)

    def describe(self):
        parts = [v if (p, q) == (1, 1) else f"{p}*{v}" if q == 1 else f"{p}*{v}/{q}" if p != 1 else f"{v}/{q}"
                 for v, p, q in self.terms]
        s = "+".join(parts).replace("+-", "-")
        return s + (f"+{self.c}" if self.c > 0 else f"{self.c}" if self.c < 0 else "")


def _term(p, q, value):
    return (1 if p > 0 else -1) * ((abs(p) * value) // q)


def fit(values, traces, what, integer_batch=True):
    """The ``Affine`` giving ``values[i]`` at ``traces[i]`` (``traces[0]`` the base),
    or ExportError naming ``what``. ``None`` when all values are equal."""
    base = traces[0]
    if all(v == values[0] for v in values):
        return None
    terms = []
    for t, val in zip(traces[1:], values[1:]):
        mv = moved(base, t)
        if len(mv) != 1:
            continue
        var = mv[0]
        d, delta = int(val) - int(values[0]), t.values[var] - base.values[var]
        if d == 0:
            continue
        if var == "batch" and integer_batch and d % delta:
            raise ExportError(f"{what}: {values[0]} at batch {base.values[var]}, {val} at batch {t.values[var]}: "
                              "not k*batch + c with integer k; the batch cannot be made dynamic")
        k = Fraction(d, delta)
        terms.append((var, k.numerator, k.denominator))
    c = int(values[0]) - sum(_term(p, q, base.values[v]) for v, p, q in terms)
    f = Affine(c, tuple(terms))
    for t, val in zip(traces[1:], values[1:]):
        if f(t.values) != int(val):
            names = " and ".join(_WORD[v] for v in moved(base, t))
            raise ExportError(f"{what}: {values[0]} at {_at(base)}, {val} at {_at(t)}: not an affine function of "
                              f"{names} (e.g. a flatten of the spatial map, H*W); the size cannot be made dynamic")
    return f


def _at(trace):
    v = trace.values
    return "batch %d" % v["batch"] + (f", {v['height']}x{v['width']}" if "height" in v else "")


def _varying(base, t):
    return " and ".join(_WORD[v] for v in moved(base, t)) or "nothing"


def _same_structure(base, t):
    a, b = base.model.graph, t.model.graph
    word = _varying(base, t)
    if len(a.node) != len(b.node):
        raise ExportError(f"the traces of the model differ in structure ({len(a.node)} vs {len(b.node)} nodes); "
                          f"its graph depends on {word}, which ONNX export cannot express")
    for na, nb in zip(a.node, b.node):
        if (na.op_type, list(na.input), list(na.output), na.name) != (nb.op_type, list(nb.input), list(nb.output),
                                                                      nb.name):
            raise ExportError(f"the traces of the model differ in structure (node {na.name} ({na.op_type}) vs "
                              f"{nb.name} ({nb.op_type})); its graph depends on {word}, which ONNX export cannot "
                              "express")
        if na.op_type != "Constant" and [x.SerializeToString() for x in na.attribute] != \
                [x.SerializeToString() for x in nb.attribute]:
            raise ExportError(f"{na.op_type} node {na.name}: an attribute depends on {word} (traced at two "
                              f"values); it cannot be made dynamic")


def _describe(graph, name):
    users = [n for n in graph.node if name in n.input]
    if not users:
        return f"constant {name}"
    n = users[0]
    path = n.name.split("/")[0] if "/" in n.name else ""
    return f"the {n.op_type} node {n.name}" + (f" in module `{path}`" if path else "")


def _check_constant(g, name, base, t, va, vb):
    what = _describe(g, name)
    word = _varying(base, t)
    if va.shape != vb.shape or va.dtype != vb.dtype:
        raise ExportError(f"{what}: a constant of shape {list(va.shape)} at {_at(base)} has shape {list(vb.shape)} "
                          f"at {_at(t)} (a tensor made from {word}, e.g. ones_like/zeros_like of the input); "
                          f"it cannot be made dynamic")
    if va.dtype.kind not in "iu":
        raise ExportError(f"{what}: a {va.dtype} constant depends on {word}; it cannot be made dynamic")


def make_dynamic(traces, sources):
    """``(model, n)``: ``traces[0].model`` with every constant that differs between
    the traces computed from the input dimensions; ``sources``: {variable: (input
    name, axis)}. ``n``: the number of constants made dynamic."""
    from .graph import drop_unused_constant_nodes, remove_unused_initializers, topological_sort

    base = traces[0]
    for t in traces[1:]:
        _same_structure(base, t)
    g = base.model.graph
    consts = [GraphIndex(t.model.graph).constants() for t in traces]
    if any(set(c) != set(consts[0]) for c in consts[1:]):
        raise ExportError("the traces of the model differ in their constants; cannot make its dimensions dynamic")
    dims, fixed = {}, 0
    for name in sorted(consts[0]):
        vals = [c[name] for c in consts]
        if all(v.shape == vals[0].shape and v.dtype == vals[0].dtype and np.array_equal(v, vals[0]) for v in vals):
            continue
        for t, v in zip(traces[1:], vals[1:]):
            if v.shape != vals[0].shape or v.dtype != vals[0].dtype or not np.array_equal(v, vals[0]):
                _check_constant(g, name, base, t, vals[0], v)
        flat = [v.astype(np.int64).reshape(-1) for v in vals]
        pieces = []
        for i in np.nonzero(np.any([f != flat[0] for f in flat[1:]], axis=0))[0]:
            f = fit([int(x[i]) for x in flat], traces, f"{_describe(g, name)}: entry {i} of a shape/index constant")
            pieces.append((int(i), f))
        new = _affine_subgraph(g, name, flat[0], pieces, lambda v: _dim(g, dims, sources, v))
        if vals[0].ndim != 1 or vals[0].dtype != np.int64:
            new = restore_layout(g, name, new, vals[0])
        for n in g.node:
            n.input[:] = [new if x == name else x for x in n.input]
        fixed += 1
    if fixed:
        topological_sort(g)
        remove_unused_initializers(g)
        drop_unused_constant_nodes(g)
    return base.model, fixed


def _dim(g, dims, sources, var):
    """The 1-D int64 tensor holding ``var`` (Shape(input)[axis]), added once."""
    if var not in dims:
        inp, axis = sources[var]
        shape = f"ofc_{inp}_shape"
        if not any(n.output[0] == shape for n in g.node if n.output):
            g.node.insert(0, helper.make_node("Shape", [inp], [shape], name=f"ofc_shape_{inp}"))
        idx = f"ofc_{var}_idx"
        g.initializer.append(helper.make_tensor(idx, TensorProto.INT64, [1], [axis]))
        dims[var] = "ofc_batch" if var == "batch" else f"ofc_{var}"
        g.node.insert(1, helper.make_node("Gather", [shape, idx], [dims[var]], name=f"ofc_gather_{var}", axis=0))
    return dims[var]


def _const(g, name, value):
    g.initializer.append(numpy_helper.from_array(np.asarray(value, np.int64).reshape(-1), name))
    return name


def _affine_subgraph(g, base, static, pieces, dim):
    """Concat of static entries and ``Affine`` entries -> new 1-D int64 tensor name."""
    names, prev = [], 0
    for j, (i, f) in enumerate(pieces):
        if i > prev:
            names.append(_const(g, f"{base}_ofc_part{j}s", static[prev:i]))
        acc = None
        for k, (var, p, q) in enumerate(f.terms):
            t, pre = dim(var), f"{base}_ofc_{j}_{k}"
            if abs(p) != 1:
                g.node.append(helper.make_node("Mul", [t, _const(g, pre + "p", abs(p))], [pre + "m"], name=pre + "mul"))
                t = pre + "m"
            if q != 1:
                g.node.append(helper.make_node("Div", [t, _const(g, pre + "q", q)], [pre + "d"], name=pre + "div"))
                t = pre + "d"
            if acc is None and p > 0:
                acc = t
            elif acc is None:
                g.node.append(helper.make_node("Neg", [t], [pre + "n"], name=pre + "neg"))
                acc = pre + "n"
            else:
                op = "Add" if p > 0 else "Sub"
                g.node.append(helper.make_node(op, [acc, t], [pre + "s"], name=pre + "sum"))
                acc = pre + "s"
        if f.c:
            out = f"{base}_ofc_{j}c"
            g.node.append(helper.make_node("Add", [acc, _const(g, out + "v", f.c)], [out], name=out + "add"))
            acc = out
        names.append(acc)
        prev = i + 1
    if prev < len(static):
        names.append(_const(g, f"{base}_ofc_tail", static[prev:]))
    out = f"{base}_ofc_dyn"
    if len(names) == 1:
        g.node.append(helper.make_node("Identity", names, [out], name=f"{base}_ofc_identity"))
    else:
        g.node.append(helper.make_node("Concat", names, [out], name=f"{base}_ofc_concat", axis=0))
    return out


_TERM = re.compile(r"([+-]?)(?:(\d+)\*)?(batch|height|width)(?:/(\d+))?|([+-]?\d+)")


def eval_dim(expr, values):
    """The value of a declared dim (``Affine.describe``: ``batch``, ``width/4``,
    ``2*batch-1``...) at ``values``; None when it is not such an expression or
    names a variable ``values`` lacks."""
    pos, total = 0, 0
    for m in _TERM.finditer(expr):
        if m.start() != pos:
            return None
        pos = m.end()
        sign, p, var, q, const = m.groups()
        if const is not None:
            total += int(const)
            continue
        if var not in values:
            return None
        total += _term((-1 if sign == "-" else 1) * int(p or 1), int(q or 1), values[var])
    return total if pos == len(expr) and expr else None


def fit_dims(shapes, traces, what):
    """Declared dims of one tensor from its shape at each trace: an int (the same
    everywhere), ``batch``/``height``/``width`` (exactly that variable) or an
    expression like ``height/4`` or ``2*batch``; ExportError when the rank differs."""
    if any(len(s) != len(shapes[0]) for s in shapes):
        raise ExportError(f"{what}: its rank depends on the input size ({[list(s) for s in shapes]})")
    dims = []
    for axis in range(len(shapes[0])):
        f = fit([int(s[axis]) for s in shapes], traces, f"{what}, axis {axis}")
        dims.append(int(shapes[0][axis]) if f is None else f.describe())
    return dims


def restore_layout(g, base, flat, like):
    """Reshape/cast the computed 1-D int64 tensor back to ``like``'s shape and dtype."""
    out = flat
    if like.ndim != 1:
        sname = f"{base}_ofc_layout"
        g.initializer.append(numpy_helper.from_array(np.asarray(like.shape, np.int64), sname))
        g.node.append(helper.make_node("Reshape", [out, sname], [f"{base}_ofc_reshaped"], name=f"{base}_ofc_reshape"))
        out = f"{base}_ofc_reshaped"
    if like.dtype != np.int64:
        to = helper.np_dtype_to_tensor_dtype(like.dtype)
        g.node.append(helper.make_node("Cast", [out], [f"{base}_ofc_cast"], name=f"{base}_ofc_castn", to=to))
        out = f"{base}_ofc_cast"
    return out
