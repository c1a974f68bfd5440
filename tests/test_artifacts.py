"""One naming scheme (ofconvert.artifacts), precision read from a file's content,
and bench / eval refusing a mislabelled file and reporting what they ran.

Real ONNX files: a tiny conv net (onnx.helper), its real fp16 conversion
(precision.to_fp16) and its real int8 Q/DQ conversions (calibrated on real JPEGs,
precision.quantize_qdq for TensorRT and for the CPU), run by the real ONNX Runtime."""
import csv
import hashlib
import io
import json
import os
import shutil

import numpy as np
import pytest
from conftest import has_traceback, run_cli, run_tool
from test_calibration import tiny_cnn, write_images

from ofconvert import artifacts as A
from ofconvert import calibration as C
from ofconvert import precision as P
from ofconvert.artifacts import PrecisionMismatchError
from ofconvert.bench import BenchOptions, benchmark, markdown, to_csv, write_reports
from ofconvert.config import PreprocessConfig
from ofconvert.errors import EngineCompatibilityError, OfconvertError

FAST = BenchOptions(warmup=1, iters=2, threads=1)


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="module")
def flavours(tmp_path_factory):
    """{flavour: path} of the four real flavours of one tiny model (+ fp16 with float32 I/O)."""
    d = tmp_path_factory.mktemp("flavours")
    fp32 = tiny_cnn(d / "src.onnx")
    write_images(str(d / "imgs"), n=8)
    scales = C.calibrate(fp32, str(d / "imgs"), PreprocessConfig(32), method="minmax").scales
    out = {"fp32": fp32,
           "fp16": P.to_fp16(fp32, d / "src.fp16.onnx"),
           "fp16-io32": P.to_fp16(fp32, d / "src.fp16io.onnx", keep_io_types=True),
           "int8": P.quantize_qdq(fp32, d / "src.int8.onnx", scales, target="trt"),
           "int8-cpu": P.quantize_qdq(fp32, d / "src.int8-cpu.onnx", scales, target="cpu")}
    return {k: str(v) for k, v in out.items()}


def _folder(tmp_path, stem, files):
    """A models folder: {name suffix ("" / ".fp16" / ...): source path} copied as <stem><suffix>.onnx."""
    d = tmp_path / "models"
    d.mkdir(parents=True, exist_ok=True)
    for suffix, src in files.items():
        shutil.copy(src, d / f"{stem}{suffix}.onnx")
    return d


def _one_line_error(p, prefix):
    return (p.returncode == 2 and not has_traceback(p) and len(p.stderr.strip().splitlines()) == 1
            and p.stderr.startswith(prefix))


# ---------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------
def test_one_naming_scheme():
    from ofconvert import pipeline

    assert pipeline.onnx_name is A.onnx_name          # the old import keeps working
    assert [A.onnx_name("m", p) for p in ("fp32", "fp16", "int8")] == ["m.onnx", "m.fp16.onnx", "m.int8.onnx"]
    assert A.onnx_name("m", "int8", "ort-cpu") == "m.int8-cpu.onnx"
    assert A.onnx_name("m", "int8", "ort-cuda") == A.onnx_name("m", "int8", "ort-trt") == "m.int8.onnx"
    assert A.onnx_name("m", "fp16", "ort-cpu") == "m.fp16.onnx"
    assert A.engine_name("m", "fp16") == "m.fp16.engine" and A.engine_name("m", "int8", 64) == "m.int8.b64.engine"
    assert A.parse_name("d/m.onnx") == ("m", "onnx", "fp32")
    assert A.parse_name("m.int8-cpu.onnx") == ("m", "onnx", "int8-cpu")
    assert A.parse_name("m.int8.b64.engine") == ("m", "engine", "int8")
    assert A.parse_name("m.engine") == ("m", "engine", "fp32")
    assert A.parse_name("m.bin") == ("m.bin", None, None)
    p = A.artifact_paths("efficientnet_lite0", "out/lite0.int8.onnx", "int8", "onnx")
    d = os.path.abspath("out")
    assert p == {"fp32": f"{d}/lite0.onnx", "fp16": f"{d}/lite0.fp16.onnx", "int8": f"{d}/lite0.int8.onnx",
                 "int8-cpu": f"{d}/lite0.int8-cpu.onnx", "engine": f"{d}/lite0.int8.engine"}
    p = A.artifact_paths("resnet50", "r.engine", "fp32", "trt")
    assert p["engine"] == os.path.abspath("r.engine") and p["fp32"] == os.path.abspath("r.onnx")
    p = A.artifact_paths("flowvision:resnet18", None, "fp16", "trt")
    assert p["fp16"] == os.path.abspath("resnet18.fp16.onnx") and p["engine"] == os.path.abspath("resnet18.fp16.engine")


@pytest.mark.parametrize("output,precision,to,message", [
    ("lite0.onnx", "int8", "onnx",
     "-o lite0.onnx would hold the int8 model but the name means fp32; use -o lite0.int8.onnx"),
    ("m/lite0.onnx", "fp16", "onnx",
     "-o m/lite0.onnx would hold the fp16 model but the name means fp32; use -o m/lite0.fp16.onnx"),
    ("x.int8.onnx", "fp16", "onnx",
     "-o x.int8.onnx would hold the fp16 model but the name means int8; use -o x.fp16.onnx"),
    ("x.fp16.onnx", "fp32", "onnx", "-o x.fp16.onnx would hold the fp32 model but the name means fp16; use -o x.onnx"),
    ("x.fp32.onnx", "fp32", "onnx", "use -o x.onnx"),
    ("x.int8-cpu.onnx", "fp16", "onnx", "the name means int8-cpu; use -o x.fp16.onnx"),
    ("r.engine", "fp16", "trt", "-o r.engine would hold the fp16 engine but the name means fp32; use -o r.fp16.engine"),
    ("r.int8.engine", "fp16", "trt", "the name means int8; use -o r.fp16.engine"),
    ("r.fp16.onnx", "fp16", "trt", "-o r.fp16.onnx names an ONNX model but --to trt writes a TensorRT engine; "
                                   "use -o r.fp16.engine"),
    ("r.fp16.engine", "fp16", "onnx", "names a TensorRT engine but --to onnx writes an ONNX model; use -o r.fp16.onnx"),
    ("lite0", "int8", "onnx", "use -o lite0.int8.onnx"),
])
def test_output_names_that_would_lie_are_refused(output, precision, to, message):
    with pytest.raises(OfconvertError) as e:
        A.check_output_name(output, precision, to)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("output,precision,to,role", [
    ("lite0.onnx", "fp32", "onnx", "fp32"),
    ("lite0.fp16.onnx", "fp16", "onnx", "fp16"),
    ("lite0.int8.onnx", "int8", "onnx", "int8"),
    ("lite0.int8-cpu.onnx", "int8", "onnx", "int8-cpu"),
    ("r.fp16.engine", "fp16", "trt", "engine"),
    ("r.int8.plan", "int8", "trt", "engine"),
    ("r.engine", "fp32", "trt", "engine"),
])
def test_honest_output_names_are_accepted(output, precision, to, role):
    assert A.check_output_name(output, precision, to)[2] == role


def test_cli_refuses_int8_into_an_fp32_name_before_any_work(tmp_path, flavours):
    """The issue's case: `--int8 -o lite0.onnx` next to an existing fp32 lite0.onnx."""
    calib = tmp_path / "calib"
    write_images(str(calib), n=2)
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(flavours["fp32"], d / "lite0.onnx")
    before = _sha(d / "lite0.onnx")
    p = run_cli("efficientnet_lite0", "--to", "onnx", "--int8", "--calib", calib, "-o", d / "lite0.onnx", timeout=300)
    assert _one_line_error(p, "ofconvert: error:"), p.stderr
    assert (f"-o {d}/lite0.onnx would hold the int8 model but the name means fp32; use -o {d}/lite0.int8.onnx"
            in p.stderr), p.stderr
    assert sorted(os.listdir(d)) == ["lite0.onnx"] and _sha(d / "lite0.onnx") == before   # nothing written
    p = run_cli("efficientnet_lite0", "--to", "onnx", "--int8", "--calib", calib, "-o", tmp_path / "new.onnx",
                timeout=300)
    assert _one_line_error(p, "ofconvert: error:") and "use -o" in p.stderr, p.stderr
    assert not (tmp_path / "new.onnx").exists() and not (tmp_path / "new.int8.onnx").exists()


def test_cli_refuses_to_overwrite_a_file_of_another_precision(tmp_path, flavours):
    """An older ofconvert wrote the int8 model to <stem>.onnx: a new --fp16 run must not
    take it as fp32 (nor overwrite it)."""
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(flavours["int8"], d / "efficientnet_lite0.onnx")
    before = _sha(d / "efficientnet_lite0.onnx")
    p = run_cli("efficientnet_lite0", "--to", "onnx", "--fp16", "--no-validate",
                "-o", d / "efficientnet_lite0.fp16.onnx", timeout=300)
    assert _one_line_error(p, "ofconvert: error:"), p.stderr
    assert f"{d}/efficientnet_lite0.onnx is an int8 (Q/DQ) model, not fp32" in p.stderr, p.stderr
    assert sorted(os.listdir(d)) == ["efficientnet_lite0.onnx"] and _sha(d / "efficientnet_lite0.onnx") == before


# ---------------------------------------------------------------------------
# precision from content
# ---------------------------------------------------------------------------
def test_detect_precision_of_every_real_flavour(flavours, tmp_path):
    got = {k: A.detect_precision(v) for k, v in flavours.items()}
    assert got == {"fp32": "fp32", "fp16": "fp16", "fp16-io32": "fp16", "int8": "int8", "int8-cpu": "int8-cpu"}
    # the content decides, not the name: swap the names
    shutil.copy(flavours["int8"], tmp_path / "m.onnx")
    shutil.copy(flavours["fp32"], tmp_path / "m.int8.onnx")
    shutil.copy(flavours["int8-cpu"], tmp_path / "m.int8.b8.engine")
    assert A.detect_precision(tmp_path / "m.onnx") == "int8"
    assert A.detect_precision(tmp_path / "m.int8.onnx") == "fp32"
    assert A.detect_precision(tmp_path / "m.int8.b8.engine") == "int8-cpu"
    # the flavours run in ONNX Runtime (they are real models, not just graphs)
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    for k in ("int8", "int8-cpu"):
        s = ort.InferenceSession(flavours[k], providers=["CPUExecutionProvider"])
        assert s.run(None, {"input": x})[0].shape == (2, 10)


def _qdq_graph(path, zero_point=None, zp_as_constant=False):
    """input -> QuantizeLinear -> DequantizeLinear -> Relu, built by hand."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [numpy_helper.from_array(np.array(0.1, np.float32), "s")], []
    q_inputs = ["input", "s"]
    if zero_point is not None:
        zp = numpy_helper.from_array(np.array(0, zero_point), "zp")
        if zp_as_constant:
            nodes.append(helper.make_node("Constant", [], ["zp"], value=zp))
        else:
            inits.append(zp)
        q_inputs.append("zp")
    nodes += [helper.make_node("QuantizeLinear", q_inputs, ["q"]),
              helper.make_node("DequantizeLinear", ["q"] + q_inputs[1:], ["dq"]),
              helper.make_node("Relu", ["dq"], ["out"])]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return str(path)


def test_detect_precision_reads_zero_points_and_fp16_tensors(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    assert A.detect_precision(_qdq_graph(tmp_path / "a.onnx", np.int8)) == "int8"
    assert A.detect_precision(_qdq_graph(tmp_path / "b.onnx", np.uint8)) == "int8-cpu"
    assert A.detect_precision(_qdq_graph(tmp_path / "c.onnx", np.int8, zp_as_constant=True)) == "int8"
    assert A.detect_precision(_qdq_graph(tmp_path / "d.onnx", np.uint8, zp_as_constant=True)) == "int8-cpu"
    assert A.detect_precision(_qdq_graph(tmp_path / "e.onnx", None)) == "int8-cpu"   # ONNX default: uint8
    # an fp16 constant node (no fp16 initializer, float32 I/O) is fp16 content
    nodes = [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.ones(4, np.float16))),
             helper.make_node("Cast", ["input"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("Add", ["h", "k"], ["a"]), helper.make_node("Cast", ["a"], ["out"], to=TensorProto.FLOAT)]
    g = helper.make_graph(nodes, "c16", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(tmp_path / "f.onnx"))
    assert A.detect_precision(tmp_path / "f.onnx") == "fp16"


def test_detect_precision_does_not_load_external_data(flavours, tmp_path):
    import onnx

    m = onnx.load(flavours["fp16"])
    onnx.save(m, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.data", size_threshold=0)
    os.unlink(tmp_path / "ext.data")               # loading the data would fail now
    assert A.detect_precision(tmp_path / "ext.onnx") == "fp16"


def test_detect_precision_of_engines_comes_from_the_sidecar(tmp_path):
    from ofconvert import engine

    e = tmp_path / "m.fp16.engine"
    engine.write_engine(e, b"serialized engine bytes", {"format": engine.SIDECAR_FORMAT, "precision": "int8"})
    assert A.detect_precision(e) == "int8"                 # the sidecar, not the name
    with pytest.raises(PrecisionMismatchError, match="is an int8 TensorRT engine, not fp16"):
        A.check_precision(e, "fp16")
    assert A.describe(e)["sha256"] == _sha(e)
    e.write_bytes(b"another engine")                       # replaced: the sidecar no longer describes it
    with pytest.raises(EngineCompatibilityError, match="sha256 differs"):
        A.detect_precision(e)
    os.unlink(str(e) + ".json")
    with pytest.raises(EngineCompatibilityError, match="no ofconvert sidecar"):
        A.detect_precision(e)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\x00 not a model \x07" * 10)
    with pytest.raises(OfconvertError, match="cannot tell the precision"):
        A.detect_precision(junk)
    with pytest.raises(OfconvertError, match="not found"):
        A.detect_precision(tmp_path / "missing.onnx")


def test_an_export_report_json_is_not_taken_for_an_engine_sidecar(flavours, tmp_path):
    shutil.copy(flavours["fp32"], tmp_path / "m.onnx")
    (tmp_path / "m.onnx.json").write_text(json.dumps({"model": "m", "precision": "int8"}))
    assert A.detect_precision(tmp_path / "m.onnx") == "fp32"


# ---------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------
def test_bench_refuses_a_qdq_model_named_as_fp32(flavours, tmp_path):
    d = _folder(tmp_path, "tiny", {"": flavours["int8"]})
    with pytest.raises(PrecisionMismatchError) as e:
        benchmark([str(d / "tiny.onnx")], ["ort-cpu"], ["fp32"], [1], FAST)
    assert str(e.value).startswith(f"{d}/tiny.onnx is an int8 (Q/DQ) model, not fp32")


def test_bench_cli_refuses_the_issue_case_with_one_line(flavours, tmp_path):
    """`ofconvert efficientnet_lite0 --int8 -o m/efficientnet_lite0.onnx` of old: the
    Q/DQ model sits at m/efficientnet_lite0.onnx; bench's fp32 column must not run it."""
    d = _folder(tmp_path, "efficientnet_lite0", {"": flavours["int8"], ".fp32": flavours["fp32"]})
    out = tmp_path / "out"
    p = run_tool("bench.py", "--models", "efficientnet_lite0", "--onnx-dir", d, "--backends", "ort-cpu",
                 "--precisions", "fp32,int8", "--batch", "1", "--iters", "1", "--warmup", "0", "--out", out,
                 "--no-progress", "--no-png", timeout=300)
    assert _one_line_error(p, "ofconvert: error:"), p.stderr
    assert f"{d}/efficientnet_lite0.onnx is an int8 (Q/DQ) model, not fp32" in p.stderr
    assert not out.exists()                                  # refused before any measurement


def test_bench_refuses_the_wrong_int8_flavour_and_a_mislabelled_source(flavours, tmp_path):
    d = _folder(tmp_path, "tiny", {"": flavours["fp32"], ".int8-cpu": flavours["int8"]})
    with pytest.raises(PrecisionMismatchError, match="tiny.int8-cpu.onnx is an int8 \\(Q/DQ\\) model, not int8-cpu"):
        benchmark([str(d / "tiny.onnx")], ["ort-cpu"], ["fp32", "int8"], [1], FAST)
    # fp16 is missing and would be made from tiny.onnx, which holds fp16: refused, not converted
    e = _folder(tmp_path / "e", "tiny", {"": flavours["fp16"]})
    with pytest.raises(PrecisionMismatchError, match="is an fp16 model, not fp32"):
        benchmark([str(e / "tiny.onnx")], ["ort-cpu"], ["fp16"], [1], FAST)
    assert not (e / "tiny.fp16.onnx").exists()


def test_bench_reports_carry_file_sha256_and_detected_precision(flavours, tmp_path):
    d = _folder(tmp_path, "tiny", {"": flavours["fp32"], ".fp16": flavours["fp16"], ".int8-cpu": flavours["int8-cpu"]})
    res = benchmark([str(d / "tiny.onnx")], ["ort-cpu"], ["fp32", "fp16", "int8"], [1], FAST)
    assert [(r.precision, r.status) for r in res] == [("fp32", "ok"), ("fp16", "ok"), ("int8", "ok")], res
    want = {"fp32": d / "tiny.onnx", "fp16": d / "tiny.fp16.onnx", "int8": d / "tiny.int8-cpu.onnx"}
    expected = {p: (str(f), _sha(f), {"int8": "int8-cpu"}.get(p, p)) for p, f in want.items()}
    assert {r.precision: (r.model_file, r.model_sha256, r.detected_precision) for r in res} == expected
    paths = write_reports(res, str(tmp_path / "out"), png=False)
    rows = json.loads(open(paths["json"]).read())["results"]
    assert {r["precision"]: (r["model_file"], r["model_sha256"], r["detected_precision"]) for r in rows} == expected
    with open(paths["csv"]) as f:
        assert {r["precision"]: (r["model_file"], r["model_sha256"], r["detected_precision"])
                for r in csv.DictReader(f)} == expected
    md = open(paths["md"]).read()
    for p, (f, sha, det) in expected.items():
        col = f"ort-cpu({p})"
        assert f"| tiny | {col} | {f} | {det} | {sha} |" in md, md
    assert md == markdown(res) and to_csv(res) == open(paths["csv"]).read()


# ---------------------------------------------------------------------------
# eval
# ---------------------------------------------------------------------------
@pytest.fixture
def stubs(datasets):
    return os.path.join(datasets, "imagenet-stubs-16")


def _eval_opts(tmp_path, models_dir, **kw):
    from ofconvert.evaluation import EvalOptions
    from ofconvert.preprocache import CacheOptions

    base = dict(models_dir=str(models_dir), progress=False, batch_size=4, threads=1, limit=4,
                cache=CacheOptions(cache_dir=str(tmp_path / "cache"), workers=1), produce_missing=False)
    base.update(kw)
    return EvalOptions(**base)


def test_eval_refuses_a_mislabelled_file_before_decoding(flavours, stubs, tmp_path):
    from ofconvert.evaluation import evaluate

    d = _folder(tmp_path, "tiny", {"": flavours["fp32"], ".fp16": flavours["int8"]})
    with pytest.raises(PrecisionMismatchError) as e:
        evaluate(stubs, ["tiny"], ["ort-cpu:fp32", "ort-cpu:fp16"], reference="ort-cpu:fp32",
                 options=_eval_opts(tmp_path, d))
    assert str(e.value).startswith(f"{d}/tiny.fp16.onnx is an int8 (Q/DQ) model, not fp16")
    assert not (tmp_path / "cache").exists()                # stopped before decoding a single image
    d2 = _folder(tmp_path / "b", "tiny", {"": flavours["fp32"], ".int8-cpu": flavours["int8"]})
    with pytest.raises(PrecisionMismatchError, match="not int8-cpu"):
        evaluate(stubs, ["tiny"], ["ort-cpu:int8"], reference="ort-cpu:fp32", options=_eval_opts(tmp_path, d2))


def test_eval_cli_refuses_the_issue_case_with_one_line(flavours, stubs, tmp_path):
    d = _folder(tmp_path, "tiny", {"": flavours["int8"]})
    p = run_tool("eval.py", "--data", stubs, "--models", "tiny", "--variants", "ort-cpu:fp32",
                 "--reference", "ort-cpu:fp32", "--models-dir", d, "--limit", "2", "--cache-dir", tmp_path / "c",
                 "--workers", "1", "--no-progress", "--out-dir", tmp_path / "o", timeout=300)
    # (eval.py names the dataset first)
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("ofconvert: error:")]
    assert p.returncode == 2 and not has_traceback(p) and len(errors) == 1, p.stderr
    assert errors[0].startswith(f"ofconvert: error: {d}/tiny.onnx is an int8 (Q/DQ) model, not fp32"), p.stderr
    assert p.stderr.strip().splitlines()[-1] == errors[0]
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()


def test_eval_reports_carry_file_sha256_and_detected_precision(flavours, stubs, tmp_path):
    from ofconvert.evaluation import evaluate, format_csv, format_markdown
    from ofconvert.evaluation import write_reports as eval_reports

    d = _folder(tmp_path, "tiny", {"": flavours["fp32"], ".fp16": flavours["fp16"], ".int8-cpu": flavours["int8-cpu"]})
    rows = evaluate(stubs, ["tiny"], ["ort-cpu:fp32", "ort-cpu:fp16", "ort-cpu:int8"], reference="ort-cpu:fp32",
                    options=_eval_opts(tmp_path, d))
    assert [(r.variant, r.status) for r in rows] == [("ort-cpu:fp32", "ok"), ("ort-cpu:fp16", "ok"),
                                                    ("ort-cpu:int8", "ok")], [r.reason for r in rows]
    files = {"fp32": d / "tiny.onnx", "fp16": d / "tiny.fp16.onnx", "int8": d / "tiny.int8-cpu.onnx"}
    expected = {p: (str(f), _sha(f), {"int8": "int8-cpu"}.get(p, p)) for p, f in files.items()}
    assert {r.precision: (r.model_path, r.model_sha256, r.detected_precision) for r in rows} == expected
    paths = eval_reports(rows, str(tmp_path / "out"), png=False)
    js = json.loads(open(paths["json"]).read())["rows"]
    assert {r["precision"]: (r["model_path"], r["model_sha256"], r["detected_precision"]) for r in js} == expected
    got = {r["precision"]: (r["model_path"], r["model_sha256"], r["detected_precision"])
           for r in csv.DictReader(io.StringIO(format_csv(rows)))}
    assert got == expected and open(paths["csv"]).read() == format_csv(rows)
    md = open(paths["md"]).read()
    for p, (f, sha, det) in expected.items():
        assert f"| tiny | ort-cpu ({p}) | {f} | {det} | {sha} |" in md, md
    assert md.count(expected["fp32"][1]) == 1 and format_markdown(rows) in md
