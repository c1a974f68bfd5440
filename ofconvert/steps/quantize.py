"""``fp16_step`` and ``int8_step``: the fp16 ONNX, or the int8 Q/DQ pair (TensorRT's
``.int8.onnx`` and the CPU's ``.int8-cpu.onnx``) from a calibration (images, or
the user's ``--calib-cache``), plain or under a flip budget (``--max-flips``).
Every file is written into the run's stage; the plan says what to read."""
import os

from ..calibration import METHODS as CALIB_METHODS


def fp16_step(plan, stage, res, log):
    """``res.artefacts["fp16"]``; returns the ONNX an engine is built from."""
    final = plan.paths["fp16"]
    if plan.opts.max_flips is not None:
        _budget(plan, stage, res, log, None, None, ("fp16",))
    else:
        from ..precision import to_fp16

        log(f"fp16 -> {final}")
        to_fp16(plan.fp32, stage.path(final))
    res.artefacts["fp16"] = final
    return stage.path(final)


def int8_step(plan, stage, res, log):
    """``res.artefacts["int8"]``/``["int8-cpu"]`` (+ ``calib_cache``); returns (the
    ONNX an engine is built from, the calibration cache it uses)."""
    if plan.opts.calib_cache is not None:
        (scales, means), cals = _from_cache(plan, res, log), {}
    else:
        cals = calibrate_all(plan, stage, res, log)
        scales = cals[plan.opts.calib_method].scales if len(cals) == 1 else {m: c.scales for m, c in cals.items()}
        means = next((c.means for c in cals.values() if c.means), None)   # the same images: any method's
    chosen = cals.get(plan.opts.calib_method)   # None: the user's --calib-cache
    if plan.opts.max_flips is not None:
        b = _budget(plan, stage, res, log, scales, means, ("int8-cpu", "int8"))
        if cals and b.calibration and b.calibration["chosen"] in cals:
            chosen = cals[b.calibration["chosen"]]
            _record_calibration(plan, res, chosen,
                                chosen_on_check_set={k: b.calibration[k] for k in ("expected_flips", "flips")})
    else:
        from ..precision import quantize_qdq

        quantize_qdq(plan.fp32, stage.path(plan.paths["int8"]), scales, target="trt", means=means)
        quantize_qdq(plan.fp32, stage.path(plan.paths["int8-cpu"]), scales, target="cpu", means=means)
        log(f"int8 Q/DQ -> {plan.paths['int8']} (TensorRT: symmetric int8) and {plan.paths['int8-cpu']} "
            "(CPU: uint8 activations)")
    res.artefacts["int8"], res.artefacts["int8-cpu"] = plan.paths["int8"], plan.paths["int8-cpu"]
    # the cache as it can be read now: one this run wrote sits in the stage until the commit
    cache = chosen.cache_path if chosen is not None else os.fspath(plan.opts.calib_cache)
    return stage.path(plan.paths["int8"]), cache


def _from_cache(plan, res, log):
    """(scales, channel means) of the user's cache: read only (by preflight), never
    rewritten, no images; its tensors must be this model's (checked before anything
    of the run lands)."""
    from ..calibration import calibration_tensors, read_sidecar_means, validate_scales
    from ..onnx_io import load_onnx

    cache = plan.opts.calib_cache
    tensors = calibration_tensors(load_onnx(plan.fp32))
    scales = dict(plan.cache_scales)
    validate_scales(scales, tensors, cache)
    means = read_sidecar_means(cache, tensors)
    log(f"using calibration cache {cache} (no images)"
        + ("" if means else "; its sidecar holds no channel means: no bias correction"))
    res.calibration = {"cache": os.fspath(cache), "reused": True, "method": "cache"}
    return scales, means


def calibrate_all(plan, stage, res, log):
    """{method: CalibrationResult}: --calib-method's, and with --max-flips every
    method (the check set picks one). Caches beside the fp32 ONNX are reused."""
    from ..calibration import calibrate

    opts = plan.opts
    methods = [opts.calib_method]
    if opts.max_flips is not None:
        methods += [m for m in CALIB_METHODS if m != opts.calib_method]
    cals = {}
    for m in methods:
        final = default_cache_path_for(plan.paths["fp32"], m, plan.split)
        path = final if os.path.exists(final) and not opts.recalibrate else stage.path(final)
        cals[m] = cal = calibrate(plan.fp32, plan.calib_data, plan.config.preprocess, method=m,
                                  cache_path=path, regenerate=opts.recalibrate)
        log(("reused" if cal.reused else "computed") + f" calibration cache {final}")
    _record_calibration(plan, res, cals[opts.calib_method])
    return cals


def _record_calibration(plan, res, cal, **extra):
    """``res.calibration`` / ``res.artefacts["calib_cache"]`` name the cache's final path."""
    final = os.path.join(plan.folder, os.path.basename(cal.cache_path))
    res.calibration = {"cache": final, "sidecar": os.path.join(plan.folder, os.path.basename(cal.sidecar_path)),
                       "reused": cal.reused, "method": cal.method, "images": cal.num_images, "skipped": cal.skipped,
                       **extra}
    res.artefacts["calib_cache"] = final


def _budget(plan, stage, res, log, scales, means, flavours):
    """The fewest layers in float that keep top-1 flips vs fp32 within --max-flips
    (ofconvert.budget); writes each flavour with its .budget.json (+ .budget.png)."""
    from ..budget import BudgetOptions, CalibrationScales, quantize_to_budget, require_met
    from ..budget.report import write_models

    opts = plan.opts
    log(f"flip budget {opts.max_flips} on {len(plan.check_images)} check images "
        f"({'--check-data' if opts.check_data else 'a split of --calib' if opts.precision == 'int8' else '--calib'})")
    b = quantize_to_budget(plan.fp32, plan.check_images, opts.max_flips,
                           scales=CalibrationScales(scales, means) if scales is not None else None,
                           flavours=flavours, preprocess=plan.config.preprocess,
                           options=BudgetOptions(speed_backend=opts.speed_backend,
                                                 check_source=os.fspath(opts.check_data or opts.calib)), log=log)
    require_met(b)
    staged = {f: stage.path(plan.paths[f]) for f in flavours}
    write_models(b, staged, log=lambda m: log(m.replace(stage.folder + os.sep, stage.final + os.sep)))
    res.budget = {f: {"path": plan.paths[f], "report": plan.paths[f] + ".budget.json", "float_layers": b.flavours[f].k,
                      "flips": b.flavours[f].flips, "check_images": b.check["images"]} for f in flavours}
    res.budget["search_s"] = b.search_s
    return b


def default_cache_path_for(fp32_path, method, split):
    """The cache of ``method``: ``<stem>.<method>.calib.cache``, or
    ``<stem>.<method>.split.calib.cache`` when only the calibration half of --calib
    calibrated (--max-flips without --check-data)."""
    from ..calibration import default_cache_path

    return default_cache_path(fp32_path, method + (".split" if split else ""))
