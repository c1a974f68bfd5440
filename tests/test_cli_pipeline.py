"""The conversion pipeline as a user runs it: calib-set, --fp16, --int8 with a
reusable calibration cache, --to trt without TensorRT. Real OneFlow export, real
ONNX Runtime, real images."""
import os

import numpy as np
import pytest
from conftest import has_traceback, needs_oneflow, run_cli

from ofconvert.config import get_config
from ofconvert.data import list_images, load_batch
from ofconvert.runners.onnxruntime import OnnxRuntimeRunner

pytestmark = needs_oneflow


def _one_line_error(p):
    return p.returncode == 2 and not has_traceback(p) and p.stderr.strip().count("\n") == 0 \
        and p.stderr.startswith("ofconvert: error:")


@pytest.fixture(scope="module")
def calib_set(tmp_path_factory, datasets):
    out = tmp_path_factory.mktemp("calib") / "imagenet1k"
    p = run_cli("calib-set", "--from", os.path.join(datasets, "imagenet-sample-1000"), "--per-class", "1", "-o", out)
    assert p.returncode == 0, p.stderr
    lines = (out / "manifest.txt").read_text().split()
    assert len(lines) == 1000 and lines == sorted(lines)
    return out


@pytest.fixture(scope="module")
def lite0_int8(tmp_path_factory, calib_set):
    d = tmp_path_factory.mktemp("int8")
    p = run_cli("efficientnet_lite0", "--to", "onnx", "--no-validate", "--int8", "--calib", calib_set,
                "--calib-images", "48", "-o", d / "lite0.int8.onnx")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "computed calibration cache" in p.stdout
    return d, p


def test_int8_writes_both_qdq_flavours_cache_and_sidecar(lite0_int8, datasets):
    d, _ = lite0_int8
    for name in ("lite0.onnx", "lite0.int8.onnx", "lite0.int8-cpu.onnx", "lite0.entropy.calib.cache",
                 "lite0.entropy.calib.cache.json"):
        assert (d / name).is_file(), name
    from ofconvert.artifacts import detect_precision

    # every name says what its file holds (ofconvert.artifacts): <stem>.onnx is the fp32 export
    assert {n: detect_precision(d / n) for n in ("lite0.onnx", "lite0.int8.onnx", "lite0.int8-cpu.onnx")} == \
        {"lite0.onnx": "fp32", "lite0.int8.onnx": "int8", "lite0.int8-cpu.onnx": "int8-cpu"}
    header = (d / "lite0.entropy.calib.cache").read_text().splitlines()[0]
    assert header.startswith("TRT-") and header.endswith("EntropyCalibration2")
    # both int8 models agree with fp32 on real images the calibration never saw
    cfg = get_config("efficientnet_lite0").preprocess
    paths = list_images(os.path.join(datasets, "imagenet-val-1300"))[:32]
    x, _ = load_batch(paths, cfg)
    with OnnxRuntimeRunner(str(d / "lite0.onnx")) as r:
        ref = r.infer(x).argmax(1)
    for name in ("lite0.int8.onnx", "lite0.int8-cpu.onnx"):
        with OnnxRuntimeRunner(str(d / name)) as r:
            agree = float(np.mean(r.infer(x).argmax(1) == ref))
        assert agree >= 0.8, (name, agree)


def test_bench_runs_each_file_of_the_int8_run_at_its_own_precision(lite0_int8):
    """The issue's case end to end: bench's fp32 column runs the fp32 export, its int8
    column the Q/DQ model, and the report says which file (sha256, detected precision)."""
    from ofconvert.bench import BenchOptions, benchmark
    from ofconvert.fileio import sha256_file

    d, _ = lite0_int8
    res = benchmark([str(d / "lite0.onnx")], ["ort-cpu"], ["fp32", "int8"], [1],
                    BenchOptions(warmup=0, iters=1, threads=1))
    assert [r.status for r in res] == ["ok", "ok"], [r.reason for r in res]
    assert {r.precision: (r.model_file, r.detected_precision, r.model_sha256) for r in res} == {
        "fp32": (str(d / "lite0.onnx"), "fp32", sha256_file(d / "lite0.onnx")),
        "int8": (str(d / "lite0.int8-cpu.onnx"), "int8-cpu", sha256_file(d / "lite0.int8-cpu.onnx"))}


def test_second_run_reuses_export_and_cache(lite0_int8, calib_set):
    d, _ = lite0_int8
    cache = d / "lite0.entropy.calib.cache"
    before = cache.stat().st_mtime_ns
    p = run_cli("efficientnet_lite0", "--to", "onnx", "--no-validate", "--int8", "--calib", calib_set,
                "--calib-images", "48", "-o", d / "lite0.int8.onnx")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "reusing fp32 ONNX" in p.stdout and "reused calibration cache" in p.stdout
    assert cache.stat().st_mtime_ns == before


def test_corrupt_cache_is_a_one_line_error_then_recalibrate(lite0_int8, calib_set):
    d, _ = lite0_int8
    cache = d / "lite0.entropy.calib.cache"
    good = cache.read_text()
    lines = good.splitlines()
    cache.write_text("\n".join(lines[:1] + ["garbage line without colon"] + lines[2:]) + "\n")
    args = ["efficientnet_lite0", "--to", "onnx", "--no-validate", "--int8", "--calib", calib_set,
            "--calib-images", "48", "-o", d / "lite0.int8.onnx"]
    p = run_cli(*args)
    assert _one_line_error(p), p.stderr
    p = run_cli(*args, "--recalibrate")
    assert p.returncode == 0 and "computed calibration cache" in p.stdout, p.stderr[-1500:]
    assert cache.read_text() == good      # same images, same method: same scales


def test_fp16(tmp_path, datasets):
    p = run_cli("efficientnet_lite0", "--to", "onnx", "--no-validate", "--fp16", "-o", tmp_path / "l.fp16.onnx")
    assert p.returncode == 0, p.stderr[-1500:]
    cfg = get_config("efficientnet_lite0").preprocess
    x, _ = load_batch(list_images(os.path.join(datasets, "imagenet-val-1300"))[:8], cfg)
    with OnnxRuntimeRunner(str(tmp_path / "l.onnx")) as a, OnnxRuntimeRunner(str(tmp_path / "l.fp16.onnx")) as b:
        assert b.input_dtype == np.float16
        ya, yb = a.infer(x), b.infer(x)
    assert (ya.argmax(1) == yb.argmax(1)).all()
    assert np.abs(ya - yb).max() / np.abs(ya).max() < 1e-2


def test_int8_user_errors(tmp_path):
    assert _one_line_error(run_cli("efficientnet_lite0", "--to", "onnx", "--int8"))
    empty = tmp_path / "empty"
    empty.mkdir()
    p = run_cli("efficientnet_lite0", "--to", "onnx", "--no-validate", "--int8", "--calib", empty,
                "-o", tmp_path / "x.int8.onnx")
    assert _one_line_error(p), p.stderr
    assert _one_line_error(run_cli("efficientnet_lite0", "--int8", "--calib", tmp_path / "missing"))
    assert _one_line_error(run_cli("efficientnet_lite0", "--fp16", "--int8"))
    binary = tmp_path / "img.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    p = run_cli("efficientnet_lite0", "--int8", "--calib", binary, "-o", tmp_path / "y.int8.onnx")
    assert _one_line_error(p) and "manifest" in p.stderr, p.stderr
    assert list(tmp_path.glob("y*")) == []     # failed before the export


def test_output_that_is_a_folder(tmp_path):
    for target in (tmp_path, str(tmp_path) + "/"):
        p = run_cli("efficientnet_lite0", "--to", "onnx", "-o", target)
        assert _one_line_error(p) and "folder" in p.stderr, p.stderr


def test_to_trt_without_tensorrt_fails_fast_and_writes_nothing(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed: tests/test_engine.py covers real builds")
    except ImportError:
        pass
    p = run_cli("resnet50", "--to", "trt", "--fp16", "--batch", "8", "--max-batch", "64",
                "-o", tmp_path / "r.fp16.engine")
    assert _one_line_error(p) and "tensorrt" in p.stderr.lower()
    assert os.listdir(tmp_path) == []          # no export, no engine, no half-written file
