"""The evaluator: uint8 preprocessing cache, variants in subprocesses, top-1/top-5 and
mismatch counting, n/a and error rows, reports and the CLI.

Most tests use tiny real ONNX models (AveragePool -> Gemm, built with
onnx.helper, run by the real ONNX Runtime) on the real images of
imagenet-stubs-16, so the expected predictions can be recomputed independently in
numpy; one test runs efficientnet_lite0 (the session's real export)."""
import json
import os

import numpy as np
import pytest
from conftest import has_traceback, needs_oneflow, run_tool

from ofconvert.config import METADATA_KEY, PreprocessConfig
from ofconvert.data import load_and_crop, normalize
from ofconvert.datasets import load_dataset
from ofconvert.errors import OfconvertError
from ofconvert.evaluation import (
    EvalOptions,
    Evaluator,
    Variant,
    evaluate,
    expand_variants,
    format_csv,
    format_markdown,
    model_file,
    write_reports,
)
from ofconvert.preprocache import CacheOptions, get_cached_images

TINY_PRE = PreprocessConfig(32, crop_pct=0.875, interpolation="bilinear")


def _tiny_onnx(path, weights, pre=TINY_PRE, fp16=False, pretrained=True, classes=1000):
    """logits = flatten(2x2 average pool of x) @ W + b (12 features); preprocessing and
    weights kind in the metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w, b = weights
    dt = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    npdt = np.float16 if fp16 else np.float32
    s = pre.input_size
    graph = helper.make_graph(
        [helper.make_node("AveragePool", ["input"], ["pooled"], kernel_shape=[s // 2, s // 2],
                          strides=[s // 2, s // 2]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("Gemm", ["flat", "W", "B"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("input", dt, ["N", 3, s, s])],
        [helper.make_tensor_value_info("logits", dt, ["N", classes])],
        [numpy_helper.from_array(w.astype(npdt), "W"), numpy_helper.from_array(b.astype(npdt), "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for k, v in ((METADATA_KEY, pre.to_json()), ("ofconvert.pretrained", "true" if pretrained else "false")):
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(model, str(path))
    return str(path)


def _weights(seed, classes=1000):
    rng = np.random.RandomState(seed)
    return rng.randn(12, classes).astype(np.float32), rng.randn(classes).astype(np.float32) * 0.1


def _pooled(paths, pre=TINY_PRE):
    x = normalize(np.stack([load_and_crop(p, pre) for p in paths]), pre)
    h = pre.input_size // 2
    return x.reshape(len(x), 3, 2, h, 2, h).mean(axis=(3, 5)).reshape(len(x), 12)


def _numpy_logits(paths, weights, pre=TINY_PRE):
    return _pooled(paths, pre) @ weights[0] + weights[1]


def _prototype_weights(paths, labels, moved=0, scale=10.0):
    """Nearest-prototype classifier as one Gemm: logit_k = scale * (2 c_k.x - |c_k|^2),
    c_k = pooled colour of the image labelled k (other classes: bias -1e3). With
    ``moved`` = m, the prototypes of the first m images serve class label+1 instead,
    so exactly those images change prediction."""
    c = _pooled(paths)
    w = np.zeros((12, 1000), np.float32)
    b = np.full(1000, -1e3, np.float32)
    for i, (ci, lab) in enumerate(zip(c, labels)):
        k = (lab + 1) % 1000 if i < moved else lab
        w[:, k] = scale * 2 * ci
        b[k] = -scale * float(ci @ ci)
    return w, b


@pytest.fixture
def stubs(datasets):
    return os.path.join(datasets, "imagenet-stubs-16")


@pytest.fixture
def tiny_dir(tmp_path):
    """tiny.onnx (fp32, W1), tiny.fp16.onnx (fp16, *different* weights W2, so that
    mismatches exist and are known), badout.onnx (wrong logits shape)."""
    d = tmp_path / "models"
    d.mkdir()
    _tiny_onnx(d / "tiny.onnx", _weights(1))
    _tiny_onnx(d / "tiny.fp16.onnx", _weights(2), fp16=True)
    _tiny_onnx(d / "rnd.onnx", _weights(3), pretrained=False)
    _tiny_onnx(d / "badout.onnx", _weights(4, classes=3), classes=3)
    return str(d)


def _opts(tmp_path, tiny_dir, **kw):
    base = dict(models_dir=tiny_dir, progress=False, batch_size=5, threads=1,
                cache=CacheOptions(cache_dir=str(tmp_path / "cache"), workers=1))
    base.update(kw)
    return EvalOptions(**base)


# -- variants ---------------------------------------------------------------------------------

def test_variant_parsing_and_expansion():
    assert Variant.parse("ort-cpu:fp16") == Variant("ort-cpu", "fp16")
    assert Variant.parse("trt") == Variant("trt", "fp32")
    for bad in ("tensorflow:fp32", "ort-cpu:bf16", "oneflow:fp16"):
        with pytest.raises(OfconvertError):
            Variant.parse(bad)
    vs = expand_variants(["oneflow", "ort-cpu"], ["fp32", "int8"])
    assert [str(v) for v in vs] == ["oneflow:fp32", "ort-cpu:fp32", "ort-cpu:int8"]
    assert model_file("/m", "x", Variant("ort-cpu", "int8")) == "/m/x.int8-cpu.onnx"
    assert model_file("/m", "x", Variant("ort-cuda", "int8")) == "/m/x.int8.onnx"
    assert model_file("/m", "x", Variant("trt", "fp16")) == "/m/x.fp16.engine"


# -- the preprocessing cache ----------------------------------------------------------------------

def _odd_images(folder):
    """CMYK JPEG, grayscale PNG, RGBA PNG, 16-bit PNG, palette BMP, a truncated JPEG
    and a text file named .jpg. Returns (paths, names expected to be skipped)."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(0)
    rgb = Image.fromarray(rng.randint(0, 255, (60, 80, 3), dtype=np.uint8))
    rgb.convert("CMYK").save(os.path.join(folder, "cmyk.jpg"))
    rgb.convert("L").save(os.path.join(folder, "gray.png"))
    rgb.convert("RGBA").save(os.path.join(folder, "rgba.png"))
    Image.fromarray((rng.randint(0, 65535, (50, 50))).astype(np.uint16)).save(os.path.join(folder, "i16.png"))
    rgb.convert("P").save(os.path.join(folder, "palette.bmp"))
    rgb.save(os.path.join(folder, "full.jpg"), quality=90)
    data = open(os.path.join(folder, "full.jpg"), "rb").read()
    open(os.path.join(folder, "truncated.jpg"), "wb").write(data[: len(data) // 3])
    open(os.path.join(folder, "text.jpg"), "w").write("not an image")
    names = ["cmyk.jpg", "full.jpg", "gray.png", "i16.png", "palette.bmp", "rgba.png", "text.jpg", "truncated.jpg"]
    return [os.path.join(folder, n) for n in names], {"text.jpg", "truncated.jpg"}


def test_cache_matches_reference_preprocessing_in_parallel_and_is_reused(stubs, tmp_path):
    paths = load_dataset(stubs).paths[:10]
    opts = CacheOptions(cache_dir=str(tmp_path), workers=2)      # spawn-started worker processes
    c = get_cached_images(paths, TINY_PRE, opts)
    assert not c.hit and c.skipped == {} and c.workers == 2
    arr = c.array
    assert arr.dtype == np.uint8 and arr.shape == (10, 32, 32, 3)
    for i, p in enumerate(paths):
        assert np.array_equal(arr[i], load_and_crop(p, TINY_PRE)), p
    mtime = os.path.getmtime(c.npy_path)
    again = get_cached_images(paths, TINY_PRE, opts)
    assert again.hit and again.npy_path == c.npy_path and os.path.getmtime(c.npy_path) == mtime
    other = get_cached_images(paths, PreprocessConfig(40), opts)            # another preprocessing
    assert other.npy_path != c.npy_path and other.array.shape == (10, 40, 40, 3)
    leftovers = [f for f in os.listdir(os.path.dirname(c.npy_path)) if f.endswith(".tmp")]
    assert leftovers == []
    with open(c.index_path) as f:
        index = json.load(f)
    assert index["paths"] == [os.path.abspath(p) for p in paths] and index["skipped"] == []


def test_cache_key_follows_file_changes(tmp_path):
    paths, _ = _odd_images(str(tmp_path / "img"))
    opts = CacheOptions(cache_dir=str(tmp_path / "c"), workers=1)
    first = get_cached_images(paths[:3], TINY_PRE, opts)
    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))   # the image changed
    second = get_cached_images(paths[:3], TINY_PRE, opts)
    assert not second.hit and second.npy_path != first.npy_path


def test_odd_images_are_converted_or_skipped_and_counted(tmp_path):
    paths, bad = _odd_images(str(tmp_path / "img"))
    c = get_cached_images(paths, TINY_PRE, CacheOptions(cache_dir=str(tmp_path / "c"), workers=2))
    assert c.workers == 2 and {os.path.basename(p) for p in c.skipped} == bad
    assert all(c.skipped.values())                                        # a reason for each
    valid = c.valid
    assert [os.path.basename(paths[i]) for i in valid] == sorted(set(map(os.path.basename, paths)) - bad)
    for i in valid:
        assert np.array_equal(c.array[i], load_and_crop(paths[i], TINY_PRE))
    with open(c.index_path) as f:
        assert {os.path.basename(s["path"]) for s in json.load(f)["skipped"]} == bad


def test_fast_decode_stays_close_to_exact(datasets, tmp_path):
    """Draft-mode decoding only touches JPEGs much larger than the resize size; where it
    does, pixels stay within the tolerance stated in docs/eval.md."""
    from PIL import Image

    root = os.path.join(datasets, "imagenet-sample-1000")
    big = [p for p in load_dataset(root).paths[:200] if min(Image.open(p).size) >= 512][:6]
    if not big:
        pytest.skip("no large JPEG among the first 200 images")
    pre = PreprocessConfig(224, interpolation="bicubic")
    exact = get_cached_images(big, pre, CacheOptions(cache_dir=str(tmp_path), workers=1)).array
    fast = get_cached_images(big, pre, CacheOptions(cache_dir=str(tmp_path), workers=1, fast_decode=True)).array
    diff = np.abs(exact.astype(np.int16) - fast.astype(np.int16)).reshape(len(big), -1).mean(axis=1)
    assert diff.max() > 0            # it did take the fast path
    assert diff.max() < 12.0         # docs/eval.md: mean abs diff per changed image <= ~11 grey levels


# -- evaluation -------------------------------------------------------------------------------------

def test_top1_top5_and_mismatches_match_numpy(stubs, tmp_path, tiny_dir):
    ds = load_dataset(stubs)
    w1, w2 = _prototype_weights(ds.paths, ds.labels), _prototype_weights(ds.paths, ds.labels, moved=3)
    d = tiny_dir
    _tiny_onnx(os.path.join(d, "proto.onnx"), w1)
    _tiny_onnx(os.path.join(d, "proto.fp16.onnx"), w2, fp16=True)
    l1, l2 = _numpy_logits(ds.paths, w1), _numpy_logits(ds.paths, w2)
    for logits in (l1, l2):   # the expectations must not hinge on near-ties / fp16 rounding
        top2 = np.sort(logits, axis=1)[:, -2:]
        assert (top2[:, 1] - top2[:, 0]).min() > 2.0
    labels = np.array(ds.labels)
    rows = evaluate(stubs, ["proto"], ["ort-cpu:fp32", "ort-cpu:fp16"], reference="ort-cpu:fp32",
                    options=_opts(tmp_path, tiny_dir))
    ref, half = rows
    assert ref.is_reference and ref.status == "ok" and ref.mismatches == 0 and ref.images == 16
    assert ref.top1 == pytest.approx(np.mean(l1.argmax(1) == labels))
    top5 = np.argsort(-l1, axis=1)[:, :5]
    assert ref.top5 == pytest.approx(np.mean((top5 == labels[:, None]).any(1)))
    expected = np.nonzero(l1.argmax(1) != l2.argmax(1))[0]
    assert list(expected) == [0, 1, 2]
    assert half.status == "ok" and half.mismatches == len(expected)
    assert [m["path"] for m in half.mismatched] == [os.path.basename(ds.paths[i]) for i in expected]
    assert [m["reference"] for m in half.mismatched] == list(l1.argmax(1)[expected])
    assert [m["prediction"] for m in half.mismatched] == list(l2.argmax(1)[expected])
    assert [m["label"] for m in half.mismatched] == list(labels[expected])
    assert half.images_per_s > 0 and ref.pretrained


def test_unavailable_and_failing_variants_become_rows_not_crashes(stubs, tmp_path, tiny_dir):
    opts = _opts(tmp_path, tiny_dir, limit=6, produce_missing=False)
    rows = evaluate(stubs, ["tiny", "badout"], ["ort-cpu:fp32", "ort-cpu:int8", "trt:fp16"],
                    reference="ort-cpu:fp32", options=opts)
    by = {(r.model, r.variant): r for r in rows}
    assert by["tiny", "ort-cpu:fp32"].status == "ok" and by["tiny", "ort-cpu:fp32"].images == 6
    int8 = by["tiny", "ort-cpu:int8"]
    assert int8.status == "n/a" and "tiny.int8-cpu.onnx not found" in int8.reason
    trt = by["tiny", "trt:fp16"]
    assert trt.status == "n/a" and "tiny.fp16.engine" in trt.reason
    bad = by["badout", "ort-cpu:fp32"]
    assert bad.status == "error" and "logits" in bad.reason
    assert by["badout", "ort-cpu:int8"].mismatches is None
    table = format_markdown(rows)
    assert "n/a [" in table and "error [" in table and "tiny.int8-cpu.onnx not found" in table
    produced = evaluate(stubs, ["tiny"], ["ort-cpu:fp32", "ort-cpu:int8"], reference="ort-cpu:fp32",
                        options=_opts(tmp_path, tiny_dir, limit=6, produce_missing=True))
    assert produced[1].status == "n/a" and "not a zoo model" in produced[1].reason


def test_random_weight_models_are_marked_and_reports_written(stubs, tmp_path, tiny_dir):
    ev = Evaluator(stubs, ["tiny", "rnd"], ["ort-cpu:fp32", "ort-cpu:fp16"], reference="ort-cpu:fp32",
                   options=_opts(tmp_path, tiny_dir, limit=8))
    rows = ev.run()
    assert {r.model: r.pretrained for r in rows} == {"tiny": True, "rnd": False}
    table = format_markdown(rows)
    assert "| rnd †" in table and "| tiny |" in table and "random weights" in table
    assert "/ ref" in table
    paths = write_reports(rows, str(tmp_path / "out"), {"dataset": ev.dataset.root})
    with open(paths["json"]) as f:
        js = json.load(f)
    for r, jr in zip(rows, js["rows"]):
        assert (jr["mismatches"] or 0) == len(jr["mismatched"]) and jr["top5"] == r.top5
    assert format_csv(rows).count("\n") == len(rows) + 1
    with open(paths["png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert ev.caches and all(c.hit is False for c in ev.caches.values())
    again = Evaluator(stubs, ["tiny"], ["ort-cpu:fp32"], reference="ort-cpu:fp32",
                      options=_opts(tmp_path, tiny_dir, limit=8))
    again.run()
    assert all(c.hit for c in again.caches.values())          # a second run costs inference only


def test_unknown_model_and_bad_data_are_user_errors(stubs, tmp_path, tiny_dir):
    with pytest.raises(OfconvertError, match="unknown model"):
        evaluate(stubs, ["nosuchmodel"], ["ort-cpu:fp32"], options=_opts(tmp_path, tiny_dir))
    with pytest.raises(OfconvertError, match="not found"):
        evaluate(str(tmp_path / "nope"), ["tiny"], ["ort-cpu:fp32"], options=_opts(tmp_path, tiny_dir))
    with pytest.raises(OfconvertError, match="limit"):
        evaluate(stubs, ["tiny"], ["ort-cpu:fp32"], options=_opts(tmp_path, tiny_dir, limit=-3))


def test_cli_prints_table_and_exits_2_on_user_errors(stubs, tmp_path, tiny_dir):
    ok = run_tool("eval.py", "--data", stubs, "--models", "tiny", "--variants", "ort-cpu:fp32,ort-cpu:fp16",
                  "--reference", "ort-cpu:fp32", "--models-dir", tiny_dir, "--limit", "4", "--threads", "1",
                  "--cache-dir", tmp_path / "cache", "--workers", "1", "--no-progress", "--out-dir", tmp_path / "o",
                  "--no-png")
    assert ok.returncode == 0, ok.stderr
    assert "| tiny |" in ok.stdout and "Top-5" in ok.stdout
    assert sorted(os.listdir(tmp_path / "o")) == ["eval.csv", "eval.json", "eval.md"]
    for args, msg in ((["--data", tmp_path / "nope", "--models", "tiny"], "not found"),
                      (["--data", stubs, "--models", "tiny", "--backends", "tensorflow"], "unknown backend")):
        bad = run_tool("eval.py", *args, "--models-dir", tiny_dir, "--no-progress")
        assert bad.returncode == 2 and not has_traceback(bad), bad.stderr
        assert msg in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_efficientnet_lite0_onnx_on_real_images(stubs, tmp_path, zoo_onnx):
    """The real export on 16 real photos: a regression floor for the whole chain
    (decode, cache, normalise, ORT) with the model's own preprocessing."""
    src = zoo_onnx("efficientnet_lite0")
    d = tmp_path / "m"
    d.mkdir()
    os.symlink(src, d / "efficientnet_lite0.onnx")
    rows = evaluate(stubs, ["efficientnet_lite0"], ["ort-cpu:fp32"], reference="ort-cpu:fp32",
                    options=_opts(tmp_path, str(d), batch_size=8, threads=2))
    assert rows[0].status == "ok" and rows[0].pretrained
    assert rows[0].top1 >= 12 / 16, rows[0]


@needs_oneflow
def test_oneflow_reference_in_its_own_process(stubs, tmp_path, zoo_onnx):
    src = zoo_onnx("efficientnet_lite0")
    d = tmp_path / "m"
    d.mkdir()
    os.symlink(src, d / "efficientnet_lite0.onnx")
    rows = evaluate(stubs, ["efficientnet_lite0"], ["oneflow:fp32", "ort-cpu:fp32"], reference="oneflow:fp32",
                    options=_opts(tmp_path, str(d), batch_size=8, threads=2))
    of, ort = rows
    assert of.is_reference and of.status == "ok" and ort.status == "ok"
    assert ort.mismatches <= 1 and abs(of.top1 - ort.top1) <= 1 / 16
