"""Throughput benchmark (ofconvert.bench, tools/bench.py): real ONNX Runtime in
worker processes, n/a rows for backends that cannot run, report files, CLI errors."""
import csv
import json
import os
import shutil

import numpy as np
import pytest
from conftest import has_traceback, needs_oneflow, run_tool

import ofconvert
from ofconvert.bench import BenchOptions, OrtCudaSettings, benchmark, markdown, write_reports
from ofconvert.errors import OfconvertError

FAST = BenchOptions(warmup=1, iters=5, threads=1)


def _tiny_onnx(path, size=16, classes=10):
    """A small real conv net (Conv-Relu-GAP-Gemm), dynamic batch, no metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal((classes, 4)).astype(np.float32), "F")]
    nodes = [helper.make_node("Conv", ["input", "W"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("Gemm", ["f", "F"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                            ["N", 3, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def _has_cuda_ep():
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    path = _tiny_onnx(folder / "tiny.onnx")
    results = benchmark([path], ["ort-cpu", "ort-cuda", "trt", "oneflow"], ["fp32", "int8"], [1, 3], FAST)
    return path, results


def test_ofconvert_benchmark_is_the_library_function():
    assert ofconvert.benchmark is benchmark


def test_ort_cpu_rows_are_measured_in_worker_processes(tiny_run):
    _, results = tiny_run
    ok = [r for r in results if r.backend == "ort-cpu" and r.precision == "fp32"]
    assert [(r.batch, r.status) for r in ok] == [(1, "ok"), (3, "ok")]
    for r in ok:
        assert r.input == "host" and r.iters == 5 and r.warmup == 1 and r.input_size == 16
        assert 0 < r.latency_ms_p50 <= r.latency_ms_p90 <= r.latency_ms_p99
        assert r.img_per_s == pytest.approx(r.batch / (r.latency_ms_mean / 1e3))
        assert "CPUExecutionProvider" in r.providers
        assert r.pid is not None and r.pid != os.getpid()  # isolated from the driver


def test_backends_that_cannot_run_give_na_rows_with_reasons(tiny_run):
    _, results = tiny_run
    by = {(r.backend, r.precision, r.batch): r for r in results}
    # every requested cell has a row: 4 backends x 2 precisions x 2 batches (+ GPU backends' input rows)
    assert {(b, p, n) for b in ("ort-cpu", "ort-cuda", "trt", "oneflow") for p in ("fp32", "int8")
            for n in (1, 3)} == set(by)
    assert "zoo model name" in by[("oneflow", "fp32", 1)].reason
    assert by[("oneflow", "int8", 1)].status == "n/a"
    # int8 of a metadata-less, non-zoo ONNX cannot be calibrated: n/a, not a crash
    assert by[("ort-cpu", "int8", 1)].status == "n/a" and "tiny.int8-cpu.onnx" in by[("ort-cpu", "int8", 1)].reason
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert by[("trt", "fp32", 1)].status == "n/a" and "TensorRT not installed" in by[("trt", "fp32", 1)].reason
    if not _has_cuda_ep():
        r = by[("ort-cuda", "fp32", 3)]
        assert r.status == "n/a" and "CUDA provider missing" in r.reason and r.input == "device"


def test_reports_contain_the_measurements(tiny_run, tmp_path):
    _, results = tiny_run
    env = ofconvert.bench.environment()
    paths = write_reports(results, str(tmp_path), env, FAST)
    data = json.loads(open(paths["json"]).read())
    assert data["environment"]["python"] == env["python"] and data["environment"]["onnxruntime"]
    assert data["protocol"]["iters"] == 5 and len(data["results"]) == len(results)
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(results)
    cpu = [r for r in rows if r["backend"] == "ort-cpu" and r["status"] == "ok"]
    assert len(cpu) == 2 and all(float(r["img_per_s"]) > 0 for r in cpu)
    md = open(paths["md"]).read()
    assert "### Batch 1 (img/s)" in md and "### Batch 3 (img/s)" in md
    assert "| model | ort-cpu(fp32) | ort-cpu(int8) |" in md
    measured = next(r for r in results if r.backend == "ort-cpu" and r.precision == "fp32" and r.batch == 1)
    assert f"| tiny (16) | {ofconvert.bench.fmt(measured.img_per_s)} |" in md
    assert "n/a [" in md and "the OneFlow backend needs a zoo model name" in md
    with open(paths["png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_worker_timeout_becomes_na(tmp_path):
    path = _tiny_onnx(tmp_path / "tiny.onnx")
    res = benchmark([path], ["ort-cpu"], ["fp32"], [2], BenchOptions(warmup=1, iters=2, timeout_s=0.01))
    assert [(r.status, r.batch) for r in res] == [("n/a", 2)]
    assert "timed out" in res[0].reason


def test_ort_cuda_settings_parse_and_map_to_runner_options():
    s = OrtCudaSettings.parse("nhwc+graph+algo=heuristic")
    assert s.spec == "nhwc+graph+algo=heuristic" and OrtCudaSettings.parse(s.spec) == s
    kw = s.runner_kwargs()
    assert kw == {"provider_options": {"prefer_nhwc": "1", "cudnn_conv_algo_search": "HEURISTIC"},
                  "io_binding": True, "cuda_graph": True}
    assert OrtCudaSettings.parse("default").runner_kwargs() == {"provider_options": {}, "io_binding": False,
                                                               "cuda_graph": False}
    assert OrtCudaSettings.parse("fastest").label == "fastest"
    assert OrtCudaSettings.parse(OrtCudaSettings.parse("fastest").spec).label == "fastest"
    for bad in ("nhwc+turbo", "algo=fastest", ""):
        with pytest.raises(OfconvertError):
            OrtCudaSettings.parse(bad)


def test_fastest_fuses_the_conv_bias_and_the_evaluator_uses_it_without_a_graph():
    # fuse_conv_bias: 1.37-1.50x on the H200 (docs/gpu.md); the evaluator's last batch is smaller: no CUDA graph
    from ofconvert.runners.ort_settings import EVAL_SETTINGS

    fast = OrtCudaSettings.parse("fastest").runner_kwargs()
    assert fast["provider_options"]["fuse_conv_bias"] == "1" and fast["cuda_graph"]
    assert OrtCudaSettings.parse("nhwc+fusebias").runner_kwargs()["provider_options"] == {
        "prefer_nhwc": "1", "fuse_conv_bias": "1"}
    ev = EVAL_SETTINGS.runner_kwargs()
    assert ev["provider_options"] == fast["provider_options"] and ev["io_binding"] and not ev["cuda_graph"]


def test_speedup_table_compares_settings():
    from ofconvert.bench import BenchResult

    rows = [BenchResult("resnet50", "ort-cuda", "fp16", 50, "device", settings=s, img_per_s=v, input_size=224)
            for s, v in (("default", 1000.0), ("fastest", 1500.0))]
    md = markdown(rows)
    assert "| resnet50 | fp16 | 50 | device | 1,000 | 1,500 | 1.50x |" in md
    assert "ort-cuda[fastest](fp16, dev-in)" in md


@pytest.mark.parametrize("args", [
    ["--models", "nosuchnet"],
    ["--backends", "ort-cpu,tpu"],
    ["--precisions", "fp64"],
    ["--batch", "0"],
    ["--batch", "eight"],
    ["--iters", "0"],
    ["--ort-cuda", "nhwc+turbo"],
    ["--input", "disk"],
    ["--onnx-dir", "/nonexistent/folder"],
    ["--frobnicate"],
    ["--streams", "0"],
    ["--models-dir", "/nonexistent/folder"],
])
def test_cli_bad_arguments_exit_2_with_one_line(args):
    proc = run_tool("bench.py", "--backends", "ort-cpu", *args, "--no-progress", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not has_traceback(proc)


def test_cli_runs_a_real_zoo_export_at_fp32_and_fp16(zoo_onnx, tmp_path):
    """efficientnet_lite0 exported through OneFlow; fp16 created by ofconvert.precision."""
    src = tmp_path / "efficientnet_lite0.onnx"
    shutil.copy(zoo_onnx("efficientnet_lite0"), src)
    out = tmp_path / "out"
    proc = run_tool("bench.py", "--models", "efficientnet_lite0", "--models-dir", tmp_path, "--backends", "ort-cpu",
                    "--precisions", "fp32,fp16", "--batch", "2", "--warmup", "1", "--iters", "2", "--threads", "1",
                    "--out-dir", out, "--no-progress", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "efficientnet_lite0.fp16.onnx").is_file()
    rows = json.loads((out / "bench.json").read_text())["results"]
    assert {(r["precision"], r["status"]) for r in rows} == {("fp32", "ok"), ("fp16", "ok")}
    assert "| efficientnet_lite0 (224) |" in proc.stdout
    assert sorted(os.listdir(out)) == ["bench.csv", "bench.json", "bench.md", "bench.png"]


@needs_oneflow
def test_oneflow_backend_runs_in_its_own_process():
    res = benchmark(["efficientnet_lite0"], ["oneflow"], ["fp32"], [1], BenchOptions(warmup=1, iters=2, threads=1))
    assert len(res) == 1 and res[0].status == "ok", res[0].reason
    assert res[0].pid != os.getpid() and res[0].img_per_s > 0


def test_streams_run_concurrent_sessions_and_report_aggregate_and_latency(tmp_path):
    """--streams K: K sessions run the same batch concurrently; img/s is the aggregate
    (K x iters x batch / wall time, at most K x batch / mean request latency), the
    latencies are per request, and the markdown gets a latency table."""
    path = _tiny_onnx(tmp_path / "tiny.onnx")
    one, = benchmark([path], ["ort-cpu"], ["fp32"], [2], BenchOptions(warmup=1, iters=6, threads=1))
    assert one.streams == 1 and one.column == "ort-cpu(fp32)"
    assert one.img_per_s == pytest.approx(2 / (one.latency_ms_mean / 1e3))
    three, = benchmark([path], ["ort-cpu"], ["fp32"], [2], BenchOptions(warmup=1, iters=6, threads=1, streams=3))
    assert three.status == "ok", three.reason
    assert three.streams == 3 and three.column == "ort-cpu(fp32, 3 streams)"
    ceiling = 3 * 2 / (three.latency_ms_mean / 1e3)
    assert 0.2 * ceiling <= three.img_per_s <= 1.05 * ceiling
    assert 0 < three.latency_ms_p50 <= three.latency_ms_p99
    md = markdown([three], options=BenchOptions(streams=3))
    assert "3 concurrent streams" in md and "latency per request, p50 / p99 (ms)" in md
    assert f"{three.latency_ms_p50:.1f} / {three.latency_ms_p99:.1f}" in md
    paths = write_reports([three], str(tmp_path / "out"), options=BenchOptions(streams=3), png=False)
    row = json.loads(open(paths["json"]).read())["results"][0]
    assert row["streams"] == 3 and row["latency_ms_p99"] == three.latency_ms_p99


def test_old_option_names_are_aliases(tmp_path):
    assert BenchOptions(onnx_dir="/x", calib_data="/c") == BenchOptions(models_dir="/x", calib="/c")
    from ofconvert.bench.cli import build_parser

    old = build_parser().parse_args(["--onnx-dir", "m", "--calib-data", "c", "--out", "o"])
    new = build_parser().parse_args(["--models-dir", "m", "--calib", "c", "--out-dir", "o"])
    assert vars(old) == vars(new)
    assert "--onnx-dir" not in build_parser().format_help()
