"""ofconvert.inspect: what an ONNX, a calibration cache or an engine is, read from
its content (inspect_file / format_inspection), and ``ofconvert inspect FILE``."""
import json

import fake_tensorrt
import onnx
import pytest
from test_engine import TINY_PRE, _tiny_model

from ofconvert import engine as eng
from ofconvert import fileio
from ofconvert.calibration import format_cache
from ofconvert.config import METADATA_KEY
from ofconvert.errors import EngineCompatibilityError, OfconvertError
from ofconvert.inspect import format_inspection, inspect_file

META = {METADATA_KEY: TINY_PRE.to_json(), "ofconvert.model": "resnet50"}


@pytest.fixture
def fp32(tmp_path):
    p = tmp_path / "resnet50.onnx"
    onnx.save(_tiny_model(meta=META), str(p))
    return str(p)


def test_onnx_inputs_outputs_precision_preprocessing_provenance(fp32, tmp_path):
    info = inspect_file(fp32)
    assert info["kind"] == "onnx" and info["precision"] == "fp32" and info["model"] == "resnet50"
    assert info["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["batch", 3, 8, 8]}]
    assert info["outputs"] == [{"name": "logits", "dtype": "float32", "shape": ["batch", 10]}]
    assert info["preprocess"] == TINY_PRE.to_dict() and info["opset"] == {"ai.onnx": 13}
    assert info["sha256"] == fileio.sha256_file(fp32)
    text = format_inspection(info)
    assert "precision fp32" in text and "input  input: float32 [batchx3x8x8]" in text
    assert "model: resnet50" in text and "input_size=8" in text
    from ofconvert.precision import to_fp16

    half = to_fp16(fp32, str(tmp_path / "resnet50.fp16.onnx"))
    h = inspect_file(half)
    assert h["precision"] == "fp16" and h["inputs"][0]["dtype"] == "float16"
    q = tmp_path / "q.onnx"
    onnx.save(_tiny_model(qdq=True), str(q))
    qi = inspect_file(q)
    assert qi["precision"] == "int8" and qi["preprocess"] is None
    assert "unknown (no ofconvert.preprocess metadata)" in format_inspection(qi)


def test_calibration_cache_header_scales_and_sidecar(tmp_path):
    cache = tmp_path / "m.entropy.calib.cache"
    fileio.write_text(cache, format_cache({"input": 0.5, "a": 0.01, "logits": 2.0}, version=100300))
    info = inspect_file(cache)
    assert (info["header_version"], info["calibrator"], info["tensors"]) == (100300, "EntropyCalibration2", 3)
    assert info["scale_min"] == pytest.approx(0.01) and info["scale_max"] == pytest.approx(2.0)
    assert info["sidecar"] is None and "sidecar: none" in format_inspection(info)
    fileio.write_json(str(cache) + ".json", {"method": "entropy", "num_images": 64})
    text = format_inspection(inspect_file(cache))
    assert "TRT-100300-EntropyCalibration2, 3 tensors" in text and "method entropy, num_images 64" in text


def test_engine_from_its_sidecar_without_tensorrt(fp32, tmp_path):
    engine_path = str(tmp_path / "resnet50.fp32.engine")
    with fake_tensorrt.installed("10.3.0"):
        eng.build_engine(fp32, engine_path, batch=2, max_batch=4, timing_cache=False)
    info = inspect_file(engine_path)   # the stand-in is gone: nothing deserialised
    assert info["kind"] == "engine" and info["tensorrt_version"] == "10.3.0" and info["precision"] == "fp32"
    assert info["gpu"] == {"name": "NVIDIA H200", "compute_capability": "9.0"}
    assert info["profile"]["max"] == [4, 3, 8, 8] and info["onnx"]["sha256"] == fileio.sha256_file(fp32)
    assert info["preprocess"] == TINY_PRE.to_dict()
    text = format_inspection(info)
    assert "TensorRT 10.3.0" in text and "strongly typed" in text and "max 4x3x8x8" in text


def _w(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make,exc,needle", [
    (lambda d: d / "missing.onnx", OfconvertError, "file not found"),
    (lambda d: d, OfconvertError, "is a folder"),
    (lambda d: _w(d / "x.bin", b"\x00\xffnot anything" * 20), OfconvertError,
     "is not an ONNX model, a TensorRT calibration cache or an ofconvert engine"),
    (lambda d: _w(d / "x.engine", b"plan"), EngineCompatibilityError, "no ofconvert sidecar"),
    (lambda d: _w(d / "c.cache", b"TRT-8601-EntropyCalibration2\ninput: zz\n"), OfconvertError, "garbled"),
])
def test_bad_files_are_one_typed_line(tmp_path, make, exc, needle):
    with pytest.raises(exc) as ei:
        inspect_file(make(tmp_path))
    assert needle in str(ei.value) and "\n" not in str(ei.value)


def test_engine_whose_sidecar_describes_another_file_is_refused(fp32, tmp_path):
    engine_path = str(tmp_path / "m.fp32.engine")
    sc = {"format": eng.SIDECAR_FORMAT, "engine": {"sha256": "0" * 64}}
    fileio.write_bytes(engine_path, b"x")
    fileio.write_text(engine_path + ".json", json.dumps(sc))
    with pytest.raises(EngineCompatibilityError, match="sha256"):
        inspect_file(engine_path)


def test_cli_inspect_subcommand(fp32, capsys):
    from ofconvert import cli

    if not hasattr(cli, "_cmd_inspect"):
        pytest.skip("the `ofconvert inspect` subcommand is not wired in ofconvert/cli.py yet")
    assert cli.main(["inspect", fp32]) == 0
    assert "precision fp32" in capsys.readouterr().out
    assert cli.main(["inspect", fp32 + ".missing"]) == 2
    assert capsys.readouterr().err.strip().startswith("ofconvert: error: file not found")
    assert cli.main(["inspect", fp32, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "fp32"


def test_budgeted_model_says_what_it_is(tmp_path):
    """A --max-flips model carries (metadata_props) and inspect shows: the layers kept
    in float, the budget, the flips measured and expected, and the calibration cache
    (method, file, sha256) its scales came from."""
    import hashlib
    import os

    from test_calibration import tiny_cnn, write_images

    from ofconvert import budget as B
    from ofconvert import calibration as C
    from ofconvert.budget.report import BUDGET_KEY, write_models
    from ofconvert.config import PreprocessConfig

    model = tiny_cnn(tmp_path / "tiny.onnx", explicit_pad=True)
    imgs = write_images(str(tmp_path / "imgs"), n=24, size=(48, 40))
    cfg = PreprocessConfig(32)
    cal = C.calibrate(model, imgs[:8], cfg, method="minmax")          # tiny.minmax.calib.cache beside it
    bad = {t: s * 1e4 if t in ("flat", "gap") else s for t, s in cal.scales.items()}   # wipes out the classifier
    opts = B.BudgetOptions(speed_rounds=1, speed_run_s=0.02, threads=1, decode_workers=1)
    for scales, want_file in ((cal, cal.cache_path), (bad, None)):
        res = B.quantize_to_budget(model, imgs[8:], "0", scales=scales, preprocess=cfg, options=opts,
                                   flavours=("int8-cpu",))
        out = str(tmp_path / "tiny.int8-cpu.onnx")
        write_models(res, {"int8-cpu": out})
        meta = json.loads({p.key: p.value for p in onnx.load(out).metadata_props}[BUDGET_KEY])
        r = res.flavours["int8-cpu"]
        assert meta["float_layers"] == [x["layer"] for x in r.float_layers] and meta["flips"] == r.flips == 0
        cache = meta["calibration_cache"]
        if want_file:
            assert cache == {"method": "given", "file": os.path.basename(want_file),   # beside the model: its name
                             "sha256": fileio.sha256_file(want_file)}
        else:                                                            # scales from memory: no file holds them
            assert cache["file"] is None and cache["sha256"] == hashlib.sha256(format_cache(bad).encode()).hexdigest()
            assert "fc" in meta["float_layers"]                          # the sabotaged classifier kept float
        info = inspect_file(out)
        assert info["budget"]["max_flips"] == "0" and info["budget"]["expected_flips"] == r.expected_flips
        text = format_inspection(info)
        assert "flip budget: --max-flips 0 = 0 of 16 check images" in text and "measured 0 flips" in text
        assert f"kept in float: {len(meta['float_layers'])} layer(s)" in text
        assert all(n in text for n in meta["float_layers"]) and f"sha256 {cache['sha256']}" in text
        assert (f"cache {os.path.basename(want_file)} (beside the model)" in text if want_file
                else "no cache file found" in text)
    assert "flip budget" not in format_inspection(inspect_file(model))  # a plain model says nothing of one
