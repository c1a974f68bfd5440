"""One trace of a OneFlow module -> canonical ONNX (imports OneFlow and
oneflow-onnx lazily). The module runs in an ``nn.Graph`` on one or more inputs
(``models.wrappers.TraceGraph``: outputs flattened, dict keys kept); oneflow-onnx
converts the traced job with our op handlers; every unmapped op or failing
handler is one ``ExportError`` naming the op, its module and the opset."""
import contextlib
import logging
import os

from ._oneflow import import_oneflow
from .dynamic_batch import canonicalize, module_path
from .errors import ExportError, first_line
from .graph import fold_constants


@contextlib.contextmanager
def _quiet_converter():
    """oneflow-onnx logs errors with tracebacks and op dumps: we raise instead."""
    lg = logging.getLogger("oneflow_onnx")
    old = lg.level
    lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        lg.setLevel(old)


def _op_where(node_name, op_type, opset):
    path = module_path(node_name)
    where = f"module `{path}`" if path else "the top-level forward"
    return f"OneFlow op `{op_type}` in {where} (opset {opset})"


def eager_works(module, shapes):
    """Does ``module`` run eagerly on zero inputs of these full shapes (one per input)?"""
    flow = import_oneflow()
    try:
        with flow.no_grad():
            module(*[flow.zeros(*s, dtype=flow.float32) for s in shapes])
    except Exception:  # the input shape is wrong for this module
        return False
    return True


def failing_module(module, shapes):
    """``module `path` (Type)``: the innermost submodule running when eager forward
    on zero inputs of ``shapes`` fails (None when it runs or fails at the top)."""
    flow = import_oneflow()
    stack, saved = [], []
    for name, sub in module.named_modules():   # OneFlow's register_*_hook return no handle: restore the dicts
        if name:
            # OneFlow 0.9 has no hook handles: its hook dicts are saved and restored
            saved.append((sub, dict(sub._forward_pre_hooks), dict(sub._forward_hooks)))  # noqa: SLF001
            sub.register_forward_pre_hook(lambda m, inp, name=name: stack.append(name))   # returns None
            sub.register_forward_hook(lambda m, inp, out: stack.pop() and None)   # None: the output stays
    try:
        with flow.no_grad():
            module(*[flow.zeros(*s, dtype=flow.float32) for s in shapes])
        return None
    except Exception:  # the failure the caller reports
        return f"module `{stack[-1]}` ({type(dict(module.named_modules())[stack[-1]]).__name__})" if stack else None
    finally:
        for sub, pre, post in saved:
            sub._forward_pre_hooks.clear()   # noqa: SLF001 (no hook handles in OneFlow 0.9)
            sub._forward_pre_hooks.update(pre)  # noqa: SLF001
            sub._forward_hooks.clear()  # noqa: SLF001
            sub._forward_hooks.update(post)  # noqa: SLF001


def _shapes_text(shapes):
    return " and ".join(str(tuple(s)) for s in shapes)


def run_trace(module, shapes):
    """The TraceGraph of ``module`` run on zero inputs of ``shapes`` (full shapes, one
    per input); one clear error if forward fails."""
    import gc

    flow = import_oneflow()
    from .models.wrappers import TraceGraph

    # an earlier nn.Graph of this module that only a reference cycle keeps alive makes OneFlow 0.9
    # refuse the module's parameters in the new one ("must be a variable created in nn.Graph"):
    # whether it is still alive depends on when the cycle collector last ran. Collect it now.
    gc.collect()
    graph = TraceGraph(module)
    try:
        with flow.no_grad():
            graph(*[flow.zeros(*s, dtype=flow.float32) for s in shapes])
    except Exception as e:  # OneFlow raises many types; the user needs the shape
        what = "an input of shape " if len(shapes) == 1 else "inputs of shapes "
        if eager_works(module, shapes):
            raise ExportError(f"OneFlow's static graph (nn.Graph, what export converts) fails on {what}"
                              f"{_shapes_text(shapes)} although eager mode runs it: {first_line(e)}; the module "
                              f"uses something nn.Graph in OneFlow {flow.__version__} does not trace") from None
        raise ExportError(f"the module's forward fails on {what}{_shapes_text(shapes)}: {first_line(e)}; pass "
                          f"input_shape=(C, H, W) (CLI: --input-shape C,H,W) with the shape your model takes") from None
    return graph


def _clean_job(graph):
    """A copy of the traced job without empty list attributes (``nd_sbp=[]`` of
    tensors created inside forward, e.g. ones_like/arange), which onnx's
    make_node cannot type."""
    job = type(graph._full_graph_proto)()   # noqa: SLF001 (the traced job: what oneflow-onnx reads too)
    job.CopyFrom(graph._full_graph_proto)   # noqa: SLF001
    for op in job.net.op:
        if not op.HasField("user_conf"):
            continue
        for key in list(op.user_conf.attr.keys()):
            a = op.user_conf.attr[key]
            kind = a.WhichOneof("value")
            if kind and kind.startswith("at_list") and len(getattr(a, kind).val) == 0:
                del op.user_conf.attr[key]
    return job


def trace_to_onnx(module, shapes, opset, weight_dir, optimize=False):
    """One trace of ``module`` on inputs of ``shapes`` (full shapes) -> ``(canonical
    onnx.ModelProto, output keys)`` (nothing written; the keys: a dict output's
    key per output, else None).

    oneflow-onnx's own graph optimizer is off by default: its transpose pushing
    is silently wrong (``view(b, 1, 2, -1).transpose(1, 2).softmax(1)``, ResNeSt's
    rSoftMax: 0.67 of the output scale) and takes batch-dependent decisions (the
    two traces of convnext differed). ONNX Runtime and TensorRT optimize the graph
    at load time anyway; we only drop Identity nodes (``canonicalize``)."""
    flow = import_oneflow()
    from .opfixes import install

    install()
    graph = run_trace(module, shapes)
    if not os.listdir(weight_dir):
        flow.save(graph.state_dict(), weight_dir)
    with _quiet_converter():
        model = _convert(graph, weight_dir, opset, optimize)
    fold_constants(model)
    materialize_constant_outputs(model)
    return canonicalize(model), list(graph.output_keys)


def _convert(graph, weight_dir, opset, optimize):
    from oneflow_onnx.oneflow2onnx import flow2onnx, optimizer

    from .opfixes import legalize

    try:
        onnx_nodes, flow_nodes, _, _, dtypes, output_shapes = flow2onnx.FlowToOnnxNaive(_clean_job(graph), {})
        g = flow2onnx.Graph(onnx_nodes, flow_nodes, weight_dir, output_shapes, dtypes, opset, None)
    except Exception as e:
        raise ExportError(f"oneflow-onnx cannot read the traced graph (opset {opset}): {first_line(e)}") from None
    _map_nodes(g, flow2onnx, opset)
    try:
        legalize.attrs_to_inputs(g)
        flow2onnx.TopologicalSort(g, False)
        g.UpdateProto()
        if optimize:
            g = optimizer.OptimizeGraph(g)
        return g.MakeModel("ofconvert", os.path.join(weight_dir, "unused.onnx"))
    except Exception as e:
        raise ExportError(f"oneflow-onnx failed to build the ONNX graph at opset {opset}: {first_line(e)}") from None


def _map_nodes(g, flow2onnx, opset):
    mapping = flow2onnx.handler.flow_op.CreateMapping(g.opset, g.extra_opset)
    flow2onnx.TopologicalSort(g, False)
    unmapped, failed = [], []
    for node in list(g.get_nodes()):
        if node.skip_conversion or node.op_type == "output":
            continue
        info = mapping.get(node.op_type)
        if info is None:
            unmapped.append(_op_where(node.name, node.op_type, opset))
            continue
        func, onnx_op, kwargs = info
        flow_type, name = node.op_type, node.name
        if onnx_op is not None:
            node.op_type = onnx_op
        try:
            func(g, node, **kwargs)
            node.skip_conversion = True
        except Exception as e:  # a handler's assertion, KeyError, ValueError...
            failed.append(f"{_op_where(name, flow_type, opset)}: {first_line(e)}")
    if unmapped:
        raise ExportError(f"cannot export {unmapped[0]}: ONNX has no mapping for it yet"
                          + (f" (and {len(unmapped) - 1} more: {'; '.join(unmapped[1:4])})" if len(unmapped) > 1
                             else ""))
    if failed:
        raise ExportError(f"cannot export {failed[0]}")


def materialize_constant_outputs(model):
    """A graph output that is a constant (a buffer returned as it is, or
    ``self.anchors * stride`` folded) becomes the output of an Identity node over
    that constant, as onnx.checker requires ("not an output of any node")."""
    from onnx import helper

    g = model.graph
    produced = {o for n in g.node for o in n.output}
    inits = {t.name: t for t in g.initializer}
    for vi in g.output:
        if vi.name in produced or vi.name not in inits:
            continue
        inits[vi.name].name = vi.name + "_value"
        g.node.append(helper.make_node("Identity", [vi.name + "_value"], [vi.name], name=vi.name + "_const"))
    return model
