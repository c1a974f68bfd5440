"""``engine_step``: the TensorRT engine (``ofconvert.build_engine``) from the ONNX the
precision step produced, into the run's stage."""


def engine_step(plan, stage, res, log, onnx_path, calib_cache=None):
    from ..engine import build_engine

    final = plan.paths["engine"]
    log(f"building TensorRT engine -> {final}")
    res.engine = build_engine(onnx_path, stage.path(final), plan.engine, calib_cache=calib_cache)
    res.artefacts["engine"] = final
