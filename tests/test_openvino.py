"""The OpenVINO CPU backend (ofconvert/runners/openvino.py, docs/cpu.md): the real
openvino on the session's real efficientnet_lite0 export (fp32, its fp16 and both
int8 Q/DQ flavours calibrated on real images), against ONNX Runtime; bench and eval
with ``openvino``; the message when openvino is missing; one-line user errors."""
import importlib.util
import json
import os
import shutil

import numpy as np
import pytest
from conftest import has_traceback, run_cli, run_tool

from ofconvert import artifacts
from ofconvert.bench import BenchOptions, benchmark
from ofconvert.errors import BackendUnavailableError, OfconvertError
from ofconvert.evaluation import EvalOptions, evaluate
from ofconvert.preprocache import CacheOptions
from ofconvert.runners import get_backend, make_runner, unavailable_reason

pytest.importorskip("openvino", reason="openvino not installed (requirements/dev.txt)")

FAST = BenchOptions(warmup=1, iters=3, threads=1)


def _batch(n, size=224, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, size, size), dtype=np.float32)


def _both(path, x, threads=2):
    with make_runner("ort-cpu", path, threads=threads) as ort, make_runner("openvino", path, threads=threads) as ov:
        return ort.infer(x), ov.infer(x), ov


@pytest.fixture(scope="module")
def lite0(zoo_onnx, datasets, tmp_path_factory):
    """A models folder with the real efficientnet_lite0 at fp32, fp16 and both int8
    flavours (minmax over 4 real images: ranges, not accuracy, matter here)."""
    from ofconvert import calibration as C
    from ofconvert import precision as P
    from ofconvert.config import get_config

    d = tmp_path_factory.mktemp("ov")
    fp32 = str(d / "efficientnet_lite0.onnx")
    shutil.copy(zoo_onnx("efficientnet_lite0"), fp32)
    P.to_fp16(fp32, d / "efficientnet_lite0.fp16.onnx")
    res = C.calibrate(fp32, os.path.join(datasets, "imagenet-stubs-16"), get_config("efficientnet_lite0").preprocess,
                      method="minmax", num_images=4)
    P.quantize_qdq(fp32, d / "efficientnet_lite0.int8.onnx", res.scales, target="trt")
    P.quantize_qdq(fp32, d / "efficientnet_lite0.int8-cpu.onnx", res.scales, target="cpu")
    return str(d)


def test_registered_as_a_cpu_onnx_backend():
    b = get_backend("openvino")
    assert (b.model, b.gpu, b.cls) == ("onnx", False, "OpenVINORunner")
    assert unavailable_reason("openvino") is None


def test_fp32_outputs_equal_onnx_runtime(lite0):
    x = _batch(3)
    a, b, ov = _both(os.path.join(lite0, "efficientnet_lite0.onnx"), x)
    assert b.dtype == np.float32 and b.shape == a.shape == (3, 1000)
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())
    assert (a.argmax(1) == b.argmax(1)).all()
    # f32 arithmetic, pinned: OpenVINO would pick bf16 by itself on an AVX512-BF16 / AMX CPU
    assert ov.config()["INFERENCE_PRECISION_HINT"] == "f32"


def test_each_batch_shape_compiles_once_and_threads_are_honoured(lite0):
    path = os.path.join(lite0, "efficientnet_lite0.onnx")
    with make_runner("openvino", path, threads=1) as ov:
        one, three = ov.infer(_batch(1)), ov.infer(_batch(3))
        again = ov.infer(_batch(1))
        assert len(ov._compiled) == 2 and one.shape == (1, 1000) and three.shape == (3, 1000)
        np.testing.assert_array_equal(one, again)
        assert ov.providers_used() == ["OpenVINO CPU (f32 arithmetic, 1 threads)"]
        assert ov.metadata()["ofconvert.preprocess"]


def test_fp16_file_runs_and_stays_close(lite0):
    """The fp16 file: OpenVINO takes its float16 input and agrees with ONNX Runtime
    running the same file (both within fp16 rounding of fp32)."""
    x = _batch(2)
    a, b, ov = _both(os.path.join(lite0, "efficientnet_lite0.fp16.onnx"), x)
    assert ov.input_dtype == np.float16 and b.dtype == np.float32
    ref = _both(os.path.join(lite0, "efficientnet_lite0.onnx"), x)[0]
    scale = np.abs(ref).max()
    assert np.abs(b - ref).max() < 0.05 * scale and np.abs(a - ref).max() < 0.05 * scale


@pytest.mark.parametrize("flavour", ["int8", "int8-cpu"])
def test_both_int8_flavours_run_close_to_fp32(lite0, flavour):
    x = _batch(2)
    ref = _both(os.path.join(lite0, "efficientnet_lite0.onnx"), x)[0]
    a, b, _ = _both(os.path.join(lite0, artifacts.onnx_name("efficientnet_lite0", flavour)), x)
    scale = np.abs(ref).max()
    assert np.abs(b - a).max() < 0.25 * scale and np.abs(b - ref).max() < 0.5 * scale


def test_openvino_int8_runs_the_flavour_measured_fastest():
    """docs/cpu.md: OpenVINO runs the uint8-activation CPU flavour faster; one
    mapping (artifacts.flavour) says so for bench, eval and produce alike."""
    assert artifacts.flavour("int8", "openvino") == "int8-cpu"
    assert artifacts.model_path("/m", "x", "int8", "openvino") == os.path.join("/m", "x.int8-cpu.onnx")
    assert artifacts.expected_flavour("int8", "openvino") == "int8-cpu"
    assert artifacts.flavour("fp16", "openvino") == "fp16"


def test_bench_runs_openvino_beside_ort_cpu(lite0, tmp_path):
    out = tmp_path / "out"
    proc = run_tool("bench.py", "--models", "efficientnet_lite0", "--models-dir", lite0, "--backends",
                    "ort-cpu,openvino", "--precisions", "fp32,int8", "--batch", "2", "--warmup", "1", "--iters", "2",
                    "--threads", "1", "--no-produce", "--out-dir", out, "--no-progress", "--no-png", timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = {(r["backend"], r["precision"]): r for r in json.loads((out / "bench.json").read_text())["results"]}
    assert {k: r["status"] for k, r in rows.items()} == {(b, p): "ok" for b in ("ort-cpu", "openvino")
                                                          for p in ("fp32", "int8")}
    ov8 = rows["openvino", "int8"]
    assert ov8["model_file"].endswith("efficientnet_lite0.int8-cpu.onnx") and ov8["detected_precision"] == "int8-cpu"
    assert rows["openvino", "fp32"]["providers"] == "OpenVINO CPU (f32 arithmetic, 1 threads)"
    assert "openvino(fp32)" in proc.stdout and "OpenVINO " in proc.stdout


def test_eval_compares_openvino_with_ort_cpu(lite0, datasets, tmp_path):
    stubs = os.path.join(datasets, "imagenet-stubs-16")
    opts = EvalOptions(models_dir=lite0, progress=False, batch_size=8, threads=2, produce_missing=False,
                       cache=CacheOptions(cache_dir=str(tmp_path / "cache"), workers=1))
    rows = evaluate(stubs, ["efficientnet_lite0"], ["ort-cpu:fp32", "openvino:fp32", "openvino:int8"],
                    reference="ort-cpu:fp32", options=opts)
    by = {r.variant: r for r in rows}
    assert all(r.status == "ok" for r in rows), [(r.variant, r.reason) for r in rows]
    assert by["openvino:fp32"].mismatches == 0 and by["openvino:fp32"].top1 == by["ort-cpu:fp32"].top1
    assert by["openvino:int8"].detected_precision == "int8-cpu" and by["openvino:int8"].images == 16


def test_default_bench_backends_include_openvino_only_when_installed(monkeypatch):
    from ofconvert.bench import options

    assert "openvino" in options.DEFAULT_BACKENDS
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "openvino" else real(n, *a))
    assert options.default_backends() == ("oneflow", "ort-cpu", "ort-cuda", "trt")
    assert unavailable_reason("openvino").startswith("openvino not installed")


def test_missing_openvino_gives_na_rows_and_a_named_error(monkeypatch, tmp_path):
    from test_bench import _tiny_onnx

    path = _tiny_onnx(tmp_path / "tiny.onnx")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "openvino" else real(n, *a))
    row, = benchmark([path], ["openvino"], ["fp32"], [1], FAST)
    assert row.status == "n/a" and row.reason.startswith("openvino not installed")
    monkeypatch.setitem(__import__("sys").modules, "openvino", None)   # import openvino -> ImportError
    with pytest.raises(BackendUnavailableError, match="openvino not installed"):
        make_runner("openvino", path).activate()


def test_bad_runner_arguments_and_files_are_one_line_errors(tmp_path):
    for kw in ({"hint": "fast"}, {"inference_precision": "int4"}, {"threads": 0}):
        with pytest.raises(OfconvertError):
            make_runner("openvino", "x.onnx", **kw)
    with pytest.raises(OfconvertError, match="not found"):
        make_runner("openvino", tmp_path / "none.onnx").activate()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(OfconvertError, match="OpenVINO cannot read") as e:
        make_runner("openvino", bad).activate()
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("tool,args", [
    ("bench", ["--backends", "openvino", "--threads", "0"]),
    ("bench", ["--backends", "ort-cpu,openvin"]),
    ("eval", ["--data", "{stubs}", "--models", "efficientnet_lite0", "--variants", "openvino:int4"]),
    ("eval", ["--data", "{stubs}", "--models", "efficientnet_lite0", "--reference", "openvino:fp8"]),
])
def test_cli_bad_inputs_exit_2_with_one_line(tool, args, datasets, tmp_path):
    args = [a.format(stubs=os.path.join(datasets, "imagenet-stubs-16")) for a in args]
    proc = run_cli(tool, *args, "--no-progress", "--models-dir", tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("ofconvert: error:"), proc.stderr
    assert not has_traceback(proc)
