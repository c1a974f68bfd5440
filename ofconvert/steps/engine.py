"""``engine_step``: the TensorRT engine (``ofconvert.build_engine``) from the ONNX the
precision step produced, into the run's stage."""


def engine_step(plan, stage, res, log, onnx_path, calib_cache=None):
    from ..engine import build_engine

    opts, final = plan.opts, plan.paths["engine"]
    log(f"building TensorRT engine -> {final}")
    res.engine = build_engine(onnx_path, stage.path(final), precision=opts.precision, calib_cache=calib_cache,
                              batch=opts.batch, max_batch=opts.max_batch, workspace_mb=opts.workspace_mb,
                              timing_cache=opts.timing_cache, strongly_typed=opts.strongly_typed)
    res.artefacts["engine"] = final
