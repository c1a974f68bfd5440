"""OneFlow -> ONNX export through oneflow-onnx, with its known defects fixed.

What ``export`` does beyond ``oneflow_onnx.export_onnx_model``:
* our op handlers (``ofconvert.opfixes``: one module per op family) replace or
  add to oneflow-onnx's; attributes an opset moved to inputs become inputs;
* every unmapped op or failing handler is one ``ExportError`` naming the
  OneFlow op, its module path and the opset (the converter's own logging and
  tracebacks are silenced);
* oneflow-onnx's graph optimizer is not used (its transpose pushing is silently
  wrong, e.g. ResNeSt's rSoftMax); Identity nodes are dropped;
* the module is traced twice (batch 2 and 3); both graphs are put in canonical
  form (deterministic node order and names) and every batch-dependent constant
  becomes a function of ``Shape(input)[0]``, or the export stops naming the node
  (``dynamic_batch``);
* inference BatchNormalization folded into Conv weights, bias Adds folded into
  Conv / Gemm (what ONNX Runtime's and TensorRT's int8 fusions need);
* input ``input``, outputs ``logits`` (one output) or ``output0``, ``output1``...
  (or the caller's names), dim 0 ``batch``; preprocessing in ``metadata_props``;
  ``onnx.checker``; ONNX Runtime must load the result;
* transactional: the ONNX is built and validated under a temporary name beside
  the target; only a validated result replaces the target, together with its
  ``.json`` reports; on any failure or signal the old files stay as they were
  and no temporary file or folder is left;
* optional simplification (onnxsim) kept only when outputs stay equal;
* validation against OneFlow on any output (``ofconvert.validate``).
"""
import contextlib
import dataclasses
import json
import logging
import os
import tempfile
import time

import numpy as np

from .config import METADATA_KEY, ModelConfig, PreprocessConfig
from .errors import ExportError, OfconvertError
from .fileio import sha256_file, transaction as _transaction
from .dynamic_batch import canonicalize, fold_constants, make_batch_dynamic, module_path
from .onnx_fix import fold_batchnorm, fold_bias_add, rename_io, set_metadata
from ._oneflow import eval_mode
from .zoo import get_model, import_oneflow

DEFAULT_OPSET = 13
MIN_OPSET = 13
TRACE_BATCHES = (2, 3)


def max_opset():
    """Newest opset both the installed onnx and ONNX Runtime support."""
    import onnx

    return min(onnx.defs.onnx_opset_version(), _ORT_MAX_OPSET)


# ONNX Runtime 1.23 implements the ai.onnx domain up to opset 23; onnx 1.17 to 22.
_ORT_MAX_OPSET = 23


@dataclasses.dataclass
class ExportReport:
    model: str
    onnx_path: str
    opset: int
    export_seconds: float
    onnx_bytes: int
    onnx_sha256: str
    dynamic_reshapes: int          # batch-dependent constants made dynamic
    simplified: bool
    weights: str
    pretrained: bool
    preprocess: dict
    input_shape: list = None
    outputs: list = None
    validation: object = None       # ValidationReport or None
    weights_file: str = None        # the user's --weights file or checkpoint folder, if any
    weights_sha256: str = None
    weights_tensors: int = None     # tensors loaded from it (when it was loaded into a given module)
    source_file: str = None         # the user's code (file.py:Name), its sha256 and constructor arguments
    source_sha256: str = None
    model_args: dict = None

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["validation"] = self.validation.to_dict() if self.validation is not None else None
        return d


def check_opset(opset):
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise OfconvertError(f"opset must be an integer, got {opset!r}")
    hi = max_opset()
    if not MIN_OPSET <= int(opset) <= hi:
        raise OfconvertError(f"--opset {opset}: ofconvert exports at opset {MIN_OPSET} to {hi} "
                             f"(what the installed onnx and ONNX Runtime support)")
    return int(opset)


def check_input_shape(shape):
    """``(C, H, W)`` or any per-sample shape: a tuple of positive ints (no batch)."""
    try:
        t = tuple(shape)
    except TypeError:
        raise OfconvertError(f"input_shape must be a tuple of ints without the batch, e.g. (3, 224, 224); "
                             f"got {shape!r}") from None
    if not t or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in t):
        raise OfconvertError(f"input_shape must be a tuple of positive ints without the batch, e.g. (3, 224, 224); "
                             f"got {shape!r}")
    return tuple(int(d) for d in t)


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


def _first_line(e):
    s = str(e).strip().splitlines()
    return (s[0] if s else type(e).__name__)[:300]


def _eager_works(module, shape):
    flow = import_oneflow()
    try:
        with flow.no_grad():
            module(flow.zeros(*shape, dtype=flow.float32))
    except Exception:  # the input shape is wrong for this module
        return False
    return True


def _run_trace(module, input_shape, batch):
    """Build the nn.Graph of ``module`` at ``batch``; one clear error if forward fails."""
    flow = import_oneflow()
    from .models.wrappers import ModuleGraph

    graph = ModuleGraph(module)
    try:
        with flow.no_grad():
            graph(flow.zeros(batch, *input_shape, dtype=flow.float32))
    except Exception as e:  # OneFlow raises many types; the user needs the shape
        shape = (batch,) + tuple(input_shape)
        if _eager_works(module, shape):
            raise ExportError(f"OneFlow's static graph (nn.Graph, what export converts) fails on an input of shape "
                              f"{shape} although eager mode runs it: {_first_line(e)}; the module uses something "
                              f"nn.Graph in OneFlow {flow.__version__} does not trace") from None
        raise ExportError(f"the module's forward fails on an input of shape {shape}: "
                          f"{_first_line(e)}; pass input_shape=(C, H, W) (CLI: --input-shape C,H,W) "
                          f"with the shape your model takes") from None
    return graph


def _clean_job(graph):
    """A copy of the traced job without empty list attributes (``nd_sbp=[]`` of
    tensors created inside forward, e.g. ones_like/arange), which onnx's
    make_node cannot type."""
    job = type(graph._full_graph_proto)()
    job.CopyFrom(graph._full_graph_proto)
    for op in job.net.op:
        if not op.HasField("user_conf"):
            continue
        for key in list(op.user_conf.attr.keys()):
            a = op.user_conf.attr[key]
            kind = a.WhichOneof("value")
            if kind and kind.startswith("at_list") and len(getattr(a, kind).val) == 0:
                del op.user_conf.attr[key]
    return job


def _trace_to_onnx(module, input_shape, batch, opset, weight_dir, optimize=False):
    """One trace of ``module`` at ``batch`` -> canonical onnx.ModelProto (nothing written).

    oneflow-onnx's own graph optimizer is off by default: its transpose pushing
    is silently wrong (``view(b, 1, 2, -1).transpose(1, 2).softmax(1)``, ResNeSt's
    rSoftMax: 0.67 of the output scale) and takes batch-dependent decisions (the
    two traces of convnext differed). ONNX Runtime and TensorRT optimize the graph
    at load time anyway; we only drop Identity nodes (``canonicalize``)."""
    flow = import_oneflow()
    from oneflow_onnx.oneflow2onnx import flow2onnx
    from oneflow_onnx.oneflow2onnx import optimizer

    from .opfixes import install, legalize

    install()
    graph = _run_trace(module, input_shape, batch)
    if not os.listdir(weight_dir):
        flow.save(graph.state_dict(), weight_dir)
    with _quiet_converter():
        try:
            onnx_nodes, flow_nodes, _, _, dtypes, output_shapes = flow2onnx.FlowToOnnxNaive(_clean_job(graph), {})
        except Exception as e:
            raise ExportError(f"oneflow-onnx cannot read the traced graph (opset {opset}): {_first_line(e)}") from None
        g = flow2onnx.Graph(onnx_nodes, flow_nodes, weight_dir, output_shapes, dtypes, opset, None)
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
                failed.append(f"{_op_where(name, flow_type, opset)}: {_first_line(e)}")
        if unmapped:
            raise ExportError(f"cannot export {unmapped[0]}: ONNX has no mapping for it yet"
                              + (f" (and {len(unmapped) - 1} more: {'; '.join(unmapped[1:4])})" if len(unmapped) > 1 else ""))
        if failed:
            raise ExportError(f"cannot export {failed[0]}")
        try:
            legalize.attrs_to_inputs(g)
            flow2onnx.TopologicalSort(g, False)
            g.UpdateProto()
            if optimize:
                g = optimizer.OptimizeGraph(g)
            model = g.MakeModel("ofconvert", os.path.join(weight_dir, "unused.onnx"))
        except Exception as e:
            raise ExportError(f"oneflow-onnx failed to build the ONNX graph at opset {opset}: {_first_line(e)}") from None
    fold_constants(model)
    return canonicalize(model)


def _simplify_if_equal(model, input_shape, tol=1e-4):
    """Run onnxsim; keep its result only if outputs stay equal on two batch sizes."""
    try:
        from onnxsim import simplify
    except ImportError:
        return model, False
    try:
        simp, ok = simplify(model)
    except Exception:  # onnxsim failures leave the model as it was
        return model, False
    if not ok:
        return model, False
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    a = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(simp.SerializeToString(), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        x = rng.standard_normal((n,) + tuple(input_shape)).astype(np.float32)
        ya, yb = a.run(None, {"input": x})[0], b.run(None, {"input": x})[0]
        scale = max(float(np.abs(ya).max()), 1e-6)
        if ya.shape != yb.shape or float(np.abs(ya - yb).max()) / scale > tol:
            return model, False
    return simp, True


def _output_names(model, names):
    n = len(model.graph.output)
    if names is not None:
        names = [names] if isinstance(names, str) else list(names)
        if not all(isinstance(x, str) and x for x in names):
            raise OfconvertError(f"output_names must be non-empty strings, got {names!r}")
        return names
    return ["logits"] if n == 1 else [f"output{i}" for i in range(n)]


def build_onnx(module, config: ModelConfig, opset=DEFAULT_OPSET, simplify=False, output_names=None, input_shape=None):
    """Trace and convert ``module`` -> (onnx.ModelProto, number of dynamic constants, simplified)."""
    import onnx

    opset = check_opset(opset)
    input_shape = check_input_shape(input_shape or config.input_shape)
    module.eval()
    with tempfile.TemporaryDirectory(prefix="ofconvert-weights-") as wdir:
        traced = [_trace_to_onnx(module, input_shape, b, opset, wdir) for b in TRACE_BATCHES]
    model, n_dyn = make_batch_dynamic(traced[0], TRACE_BATCHES[0], traced[1], TRACE_BATCHES[1])
    fold_batchnorm(model)
    model = rename_io(model, output_names=_output_names(model, output_names))
    fold_bias_add(model)
    fold_batchnorm(model)   # a Conv with a bias reaches its BN through an Add that fold_bias_add just folded
    model.producer_name = "ofconvert"
    set_metadata(model, {METADATA_KEY: config.preprocess.to_json(), "ofconvert.model": config.name,
                         "ofconvert.weights": config.weights,
                         "ofconvert.pretrained": "true" if config.pretrained else "false",
                         "ofconvert.input_shape": ",".join(map(str, input_shape))})
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"the exported ONNX (opset {opset}) fails onnx.checker: {_first_line(e)}") from None
    _check_loads(model, opset)
    simplified = False
    if simplify:
        model, simplified = _simplify_if_equal(model, input_shape)
    return model, n_dyn, simplified


def _check_loads(model, opset):
    import onnxruntime as ort

    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ExportError(f"ONNX Runtime {ort.__version__} cannot load the exported model (opset {opset}): "
                          f"{_first_line(e)}") from None


def export_module(module, onnx_path, config: ModelConfig, opset=DEFAULT_OPSET, simplify=False,
                  output_names=None, input_shape=None):
    """Export a OneFlow ``nn.Module`` (eval mode) -> ONNX at ``onnx_path`` (atomic
    write, no validation: see ``export``). Returns ExportReport."""
    t0 = time.perf_counter()
    with _transaction(onnx_path) as tx:
        report = _export_to(tx, module, config, opset, simplify, output_names, input_shape, t0)
        tx.commit()
    report.onnx_path = str(onnx_path)
    return report


def _export_to(tx, module, config, opset, simplify, output_names, input_shape, t0):
    import onnx

    shape = check_input_shape(input_shape or config.input_shape)
    model, n_dyn, simplified = build_onnx(module, config, opset, simplify, output_names, shape)
    onnx.save(model, tx.tmp)
    return ExportReport(model=config.name, onnx_path=tx.tmp, opset=int(opset),
                        export_seconds=round(time.perf_counter() - t0, 2),
                        onnx_bytes=os.path.getsize(tx.tmp), onnx_sha256=sha256_file(tx.tmp),
                        dynamic_reshapes=n_dyn, simplified=simplified, weights=config.weights,
                        pretrained=config.pretrained, preprocess=config.preprocess.to_dict(),
                        input_shape=list(shape), outputs=[o.name for o in model.graph.output])


def _user_config(module, input_shape):
    from .config import config_for_shape

    shape = check_input_shape(input_shape) if input_shape is not None else (3, 224, 224)
    return config_for_shape(type(module).__name__, shape, weights="user module")


def resolve_input_shape(module, shape, log=print):
    """A 4-number shape said the usual way, ``(1, 3, H, W)``, is batch + (C, H, W)
    when the module takes that (one note), else a 4-D per-sample shape when the
    module takes that (``Conv3d``: (C, D, H, W)); neither: one-line error."""
    if shape is None or len(shape) != 4:
        return shape
    if _eager_works(module, (1,) + tuple(shape[1:])):
        log(f"note: input shape {','.join(map(str, shape))} read as batch {shape[0]} + per-sample shape "
            f"{tuple(shape[1:])} (the exported batch is dynamic)")
        return tuple(shape[1:])
    if _eager_works(module, (1,) + tuple(shape)):
        return tuple(shape)
    raise OfconvertError(f"input shape {','.join(map(str, shape))}: the model runs neither on it as batch + "
                         f"(C, H, W) nor as a per-sample shape; give the per-sample shape without the batch, "
                         f"e.g. {','.join(map(str, shape[1:]))}")


def _resolve_model(model, weights, config, input_shape, model_args):
    """``(module, config, weights record)`` of a zoo/flowvision/user-code name or a
    module; a module given ``weights`` gets them loaded (strictly) or the export is
    refused: a report never names weights that were not used."""
    from .zoo import get_model, load_weights

    if isinstance(model, str):
        module, cfg = get_model(model, weights=weights, model_args=model_args, input_shape=input_shape)
        return module, cfg, _weights_record(weights, cfg.weights_tensors)
    flow = import_oneflow()
    if not isinstance(model, flow.nn.Module):
        raise OfconvertError(f"model must be a zoo name, file.py:Class or a oneflow.nn.Module, "
                             f"got {type(model).__name__}")
    if config is not None and not isinstance(config, ModelConfig):
        raise OfconvertError(f"config must be an ofconvert.ModelConfig, got {type(config).__name__}")
    if model_args is not None:
        raise OfconvertError("model_args are for a model given by name (file.py:Class); this module is built already")
    n = None
    if weights is not None and weights != "random":
        n = load_weights(model, weights)
    elif weights == "random":
        raise OfconvertError("weights='random' is for zoo models; a module keeps the weights it has")
    return model, config or _user_config(model, input_shape), _weights_record(weights, n)


def _weights_record(weights, n_tensors):
    if not isinstance(weights, (str, os.PathLike)) or weights == "random":
        return {}
    from .weights import weights_digest

    return {"weights_file": os.path.abspath(weights), "weights_sha256": weights_digest(weights),
            "weights_tensors": n_tensors}


def export(model, onnx_path, weights=None, opset=DEFAULT_OPSET, validate=True, config=None,
           simplify=False, validation_options=None, verbose=True, input_shape=None, output_names=None,
           model_args=None):
    """Export a zoo model, the user's code or a OneFlow module to ONNX.

    model: zoo name, ``flowvision:NAME``, ``path/to/file.py:Name`` /
      ``pkg.mod:Name`` (``model_args``: its constructor arguments), or a
      ``oneflow.nn.Module`` (exported in eval mode, handed back in its own mode).
    weights: a OneFlow checkpoint (``flow.save`` folder), ``.npz`` or
      ``.safetensors``: loaded strictly into the model (a module too), recorded
      in the report with its sha256 and tensor count.
    input_shape: per-sample input shape without the batch, e.g. ``(3, 256, 256)``
      (default: the config's, else ``(3, 224, 224)``); ``(1, 3, H, W)`` is read as
      batch + (C, H, W); the batch is always dynamic.
    output_names: names of the outputs (default ``logits`` for one output,
      ``output0``, ``output1``... for several).
    validate: compare OneFlow with ONNX Runtime (``ofconvert.validate``) on batch
      sizes other than the traced ones; a mismatch raises a ValidationError
      subclass and nothing is written. With ``validate=False`` a one-line warning
      is printed (``verbose``).
    The ONNX and its ``<onnx>.json`` / ``<onnx>.validation.json`` reports replace
    existing files only when everything succeeded.
    """
    if not isinstance(onnx_path, (str, os.PathLike)):
        raise OfconvertError(f"onnx_path must be a file path, got {type(onnx_path).__name__}")
    if os.path.isdir(onnx_path):
        raise OfconvertError(f"onnx_path names a folder ({onnx_path}); give a file name, e.g. model.onnx")
    if input_shape is not None:
        input_shape = check_input_shape(input_shape)
    opset = check_opset(opset)
    log = print if verbose else (lambda *a: None)
    per_sample = input_shape if input_shape is None or len(input_shape) != 4 else input_shape[1:]  # tentative
    module, cfg, wrec = _resolve_model(model, weights, config, per_sample, model_args)
    with eval_mode(module, log):
        shape = resolve_input_shape(module, input_shape, log) or cfg.input_shape
        return _export_validated(module, cfg, onnx_path, opset, shape, wrec, validate,
                                 dict(simplify=simplify, output_names=output_names, verbose=verbose,
                                      validation_options=validation_options, model_args=model_args,
                                      source=model if isinstance(model, str) else None))


def _export_validated(module, cfg, onnx_path, opset, shape, wrec, validate, o):
    """Build, validate and write (one transaction) -> ExportReport."""
    t0 = time.perf_counter()
    with _transaction(onnx_path) as tx:
        report = _export_to(tx, module, cfg, opset, o["simplify"], o["output_names"], shape, t0)
        for k, v in wrec.items():
            setattr(report, k, v)
        _record_source(report, o["source"], o["model_args"])
        if validate:
            from .validation import validate as _validate

            report.validation = _validate(module, tx.tmp, cfg, verbose=o["verbose"], input_shape=shape,
                                          report_path=False, label=str(onnx_path),
                                          **(o["validation_options"] or {}))
            report.validation.onnx_path = str(onnx_path)
            _write_report(tx.add(".validation.json"), report.validation.to_dict())
        else:
            tx.drop(".validation.json")
            if o["verbose"]:
                print(f"warning: {onnx_path} was not validated against OneFlow (--no-validate)")
        report.onnx_path = str(onnx_path)
        _write_report(tx.add(".json"), report.to_dict())
        tx.commit()
    return report


def _record_source(report, name, model_args):
    """The user's code a model came from: file, sha256, constructor arguments."""
    from .usermodel import is_user_spec, parse_model_args, source_digest

    if name is None or not is_user_spec(name):
        return
    report.source_file, report.source_sha256 = source_digest(name)
    report.model_args = parse_model_args(model_args)


def _write_report(tmp_path, obj):
    """A report into its transaction temp file (renamed in place on commit)."""
    from .fileio import json_text

    with open(tmp_path, "w") as f:
        f.write(json_text(obj))


def report_summary(report: ExportReport) -> str:
    return json.dumps({k: v for k, v in report.to_dict().items() if k != "validation"})
