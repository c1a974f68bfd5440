"""OneFlow -> ONNX export through oneflow-onnx, with its known defects fixed.

What ``export`` does beyond ``oneflow_onnx.export_onnx_model``:
* our op handlers (``ofconvert.opfixes``: one module per op family) replace or
  add to oneflow-onnx's; attributes an opset moved to inputs become inputs;
* every unmapped op or failing handler is one ``ExportError`` naming the
  OneFlow op, its module path and the opset (the converter's own logging and
  tracebacks are silenced);
* oneflow-onnx's graph optimizer is not used (its transpose pushing is silently
  wrong, e.g. ResNeSt's rSoftMax); Identity nodes are dropped;
* the module is traced at batch 2 and 3 (``tracing``; with a dynamic image
  size also at H + step, W + step and both); the graphs are put in canonical
  form (deterministic node order and names) and every constant that follows
  the batch or the size becomes a function of ``Shape(input)``, or the export
  stops naming the node (``dynamic_dims``);
* inference BatchNormalization folded into Conv weights, bias Adds folded into
  Conv / Gemm (what ONNX Runtime's and TensorRT's int8 fusions need);
* one or several inputs (``input`` or ``input0``, ``input1``...; ``input_names``),
  outputs named by a dict's keys, else ``logits`` (one) or ``output0``... (or
  ``output_names``); declared dims from the traces (``batch`` where it really
  is, ``height``/``width``) (``export_io``); preprocessing in ``metadata_props``
  when every input is the RGB image it fits;
  ``onnx.checker``; ONNX Runtime must load the result;
* transactional: the ONNX is built and validated under a temporary name beside
  the target; only a validated result replaces the target, together with its
  ``.json`` reports; on any failure or signal the old files stay as they were
  and no temporary file or folder is left;
* optional simplification (onnxsim) kept only when outputs stay equal;
* validation against OneFlow on any output (``ofconvert.validate``).
"""
import dataclasses
import os
import tempfile
import time
from typing import Optional

import numpy as np

from ._oneflow import eval_mode
from .config import METADATA_KEY, ModelConfig
from .dynamic_dims import Trace, make_dynamic
from .errors import ExportError, OfconvertError
from .errors import first_line as _first_line
from .export_io import (
    check_arity,
    check_shape,
    declare_io,
    make_spec,
    output_shapes,
    split_shapes,
    trace_points,
    validation_sizes,
)
from .export_io import output_names as io_output_names
from .export_options import DEFAULT_OPSET, ExportOptions, ValidateOptions
from .fileio import sha256_file
from .fileio import transaction as _transaction
from .graph import fold_batchnorm, fold_bias_add
from .onnx_fix import set_metadata
from .onnx_io import MIN_OPSET  # noqa: F401 (re-exported: the exporter's range starts there)
from .options import options_with
from .tracing import eager_works, failing_module, trace_to_onnx
from .zoo import get_model, import_oneflow


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
    input_names: list = None        # one per input (input_shape: one shape, or a list of them for several)
    dynamic_size: dict = None       # {"height": [min, opt, max], "width": [...]} when H and W are dynamic
    output_shapes: list = None      # declared: ints, "batch", "height", "width" or an expression
    input_format: str = None        # "uint8-nhwc": raw images in (ofconvert.models.raw_input)

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


def require_simplifier():
    """The graph simplifier ``--simplify`` runs: onnxslim (installed by setup), else
    onnxsim; one-line error when neither is importable (never a silent no-op)."""
    try:
        import onnxslim

        return "onnxslim", onnxslim.slim
    except ImportError:
        pass
    try:
        from onnxsim import simplify
    except ImportError:
        raise OfconvertError("--simplify needs onnxslim (pip install onnxslim; scripts/setup.sh installs it) "
                             "or onnxsim: neither is importable") from None
    return "onnxsim", lambda m: (lambda r: r[0] if r[1] else None)(simplify(m))


def _simplify_if_equal(model, spec, tol=1e-4):
    """Simplify (``require_simplifier``); keep the result only if every output stays
    equal on two batch sizes. -> (model, simplified)."""
    from .onnx_io import ort_session

    _, slim = require_simplifier()
    try:
        simp = slim(model)
    except Exception:  # a simplifier failure leaves the model as it was
        return model, False
    if simp is None:
        return model, False
    rng = np.random.default_rng(0)
    try:
        a, b = ort_session(model), ort_session(simp)
    except Exception:  # the simplified graph does not load: keep ours
        return model, False
    for n in (1, 3):
        feeds = {name: rng.standard_normal((n,) + tuple(s)).astype(np.float32)
                 for name, s in zip(spec.names, spec.shapes)}
        for ya, yb in zip(a.run(None, feeds), b.run(None, feeds)):
            scale = max(float(np.abs(ya).max(initial=0.0)), 1e-6)
            if ya.shape != yb.shape or float(np.abs(ya - yb).max(initial=0.0)) / scale > tol:
                return model, False
    return simp, True


def io_spec(config, input_shape=None, input_names=None, dynamic_size=None):
    """The ``export_io.IOSpec`` of an export (default shape: the config's)."""
    return make_spec(split_shapes(input_shape or config.input_shape), input_names, dynamic_size)


def build_onnx(module, config: ModelConfig, spec, opset=DEFAULT_OPSET, simplify=False, output_names=None):
    """Trace and convert ``module`` -> (onnx.ModelProto, number of dynamic constants, simplified)."""
    import onnx

    opset = check_opset(opset)
    module.eval()
    points = trace_points(spec)
    with tempfile.TemporaryDirectory(prefix="ofconvert-weights-") as wdir:
        traced = [_trace_at(module, values, shapes, opset, wdir) for values, shapes in points]
    traces = [Trace(m, values) for (m, _), (values, _) in zip(traced, points)]
    shapes_out = [output_shapes(t.model) for t in traces]
    inputs = [vi.name for vi in traces[0].model.graph.input]
    sources = {"batch": (inputs[0], 0)}
    for k, axis in (("height", 2), ("width", 3)):
        if k in (spec.sizes or {}):
            sources[k] = (inputs[spec.image_inputs[0]], axis)
    model, n_dyn = make_dynamic(traces, sources)
    fold_batchnorm(model)
    declare_io(model, spec, io_output_names(traced[0][1], output_names), traces, shapes_out)
    fold_bias_add(model)
    fold_batchnorm(model)   # a Conv with a bias reaches its BN through an Add that fold_bias_add just folded
    model.producer_name = "ofconvert"
    set_metadata(model, _metadata(config, spec))
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"the exported ONNX (opset {opset}) fails onnx.checker: {_first_line(e)}") from None
    _check_loads(model, opset)
    simplified = False
    if simplify:
        model, simplified = _simplify_if_equal(model, spec)
    return model, n_dyn, simplified


def _trace_at(module, values, shapes, opset, wdir):
    """One trace; at a moved image size, a forward that fails is the model baking its size."""
    try:
        return trace_to_onnx(module, shapes, opset, wdir)
    except ExportError as e:
        if "height" not in values or "forward fails" not in str(e) and "static graph" not in str(e):
            raise
        where = failing_module(module, [(1,) + tuple(s[1:]) for s in shapes]) or "its forward"
        raise ExportError(f"--dynamic-size: the model does not run at {values['height']}x{values['width']} "
                          f"({where} fails): it bakes the image size (e.g. a Linear after flattening the spatial "
                          f"map); export it without a dynamic size") from None


def _metadata(config, spec):
    """Model, weights, shapes; the preprocessing only where every input is the RGB
    image it fits; the H/W ranges of a dynamic size."""
    meta = {"ofconvert.model": config.name, "ofconvert.weights": config.weights,
            "ofconvert.pretrained": "true" if config.pretrained else "false",
            "ofconvert.input_shape": ";".join(",".join(map(str, s)) for s in spec.shapes)}
    if all(tuple(s) == tuple(config.preprocess.input_shape) for s in spec.shapes):
        meta[METADATA_KEY] = config.preprocess.to_json()
    if len(spec.names) > 1:
        meta["ofconvert.inputs"] = ",".join(spec.names)
    if spec.sizes:
        meta["ofconvert.dynamic_size"] = spec.to_json()
    return meta


def _check_loads(model, opset):
    import onnxruntime as ort

    from .onnx_io import ort_session

    try:
        ort_session(model)
    except Exception as e:
        raise ExportError(f"ONNX Runtime {ort.__version__} cannot load the exported model (opset {opset}): "
                          f"{_first_line(e)}") from None


def export_module(module, onnx_path, config: ModelConfig, opset=DEFAULT_OPSET, simplify=False,
                  output_names=None, input_shape=None):
    """Export a OneFlow ``nn.Module`` (eval mode) -> ONNX at ``onnx_path`` (atomic
    write, no validation: see ``export``). Returns ExportReport."""
    t0 = time.perf_counter()
    with _transaction(onnx_path) as tx:
        o = ExportOptions(opset=check_opset(opset), simplify=simplify, output_names=output_names)
        report = _export_to(tx, module, config, o, io_spec(config, input_shape), t0)
        tx.commit()
    report.onnx_path = str(onnx_path)
    return report


def _export_to(tx, module, config, o: ExportOptions, spec, t0):
    """Build the ONNX into the transaction's temp file -> ExportReport (``o.opset``
    checked, ``o.input_format`` None or the raw format)."""
    import onnx

    opset = o.opset
    model, n_dyn, simplified = build_onnx(module, config, spec, opset, o.simplify, o.output_names)
    if o.input_format:
        from .models.raw_input import finish_onnx

        finish_onnx(model, config.preprocess)
        _check_loads(model, opset)
    onnx.save(model, tx.tmp)
    several = len(spec.shapes) > 1
    return ExportReport(model=config.name, onnx_path=tx.tmp, opset=int(opset),
                        export_seconds=round(time.perf_counter() - t0, 2),
                        onnx_bytes=os.path.getsize(tx.tmp), onnx_sha256=sha256_file(tx.tmp),
                        dynamic_reshapes=n_dyn, simplified=simplified, weights=config.weights,
                        pretrained=config.pretrained, preprocess=config.preprocess.to_dict(),
                        input_shape=[list(s) for s in spec.shapes] if several else list(spec.shapes[0]),
                        outputs=[out.name for out in model.graph.output], input_names=list(spec.names),
                        dynamic_size={k: list(v) for k, v in spec.sizes.items()} if spec.sizes else None,
                        output_shapes=[_declared(vi) for vi in model.graph.output],
                        input_format=o.input_format)


def _declared(vi):
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


def _user_config(module, input_shape):
    from .config import config_for_shape

    shape = input_shape if input_shape is not None else (3, 224, 224)   # checked by export (check_shape)
    return config_for_shape(type(module).__name__, shape, weights="user module")


def resolve_shapes(module, raws, log=print):
    """A 4-number shape said the usual way, ``(1, 3, H, W)``, is batch + (C, H, W)
    when the module takes that (one note), else a 4-D per-sample shape when the
    module takes that (``Conv3d``: (C, D, H, W)); neither: one-line error. Over
    several input shapes (ranges kept) the reading applies to every 4-number one, together."""
    if raws is None or not any(len(r) == 4 for r in raws):
        return raws
    lows = [check_shape(r)[0] for r in raws]
    strip = [lo[1:] if len(lo) == 4 else lo for lo in lows]
    text = "; ".join(",".join(map(str, lo)) for lo in lows if len(lo) == 4)
    if eager_works(module, [(1,) + tuple(s) for s in strip]):
        log(f"note: input shape {text} read as batch + per-sample shape (the exported batch is dynamic)")
        return [tuple(r[1:]) if len(r) == 4 else r for r in raws]
    if eager_works(module, [(1,) + tuple(s) for s in lows]):
        return raws
    raise OfconvertError(f"input shape {text}: the model runs neither on it as batch + (C, H, W) nor as a "
                         f"per-sample shape; give the per-sample shape without the batch, e.g. "
                         f"{','.join(map(str, strip[[len(lo) for lo in lows].index(4)]))}")


def _resolve_model(model, weights, config, input_shape, model_args):
    """``(module, config, weights record)`` of a zoo/flowvision/user-code name or a
    module; a module given ``weights`` gets them loaded (strictly) or the export is
    refused: a report never names weights that were not used."""
    from .zoo import load_weights

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


def export(model, onnx_path, options: Optional[ExportOptions] = None, **settings):
    """Export a zoo model, the user's code or a OneFlow module to ONNX -> ExportReport.

    model: zoo name, ``flowvision:NAME``, ``path/to/file.py:Name`` /
      ``pkg.mod:Name`` (``model_args``: its constructor arguments), or a
      ``oneflow.nn.Module`` (exported in eval mode, handed back in its own mode).
    options: ``ExportOptions`` (weights, opset, validate, input_shape, ...);
      ``settings``: its fields as keywords, overriding it
      (``export("resnet50", "r.onnx", opset=17, validate=False)``).
    """
    o = options_with(ExportOptions, options, settings, "export()")
    if not isinstance(onnx_path, (str, os.PathLike)):
        raise OfconvertError(f"onnx_path must be a file path, got {type(onnx_path).__name__}")
    if os.path.isdir(onnx_path):
        raise OfconvertError(f"onnx_path names a folder ({onnx_path}); give a file name, e.g. model.onnx")
    raws = split_shapes(o.input_shape)
    lows = None if raws is None else [check_shape(r)[0] for r in raws]
    o = dataclasses.replace(o, opset=check_opset(o.opset))
    log = print if o.verbose else (lambda *a: None)
    per_sample = None if lows is None else (lows[0] if len(lows[0]) != 4 else lows[0][1:])  # tentative
    module, cfg, wrec = _resolve_model(model, o.weights, o.config, per_sample, o.model_args)
    o = dataclasses.replace(o, input_format=_raw_format(o.input_format, raws, o.dynamic_size))
    with eval_mode(module, log):
        check_arity(module, 1 if raws is None else len(raws))
        spec = make_spec(resolve_shapes(module, raws, log) or [cfg.input_shape], o.input_names, o.dynamic_size)
        if o.input_format:   # a OneFlow front doing cast, normalisation and transpose; traced with the model
            from .models.raw_input import config_at, raw_shape, wrap

            cfg = config_at(cfg, spec.shapes[0])
            module, spec = wrap(module, cfg.preprocess), make_spec([raw_shape(spec.shapes[0])], o.input_names)
        return _export_validated(module, cfg, onnx_path, spec, wrec, o, model if isinstance(model, str) else None)


def _raw_format(input_format, raws, dynamic_size):
    """``"uint8-nhwc"`` or None; refused in one line with several inputs or a dynamic size."""
    from .models.raw_input import RAW, check_format

    raw = check_format(input_format)
    if raw and ((raws is not None and len(raws) > 1) or dynamic_size):
        raise OfconvertError(f"--input-format {RAW} is for one fixed-size RGB image input "
                             f"(not with several inputs or --dynamic-size)")
    return raw


def _export_validated(module, cfg, onnx_path, spec, wrec, o: ExportOptions, source):
    """Build, validate and write (one transaction) -> ExportReport. ``source``: the
    model's name (None for a module)."""
    t0 = time.perf_counter()
    with _transaction(onnx_path) as tx:
        report = _export_to(tx, module, cfg, o, spec, t0)
        for k, v in wrec.items():
            setattr(report, k, v)
        _record_source(report, source, o.model_args)
        if o.validate:
            from .validation import validate as _validate

            report.validation = _validate(module, tx.tmp, cfg, _validate_options(o, spec, onnx_path))
            report.validation.onnx_path = str(onnx_path)
            _write_report(tx.add(".validation.json"), report.validation.to_dict())
        else:
            tx.drop(".validation.json")
            if o.verbose:
                print(f"warning: {onnx_path} was not validated against OneFlow (--no-validate)")
        report.onnx_path = str(onnx_path)
        _write_report(tx.add(".json"), report.to_dict())
        tx.commit()
    return report


def _validate_options(o: ExportOptions, spec, onnx_path):
    """The caller's ``validation_options`` completed with what the export decides: the
    exported shapes and input format, no report of its own (the transaction writes it),
    the sizes not traced (unless given), the final path as label (unless given)."""
    vo = o.validation_options or ValidateOptions()
    traced = [(v["height"], v["width"]) for v, _ in trace_points(spec) if "height" in v]
    return dataclasses.replace(
        vo, input_shape=list(spec.shapes) if len(spec.shapes) > 1 else spec.shapes[0], report_path=False,
        input_format=o.input_format, verbose=o.verbose and vo.verbose, label=vo.label or str(onnx_path),
        sizes=validation_sizes(spec, traced) if vo.sizes is None else vo.sizes)


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
