"""``export_step``: the fp32 ONNX, exported and validated (``ofconvert.export``), or an
identical earlier export reused. When the run's final artefact is something else
(fp16, int8, an engine), a new export is written into the run's stage and lands
with the rest on commit: a later refusal (e.g. a ``--calib-cache`` of another
model) leaves no fp32 file behind."""
import json
import os

from ..fileio import sha256_file


def export_step(plan, stage, res, log):
    """Sets ``plan.fp32`` (where the later steps read the fp32 ONNX) and ``res.export``."""
    opts, final = plan.opts, plan.paths["fp32"]
    rep = reusable_export(final, opts)
    res.artefacts["fp32"] = final
    if rep is not None:
        log(f"reusing fp32 ONNX {final} " + ("(prebuilt; not validated here)" if rep.get("prebuilt")
                                             else "(same model, weights, opset; validated)"))
        plan.fp32, res.export = final, rep
        return
    from ..export_options import ExportOptions, ValidateOptions
    from ..exporter import export

    staged = opts.precision != "fp32" or opts.to != "onnx"
    target = stage.path(final) if staged else final
    log(f"exporting {opts.model} -> {final} (opset {opts.opset})")
    r = export(opts.model, target, ExportOptions(
        weights=opts.weights, opset=opts.opset, validate=opts.validate, simplify=opts.simplify,
        input_shape=opts.input_shape, model_args=opts.model_args, input_names=opts.input_names,
        dynamic_size=opts.dynamic_size or None, input_format=opts.input_format,
        validation_options=ValidateOptions(label=final)))   # the file it becomes, not the stage's copy
    plan.fp32, res.export = target, r.to_dict()
    if staged:   # its reports name the final path once the stage is committed (fileio.Stage)
        res.export["onnx_path"] = final
        if isinstance(res.export.get("validation"), dict):
            res.export["validation"]["onnx_path"] = final
        if not opts.validate:
            stage.drop(final + ".validation.json")   # it described the file this one replaces


def reusable_export(onnx_path, opts):
    """An existing export of the same model/weights/opset/code whose file is intact."""
    from ..usermodel import is_user_spec, parse_model_args, source_digest
    from ..weights import weights_digest

    meta = onnx_path + ".json"
    if opts.force_export or not os.path.isfile(onnx_path):
        return None
    if not os.path.isfile(meta):
        # a prebuilt file (copied, or made on a machine without OneFlow): good enough when the
        # caller asks for no validation (bench, eval) and it is an ofconvert export of this model
        return _prebuilt_export(onnx_path, opts) if not opts.validate and not opts.weights else None
    try:
        with open(meta) as f:
            rep = json.load(f)
    except (OSError, ValueError):
        return None
    if is_user_spec(opts.model) and (rep.get("source_sha256") != source_digest(opts.model)[1]
                                     or rep.get("model_args") != parse_model_args(opts.model_args)):
        return None   # the user's code or its arguments changed
    want_weights = weights_digest(opts.weights) if opts.weights else None
    same = (rep.get("model") == opts.model and rep.get("opset") == opts.opset
            and (opts.input_shape is None or _shape_json(opts.input_shape) == rep.get("input_shape"))
            and not opts.dynamic_size and not rep.get("dynamic_size") and opts.input_names is None
            and rep.get("input_format") == _raw_format(opts)
            and rep.get("weights_sha256") == want_weights
            and (rep.get("validation") or not opts.validate)
            and (rep.get("simplified") or not opts.simplify)
            and rep.get("onnx_sha256") == sha256_file(onnx_path))
    return rep if same else None


def _raw_format(opts):
    if opts.input_format is None:
        return None
    from ..models.raw_input import check_format

    return check_format(opts.input_format)


def _shape_json(shape):
    """A --input-shape as the export report records it (lists; ranges never equal)."""
    return json.loads(json.dumps(shape))


def _prebuilt_export(onnx_path, opts):
    from ..artifacts.content import detect_precision
    from ..onnx_fix import get_metadata
    from ..onnx_io import load_onnx

    try:
        model = load_onnx(onnx_path, external_data=False)
    except Exception:
        return None
    meta = get_metadata(model)
    if meta.get("ofconvert.model") != opts.model or detect_precision(onnx_path) != "fp32":
        return None
    if meta.get("ofconvert.input_format") != _raw_format(opts):
        return None
    return {"model": opts.model, "onnx_path": onnx_path, "prebuilt": True, "validation": None}
