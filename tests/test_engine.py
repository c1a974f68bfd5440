"""TensorRT engines (ofconvert.engine over ofconvert/trt/, runners.tensorrt, runners.ort_trt).

Everything around TensorRT runs here without it: profile math, ONNX inspection,
strategy by TensorRT version, calibration-cache re-targeting, timing-cache
wiring, sidecar write/read, compatibility refusal, the missing-TensorRT message
and ONNX Runtime's TensorRT-provider options. The build and run paths themselves
run against the TensorRT stand-in in tests/test_trt_contract.py. The tests that need TensorRT and a
GPU (real builds of zoo models, outputs compared with ONNX Runtime CPU on real
images) are at the end and skip with the reason when TensorRT is absent; see
docs/tensorrt.md for how to run them.
"""
import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ofconvert import engine as eng
from ofconvert import fileio
from ofconvert.config import METADATA_KEY, PreprocessConfig, get_config
from ofconvert.errors import BackendUnavailableError, CalibrationCacheError, EngineCompatibilityError, OfconvertError
from ofconvert.runners.ort_trt import ort_trt_provider_options


def _tensorrt_status():
    try:
        import tensorrt as trt
    except (ImportError, OSError) as e:
        return None, f"tensorrt is not importable ({type(e).__name__}: {e})"
    if not hasattr(trt, "Builder"):
        return None, "the installed tensorrt package is a stub without bindings"
    try:
        from ofconvert.trt.backend import gpu_info, load_tensorrt

        load_tensorrt()  # polygraphy beside it
        gpu_info()
    except Exception as e:  # no polygraphy, no libcudart or no GPU
        return None, f"tensorrt is installed but no polygraphy/usable GPU: {e}"
    return trt, ""


TRT, TRT_SKIP_REASON = _tensorrt_status()
needs_trt = pytest.mark.skipif(TRT is None, reason=f"needs TensorRT 10/11 + polygraphy + an NVIDIA GPU: "
                                                   f"{TRT_SKIP_REASON} (docs/tensorrt.md)")
needs_no_trt = pytest.mark.skipif(TRT is not None, reason="TensorRT is installed: the missing-TensorRT path cannot run")


# ---------------------------------------------------------------------------
# tiny real ONNX models (Conv -> GlobalAveragePool -> Flatten -> Gemm)
# ---------------------------------------------------------------------------
def _tiny_model(batch="batch", size=8, qdq=False, meta=None, spatial=None):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv_w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "conv_b")
    fw = numpy_helper.from_array(rng.standard_normal((10, 4)).astype(np.float32), "fc_w")
    fb = numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "fc_b")
    inits = [w, b, fw, fb]
    nodes = []
    x = "input"
    if qdq:
        inits += [numpy_helper.from_array(np.array(0.05, np.float32), "in_scale"),
                  numpy_helper.from_array(np.array(0, np.int8), "in_zp")]
        nodes += [helper.make_node("QuantizeLinear", ["input", "in_scale", "in_zp"], ["input_q"]),
                  helper.make_node("DequantizeLinear", ["input_q", "in_scale", "in_zp"], ["input_dq"])]
        x = "input_dq"
    nodes += [helper.make_node("Conv", [x, "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c"], ["r"]),
              helper.make_node("GlobalAveragePool", ["r"], ["p"]),
              helper.make_node("Flatten", ["p"], ["f"]),
              helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1)]
    hw = spatial if spatial is not None else [size, size]
    graph = helper.make_graph(nodes, "tiny",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3] + hw)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for k, v in (meta or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    return model


TINY_PRE = PreprocessConfig(8, crop_pct=1.0)


@pytest.fixture
def tiny_onnx(tmp_path):
    p = tmp_path / "tiny.onnx"
    onnx.save(_tiny_model(meta={METADATA_KEY: TINY_PRE.to_json(), "ofconvert.model": "tiny"}), str(p))
    return str(p)


def _ort_run(path, x):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x.astype(np.float32)})[0]


# ---------------------------------------------------------------------------
# optimization profile
# ---------------------------------------------------------------------------
def test_profile_min_one_opt_batch_max_max_batch():
    assert eng.compute_profile(8) == eng.Profile(1, 8, 8)
    p = eng.compute_profile(8, 64)
    assert (p.min, p.opt, p.max) == (1, 8, 64)
    assert p.shapes((3, 224, 224)) == ((1, 3, 224, 224), (8, 3, 224, 224), (64, 3, 224, 224))
    assert eng.compute_profile(np.int64(4), 16) == eng.Profile(1, 4, 16)


@pytest.mark.parametrize("batch,max_batch,needle", [
    (0, None, "--batch must be >= 1"),
    (-3, None, "--batch must be >= 1"),
    (8, 4, "--max-batch (4) must be >= --batch (8)"),
    (True, None, "whole number"),
    (8.0, None, "whole number"),
    ("8", None, "whole number"),
    (8, 10 ** 6, "--max-batch must be <="),
])
def test_profile_rejects_bad_batches(batch, max_batch, needle):
    with pytest.raises(OfconvertError) as ei:
        eng.compute_profile(batch, max_batch)
    assert needle in str(ei.value) and "\n" not in str(ei.value)


def test_profile_pinned_to_a_fixed_onnx_batch():
    assert eng.compute_profile(1, None, fixed_batch=1) == eng.Profile(1, 1, 1)
    with pytest.raises(OfconvertError, match="fixed batch of 1"):
        eng.compute_profile(8, None, fixed_batch=1)


# ---------------------------------------------------------------------------
# ONNX inspection
# ---------------------------------------------------------------------------
def test_inspect_tiny_fp32_model_runs_and_is_described(tiny_onnx):
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert _ort_run(tiny_onnx, x).shape == (2, 10)  # a real model
    info = eng.inspect_onnx(tiny_onnx)
    assert (info.input_name, info.output_name, info.sample_shape) == ("input", "logits", (3, 8, 8))
    assert info.fixed_batch is None and info.flavour == "fp32" and info.input_dtype == "float32"
    assert info.preprocess == TINY_PRE.to_dict()


def test_inspect_recognises_fp16_from_the_precision_helper(tiny_onnx, tmp_path):
    from ofconvert.precision import to_fp16

    for keep_io, dtype in ((False, "float16"), (True, "float32")):
        dst = str(tmp_path / f"tiny.fp16.{keep_io}.onnx")
        to_fp16(tiny_onnx, dst, keep_io_types=keep_io)
        info = eng.inspect_onnx(dst)
        assert info.flavour == "fp16" and info.input_dtype == dtype
        assert info.preprocess == TINY_PRE.to_dict()  # metadata survives the conversion


def test_inspect_recognises_qdq_and_fixed_batch(tmp_path):
    p = str(tmp_path / "q.onnx")
    onnx.save(_tiny_model(batch=1, qdq=True), p)
    x = np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32)
    assert _ort_run(p, x).shape == (1, 10)
    info = eng.inspect_onnx(p)
    assert info.flavour == "int8" and info.fixed_batch == 1 and info.preprocess is None


def test_inspect_dynamic_spatial_dims_use_the_metadata_size(tmp_path):
    p = str(tmp_path / "dyn.onnx")
    onnx.save(_tiny_model(spatial=["h", "w"], meta={METADATA_KEY: PreprocessConfig(32).to_json()}), p)
    assert eng.inspect_onnx(p).sample_shape == (3, 32, 32)
    onnx.save(_tiny_model(spatial=["h", "w"]), p)
    with pytest.raises(OfconvertError, match="dynamic C/H/W"):
        eng.inspect_onnx(p)


def test_inspect_rejects_missing_and_garbage_files(tmp_path):
    with pytest.raises(OfconvertError, match="not found"):
        eng.inspect_onnx(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage, not protobuf" * 10)
    with pytest.raises(OfconvertError, match="cannot read ONNX"):
        eng.inspect_onnx(bad)


def test_inspect_real_export_carries_the_model_preprocessing(zoo_onnx):
    info = eng.inspect_onnx(zoo_onnx("efficientnet_lite0"))
    assert info.input_name == "input" and info.output_name == "logits"
    assert info.sample_shape == (3, 224, 224) and info.fixed_batch is None and info.flavour == "fp32"
    assert PreprocessConfig.from_dict(info.preprocess) == get_config("efficientnet_lite0").preprocess


# ---------------------------------------------------------------------------
# strategy by TensorRT version
# ---------------------------------------------------------------------------
STRONG = eng.BuildPlan(True)


@pytest.mark.parametrize("version,precision,flavour,cache,typed,expected", [
    # TensorRT 11: strongly typed from the ONNX whose types say the precision
    ("11.0.0", "fp32", "fp32", False, None, STRONG),
    ("11.1.0", "fp16", "fp16", False, None, STRONG),
    ("11.0.0", "int8", "int8", True, None, STRONG),
    ("11.0.0", "int8", "int8", True, True, STRONG),
    # TensorRT 10: the same by default ...
    ("10.3.0", "fp32", "fp32", False, None, STRONG),
    ("10.3.0", "fp16", "fp16", False, None, STRONG),
    ("10.8.0", "int8", "int8", True, None, STRONG),
    # ... or weak typing with builder flags
    ("10.3.0", "fp16", "fp32", False, None, eng.BuildPlan(False, ("FP16",))),
    ("10.3.0", "fp16", "fp16", False, False, eng.BuildPlan(False, ("FP16",))),
    ("10.3.0", "int8", "int8", False, False, eng.BuildPlan(False, ("INT8",))),
    ("10.3.0", "int8", "fp32", True, None, eng.BuildPlan(False, ("INT8",), calibrator=True)),
    ("10.3.0", "fp32", "fp32", False, False, eng.BuildPlan(False, ())),
])
def test_plan_build_by_version(version, precision, flavour, cache, typed, expected):
    assert eng.plan_build(version, precision, flavour, cache, typed) == expected


@pytest.mark.parametrize("version,precision,flavour,cache,typed,exc,needle", [
    ("11.0.0", "fp16", "fp32", False, None, OfconvertError, "fp16 ONNX"),
    ("11.0.0", "int8", "fp32", True, None, OfconvertError, "Q/DQ ONNX"),
    ("11.0.0", "fp32", "fp32", False, False, OfconvertError, "strongly typed networks only"),
    ("10.3.0", "fp16", "fp32", False, True, OfconvertError, "keeps the fp32 types"),
    ("10.3.0", "int8", "fp32", False, None, OfconvertError, "needs calib_cache"),
    ("10.3.0", "fp16", "int8", False, None, OfconvertError, "Q/DQ nodes"),
    ("10.3.0", "fp32", "fp16", False, None, OfconvertError, "is fp16"),
    ("10.3.0", "bf16", "fp32", False, None, OfconvertError, "unknown precision"),
    ("8.6.1", "fp32", "fp32", False, None, BackendUnavailableError, "TensorRT 10 or 11"),
])
def test_plan_build_refusals(version, precision, flavour, cache, typed, exc, needle):
    with pytest.raises(exc) as ei:
        eng.plan_build(version, precision, flavour, cache, typed)
    assert needle in str(ei.value) and "\n" not in str(ei.value)


# ---------------------------------------------------------------------------
# calibration cache
# ---------------------------------------------------------------------------
def _write_cache(path, scales, version=8601, calibrator="EntropyCalibration2"):
    from ofconvert.calibration import format_cache

    fileio.write_text(path, format_cache(scales, version=version, calibrator=calibrator))
    return str(path)


def test_calibration_cache_is_retargeted_to_the_installed_tensorrt(tmp_path):
    from ofconvert.calibration import parse_cache

    scales = {"input": 0.0157, "/conv/Conv_output_0": 0.0421, "logits": 0.25}
    cache = eng.read_calibration_cache(_write_cache(tmp_path / "c.cache", scales))
    assert cache.header_version == 8601 and cache.algorithm == "EntropyCalibration2"
    for version, header in (("10.3.0.26", "TRT-100300-EntropyCalibration2"),
                            ("10.14.1", "TRT-101401-EntropyCalibration2"),
                            ("8.6.1", "TRT-8601-EntropyCalibration2")):
        data = cache.for_tensorrt(version)
        assert data.decode().splitlines()[0] == header == eng.calibration_cache_header(version)
        hdr, back = parse_cache(data.decode())
        assert list(back) == list(scales)
        np.testing.assert_allclose(list(back.values()), list(scales.values()), rtol=1e-7)


def test_calibration_cache_refusals(tmp_path):
    with pytest.raises(CalibrationCacheError, match="not found"):
        eng.read_calibration_cache(tmp_path / "missing.cache")
    with pytest.raises(CalibrationCacheError, match="MinMaxCalibration"):
        eng.read_calibration_cache(_write_cache(tmp_path / "m.cache", {"input": 0.1}, calibrator="MinMaxCalibration"))
    bad = tmp_path / "bad.cache"
    bad.write_text("TRT-8601-EntropyCalibration2\ninput: zz\n")
    with pytest.raises(CalibrationCacheError):
        eng.read_calibration_cache(bad)
    (tmp_path / "bin.cache").write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(CalibrationCacheError):
        eng.read_calibration_cache(tmp_path / "bin.cache")
    empty = tmp_path / "empty.cache"
    empty.write_text("TRT-8601-EntropyCalibration2\n")
    with pytest.raises(CalibrationCacheError, match="no tensor scales"):
        eng.read_calibration_cache(empty)


# ---------------------------------------------------------------------------
# timing cache wiring
# ---------------------------------------------------------------------------
GPU = {"name": "NVIDIA H200", "compute_capability": "9.0"}


def test_timing_cache_default_is_keyed_by_tensorrt_and_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv(eng.TIMING_CACHE_ENV, str(tmp_path / "tc"))
    p = eng.resolve_timing_cache(None, "10.3.0.26", GPU)
    assert os.path.dirname(p) == str(tmp_path / "tc")
    assert os.path.basename(p) == "timing-trt10.3.0-nvidia-h200-sm90.cache"
    assert eng.resolve_timing_cache(None, "10.3.0", GPU) == p  # build number does not matter
    others = {eng.resolve_timing_cache(None, "10.4.0", GPU),
              eng.resolve_timing_cache(None, "10.3.0", {"name": "NVIDIA L4", "compute_capability": "8.9"})}
    assert p not in others and len(others) == 2


def test_timing_cache_explicit_paths(tmp_path):
    assert eng.resolve_timing_cache(False, "10.3.0", GPU) is None
    assert eng.resolve_timing_cache("", "10.3.0", GPU) is None
    assert eng.resolve_timing_cache(tmp_path, "10.3.0", GPU) == str(tmp_path / eng.timing_cache_name("10.3.0", GPU))
    f = str(tmp_path / "my.cache")
    assert eng.resolve_timing_cache(f, "10.3.0", GPU) == f
    assert eng.read_timing_cache(f) == b""  # absent -> TensorRT starts an empty cache
    fileio.write_bytes(f, b"\x01\x02")
    assert eng.read_timing_cache(f) == b"\x01\x02"


# ---------------------------------------------------------------------------
# sidecar and compatibility
# ---------------------------------------------------------------------------
def _sidecar(info, options, version="10.3.0", gpu=GPU):
    plan = eng.plan_build(version, options.precision, info.flavour, options.calib_cache is not None)
    prof = eng.compute_profile(options.batch, options.max_batch, info.fixed_batch)
    return eng.make_sidecar(info, options, plan, prof, version, gpu, None, 1.5)


def test_sidecar_written_atomically_with_the_engine_and_read_back(tiny_onnx, tmp_path):
    info = eng.inspect_onnx(tiny_onnx)
    opts = eng.EngineOptions(precision="fp32", batch=4, max_batch=16).validate()
    out = tmp_path / "out"
    engine_path = str(out / "tiny.fp32.engine")
    blob = os.urandom(4096)  # stands for a serialized engine: the sidecar logic does not read it
    sc = eng.write_engine(engine_path, blob, _sidecar(info, opts))
    assert sorted(os.listdir(out)) == ["tiny.fp32.engine", "tiny.fp32.engine.json"]  # no temp files left
    back = eng.read_sidecar(engine_path)
    assert back == json.loads(json.dumps(sc))
    assert back["engine"] == {"file": "tiny.fp32.engine", "bytes": 4096, "sha256": fileio.sha256_file(engine_path)}
    assert back["tensorrt_version"] == "10.3.0" and back["gpu"] == GPU and back["precision"] == "fp32"
    assert back["profile"] == {"input": "input", "min": [1, 3, 8, 8], "opt": [4, 3, 8, 8], "max": [16, 3, 8, 8]}
    assert back["onnx"]["sha256"] == fileio.sha256_file(tiny_onnx) and back["onnx"]["flavour"] == "fp32"
    assert back["preprocess"] == TINY_PRE.to_dict() and back["model"] == "tiny"
    assert back["build"]["strongly_typed"] is True and back["calibration_cache"] is None


def test_sidecar_records_the_calibration_cache_and_real_preprocessing(zoo_onnx, tmp_path):
    info = eng.inspect_onnx(zoo_onnx("efficientnet_lite0"))
    cache = _write_cache(tmp_path / "e.cache", {"input": 0.02})
    opts = eng.EngineOptions(precision="int8", calib_cache=cache, batch=8).validate()
    sc = _sidecar(info, opts)  # fp32 ONNX + cache on TensorRT 10 -> calibrator plan
    assert sc["build"] == {"strongly_typed": False, "flags": ["INT8"], "calibrator": True,
                           "workspace_mb": None, "timing_cache": None, "seconds": 1.5}
    assert sc["calibration_cache"]["sha256"] == fileio.sha256_file(cache)
    assert PreprocessConfig.from_dict(sc["preprocess"]) == get_config("efficientnet_lite0").preprocess


def test_sidecar_detects_replaced_missing_or_foreign_files(tiny_onnx, tmp_path):
    info = eng.inspect_onnx(tiny_onnx)
    engine_path = str(tmp_path / "t.engine")
    eng.write_engine(engine_path, b"engine-v1", _sidecar(info, eng.EngineOptions()))
    fileio.write_bytes(engine_path, b"engine-v2")  # replaced after the build
    with pytest.raises(EngineCompatibilityError, match="sha256"):
        eng.read_sidecar(engine_path)
    assert eng.read_sidecar(engine_path, verify_hash=False)["precision"] == "fp32"
    fileio.write_text(eng.sidecar_path(engine_path), "{not json")
    with pytest.raises(EngineCompatibilityError, match="unreadable sidecar"):
        eng.read_sidecar(engine_path)
    fileio.write_json(eng.sidecar_path(engine_path), {"model": "x"})
    with pytest.raises(EngineCompatibilityError, match="not an ofconvert engine sidecar"):
        eng.read_sidecar(engine_path)
    os.unlink(eng.sidecar_path(engine_path))
    with pytest.raises(EngineCompatibilityError, match="no sidecar"):
        eng.read_sidecar(engine_path)
    with pytest.raises(OfconvertError, match="engine file not found"):
        eng.read_sidecar(tmp_path / "absent.engine")


def test_compatibility_check_refuses_other_tensorrt_or_gpu(tiny_onnx):
    sc = _sidecar(eng.inspect_onnx(tiny_onnx), eng.EngineOptions(), version="10.3.0.26")
    eng.check_compatibility(sc, "10.3.0", {"name": " nvidia  H200", "compute_capability": "9.0"}, "m.engine")
    with pytest.raises(EngineCompatibilityError) as ei:
        eng.check_compatibility(sc, "10.4.0", GPU, "m.engine")
    msg = str(ei.value)
    assert "TensorRT 10.3.0.26" in msg and "TensorRT 10.4.0" in msg and "rebuild" in msg and "\n" not in msg
    with pytest.raises(EngineCompatibilityError, match="built with TensorRT 10.3.0.26 but TensorRT 11.0.0"):
        eng.check_compatibility(sc, "11.0.0", GPU, "m.engine")
    with pytest.raises(EngineCompatibilityError, match="built for NVIDIA H200 .*this GPU is NVIDIA L4"):
        eng.check_compatibility(sc, "10.3.0", {"name": "NVIDIA L4", "compute_capability": "8.9"}, "m.engine")
    with pytest.raises(EngineCompatibilityError, match="compute capability 9.0"):
        eng.check_compatibility(sc, "10.3.0", {"name": "NVIDIA H200", "compute_capability": "9.1"}, "m.engine")


def test_runner_refuses_an_engine_without_a_usable_sidecar_before_loading_tensorrt(tmp_path):
    from ofconvert.runners import make_runner

    engine_path = tmp_path / "x.engine"
    engine_path.write_bytes(b"whatever")
    with pytest.raises(EngineCompatibilityError, match="no sidecar"):
        make_runner("trt", str(engine_path)).activate()
    with pytest.raises(OfconvertError, match="engine file not found"):
        make_runner("trt", str(tmp_path / "none.engine")).activate()


# ---------------------------------------------------------------------------
# without TensorRT
# ---------------------------------------------------------------------------
@needs_no_trt
def test_build_engine_without_tensorrt_names_what_to_install(tiny_onnx, tmp_path):
    engine_path = tmp_path / "tiny.engine"
    with pytest.raises(BackendUnavailableError) as ei:
        eng.build_engine(tiny_onnx, str(engine_path), precision="fp32", batch=2, timing_cache=False)
    msg = str(ei.value)
    assert "\n" not in msg and "pip install" in msg and "tensorrt" in msg and "polygraphy" in msg
    assert ei.value.exit_code == 2
    assert list(tmp_path.iterdir()) == [tmp_path / "tiny.onnx"]  # nothing half-written
    with pytest.raises(BackendUnavailableError) as ei2:
        eng.require_tensorrt()  # the same line, for pipelines that check before exporting
    assert str(ei2.value) == msg


@needs_no_trt
def test_runner_without_tensorrt_names_what_to_install(tiny_onnx, tmp_path):
    from ofconvert.runners.tensorrt import TensorRTRunner

    engine_path = str(tmp_path / "t.engine")
    eng.write_engine(engine_path, b"bytes", _sidecar(eng.inspect_onnx(tiny_onnx), eng.EngineOptions()))
    with pytest.raises(BackendUnavailableError, match="pip install"):
        TensorRTRunner(engine_path).activate()


def test_build_engine_reports_user_mistakes_before_looking_for_tensorrt(tiny_onnx, tmp_path):
    out = str(tmp_path / "e.engine")
    with pytest.raises(OfconvertError, match="unknown precision"):
        eng.build_engine(tiny_onnx, out, precision="int4")
    with pytest.raises(OfconvertError, match="for int8 builds"):
        eng.build_engine(tiny_onnx, out, precision="fp16", calib_cache=tiny_onnx)
    with pytest.raises(CalibrationCacheError, match="not found"):
        eng.build_engine(tiny_onnx, out, precision="int8", calib_cache=str(tmp_path / "no.cache"))
    with pytest.raises(OfconvertError, match="--workspace"):
        eng.build_engine(tiny_onnx, out, workspace_mb=0)
    with pytest.raises(OfconvertError, match="--max-batch"):
        eng.build_engine(tiny_onnx, out, batch=8, max_batch=2)
    with pytest.raises(OfconvertError, match="ONNX file not found"):
        eng.build_engine(str(tmp_path / "none.onnx"), out)
    assert not os.path.exists(out)


# ---------------------------------------------------------------------------
# ONNX Runtime's TensorRT execution provider
# ---------------------------------------------------------------------------
def test_ort_trt_options_by_precision(tmp_path):
    assert ort_trt_provider_options("fp32") == {}
    assert ort_trt_provider_options("fp16") == {"trt_fp16_enable": True}
    opts = ort_trt_provider_options("fp16", engine_cache_dir=tmp_path / "ec", workspace_mb=512)
    assert opts == {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(tmp_path / "ec"), "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": str(tmp_path / "ec"), "trt_max_workspace_size": 512 << 20}
    opts = ort_trt_provider_options("fp32", engine_cache_dir=tmp_path / "ec", timing_cache_dir=tmp_path / "tc")
    assert opts["trt_timing_cache_path"] == str(tmp_path / "tc")
    with pytest.raises(OfconvertError, match="unknown precision"):
        ort_trt_provider_options("int4")


@pytest.mark.parametrize("engine_cache", [None, "engines", "deep/engine/cache"])
def test_ort_trt_calibration_table_resolves_to_our_cache(tmp_path, monkeypatch, engine_cache):
    monkeypatch.chdir(tmp_path)  # relative inputs are taken from the working directory
    os.makedirs("calib")
    cache = _write_cache(tmp_path / "calib" / "m.entropy.calib.cache", {"input": 0.02, "x": 0.5})
    opts = ort_trt_provider_options("int8", calib_cache=os.path.relpath(cache), engine_cache_dir=engine_cache)
    assert opts["trt_int8_enable"] is True and opts["trt_int8_use_native_calibration_table"] is True
    name = opts["trt_int8_calibration_table_name"]
    assert not os.path.isabs(name)
    # ONNX Runtime opens join(trt_engine_cache_path, name): it must be our file, wherever we run from
    monkeypatch.chdir("/")
    assert os.path.samefile(os.path.join(opts["trt_engine_cache_path"], name), cache)
    if engine_cache is None:
        assert "trt_engine_cache_enable" not in opts and name == "m.entropy.calib.cache"
    else:
        assert opts["trt_engine_cache_enable"] is True and name.startswith("..")


def test_ort_trt_int8_refusals(tiny_onnx, tmp_path):
    cache = _write_cache(tmp_path / "c.cache", {"input": 0.02})
    qdq = str(tmp_path / "q.onnx")
    onnx.save(_tiny_model(qdq=True), qdq)
    with pytest.raises(OfconvertError, match="refuses a calibration table for a Q/DQ model"):
        ort_trt_provider_options("int8", calib_cache=cache, onnx_path=qdq)
    assert ort_trt_provider_options("int8", onnx_path=qdq) == {"trt_int8_enable": True}
    with pytest.raises(OfconvertError, match="needs the Q/DQ ONNX or a calibration cache"):
        ort_trt_provider_options("int8", onnx_path=tiny_onnx)
    with pytest.raises(OfconvertError, match="for int8"):
        ort_trt_provider_options("fp16", calib_cache=cache)
    with pytest.raises(CalibrationCacheError):
        ort_trt_provider_options("int8", calib_cache=tiny_onnx)


def test_ort_trt_profile_shapes(tiny_onnx):
    opts = ort_trt_provider_options("fp32", profile=eng.compute_profile(4, 32), onnx_path=tiny_onnx)
    assert opts == {"trt_profile_min_shapes": "input:1x3x8x8", "trt_profile_opt_shapes": "input:4x3x8x8",
                    "trt_profile_max_shapes": "input:32x3x8x8"}
    with pytest.raises(OfconvertError, match="need onnx_path"):
        ort_trt_provider_options("fp32", profile=eng.compute_profile(4))


# ---------------------------------------------------------------------------
# With TensorRT + GPU (skipped here; see docs/tensorrt.md)
# ---------------------------------------------------------------------------
N_IMAGES = 16


@pytest.fixture(scope="module")
def real_batch(datasets):
    from ofconvert.data import load_batch, sample_images

    x, skipped = load_batch(sample_images(N_IMAGES, root=datasets), get_config("efficientnet_lite0").preprocess)
    assert not skipped
    return x


def _agreement(ref, out):
    top1 = float(np.mean(ref.argmax(1) == out.argmax(1)))
    cos = float(np.min(np.sum(ref * out, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1))))
    return top1, cos


def _typed_onnx(src, precision, folder, datasets):
    """The ONNX the convert pipeline hands build_engine for ``precision`` (+ cache for int8)."""
    if precision == "fp32":
        return src, None
    if precision == "fp16":
        from ofconvert.precision import to_fp16

        return to_fp16(src, str(folder / "m.fp16.onnx")), None
    from ofconvert.calibration import calibrate
    from ofconvert.precision import quantize_qdq

    cal = calibrate(src, os.path.join(datasets, "imagenet-sample-1000"), get_config("efficientnet_lite0").preprocess,
                    num_images=64, cache_path=str(folder / "m.calib.cache"))
    return quantize_qdq(src, str(folder / "m.int8.onnx"), cal.scales, target="trt"), cal.cache_path


# fp32 engines may use TF32 kernels; fp16/int8 keep top-1 on most images
THRESHOLDS = {"fp32": (1.0, 0.999), "fp16": (0.9, 0.99), "int8": (0.75, 0.95)}


@needs_trt
@pytest.mark.tensorrt
@pytest.mark.slow  # engine builds take ~0.5-2 min each
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_trt_engine_matches_onnxruntime_cpu(precision, zoo_onnx, datasets, real_batch, tmp_path):
    from ofconvert.runners import make_runner

    src = zoo_onnx("efficientnet_lite0")
    onnx_path, cache = _typed_onnx(src, precision, tmp_path, datasets)
    engine_path = str(tmp_path / f"m.{precision}.engine")
    sc = eng.build_engine(onnx_path, engine_path, precision=precision, calib_cache=cache, batch=4, max_batch=8,
                          timing_cache=str(tmp_path / "tc"))
    assert sc["precision"] == precision and sc["build"]["strongly_typed"] is True
    assert sc["tensorrt_version"] == TRT.__version__ and os.path.isfile(sc["build"]["timing_cache"])
    ref = make_runner("ort-cpu", src, threads=1)
    with ref:
        want = ref.infer(real_batch)
    with make_runner("trt", engine_path) as trt_runner:
        got = trt_runner.infer(real_batch)  # 16 images > max batch 8: run in two chunks
        assert trt_runner.metadata()[METADATA_KEY] == ref.metadata()[METADATA_KEY]
    assert got.shape == want.shape and got.dtype == np.float32
    top1, cos = _agreement(want, got)
    min_top1, min_cos = THRESHOLDS[precision]
    assert top1 >= min_top1 and cos >= min_cos, (precision, top1, cos)


@needs_trt
@pytest.mark.tensorrt
@pytest.mark.slow  # engine builds take ~0.5-2 min each
def test_trt_runner_refuses_an_engine_from_another_tensorrt(zoo_onnx, tmp_path):
    from ofconvert.runners.tensorrt import TensorRTRunner

    engine_path = str(tmp_path / "m.engine")
    eng.build_engine(zoo_onnx("efficientnet_lite0"), engine_path, batch=2, timing_cache=False)
    sc = eng.read_sidecar(engine_path)
    sc["tensorrt_version"] = "9.0.0"
    fileio.write_json(eng.sidecar_path(engine_path), sc)
    with pytest.raises(EngineCompatibilityError, match="built with TensorRT 9.0.0"):
        TensorRTRunner(engine_path).activate()
    with TensorRTRunner(engine_path, check_compatibility=False) as r:  # the user's explicit override
        assert r.infer(np.zeros((1, 3, 224, 224), np.float32)).shape == (1, 1000)


@needs_trt
@pytest.mark.tensorrt
@pytest.mark.slow  # engine builds take ~0.5-2 min each
@pytest.mark.skipif(TRT is not None and eng.parse_version(TRT.__version__)[0] != 10, reason="TensorRT 10 only")
def test_trt10_weak_typing_fp16_and_calibrator_int8(zoo_onnx, datasets, real_batch, tmp_path):
    from ofconvert.calibration import calibrate
    from ofconvert.runners import make_runner

    src = zoo_onnx("efficientnet_lite0")
    cal = calibrate(src, os.path.join(datasets, "imagenet-sample-1000"), get_config("efficientnet_lite0").preprocess,
                    num_images=64, cache_path=str(tmp_path / "m.calib.cache"))
    with make_runner("ort-cpu", src, threads=1) as ref:
        want = ref.infer(real_batch)
    for precision, cache in (("fp16", None), ("int8", cal.cache_path)):
        engine_path = str(tmp_path / f"w.{precision}.engine")
        sc = eng.build_engine(src, engine_path, precision=precision, calib_cache=cache, batch=8, timing_cache=False)
        assert sc["build"]["strongly_typed"] is False and sc["build"]["calibrator"] == (precision == "int8")
        with make_runner("trt", engine_path) as r:
            top1, cos = _agreement(want, r.infer(real_batch))
        assert top1 >= THRESHOLDS[precision][0] and cos >= THRESHOLDS[precision][1], (precision, top1, cos)


def _ort_has_trt():
    import onnxruntime as ort

    return "TensorrtExecutionProvider" in ort.get_available_providers()


@pytest.mark.tensorrt
@pytest.mark.slow  # engine builds take ~0.5-2 min each
@pytest.mark.skipif(not _ort_has_trt(), reason="onnxruntime here has no TensorrtExecutionProvider "
                                               "(needs onnxruntime-gpu + TensorRT)")
def test_ort_tensorrt_provider_fp16_matches_cpu(zoo_onnx, real_batch, tmp_path):
    from ofconvert.runners import make_runner

    src = zoo_onnx("efficientnet_lite0")
    opts = ort_trt_provider_options("fp16", engine_cache_dir=tmp_path / "ort-engines",
                                        profile=eng.compute_profile(8, 16), onnx_path=src)
    with make_runner("ort-cpu", src, threads=1) as ref:
        want = ref.infer(real_batch)
    with make_runner("ort-trt", src, provider_options=opts) as r:
        got = r.infer(real_batch)
    top1, cos = _agreement(want, got)
    assert top1 >= THRESHOLDS["fp16"][0] and cos >= THRESHOLDS["fp16"][1]
    assert any(f.endswith(".engine") for f in os.listdir(tmp_path / "ort-engines"))
