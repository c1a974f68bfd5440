"""The TensorRT build and run paths, executed in CI against the stand-in
(tests/fake_tensorrt: TensorRT 10.x and 11.x flavours of the API Polygraphy and
ofconvert call, plus a fake libcudart behind Polygraphy's CUDA wrapper).

Real Polygraphy, real ONNX files, real ONNX Runtime (the stand-in's engines run
the ONNX with it, so the runner's numbers are compared with ONNX Runtime CPU);
only TensorRT and libcudart are stand-ins. The real-TensorRT tests are in
tests/test_engine.py (they skip here with their reason).
"""
import os
import subprocess
import sys

import fake_tensorrt
import numpy as np
import onnx
import pytest
from test_engine import TINY_PRE, _ort_run, _tiny_model

from ofconvert import engine as eng
from ofconvert import fileio
from ofconvert.calibration import calibration_tensors, format_cache
from ofconvert.config import METADATA_KEY
from ofconvert.errors import BackendUnavailableError, CalibrationCacheError, EngineCompatibilityError, OfconvertError

V10, V11 = "10.3.0", "11.0.0"
META = {METADATA_KEY: TINY_PRE.to_json(), "ofconvert.model": "resnet50"}


@pytest.fixture
def trt10():
    with fake_tensorrt.installed(V10) as trt:
        yield trt


@pytest.fixture
def trt11():
    with fake_tensorrt.installed(V11) as trt:
        yield trt


@pytest.fixture(params=[V10, V11])
def trt_any(request):
    with fake_tensorrt.installed(request.param) as trt:
        yield trt


def _onnx(folder, flavour="fp32", name=None, batch="batch"):
    path = str(folder / (name or {"fp32": "m.onnx", "fp16": "m.fp16.onnx", "int8": "m.int8.onnx"}[flavour]))
    if flavour == "fp16":
        from ofconvert.precision import to_fp16

        src = _onnx(folder, "fp32", name="src.onnx")
        return to_fp16(src, path)
    onnx.save(_tiny_model(batch=batch, qdq=flavour == "int8", meta=META), path)
    return path


def _images(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 8, 8)).astype(np.float32)


# ---------------------------------------------------------------------------
# build: flags, profile, workspace, typing
# ---------------------------------------------------------------------------
def test_fp32_build_strongly_typed_keeps_tf32_and_sets_the_profile(trt_any, tmp_path):
    onnx_path = _onnx(tmp_path)
    sc = eng.build_engine(onnx_path, str(tmp_path / "m.fp32.engine"), batch=4, max_batch=16, workspace_mb=64,
                          timing_cache=False)
    (build,) = trt_any._record.builds
    assert build["flags"] == ["TF32"]          # tf32=True passed; no precision flag
    assert build["strongly_typed"] is True
    # 10: asked for with the creation flag; 11: always on, the deprecated flag not passed
    assert build["network_flags"] == (2 if trt_any.__version__ == V10 else 0)
    assert build["profiles"] == [{"input": ((1, 3, 8, 8), (4, 3, 8, 8), (16, 3, 8, 8))}]
    assert build["pools"] == {"WORKSPACE": 64 << 20}
    assert sc["tensorrt_version"] == trt_any.__version__
    assert sc["gpu"] == {"name": "NVIDIA H200", "compute_capability": "9.0"}
    assert sc["build"]["strongly_typed"] is True and sc["build"]["workspace_mb"] == 64
    assert eng.read_sidecar(tmp_path / "m.fp32.engine")["engine"]["sha256"] == fileio.sha256_file(
        tmp_path / "m.fp32.engine")


def test_build_engine_takes_an_options_object_and_keyword_overrides(trt_any, tmp_path):
    """``build_engine(onnx, engine, EngineOptions(...), **fields)``: the keywords win;
    an unknown keyword is Python's one-line TypeError, before any build."""
    onnx_path = _onnx(tmp_path)
    opts = eng.EngineOptions(batch=4, max_batch=16, workspace_mb=64, timing_cache=False)
    sc = eng.build_engine(onnx_path, str(tmp_path / "m.fp32.engine"), opts, max_batch=8)
    (build,) = trt_any._record.builds
    assert build["profiles"] == [{"input": ((1, 3, 8, 8), (4, 3, 8, 8), (8, 3, 8, 8))}]
    assert sc["build"]["workspace_mb"] == 64 and opts.max_batch == 16        # the object is not changed
    with pytest.raises(TypeError, match=r"build_engine\(\) got an unexpected keyword argument 'max_batches'") as e:
        eng.build_engine(onnx_path, str(tmp_path / "n.fp32.engine"), max_batches=8)
    assert "\n" not in str(e.value) and len(trt_any._record.builds) == 1
    with pytest.raises(OfconvertError, match="options must be an ofconvert.EngineOptions"):
        eng.build_engine(onnx_path, str(tmp_path / "n.fp32.engine"), {"batch": 2})
    assert not os.path.exists(tmp_path / "n.fp32.engine")


def test_dynamic_size_onnx_gets_height_and_width_ranges_in_the_profile(trt_any, tmp_path):
    """An export with --dynamic-size (H and W symbolic, their (min, opt, max) in the
    ``ofconvert.dynamic_size`` metadata, as a UNet's): the profile spans them."""
    import json

    meta = dict(META, **{"ofconvert.dynamic_size": json.dumps({"height": [16, 32, 64], "width": [8, 32, 48]})})
    path = str(tmp_path / "unet.onnx")
    onnx.save(_tiny_model(meta=meta, spatial=["height", "width"]), path)
    info = eng.inspect_onnx(path)
    assert info.sample_shape == (3, 32, 32) and info.profile_sizes == ((16, 8), (32, 32), (64, 48))
    sc = eng.build_engine(path, str(tmp_path / "unet.fp32.engine"), batch=2, max_batch=4, timing_cache=False)
    (build,) = trt_any._record.builds
    assert build["profiles"] == [{"input": ((1, 3, 16, 8), (2, 3, 32, 32), (4, 3, 64, 48))}]
    assert sc["profile"]["min"] == [1, 3, 16, 8] and sc["profile"]["max"] == [4, 3, 64, 48]
    assert sc["io"]["input"]["dynamic_size"] == {"height": [16, 32, 64], "width": [8, 32, 48]}
    onnx.save(_tiny_model(meta=dict(META, **{"ofconvert.dynamic_size": "{\"height\": [64, 32, 16]}"}),
                          spatial=["height", "width"]), path)
    with pytest.raises(OfconvertError, match="unreadable ofconvert.dynamic_size metadata"):
        eng.inspect_onnx(path)


def test_trt10_weak_typing_sets_the_fp16_flag(trt10, tmp_path):
    sc = eng.build_engine(_onnx(tmp_path), str(tmp_path / "m.fp16.engine"), precision="fp16", batch=2,
                          timing_cache=False)
    (build,) = trt10._record.builds
    assert build["flags"] == ["FP16", "TF32"] and build["strongly_typed"] is False and build["network_flags"] == 0
    assert sc["build"] == dict(sc["build"], strongly_typed=False, flags=["FP16"], calibrator=False)


def test_trt11_refuses_fp16_or_int8_from_an_fp32_onnx_before_building(trt11, tmp_path):
    onnx_path = _onnx(tmp_path)
    with pytest.raises(OfconvertError, match="no FP16/INT8 builder flags"):
        eng.build_engine(onnx_path, str(tmp_path / "m.fp16.engine"), precision="fp16")
    assert "Builder" not in trt11._record.names()


@pytest.mark.parametrize("flavour,precision", [("fp16", "fp16"), ("int8", "int8")])
def test_typed_onnx_builds_strongly_typed_on_11_without_precision_flags(trt11, tmp_path, flavour, precision):
    sc = eng.build_engine(_onnx(tmp_path, flavour), str(tmp_path / f"m.{precision}.engine"), precision=precision,
                          batch=2, timing_cache=False)
    (build,) = trt11._record.builds
    assert build["strongly_typed"] is True and build["flags"] == ["TF32"] and build["calibrator"] is False
    assert not hasattr(trt11.BuilderFlag, "FP16") and not hasattr(trt11, "IInt8EntropyCalibrator2")
    assert sc["onnx"]["flavour"] == flavour and sc["precision"] == precision


def test_trt10_calibrator_hands_back_our_cache_retargeted_and_never_writes(trt10, tmp_path):
    onnx_path = _onnx(tmp_path)
    scales = {t: 0.01 * (i + 1) for i, t in enumerate(calibration_tensors(onnx.load(onnx_path)))}
    cache = tmp_path / "m.entropy.calib.cache"
    fileio.write_text(cache, format_cache(scales, version=8601))
    before = cache.read_bytes(), os.stat(cache).st_mtime_ns
    sc = eng.build_engine(onnx_path, str(tmp_path / "m.int8.engine"), precision="int8", calib_cache=str(cache),
                          batch=4, max_batch=8, timing_cache=False)
    rec = trt10._record
    assert rec.calibrator_caches == [format_cache(scales, version=100300).encode()]  # header: TRT-100300-...
    assert rec.calibrator_batches == 0
    assert rec.builds[0]["flags"] == ["INT8", "TF32"] and rec.builds[0]["calibrator"] is True
    assert ("IBuilderConfig.set_calibration_profile", {"input": ((1, 3, 8, 8), (4, 3, 8, 8), (8, 3, 8, 8))}) \
        in rec.calls
    assert (cache.read_bytes(), os.stat(cache).st_mtime_ns) == before
    assert sc["build"]["calibrator"] is True and sc["calibration_cache"]["sha256"] == fileio.sha256_file(cache)


def test_a_cache_tensorrt_does_not_accept_stops_with_calibration_cache_error(trt10, tmp_path, monkeypatch):
    onnx_path = _onnx(tmp_path)
    cache = tmp_path / "c.cache"
    fileio.write_text(cache, format_cache({"input": 0.02, "logits": 0.1}))
    # without the header re-targeting, TensorRT 10 ignores the cache and asks for images
    monkeypatch.setattr(eng.CalibrationCache, "for_tensorrt", lambda self, v: cache.read_bytes())
    with pytest.raises(CalibrationCacheError) as ei:
        eng.build_engine(onnx_path, str(tmp_path / "m.int8.engine"), precision="int8", calib_cache=str(cache),
                         timing_cache=False)
    assert "asked for calibration data" in str(ei.value) and "\n" not in str(ei.value)
    assert trt10._record.calibrator_batches == 1
    assert not (tmp_path / "m.int8.engine").exists()


def test_parse_failure_is_one_line_with_the_parser_reason_and_prints_nothing(trt_any, tmp_path, capfd):
    model = _tiny_model(meta=META)
    model.graph.node[1].op_type = "Sigmoid"     # valid ONNX the (stand-in) parser has no importer for
    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    with pytest.raises(OfconvertError) as ei:
        eng.build_engine(path, str(tmp_path / "m.fp32.engine"), timing_cache=False)
    msg = str(ei.value)
    assert msg.startswith(f"TensorRT {trt_any.__version__} cannot parse {path}: ") and "\n" not in msg
    assert "No importer registered for op: Sigmoid" in msg
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert os.listdir(tmp_path) == ["m.onnx"]


# ---------------------------------------------------------------------------
# timing cache
# ---------------------------------------------------------------------------
def test_timing_cache_round_trip_atomic_and_no_litter(trt10, tmp_path):
    onnx_path = _onnx(tmp_path)
    tc_dir = tmp_path / "tc"
    tc_dir.mkdir()
    eng.build_engine(onnx_path, str(tmp_path / "a.fp32.engine"), batch=2, timing_cache=str(tc_dir))
    tc = tc_dir / eng.timing_cache_name(V10, {"name": "NVIDIA H200", "compute_capability": "9.0"})
    assert os.listdir(tc_dir) == [tc.name]       # no .lock, no temp file
    first = tc.read_bytes()
    assert trt10._record.builds[0]["timed"] == 5 and trt10._record.builds[0]["cache_hits"] == 0
    sc = eng.build_engine(onnx_path, str(tmp_path / "b.fp32.engine"), batch=2, timing_cache=str(tc_dir))
    assert trt10._record.builds[1]["timed"] == 0 and trt10._record.builds[1]["cache_hits"] == 5  # loaded
    assert sc["build"]["timing_cache"] == str(tc) and tc.read_bytes() == first
    eng.build_engine(onnx_path, str(tmp_path / "c.fp16.engine"), precision="fp16", batch=2, timing_cache=str(tc))
    assert trt10._record.builds[2]["timed"] == 5 and len(tc.read_bytes()) > len(first)   # merged, saved
    assert os.listdir(tc_dir) == [tc.name]


def test_timing_cache_of_another_tensorrt_is_left_alone(tmp_path, caplog):
    onnx_path = _onnx(tmp_path)
    tc = tmp_path / "my.cache"
    with fake_tensorrt.installed("10.3.0"):
        eng.build_engine(onnx_path, str(tmp_path / "a.fp32.engine"), batch=2, timing_cache=str(tc))
    old = tc.read_bytes()
    with fake_tensorrt.installed("10.4.0") as trt:
        eng.build_engine(onnx_path, str(tmp_path / "b.fp32.engine"), batch=2, timing_cache=str(tc))
    assert ("IBuilderConfig.set_timing_cache", (5, False)) in trt._record.calls   # offered, refused
    assert tc.read_bytes() == old and "did not accept the timing cache" in caplog.text


def test_timing_cache_untouched_when_the_build_fails(trt10, tmp_path):
    tc = tmp_path / "t.cache"
    fileio.write_bytes(tc, b"FAKETC1\n{}")
    model = _tiny_model(meta=META)
    model.graph.node[1].op_type = "Sigmoid"
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(OfconvertError, match="cannot parse"):
        eng.build_engine(str(tmp_path / "bad.onnx"), str(tmp_path / "x.engine"), timing_cache=str(tc))
    assert tc.read_bytes() == b"FAKETC1\n{}" and sorted(os.listdir(tmp_path)) == ["bad.onnx", "t.cache"]


# ---------------------------------------------------------------------------
# runner
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("flavour,precision", [("fp32", "fp32"), ("fp16", "fp16"), ("int8", "int8")])
def test_runner_matches_onnxruntime_in_chunks_and_frees_everything(trt_any, tmp_path, flavour, precision):
    from ofconvert.runners import make_runner

    onnx_path = _onnx(tmp_path, flavour)
    engine_path = str(tmp_path / f"m.{precision}.engine")
    eng.build_engine(onnx_path, engine_path, precision=precision, batch=2, max_batch=4, timing_cache=False)
    x = _images(9)
    with make_runner("trt", engine_path) as r:
        assert (r.input_name, r.output_name, r.max_batch, r.sample_shape) == ("input", "logits", 4, (3, 8, 8))
        assert r.input_dtype == (np.float16 if flavour == "fp16" else np.float32)
        got = r.infer(x)
        assert r.infer(x[:0]).shape == (0, 10)
        assert r.metadata()[METADATA_KEY] == TINY_PRE.to_json()
    (ctx,) = trt_any._record.contexts
    assert ctx.executions == [{"input": (4, 3, 8, 8)}, {"input": (4, 3, 8, 8)}, {"input": (1, 3, 8, 8)}]
    assert got.dtype == np.float32 and got.shape == (9, 10)
    want = _ort_run(onnx_path, x) if flavour != "fp16" else None
    if want is None:
        import onnxruntime as ort

        s = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        want = s.run(None, {"input": x.astype(np.float16)})[0].astype(np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    lib = trt_any._cudart
    assert lib.allocations == {} and lib.streams == set()   # device buffers and stream freed
    assert ("cudaSetDevice", 0) in lib.calls


def test_runner_refuses_an_engine_from_another_tensorrt_before_deserialising(tmp_path):
    from ofconvert.runners.tensorrt import TensorRTRunner

    engine_path = str(tmp_path / "m.fp32.engine")
    with fake_tensorrt.installed(V10):
        eng.build_engine(_onnx(tmp_path), engine_path, batch=2, timing_cache=False)
    with fake_tensorrt.installed("10.4.0") as trt:
        with pytest.raises(EngineCompatibilityError, match="built with TensorRT 10.3.0 but TensorRT 10.4.0"):
            TensorRTRunner(engine_path).activate()
        assert "Runtime.deserialize_cuda_engine" not in trt._record.names()
        # the user's override: TensorRT itself then refuses, as one typed line
        with pytest.raises(EngineCompatibilityError) as ei:
            TensorRTRunner(engine_path, check_compatibility=False).activate()
        assert "cannot load" in str(ei.value) and "expecting library version 10.4.0 got 10.3.0" in str(ei.value)
        assert "\n" not in str(ei.value) and trt._cudart.allocations == {}
    with fake_tensorrt.installed(V11):
        with pytest.raises(EngineCompatibilityError, match="built with TensorRT 10.3.0 but TensorRT 11.0.0"):
            TensorRTRunner(engine_path).activate()
    with fake_tensorrt.installed(V10, gpu_name="NVIDIA L4", compute_capability=(8, 9)):
        with pytest.raises(EngineCompatibilityError, match="built for NVIDIA H200 .*this GPU is NVIDIA L4"):
            TensorRTRunner(engine_path).activate()
    with fake_tensorrt.installed(V10) as trt:
        with TensorRTRunner(engine_path, check_compatibility=False) as r:  # same TensorRT: runs
            assert r.infer(_images(1)).shape == (1, 10)


def test_runner_rejects_wrong_image_size_and_bad_device(trt10, tmp_path):
    from ofconvert.runners.tensorrt import TensorRTRunner

    engine_path = str(tmp_path / "m.fp32.engine")
    eng.build_engine(_onnx(tmp_path), engine_path, batch=2, timing_cache=False)
    with TensorRTRunner(engine_path) as r:
        with pytest.raises(OfconvertError, match=r"images of shape \(3, 8, 8\)"):
            r.infer(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(BackendUnavailableError, match="cudaSetDevice"):
        TensorRTRunner(engine_path, device=3).activate()


# ---------------------------------------------------------------------------
# what is missing
# ---------------------------------------------------------------------------
def test_no_libcudart_is_one_line_naming_it(trt10, tmp_path, monkeypatch):
    from polygraphy.cuda import cuda

    def no_lib(self):
        raise OSError("libcudart.so: cannot open shared object file")

    monkeypatch.setattr(cuda, "G_CUDA", None)
    monkeypatch.setattr(cuda.Cuda, "__init__", no_lib)
    with pytest.raises(BackendUnavailableError) as ei:
        eng.build_engine(_onnx(tmp_path), str(tmp_path / "m.fp32.engine"), timing_cache=False)
    assert "libcudart" in str(ei.value) and "\n" not in str(ei.value)


def test_no_polygraphy_is_one_line_naming_it(trt10, monkeypatch):
    monkeypatch.setitem(sys.modules, "polygraphy.backend.trt", None)
    with pytest.raises(BackendUnavailableError, match="pip install polygraphy"):
        eng.require_tensorrt()


def test_importing_ofconvert_trt_modules_imports_neither_tensorrt_nor_polygraphy():
    code = ("import sys, ofconvert.engine, ofconvert.runners.tensorrt, ofconvert.runners.ort_trt, ofconvert.inspect;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorrt', 'polygraphy')]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_stand_in_is_not_importable_outside_the_fixture():
    with fake_tensorrt.installed(V10):
        import tensorrt

        assert tensorrt.__version__ == V10
    assert "tensorrt" not in sys.modules
    with pytest.raises(ImportError):
        import tensorrt  # noqa: F401,F811


# ---------------------------------------------------------------------------
# trtexec-style options through the CLI and convert()
# ---------------------------------------------------------------------------
@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A prebuilt fp32 export of 'resnet50' (tiny, with ofconvert metadata), the cwd;
    conversions run in-process so that the stand-in is seen."""
    from ofconvert import isolation

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(isolation, "available", lambda: False)
    onnx.save(_tiny_model(meta=META), str(tmp_path / "resnet50.onnx"))
    return tmp_path


def test_cli_int8_from_calib_cache_strongly_typed_timing_cache_workspace(trt10, workdir, capsys):
    from ofconvert.cli import main

    scales = {t: 0.02 for t in calibration_tensors(onnx.load(str(workdir / "resnet50.onnx")))}
    cache = workdir / "given.cache"
    fileio.write_text(cache, format_cache(scales))
    before = cache.read_bytes()
    rc = main(["resnet50", "--to", "trt", "--int8", "--calib-cache", str(cache), "--strongly-typed",
               "--timing-cache", str(workdir / "t.cache"), "--workspace", "256", "--batch", "2", "--max-batch", "4",
               "--no-validate"])
    assert rc == 0, capsys.readouterr().err
    sc = eng.read_sidecar(workdir / "resnet50.int8.engine")
    assert sc["onnx"]["flavour"] == "int8" and sc["build"]["strongly_typed"] is True
    assert sc["build"]["workspace_mb"] == 256 and sc["build"]["timing_cache"] == str(workdir / "t.cache")
    assert (workdir / "t.cache").read_bytes().startswith(b"FAKETC1")
    (build,) = trt10._record.builds
    assert build["pools"] == {"WORKSPACE": 256 << 20} and build["flags"] == ["TF32"] and build["network_flags"] == 2
    assert build["profiles"] == [{"input": ((1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))}]
    assert cache.read_bytes() == before and not (workdir / "given.cache.json").exists()
    assert "resnet50.int8.engine" in capsys.readouterr().out


def test_cli_strongly_typed_timing_cache_workspace_fp32(trt10, workdir, capsys):
    from ofconvert.cli import main

    rc = main(["resnet50", "--to", "trt", "--strongly-typed", "--timing-cache", str(workdir / "t.cache"),
               "--workspace", "128", "--batch", "2", "--max-batch", "8", "--no-validate"])
    assert rc == 0, capsys.readouterr().err
    sc = eng.read_sidecar(workdir / "resnet50.fp32.engine")
    assert sc["build"]["strongly_typed"] is True and sc["build"]["workspace_mb"] == 128
    (build,) = trt10._record.builds
    assert build["pools"] == {"WORKSPACE": 128 << 20} and build["network_flags"] == 2
    assert build["profiles"] == [{"input": ((1, 3, 8, 8), (2, 3, 8, 8), (8, 3, 8, 8))}]
    assert (workdir / "t.cache").read_bytes().startswith(b"FAKETC1") and build["timed"] == 5


def test_convert_fp16_engine_and_no_timing_cache(trt11, workdir):
    from ofconvert.pipeline import ConvertOptions, convert

    res = convert(ConvertOptions(model="resnet50", to="trt", precision="fp16", validate=False, batch=2,
                                 timing_cache=False), log=lambda *a: None)
    assert res.engine["precision"] == "fp16" and res.engine["onnx"]["flavour"] == "fp16"
    assert res.engine["build"]["timing_cache"] is None and res.engine["tensorrt_version"] == V11
    assert trt11._record.builds[0]["strongly_typed"] is True
    assert sorted(p.name for p in workdir.iterdir()) == ["resnet50.fp16.engine", "resnet50.fp16.engine.json",
                                                         "resnet50.fp16.onnx", "resnet50.onnx"]


def test_cli_bad_workspace_and_weak_typing_on_11_are_one_line(trt11, workdir, capsys):
    from ofconvert.cli import main

    assert main(["resnet50", "--to", "trt", "--workspace", "0", "--no-validate"]) == 2
    assert capsys.readouterr().err.strip().startswith("ofconvert: error: --workspace must be >= 1")
    assert trt11._record.builds == []
