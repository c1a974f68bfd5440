"""OneFlow -> ONNX export through oneflow-onnx, with its known defects fixed.

What ``export`` does beyond ``oneflow_onnx.export_onnx_model``:
* traces the module twice (batch 2 and 3) and makes every batch-dependent
  Reshape shape dynamic (``onnx_fix.make_batch_dynamic``): oneflow-onnx's own
  ``dynamic_batch_size=True`` only relabels the input;
* inference BatchNormalization folded into Conv weights, bias Adds folded into
  Conv / Gemm (what ONNX Runtime's and TensorRT's int8 fusions need);
* opset 13 by default (oneflow-onnx defaults to 10), with the Clip handlers
  fixed: ReLU6/hardtanh at opset >= 11 lost their bounds (identity), and a 0.0
  bound of clip_by_scalar was dropped by a truthiness test;
* unmapped OneFlow ops are an error, not a log line;
* no onnxsim behind the user's back, no weight folders left in /tmp
  (a TemporaryDirectory is used and removed);
* input ``input``, output ``logits``, dim 0 ``batch``; preprocessing in
  ``metadata_props``; ``onnx.checker``; atomic write;
* optional simplification (onnxsim) kept only when outputs stay equal;
* validation against OneFlow on real images (``ofconvert.validate``).
"""
import dataclasses
import json
import os
import tempfile
import time

import numpy as np

from .config import METADATA_KEY, ModelConfig, PreprocessConfig
from .errors import OfconvertError
from .fileio import atomic_path, sha256_file
from .onnx_fix import ExportError, fold_batchnorm, fold_bias_add, make_batch_dynamic, rename_io, set_metadata
from .zoo import get_model, import_oneflow

DEFAULT_OPSET = 13
TRACE_BATCHES = (2, 3)
_FIXES_INSTALLED = []


@dataclasses.dataclass
class ExportReport:
    model: str
    onnx_path: str
    opset: int
    export_seconds: float
    onnx_bytes: int
    onnx_sha256: str
    dynamic_reshapes: int
    simplified: bool
    weights: str
    pretrained: bool
    preprocess: dict
    validation: object = None       # ValidationReport or None
    weights_file: str = None        # the user's --weights file, if any
    weights_sha256: str = None

    def to_dict(self):
        d = dataclasses.asdict(self)
        d["validation"] = self.validation.to_dict() if self.validation is not None else None
        return d


def _install_converter_fixes():
    """Register corrected Clip handlers in oneflow-onnx's handler table (idempotent)."""
    if _FIXES_INSTALLED:
        return
    from oneflow_onnx.oneflow2onnx.handler import flow_op
    from oneflow_onnx.oneflow2onnx.handlers.math import ClipOps

    from oneflow_onnx import util

    def _bounds(ctx, node):
        """(min, max) of hardtanh / clip_by_scalar*, read with ``is not None`` (0.0 is a bound)."""
        if "min_val" in node.attrs or "max_val" in node.attrs:          # hardtanh (ReLU6 = hardtanh(0, 6))
            return node.attrs.get("min_val"), node.attrs.get("max_val")
        dtype = util.ONNX_2_NUMPY_DTYPE[ctx.get_dtype(node.input_tensor_names[0])]
        kind = "floating" if np.dtype(dtype).kind == "f" else "integral"
        return node.attrs.get(f"{kind}_min"), node.attrs.get(f"{kind}_max")

    def handler(use_lo, use_hi):
        class FixedClip(ClipOps):
            @classmethod
            def Version_1(cls, ctx, node, **kwargs):
                lo, hi = _bounds(ctx, node)
                ClipOps.Version_1(ctx, node, lo if use_lo else None, hi if use_hi else None)

            @classmethod
            def Version_11(cls, ctx, node, **kwargs):
                lo, hi = _bounds(ctx, node)
                ClipOps.Version_11(ctx, node, lo if use_lo else None, hi if use_hi else None)

        return FixedClip

    flow_op(["hardtanh", "clip_by_scalar"], onnx_op="Clip")(handler(True, True))
    flow_op("clip_by_scalar_min", onnx_op="Clip")(handler(True, False))
    flow_op("clip_by_scalar_max", onnx_op="Clip")(handler(False, True))
    _FIXES_INSTALLED.append(True)


def _trace_to_onnx(module, input_shape, batch, opset, weight_dir):
    """One trace of ``module`` at ``batch`` -> onnx.ModelProto (nothing written)."""
    flow = import_oneflow()
    from oneflow_onnx.oneflow2onnx import flow2onnx
    from oneflow_onnx.oneflow2onnx import optimizer

    from .models.wrappers import ModuleGraph

    graph = ModuleGraph(module)
    with flow.no_grad():
        graph(flow.zeros(batch, *input_shape, dtype=flow.float32))
    if not os.listdir(weight_dir):
        flow.save(graph.state_dict(), weight_dir)
    onnx_nodes, flow_nodes, _, _, dtypes, output_shapes = flow2onnx.FlowToOnnxNaive(graph._full_graph_proto, {})
    g = flow2onnx.Graph(onnx_nodes, flow_nodes, weight_dir, output_shapes, dtypes, opset, None)
    mapping = flow2onnx.handler.flow_op.CreateMapping(g.opset, g.extra_opset)
    flow2onnx.TopologicalSort(g, False)
    _, unmapped, exceptions = flow2onnx.FlowOnnxMapping(g, mapping)
    if unmapped:
        raise ExportError(f"oneflow-onnx cannot convert these OneFlow ops: {', '.join(sorted(unmapped))}")
    if exceptions:
        raise ExportError(f"oneflow-onnx failed converting the graph: {exceptions[0]}")
    flow2onnx.TopologicalSort(g, False)
    g.UpdateProto()
    g = optimizer.OptimizeGraph(g)
    return g.MakeModel("ofconvert", os.path.join(weight_dir, "unused.onnx"))


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


def export_module(module, onnx_path, config: ModelConfig, opset=DEFAULT_OPSET, simplify=False):
    """Export a OneFlow ``nn.Module`` (eval mode) -> ONNX at ``onnx_path``.
    Returns ExportReport (validation not included: see ``export``)."""
    import onnx

    if opset < 13:
        raise OfconvertError(f"--opset {opset}: ofconvert exports at opset 13 or newer")
    _install_converter_fixes()
    t0 = time.perf_counter()
    module.eval()
    input_shape = config.input_shape
    with tempfile.TemporaryDirectory(prefix="ofconvert-weights-") as wdir:
        traced = [_trace_to_onnx(module, input_shape, b, opset, wdir) for b in TRACE_BATCHES]
    model, n_dyn = make_batch_dynamic(traced[0], TRACE_BATCHES[0], traced[1], TRACE_BATCHES[1])
    fold_batchnorm(model)
    model = rename_io(model)
    fold_bias_add(model)
    model.producer_name = "ofconvert"
    set_metadata(model, {METADATA_KEY: config.preprocess.to_json(), "ofconvert.model": config.name,
                         "ofconvert.weights": config.weights,
                         "ofconvert.pretrained": "true" if config.pretrained else "false"})
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"exported ONNX fails onnx.checker: {str(e).splitlines()[0]}") from None
    simplified = False
    if simplify:
        model, simplified = _simplify_if_equal(model, input_shape)
    with atomic_path(onnx_path) as tmp:
        onnx.save(model, tmp)
    return ExportReport(model=config.name, onnx_path=str(onnx_path), opset=opset,
                        export_seconds=round(time.perf_counter() - t0, 2),
                        onnx_bytes=os.path.getsize(onnx_path), onnx_sha256=sha256_file(onnx_path),
                        dynamic_reshapes=n_dyn, simplified=simplified, weights=config.weights,
                        pretrained=config.pretrained, preprocess=config.preprocess.to_dict())


def export(model, onnx_path, weights=None, opset=DEFAULT_OPSET, validate=True, config=None,
           simplify=False, validation_options=None, verbose=True):
    """Export a zoo model (by name) or a user's OneFlow module to ONNX.

    model: zoo name or ``oneflow.nn.Module``. For a module, ``config`` (ModelConfig)
    or at least the default 224x224 ImageNet preprocessing is used.
    validate: compare OneFlow with ONNX Runtime (``ofconvert.validate``); an fp32
    mismatch raises a ValidationError subclass and the ONNX is not kept.
    Writes ``<onnx>.json`` (the report) beside the ONNX.
    """
    if isinstance(model, str):
        module, cfg = get_model(model, weights=weights)
    else:
        module = model
        cfg = config or ModelConfig(name=type(model).__name__, preprocess=PreprocessConfig(),
                                    weights="user module", pretrained=False)
    report = export_module(module, onnx_path, cfg, opset=opset, simplify=simplify)
    if isinstance(weights, str) and weights != "random":
        report.weights_file, report.weights_sha256 = os.path.abspath(weights), sha256_file(weights)
    if validate:
        from .validation import validate as _validate

        try:
            report.validation = _validate(module, onnx_path, cfg, verbose=verbose, **(validation_options or {}))
        except Exception:
            os.unlink(onnx_path)
            raise
    from .fileio import write_json

    write_json(str(onnx_path) + ".json", report.to_dict())
    return report


def report_summary(report: ExportReport) -> str:
    return json.dumps({k: v for k, v in report.to_dict().items() if k != "validation"})
