"""Attributes that an opset moved to inputs become constant inputs.

oneflow-onnx's handlers write ``axes`` (Reduce*, Squeeze, Unsqueeze) and
``split`` (Split) as attributes, and its attribute filter silently drops what
the opset's schema lacks: ReduceSum at opset 13 then reduces over *all* axes,
Squeeze removes every size-1 dim. Run after mapping, before the proto is made.
"""
import numpy as np
from onnx import defs

from .common import const

MOVED = {"axes": 1, "split": 1}     # attribute -> input position it moved to


def _schema(op_type, opset):
    try:
        return defs.get_schema(op_type, opset)
    except Exception:       # not an onnx op (oneflow-onnx leaves some as is)
        return None


def attrs_to_inputs(ctx):
    """Rewrite every node of ``ctx`` in place; returns the number of nodes changed."""
    changed = 0
    for node in list(ctx.get_nodes()):
        for attr, pos in MOVED.items():
            if attr not in node.attrs:
                continue
            schema = _schema(node.op_type, ctx.opset)
            if schema is None or attr in schema.attributes:
                continue
            names = [i.name for i in schema.inputs]
            if len(names) <= pos or names[pos] != attr:
                continue
            value = node.attrs.pop(attr)
            inputs = list(node.input_tensor_names)
            while len(inputs) < pos:
                inputs.append("")
            if len(inputs) > pos and inputs[pos]:
                continue            # already an input
            name = const(ctx, np.asarray(value, np.int64).reshape(-1))
            if len(inputs) == pos:
                inputs.append(name)
            else:
                inputs[pos] = name
            node.input_tensor_names = inputs
            changed += 1
    return changed
