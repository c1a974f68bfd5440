"""The conversion pipeline behind ``ofconvert MODEL --to onnx|trt``.

fp32 ONNX (export + validation, reused when an identical export exists) ->
optional fp16 ONNX / int8 Q/DQ ONNX (+ calibration cache) -> optional TensorRT
engine. Every artefact is written atomically; the result lists them.

File names follow ``ofconvert.artifacts`` (``<stem>.onnx`` is always fp32,
``.fp16.onnx``, ``.int8.onnx``, ``.int8-cpu.onnx``, ``.<precision>.engine``):
``ConvertOptions.check`` refuses, before any work, an ``-o`` whose name does not
say the precision it would hold, and a run that would replace an existing file of
another precision. ``onnx_name`` is re-exported from there.
"""
import dataclasses
import json
import os
from typing import Optional

from .artifacts.content import check_overwrite
from .artifacts.names import artifact_paths, check_output_name, onnx_name  # noqa: F401 (re-export)
from .calibration import METHODS as CALIB_METHODS
from .config import PRECISIONS, get_config
from .errors import OfconvertError, check_type


@dataclasses.dataclass
class ConvertOptions:
    model: str                             # zoo name, flowvision:NAME, path/to/file.py:Name or pkg.mod:Name
    to: str = "onnx"                       # "onnx" or "trt"
    output: Optional[str] = None           # final artefact path
    precision: str = "fp32"
    opset: int = 13
    input_shape: Optional[tuple] = None    # per-image (C, H, W) (H/W may be (lo, hi) ranges), or a list: one per input
    input_names: Optional[object] = None   # "a,b" or a list: one name per input
    dynamic_size: bool = False             # H and W symbolic (ofconvert.export_io)
    weights: Optional[str] = None          # OneFlow checkpoint folder (flow.save), .npz or .safetensors
    model_args: Optional[object] = None    # file.py:Name's constructor arguments: dict, JSON or "k=v,k=v"
    validate: bool = True
    force_export: bool = False
    simplify: bool = False
    calib: Optional[str] = None            # image folder or manifest (int8)
    calib_method: str = "entropy"
    calib_images: Optional[int] = None
    recalibrate: bool = False
    batch: int = 8                         # TensorRT profile opt
    max_batch: Optional[int] = None        # TensorRT profile max
    workspace_mb: Optional[int] = None
    timing_cache: Optional[str] = None
    calib_cache: Optional[str] = None      # an existing TensorRT calibration cache: int8 without images
    strongly_typed: Optional[bool] = None  # TensorRT: None = decided by version and ONNX (engine.plan_build)
    max_flips: Optional[str] = None        # int8/fp16 flip budget vs fp32: "1%" or a count (ofconvert.budget)
    check_data: Optional[str] = None       # images judging the flip budget (default: a split of --calib)

    def check(self):
        check_type(self.model, str, "model", "a zoo name, flowvision:NAME or path/to/file.py:Class")
        check_type(self.opset, int, "opset", "an int")
        for name in ("batch", "max_batch", "calib_images", "workspace_mb"):
            if getattr(self, name) is not None:
                check_type(getattr(self, name), int, name, "an int")
        for name in ("output", "weights", "calib", "calib_cache", "check_data"):
            if getattr(self, name) is not None:
                check_type(getattr(self, name), (str, os.PathLike), name, "a path")
        if self.to not in ("onnx", "trt"):
            raise OfconvertError(f"--to must be 'onnx' or 'trt', got {self.to!r}")
        if self.precision not in PRECISIONS:
            raise OfconvertError(f"precision must be one of {', '.join(PRECISIONS)}")
        if self.calib_method not in CALIB_METHODS:
            raise OfconvertError(f"--calib-method must be one of {', '.join(CALIB_METHODS)}")
        if self.calib_cache is not None:
            if self.precision != "int8":
                raise OfconvertError("--calib-cache is for --int8")
            if self.calib:
                raise OfconvertError("give --calib DIR (calibrate on images) or --calib-cache FILE (reuse a cache), not both")
            from .calibration import read_cache

            read_cache(self.calib_cache)   # missing, garbled, foreign: one line now, before the export
        if self.precision == "int8" and not self.calib and self.calib_cache is None:
            raise OfconvertError("--int8 needs --calib DIR (an image folder or calibration manifest, e.g. calib/imagenet1k) "
                                 "or --calib-cache FILE")
        if self.max_flips is not None or self.check_data is not None:
            self._check_budget()
        if self.calib and not os.path.exists(self.calib):
            raise OfconvertError(f"--calib: no such folder or manifest: {self.calib}")
        if self.output and (os.path.isdir(self.output) or self.output.endswith(os.sep)):
            raise OfconvertError(f"-o/--output names a folder ({self.output}); give a file name, e.g. {self.model}.onnx")
        if self.output:   # the name must say what the file will hold (ofconvert.artifacts)
            check_output_name(self.output, self.precision, self.to)
        if self.calib_images is not None and self.calib_images < 1:
            raise OfconvertError("--calib-images must be >= 1")
        if self.precision == "int8" and self.calib:   # empty folder, bad manifest...: fail before the export
            from .calibration import list_calibration_images

            found = list_calibration_images(self.calib, self.calib_images)
            if self.calib_images is not None and len(found) < self.calib_images:
                import sys

                print(f"note: --calib-images {self.calib_images} but {self.calib} holds {len(found)} images: "
                      f"calibrating on {len(found)}", file=sys.stderr)
        if self.weights:
            from .weights import check_weights_path

            check_weights_path(self.weights)
        from .exporter import check_opset
        from .export_io import check_shape, input_names, split_shapes

        check_opset(self.opset)
        shapes = split_shapes(self.input_shape)
        if shapes is not None:
            for raw in shapes:
                check_shape(raw)
            self.input_shape = shapes if len(shapes) > 1 else shapes[0]
            input_names(len(shapes), self.input_names)
        self._check_image_input()
        self._check_model()
        from .fileio import check_creatable_dir

        # checked, not created: a run refused later must leave no new folder
        check_creatable_dir(os.path.dirname(os.path.abspath(self.output or os.path.join(".", self.model))))
        if self.to == "trt":   # fail before the slow steps (export, calibration)
            from .engine import EngineOptions, require_tensorrt

            EngineOptions(precision=self.precision, batch=self.batch, max_batch=self.max_batch,
                          workspace_mb=self.workspace_mb, timing_cache=self.timing_cache,
                          strongly_typed=self.strongly_typed).validate()
            require_tensorrt()
        paths = _paths(self)
        for role, flavour in _written(self):   # never replace a file of another precision
            check_overwrite(paths[role], flavour)

    def _check_model(self):
        """Unknown model, user code that does not import, bad --model-args: one line now."""
        from .usermodel import is_user_spec, parse_model_args

        if self.model_args is not None:
            if not is_user_spec(self.model):
                raise OfconvertError("--model-args is for your own model (path/to/file.py:Class or pkg.mod:Class)")
            parse_model_args(self.model_args)
        model_config(self)   # unknown model -> ModelNotFoundError

    def _check_image_input(self):
        """int8 calibration and --max-flips feed RGB images of the preprocessing: one line otherwise."""
        from .export_io import check_shape, split_shapes

        needs = (self.precision == "int8" and self.calib) or self.max_flips is not None
        if not needs:
            return
        shapes = split_shapes(self.input_shape) or [model_config(self).input_shape]
        lows = [check_shape(r)[0] for r in shapes]
        lows = [lo[1:] if len(lo) == 4 else lo for lo in lows]
        if len(lows) > 1 or len(lows[0]) != 3 or lows[0][0] != 3:
            raise OfconvertError(f"calibration and --max-flips feed RGB images (3, H, W); this model's input "
                                 f"{'; '.join(','.join(map(str, lo)) for lo in lows)} is not one: use --calib-cache "
                                 f"for int8, or no flip budget")

    def _check_budget(self):
        from .budget import parse_budget

        if self.max_flips is None:
            raise OfconvertError("--check-data is for --max-flips")
        if self.precision not in ("int8", "fp16"):
            raise OfconvertError("--max-flips needs --int8 or --fp16 (it keeps layers in float until int8/fp16 "
                                 "predictions agree with fp32)")
        check_type(self.max_flips, (str, int), "max_flips", "a string like '1%' or a number of images")
        parse_budget(self.max_flips)
        if self.check_data is not None:
            from .calibration import list_calibration_images

            check = list_calibration_images(self.check_data)   # missing / empty: one line now
            if self.precision == "int8" and self.calib and os.path.exists(self.calib):
                from .budget.data import require_disjoint   # no calibration image may judge the budget

                require_disjoint(list_calibration_images(self.calib, self.calib_images), check)
        elif self.calib_cache is not None or (self.precision == "fp16" and not self.calib):
            raise OfconvertError("--max-flips needs check images: --check-data DIR"
                                 + (" (or --calib DIR)" if self.precision == "fp16" else
                                    " (with --calib-cache there is no calibration set to split)"))


@dataclasses.dataclass
class ConvertResult:
    artefacts: dict                       # role -> path
    export: Optional[dict] = None
    calibration: Optional[dict] = None
    engine: Optional[dict] = None
    budget: Optional[dict] = None

    def to_dict(self):
        return dataclasses.asdict(self)


def model_config(opts: ConvertOptions):
    """The run's ModelConfig (preprocessing); a 4-number --input-shape is read as
    batch + (C, H, W) here (the export decides with the module: resolve_input_shape)."""
    from .export_io import check_shape, split_shapes

    shapes = split_shapes(opts.input_shape)
    shape = None if shapes is None else check_shape(shapes[0])[0]
    if shape is not None and len(shape) == 4:
        shape = shape[1:]
    return get_config(opts.model, shape)


def _paths(opts: ConvertOptions):
    """Every artefact path, from --output (or the model name): see ofconvert.artifacts."""
    return artifact_paths(opts.model, opts.output, opts.precision, opts.to)


def _written(opts: ConvertOptions):
    """(role, flavour) of every artefact this run may write."""
    roles = [("fp32", "fp32")]
    if opts.precision == "fp16":
        roles.append(("fp16", "fp16"))
    elif opts.precision == "int8":
        roles += [("int8", "int8"), ("int8-cpu", "int8-cpu")]
    if opts.to == "trt":
        roles.append(("engine", opts.precision))
    return roles


def _reusable_export(onnx_path, opts):
    """An existing export of the same model/weights/opset whose file is intact."""
    from .fileio import sha256_file
    from .weights import weights_digest

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
    from .usermodel import is_user_spec, parse_model_args, source_digest

    want_weights = weights_digest(opts.weights) if opts.weights else None
    if is_user_spec(opts.model) and (rep.get("source_sha256") != source_digest(opts.model)[1]
                                     or rep.get("model_args") != parse_model_args(opts.model_args)):
        return None   # the user's code or its arguments changed
    same = (rep.get("model") == opts.model and rep.get("opset") == opts.opset
            and (opts.input_shape is None or _shape_json(opts.input_shape) == rep.get("input_shape"))
            and not opts.dynamic_size and not rep.get("dynamic_size") and opts.input_names is None
            and rep.get("weights_sha256") == want_weights
            and (rep.get("validation") or not opts.validate)
            and (rep.get("simplified") or not opts.simplify)
            and rep.get("onnx_sha256") == sha256_file(onnx_path))
    return rep if same else None


def _shape_json(shape):
    """A --input-shape as the export report records it (lists; ranges never equal)."""
    return json.loads(json.dumps(shape))


def _prebuilt_export(onnx_path, opts):
    import onnx

    from .artifacts.content import _onnx_precision
    from .onnx_fix import get_metadata

    try:
        model = onnx.load(onnx_path, load_external_data=False)
        meta = get_metadata(model)
    except Exception:
        return None
    if meta.get("ofconvert.model") != opts.model or _onnx_precision(model) != "fp32":
        return None
    return {"model": opts.model, "onnx_path": onnx_path, "prebuilt": True, "validation": None}


def convert(opts: ConvertOptions, log=print) -> ConvertResult:
    check_type(opts, ConvertOptions, "opts", "an ofconvert.ConvertOptions")
    opts.check()
    paths = _paths(opts)
    res = ConvertResult(artefacts={})
    rep = _reusable_export(paths["fp32"], opts)
    if rep is not None:
        log(f"reusing fp32 ONNX {paths['fp32']} " + ("(prebuilt; not validated here)" if rep.get("prebuilt")
                                                      else "(same model, weights, opset; validated)"))
    else:
        from .exporter import export

        log(f"exporting {opts.model} -> {paths['fp32']} (opset {opts.opset})")
        r = export(opts.model, paths["fp32"], weights=opts.weights, opset=opts.opset, validate=opts.validate,
                   simplify=opts.simplify, input_shape=opts.input_shape, model_args=opts.model_args,
                   input_names=opts.input_names, dynamic_size=opts.dynamic_size or None)
        rep = r.to_dict()
    res.export = rep
    res.artefacts["fp32"] = paths["fp32"]
    onnx_for_engine = paths["fp32"]
    cache_path = None
    if opts.precision == "fp16" and opts.max_flips is not None:
        _to_budget(opts, paths, res, None, budget_images(opts)[1], ("fp16",), log)
        res.artefacts["fp16"] = onnx_for_engine = paths["fp16"]
    elif opts.precision == "fp16":
        from .precision import to_fp16

        log(f"fp16 -> {paths['fp16']}")
        to_fp16(paths["fp32"], paths["fp16"])
        res.artefacts["fp16"] = onnx_for_engine = paths["fp16"]
    elif opts.precision == "int8":
        from .precision import quantize_qdq

        if opts.calib_cache is not None:   # the user's cache: read only, never rewritten, no images
            from .calibration import calibration_tensors, read_cache, validate_scales

            import onnx

            from .calibration import read_sidecar_means

            scales = read_cache(opts.calib_cache)
            tensors = calibration_tensors(onnx.load(paths["fp32"]))
            validate_scales(scales, tensors, opts.calib_cache)
            means = read_sidecar_means(opts.calib_cache, tensors)
            log(f"using calibration cache {opts.calib_cache} (no images)"
                + ("" if means else "; its sidecar holds no channel means: no bias correction"))
            res.calibration = {"cache": os.fspath(opts.calib_cache), "reused": True, "method": "cache"}
            cache_path = os.fspath(opts.calib_cache)
        else:
            from .calibration import calibrate

            cfg = model_config(opts).preprocess
            calib_data, split = opts.calib, opts.max_flips is not None and opts.check_data is None
            methods = [opts.calib_method]
            if opts.max_flips is not None:   # the check set picks the method: every one is calibrated (cached)
                methods += [m for m in CALIB_METHODS if m != opts.calib_method]
                calib_data, check = budget_images(opts)   # split: check images from --calib, the rest calibrates
            cals = {}
            for m in methods:
                kw = {"cache_path": default_cache_path_for(paths["fp32"], m, split)} if split else {}
                cals[m] = cal = calibrate(paths["fp32"], calib_data, cfg, method=m,
                                          num_images=None if split else opts.calib_images,
                                          regenerate=opts.recalibrate, **kw)
                log(("reused" if cal.reused else "computed") + f" calibration cache {cal.cache_path}")
            cal = cals[opts.calib_method]
            res.calibration = {"cache": cal.cache_path, "sidecar": cal.sidecar_path, "reused": cal.reused,
                               "method": cal.method, "images": cal.num_images, "skipped": cal.skipped}
            res.artefacts["calib_cache"] = cache_path = cal.cache_path
            scales = cal.scales if len(cals) == 1 else {m: c.scales for m, c in cals.items()}
            means = next((c.means for c in cals.values() if c.means), None)   # the same images: any method's
        if opts.max_flips is not None:
            if opts.calib_cache is not None:
                check = budget_images(opts)[1]
            b = _to_budget(opts, paths, res, scales, check, ("int8-cpu", "int8"), log, means)
            if opts.calib_cache is None and b.calibration and b.calibration["chosen"] in cals:
                cal = cals[b.calibration["chosen"]]   # the cache of the method the models use
                judged = {k: b.calibration[k] for k in ("expected_flips", "flips")}   # what the choice was made on
                res.calibration.update({"cache": cal.cache_path, "sidecar": cal.sidecar_path, "reused": cal.reused,
                                        "method": cal.method, "chosen_on_check_set": judged})
                res.artefacts["calib_cache"] = cache_path = cal.cache_path
        else:
            quantize_qdq(paths["fp32"], paths["int8"], scales, target="trt", means=means)
            quantize_qdq(paths["fp32"], paths["int8-cpu"], scales, target="cpu", means=means)
            log(f"int8 Q/DQ -> {paths['int8']} (TensorRT: symmetric int8) and {paths['int8-cpu']} "
                "(CPU: uint8 activations)")
        res.artefacts["int8"] = onnx_for_engine = paths["int8"]
        res.artefacts["int8-cpu"] = paths["int8-cpu"]
    if opts.to == "trt":
        from .engine import build_engine

        log(f"building TensorRT engine -> {paths['engine']}")
        res.engine = build_engine(onnx_for_engine, paths["engine"], precision=opts.precision, calib_cache=cache_path,
                                  batch=opts.batch, max_batch=opts.max_batch, workspace_mb=opts.workspace_mb,
                                  timing_cache=opts.timing_cache, strongly_typed=opts.strongly_typed)
        res.artefacts["engine"] = paths["engine"]
    return res


def budget_images(opts: ConvertOptions):
    """(calibration data, check images) of a ``--max-flips`` run, listed once: with
    ``--check-data`` those images judge and ``--calib`` calibrates as given; else for
    int8 ``--calib`` is split (one part calibrates, the other judges), and for fp16
    all of ``--calib`` judges."""
    from .calibration import list_calibration_images

    if opts.check_data is not None:
        return opts.calib, list_calibration_images(opts.check_data)
    paths = list_calibration_images(opts.calib, opts.calib_images)
    if opts.precision == "fp16":
        return None, paths
    from .budget.data import split_calibration_set

    return split_calibration_set(paths)


def _to_budget(opts, paths, res, scales, check, flavours, log, means=None):
    """The fewest layers in float that keep top-1 flips vs fp32 within --max-flips
    (ofconvert.budget); writes each flavour with its .budget.json (+ .budget.png)."""
    from .budget import quantize_to_budget, require_met
    from .budget.report import write_models

    log(f"flip budget {opts.max_flips} on {len(check)} check images "
        f"({'--check-data' if opts.check_data else 'a split of --calib' if opts.precision == 'int8' else '--calib'})")
    b = quantize_to_budget(paths["fp32"], check, opts.max_flips, precision=opts.precision, scales=scales, means=means,
                           flavours=flavours, preprocess=model_config(opts).preprocess,
                           check_source=os.fspath(opts.check_data or opts.calib), log=log)
    require_met(b)
    written = write_models(b, {f: paths[f] for f in flavours}, log=log)
    res.budget = {f: {"path": p, "report": p + ".budget.json", "float_layers": b.flavours[f].k,
                      "flips": b.flavours[f].flips, "check_images": b.check["images"]} for f, p in written.items()}
    res.budget["search_s"] = b.search_s
    return b


def default_cache_path_for(fp32_path, method, split):
    """The cache of ``method``: ``<stem>.<method>.calib.cache``, or
    ``<stem>.<method>.split.calib.cache`` when only the calibration half of --calib
    calibrated (--max-flips without --check-data)."""
    from .calibration import default_cache_path

    return default_cache_path(fp32_path, method + (".split" if split else ""))
