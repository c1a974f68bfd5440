"""Calibration: data reader, range algorithms, TensorRT cache format, cache reuse and
validation, calibration-set building. Real ONNX Runtime on small ONNX graphs built
here and real images from ../shared/datasets (skipped when absent)."""
import json
import os
import struct

import numpy as np
import pytest

from ofconvert import calibration as C
from ofconvert.config import PreprocessConfig
from ofconvert.errors import CalibrationCacheError, DataError, OfconvertError
from ofconvert.fileio import sha256_file

CFG = PreprocessConfig(32, crop_pct=0.875)


# ---------------------------------------------------------------------------
# a small real CNN (Conv-BN-Relu, residual Add, GAP, Gemm)
# ---------------------------------------------------------------------------
def tiny_cnn(path, size=32, seed=0, bn=True, classes=10, explicit_pad=False):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def init(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a, np.float32), name))
        return name

    def conv(x, cin, cout, name, relu=True):
        w = init(name + ".w", rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (cin * 9)))
        out = name + ".conv"
        if explicit_pad and x != "input":   # TF-style "same" padding as its own op (efficientnet export)
            pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), name + ".pads")
            inits.append(pads)
            nodes.append(helper.make_node("Pad", [x, pads.name], [name + ".pad"], name=name + "_pad"))
            x = name + ".pad"
        nodes.append(helper.make_node("Conv", [x, w], [out], name=name, pads=[0, 0, 0, 0] if explicit_pad and
                                      x.endswith(".pad") else [1, 1, 1, 1]))
        if bn:
            p = [init(name + s, v) for s, v in ((".g", rng.uniform(0.5, 1.5, cout)), (".b", rng.normal(0, .1, cout)),
                                                (".m", rng.normal(0, .1, cout)), (".v", rng.uniform(0.5, 2, cout)))]
            nodes.append(helper.make_node("BatchNormalization", [out] + p, [name + ".bn"], name=name + "_bn"))
            out = name + ".bn"
        if relu:
            nodes.append(helper.make_node("Relu", [out], [name + ".relu"], name=name + "_relu"))
            out = name + ".relu"
        return out

    x = conv("input", 3, 8, "stem")
    y = conv(conv(x, 8, 8, "c1"), 8, 8, "c2", relu=False)
    nodes += [helper.make_node("Add", [x, y], ["res"], name="add"),
              helper.make_node("Relu", ["res"], ["res.relu"], name="add_relu"),
              helper.make_node("GlobalAveragePool", ["res.relu"], ["gap"], name="gap"),
              helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", init("fc.w", rng.standard_normal((classes, 8)) * 0.5),
                                        init("fc.b", rng.normal(0, .1, classes))], ["logits"], name="fc", transB=1)]
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])
    g = helper.make_graph(nodes, "tiny", [inp],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    m.metadata_props.add(key="ofconvert.preprocess", value=PreprocessConfig(size).to_json())
    m.metadata_props.add(key="ofconvert.model", value="tiny")
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return str(path)


def write_images(folder, n=6, size=(40, 30), seed=0):
    """n small RGB JPEGs with distinct content."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = os.path.join(folder, f"img{i:02d}.jpg")
        Image.fromarray(rng.integers(0, 256, size[::-1] + (3,), dtype=np.uint8)).save(p, quality=90)
        paths.append(p)
    return paths


@pytest.fixture
def tiny(tmp_path):
    return tiny_cnn(tmp_path / "tiny.onnx")


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    write_images(str(folder))
    return str(folder)


# ---------------------------------------------------------------------------
# cache format
# ---------------------------------------------------------------------------
def test_cache_text_is_tensorrt_format(tmp_path):
    scales = {"input": 1.0 / 127, "conv/out:0": 0.5, "zero": 0.0}
    path = tmp_path / "a.cache"
    C.write_cache(path, scales)
    lines = path.read_text().split("\n")
    assert lines[0] == f"TRT-{C.TRT_CACHE_VERSION}-EntropyCalibration2"
    assert lines[-1] == ""  # every entry ends with a newline
    # big-endian IEEE-754 bits of the float32 scale, 8 hex digits
    assert lines[1] == "input: " + struct.pack(">f", 1.0 / 127).hex() == "input: 3c010204"
    assert lines[2] == "conv/out:0: 3f000000"
    assert lines[3] == "zero: 00000000"
    back = C.read_cache(path)
    assert list(back) == list(scales)
    assert back["input"] == pytest.approx(1.0 / 127, rel=1e-7)
    assert back["conv/out:0"] == 0.5


def test_reads_a_cache_written_by_tensorrt():
    # the example documented in ONNX Runtime's TensorRT provider (ReadDynamicRange):
    # "TRT-7103-EntropyCalibration2 / data_0: 4000889d" is data_0's scale 2.008338;
    # TensorRT drops leading zeros ("0" for a zero scale)
    header, scales = C.parse_cache(
        "TRT-7103-EntropyCalibration2\ndata_0: 4000889d\n(Unnamed Layer* 64) [Shuffle]_output: 0\n")
    assert header == {"version": 7103, "calibrator": "EntropyCalibration2"}
    assert scales["data_0"] == pytest.approx(2.008338, abs=1e-6)
    assert scales["(Unnamed Layer* 64) [Shuffle]_output"] == 0.0


@pytest.mark.parametrize("text,match", [
    ("", "empty"),
    ("ONNXRT-CALIB\ninput: 3c010204\n", "foreign header"),
    ("TRT-8601-EntropyCalibration2\ninput 3c010204\n", "line 2: garbled"),
    ("TRT-8601-EntropyCalibration2\ninput: 3c01zz04\n", "garbled"),
    ("TRT-8601-EntropyCalibration2\ninput: 3c010204\nconv: 3c01", "truncated"),
    ("TRT-8601-EntropyCalibration2\ninput: 3c010204\ninput: 3c010204\n", "duplicate"),
    ("TRT-8601-EntropyCalibration2\ninput: 7fc00000\n", "invalid scale"),   # NaN
    ("TRT-8601-EntropyCalibration2\ninput: bf800000\n", "invalid scale"),   # -1.0
])
def test_corrupt_cache_text_is_rejected(text, match):
    with pytest.raises(CalibrationCacheError, match=match):
        C.parse_cache(text, "x.cache")


def test_binary_cache_is_rejected(tmp_path):
    p = tmp_path / "bin.cache"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(CalibrationCacheError, match="not text"):
        C.read_cache(p)


def test_trt_version_number():
    assert C.trt_version_number("8.6.1") == 8601
    assert C.trt_version_number("10.14.1.48") == 101401
    assert C.format_cache({"a": 1.0}, version=101401).startswith("TRT-101401-EntropyCalibration2\n")


# ---------------------------------------------------------------------------
# algorithms
# ---------------------------------------------------------------------------
def _entropy_reference(hist, width, nq=128):
    """Straightforward loop of the EntropyCalibration2 recipe (pytorch-quantization's
    _compute_amax_entropy, with the non-empty mask taken on P)."""
    n = len(hist)
    best = (np.inf, n)
    for i in range(nq, n + 1):
        p = hist[:i].astype(float).copy()
        p[-1] += hist[i:].sum()
        groups = (np.arange(i) * nq) // i
        nz = p > 0
        q = np.zeros(i)
        for g in range(nq):
            m = groups == g
            q[m & nz] = hist[:i][m].sum() / max(nz[m].sum(), 1)
        pn, qn = p / p.sum(), q / q.sum()
        with np.errstate(all="ignore"):
            kl = np.sum(np.where(pn > 0, pn * np.log(pn / qn), 0.0))
        if np.isfinite(kl) and kl < best[0]:
            best = (kl, i)
    return best[1] * width


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_entropy_matches_reference_loop(seed):
    rng = np.random.default_rng(seed)
    if seed == 0:
        x = np.abs(rng.standard_normal(200_000))
        hist = np.histogram(x, 512, (0, x.max()))[0].astype(float)
    else:  # sparse, with empty bins and a lone outlier bin
        hist = rng.integers(0, 50, 512).astype(float)
        hist[rng.random(512) < 0.3] = 0
        hist[300:500] = 0
        hist[-1] = seed
    got = C.entropy_amax(hist, 0.01, num_quant_bins=64)
    assert got == pytest.approx(_entropy_reference(hist, 0.01, nq=64))


def test_range_methods_on_known_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(400_000).astype(np.float32)
    amax = {}
    for method in C.METHODS:
        col = C.RangeCollector(method, C.CalibrationOptions())
        for part in np.array_split(x, 4):   # streamed: the histogram range grows between batches
            col.collect("t", part)
        amax[method] = col.compute("t")
    assert amax["minmax"] == pytest.approx(np.abs(x).max())
    # 99.99th percentile of |N(0,1)| is 3.89
    assert amax["percentile"] == pytest.approx(3.89, abs=0.05)
    # KL clips the tails of a Gaussian, but keeps well over 2 sigma
    assert 2.5 < amax["entropy"] < amax["minmax"]


def test_entropy_ignores_exact_zeros():
    # a ReLU6 output: half exact zeros, the rest spread over (0, 6]
    rng = np.random.default_rng(0)
    x = np.where(rng.random(300_000) < 0.5, 0.0, rng.uniform(0, 6, 300_000)).astype(np.float32)
    col = C.RangeCollector("entropy", C.CalibrationOptions())
    col.collect("t", x)
    assert col.compute("t") > 5.5


def test_unknown_method(tiny, images):
    with pytest.raises(OfconvertError, match="unknown calibration method"):
        C.calibrate(tiny, images, CFG, method="kl")


# ---------------------------------------------------------------------------
# data reader
# ---------------------------------------------------------------------------
def _bad_files(folder):
    from PIL import Image

    rgb = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("L").save(os.path.join(folder, "gray.jpg"))
    Image.fromarray(rgb).convert("CMYK").save(os.path.join(folder, "cmyk.jpg"))
    Image.fromarray(np.dstack([rgb, np.full((30, 40), 128, np.uint8)])).save(os.path.join(folder, "alpha.png"))
    good = open(os.path.join(folder, "img00.jpg"), "rb").read()
    open(os.path.join(folder, "truncated.jpg"), "wb").write(good[: len(good) // 3])
    open(os.path.join(folder, "notimage.jpg"), "w").write("this is text")
    open(os.path.join(folder, "readme.txt"), "w").write("ignored: not an image extension")


def test_reader_skips_bad_files_and_converts_modes(tmp_path):
    folder = str(tmp_path / "mixed")
    write_images(folder, n=2)
    _bad_files(folder)
    paths = C.list_calibration_images(folder)
    assert [os.path.basename(p) for p in paths] == sorted(os.path.basename(p) for p in paths)
    assert "readme.txt" not in {os.path.basename(p) for p in paths}
    reader = C.ImageCalibrationDataReader(paths, CFG, "input", batch_size=3)
    batches = list(reader)
    assert sum(b["input"].shape[0] for b in batches) == 5          # 2 RGB + gray + cmyk + alpha
    assert all(b["input"].shape[1:] == (3, 32, 32) and b["input"].dtype == np.float32 for b in batches)
    assert sorted(os.path.basename(p) for p in reader.skipped) == ["notimage.jpg", "truncated.jpg"]
    # deterministic: a rewind gives the same data
    again = list(reader)
    assert all(np.array_equal(a["input"], b["input"]) for a, b in zip(batches, again))


def test_empty_or_missing_calibration_data(tmp_path, tiny):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        C.calibrate(tiny, str(tmp_path / "empty"), CFG)
    with pytest.raises(DataError, match="not found"):
        C.calibrate(tiny, str(tmp_path / "nope"), CFG)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_text("not an image")
    with pytest.raises(DataError, match="no readable calibration images"):
        C.calibrate(tiny, str(junk), CFG)


def test_num_images_is_an_even_deterministic_subset(images):
    all_paths = C.list_calibration_images(images)
    sub = C.list_calibration_images(images, num_images=3)
    assert sub == [all_paths[0], all_paths[2], all_paths[4]]
    assert C.list_calibration_images(images, num_images=100) == all_paths
    with pytest.raises(DataError):
        C.list_calibration_images(images, num_images=0)


# ---------------------------------------------------------------------------
# calibrate: write, reuse, validate
# ---------------------------------------------------------------------------
def test_calibration_tensors_of_tiny_model(tiny):
    import onnx

    tensors, sources = C.calibration_plan(onnx.load(tiny))
    # conv/gemm inputs, both residual-add inputs, the pooling input (cpu flavour), and
    # the GAP output whose range the Flatten output reuses
    assert tensors == ["input", "stem.relu", "c1.relu", "c2.bn", "res.relu", "gap", "flat"]
    assert sources["flat"] == "gap" and sources["c2.bn"] == "c2.bn"
    assert C.calibration_tensors(onnx.load(tiny)) == tensors


def test_calibrate_writes_cache_and_sidecar_then_reuses_without_decoding(tiny, images, monkeypatch):
    import ofconvert.data

    decoded = []
    real = ofconvert.data.load_and_crop

    def spy(path, cfg, **kw):
        decoded.append(path)
        return real(path, cfg, **kw)

    monkeypatch.setattr(ofconvert.data, "load_and_crop", spy)
    res = C.calibrate(tiny, images, CFG, method="percentile")
    assert not res.reused and res.num_images == 6 and res.skipped == 0 and len(decoded) == 6
    assert res.cache_path == tiny[:-5] + ".percentile.calib.cache"
    assert res.sidecar_path == res.cache_path + ".json"
    meta = json.load(open(res.sidecar_path))
    assert meta["method"] == "percentile" and meta["num_images"] == 6
    assert meta["model_sha256"] == sha256_file(tiny)
    assert meta["preprocess_config"]["input_size"] == 32
    assert C.read_cache(res.cache_path) == res.scales
    assert all(s > 0 for s in res.scales.values())

    def no_decoding(*a, **k):
        raise AssertionError("a reused cache must not decode images")

    monkeypatch.setattr(ofconvert.data, "load_and_crop", no_decoding)
    again = C.calibrate(tiny, images, CFG, method="percentile")
    assert again.reused and again.scales == res.scales and again.num_images == 6


def test_each_method_has_its_own_cache(tiny, images):
    r1 = C.calibrate(tiny, images, CFG, method="minmax")
    r2 = C.calibrate(tiny, images, CFG, method="entropy")
    assert r1.cache_path != r2.cache_path and not r2.reused
    # minmax is the largest range any method may pick
    assert all(r2.scales[t] <= r1.scales[t] * (1 + 1e-6) for t in r1.scales)


def _corrupt(path, how):
    text = open(path).read()
    lines = text.split("\n")
    if how == "header":
        lines[0] = "MyCalibrator-v1"
    elif how == "garbled":
        lines[3] = lines[3].replace(": ", " = ")
    elif how == "truncated":
        open(path, "w").write(text[: len(text) - 5])
        return
    elif how == "missing":
        del lines[2]
    elif how == "extra":
        lines.insert(2, "not_a_tensor_of_this_model: 3c010204")
    open(path, "w").write("\n".join(lines))


@pytest.mark.parametrize("how,match", [
    ("header", "foreign header"), ("garbled", "garbled"), ("truncated", "truncated"),
    ("missing", "missing"), ("extra", "not in the model"),
])
def test_corrupt_cache_raises_or_regenerates(tiny, images, how, match):
    res = C.calibrate(tiny, images, CFG, method="minmax")
    _corrupt(res.cache_path, how)
    with pytest.raises(CalibrationCacheError, match=match):
        C.calibrate(tiny, images, CFG, method="minmax")
    fixed = C.calibrate(tiny, images, CFG, method="minmax", regenerate=True)
    assert not fixed.reused and fixed.scales == res.scales
    assert C.calibrate(tiny, images, CFG, method="minmax").reused


def test_edited_cache_with_valid_lines_is_caught_by_sidecar_hash(tiny, images):
    res = C.calibrate(tiny, images, CFG, method="minmax")
    scales = dict(res.scales)
    scales["input"] *= 4
    C.write_cache(res.cache_path, scales)
    with pytest.raises(CalibrationCacheError, match="modified after it was written"):
        C.calibrate(tiny, images, CFG, method="minmax")


def test_cache_for_another_model_or_images(tmp_path, tiny, images):
    res = C.calibrate(tiny, images, CFG, method="minmax")
    tiny_cnn(tiny, seed=1)   # same graph, other weights, same path
    with pytest.raises(CalibrationCacheError, match="made for another model"):
        C.calibrate(tiny, images, CFG, method="minmax")
    other = tmp_path / "other"
    write_images(str(other), seed=5)
    with pytest.raises(CalibrationCacheError, match="calibration images"):
        C.calibrate(tiny, str(other), CFG, method="minmax", cache_path=res.cache_path)
    new = C.calibrate(tiny, images, CFG, method="minmax", regenerate=True)
    assert not new.reused


def test_reexported_model_with_renamed_constants_reuses_the_cache(tiny, images):
    """Two exports of one model name their initializers differently (const390 vs
    const397): the cache keys on graph + weight values, not on the file bytes."""
    import onnx

    res = C.calibrate(tiny, images, CFG, method="minmax")
    m = onnx.load(tiny)
    renamed = {t.name: f"const{k + 100}" for k, t in enumerate(m.graph.initializer)}
    for t in m.graph.initializer:
        t.name = renamed[t.name]
    for n in m.graph.node:
        n.input[:] = [renamed.get(i, i) for i in n.input]
        n.name = n.name + "_x"
    m.metadata_props.add(key="ofconvert.exported_at", value="later")
    onnx.save(m, tiny)
    again = C.calibrate(tiny, images, CFG, method="minmax")
    assert again.reused and again.scales == res.scales


def test_cache_without_sidecar_is_not_trusted(tiny, images):
    res = C.calibrate(tiny, images, CFG, method="minmax")
    os.unlink(res.sidecar_path)
    with pytest.raises(CalibrationCacheError, match="no sidecar"):
        C.calibrate(tiny, images, CFG, method="minmax")


def test_preprocessing_from_model_metadata(tiny, images):
    res = C.calibrate(tiny, images, None, method="minmax")
    assert json.load(open(res.sidecar_path))["preprocess_config"]["input_size"] == 32


# ---------------------------------------------------------------------------
# calibration set
# ---------------------------------------------------------------------------
def test_build_calib_set_from_image_folder(tmp_path, tiny):
    src = tmp_path / "train"
    for k, cls in enumerate(["n02", "n01", "n03"]):
        write_images(str(src / cls), n=3, seed=k)
    (src / "n04_empty").mkdir()
    (src / "stray.txt").write_text("x")
    dst = tmp_path / "calib" / "set"
    manifest = C.build_calib_set(src, dst, per_class=2)
    assert manifest == str(dst / "manifest.txt")
    lines = open(manifest).read().splitlines()
    assert [os.path.basename(os.path.dirname(p)) + "/" + os.path.basename(p) for p in lines] == [
        "n01/img00.jpg", "n01/img01.jpg", "n02/img00.jpg", "n02/img01.jpg", "n03/img00.jpg", "n03/img01.jpg"]
    assert not any(os.path.isabs(p) for p in lines)
    info = json.load(open(dst / "manifest.json"))
    assert info["classes"] == 3 and info["images"] == 6 and info["per_class"] == 2
    assert not any(f.endswith(".jpg") for f in os.listdir(dst))   # nothing copied
    assert C.build_calib_set(src, dst, per_class=2) == manifest and open(manifest).read().splitlines() == lines
    # the manifest drives calibration; same images from the folder hash the same
    paths = C.list_calibration_images(manifest)
    assert all(os.path.isfile(p) for p in paths)
    assert C.list_calibration_images(dst) == paths    # --calib calib/imagenet1k: the folder's manifest
    res = C.calibrate(tiny, manifest, CFG, method="minmax")
    assert res.num_images == 6


def test_build_calib_set_bad_input(tmp_path):
    flat = tmp_path / "flat"
    write_images(str(flat), n=2)
    with pytest.raises(DataError, match="not an ImageFolder"):
        C.build_calib_set(flat, tmp_path / "out")
    with pytest.raises(DataError, match="not found"):
        C.build_calib_set(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(DataError, match="per-class"):
        C.build_calib_set(flat, tmp_path / "out", per_class=0)


def test_manifest_with_missing_file(tmp_path, tiny):
    m = tmp_path / "manifest.txt"
    m.write_text("# comment\n\ndoes/not/exist.jpg\n")
    with pytest.raises(DataError, match="not found"):
        C.calibrate(tiny, str(m), CFG)


def test_calibrate_real_images(datasets, tiny):
    """The ImageNet calibration-set layout (imagenet-sample-1000: one class per folder,
    full-resolution JPEGs) through build_calib_set + calibrate."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        manifest = C.build_calib_set(os.path.join(datasets, "imagenet-sample-1000"), d)
        assert len(open(manifest).read().splitlines()) == 1000
        res = C.calibrate(tiny, manifest, CFG, method="entropy", num_images=8, cache_path=os.path.join(d, "c.cache"))
        assert res.num_images == 8 and res.skipped == 0
        assert C.calibrate(tiny, manifest, CFG, method="entropy", num_images=8,
                           cache_path=os.path.join(d, "c.cache")).reused
