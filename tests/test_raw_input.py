"""Raw-image input (``--input-format uint8-nhwc``): the export wraps the model in a
OneFlow front doing cast, normalisation and transpose, validated against OneFlow on
the same uint8 images (real ones); fp16 keeps the uint8 input and the float32
normalisation; bench and eval feed the cached uint8 images as they are (ort-cpu)."""
import os

import numpy as np
import pytest

from ofconvert.errors import OfconvertError

pytest.importorskip("oneflow")
SIZE = 128   # efficientnet_lite0 (real weights) at a small crop: quick on the CPU


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from ofconvert.exporter import export
    from ofconvert.precision import to_fp16

    d = tmp_path_factory.mktemp("raw")
    raw = export("efficientnet_lite0", str(d / "lite_raw.onnx"), input_format="uint8-nhwc",
                 input_shape=(3, SIZE, SIZE), verbose=False)
    flt = export("efficientnet_lite0", str(d / "lite.onnx"), input_shape=(3, SIZE, SIZE), validate=False,
                 verbose=False)
    import onnx

    from ofconvert.config import METADATA_KEY
    from ofconvert.onnx_fix import set_metadata

    m = onnx.load(str(d / "lite.onnx"))   # a float export at a size other than the config's records no preprocessing
    onnx.save(set_metadata(m, {METADATA_KEY: _real_u8(0)[1].to_json()}), str(d / "lite.onnx"))
    for stem in ("lite_raw", "lite"):
        to_fp16(str(d / f"{stem}.onnx"), str(d / f"{stem}.fp16.onnx"))
    return d, raw, flt


def _real_u8(n, size=SIZE):
    import dataclasses

    from ofconvert.config import get_config
    from ofconvert.data import load_and_crop, real_images

    pre = dataclasses.replace(get_config("efficientnet_lite0").preprocess, input_size=size)
    return (np.stack([load_and_crop(p, pre) for p in real_images(n)]) if n else None), pre


def _run(path, x):
    from ofconvert.runners.onnxruntime import OnnxRuntimeRunner

    with OnnxRuntimeRunner(str(path), provider="cpu") as r:
        return r.infer(x), r.input_dtype


def test_export_is_validated_on_uint8_real_images(exported):
    import onnx

    d, raw, _ = exported
    v = raw.validation
    assert v.passed and v.real_images and {c.inputs for c in v.checks} == {"real", "random"}
    assert raw.input_format == "uint8-nhwc"
    m = onnx.load(str(d / "lite_raw.onnx"), load_external_data=False)
    dims = [x.dim_param or x.dim_value for x in m.graph.input[0].type.tensor_type.shape.dim]
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8 and dims == ["batch", SIZE, SIZE, 3]
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["ofconvert.input_format"] == "uint8-nhwc"
    assert f'"input_size": {SIZE}' in meta["ofconvert.preprocess"]
    ops = [n.op_type for n in m.graph.node if n.name in meta["ofconvert.preprocess_nodes"].split(",")]
    assert ops == ["Cast", "Sub", "Mul"]
    first = [n.op_type for n in m.graph.node if "input" in n.input]
    assert sorted(first) == ["Shape", "Transpose"]   # the transpose runs on uint8, before the cast


def test_same_numbers_as_the_float_model_on_normalised_images(exported):
    from ofconvert.data import normalize

    d, _, _ = exported
    u8, pre = _real_u8(6)
    y_raw, dt = _run(d / "lite_raw.onnx", u8)
    y_flt, _ = _run(d / "lite.onnx", normalize(u8, pre))
    assert dt == np.uint8
    np.testing.assert_allclose(y_raw, y_flt, rtol=0, atol=1e-4)
    assert (y_raw.argmax(1) == y_flt.argmax(1)).all()


def test_fp16_keeps_the_uint8_input_and_the_float32_normalisation(exported):
    import onnx

    from ofconvert.data import normalize

    d, _, _ = exported
    m = onnx.load(str(d / "lite_raw.fp16.onnx"))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    nodes = {n.name: n for n in m.graph.node}
    assert [nodes[k].op_type for k in ("raw_input_cast", "Sub_1", "Mul_2")] == ["Cast", "Sub", "Mul"]
    # no float16 round trip between the float32 normalisation nodes: one Cast to float16 after Mul
    assert nodes["Sub_1"].input[0] == nodes["raw_input_cast"].output[0]
    assert nodes["Mul_2"].input[0] == nodes["Sub_1"].output[0]
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["ofconvert.precision"] == "fp16" and "ofconvert.float_nodes" not in meta
    u8, pre = _real_u8(6)
    # the network's float16 input is the float model's, bit for bit
    cast = next(n for n in m.graph.node if n.input and n.input[0] == nodes["Mul_2"].output[0]).output[0]
    m.graph.output.append(onnx.helper.make_tensor_value_info(cast, onnx.TensorProto.FLOAT16, None))
    import onnxruntime as ort

    x16 = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run([cast], {"input": u8})[0]
    np.testing.assert_array_equal(x16, normalize(u8, pre).astype(np.float16))
    y_raw, _ = _run(d / "lite_raw.fp16.onnx", u8)
    y_flt, dt = _run(d / "lite.fp16.onnx", normalize(u8, pre))
    assert dt == np.float16
    # ONNX Runtime's CPU provider runs float16 through inserted casts, placed differently after the
    # front: logits agree to a float16 step or two (measured 0.016 on logits ~10), top-1 the same
    np.testing.assert_allclose(y_raw, y_flt, rtol=0, atol=0.1)
    assert (y_raw.argmax(1) == y_flt.argmax(1)).all()


def test_eval_and_bench_feed_the_uint8_images(exported, tmp_path):
    from ofconvert.bench import worker
    from ofconvert.data import datasets_root
    from ofconvert.evaluation import EvalOptions, evaluate
    from ofconvert.preprocache import CacheOptions

    d, _, _ = exported
    opts = EvalOptions(models_dir=str(d), limit=12, batch_size=5, progress=False, produce_missing=False,
                       cache=CacheOptions(cache_dir=str(tmp_path / "cache"), workers=1), isolate=False)
    data = os.path.join(datasets_root(), "imagenet-val-1300")
    rows = evaluate(data, ["lite", "lite_raw"], ["ort-cpu:fp32", "ort-cpu:fp16"], reference="ort-cpu:fp32",
                    options=opts)
    by = {(r.model, r.precision): r for r in rows}
    assert all(r.status == "ok" for r in rows), [r.reason for r in rows]
    assert by[("lite_raw", "fp32")].input_format == "uint8-nhwc" and by[("lite", "fp32")].input_format == ""
    assert by[("lite_raw", "fp32")].top1 == by[("lite", "fp32")].top1
    assert by[("lite_raw", "fp16")].mismatches == by[("lite", "fp16")].mismatches
    assert all(r.setup_seconds is not None and r.inference_seconds is not None for r in rows)
    job = dict(model="lite_raw", backend="ort-cpu", precision="fp32", batches=[2], inputs=["host"], warmup=1,
               iters=2, input_size=SIZE, path=str(d / "lite_raw.onnx"))
    row, = worker.run_job(job)
    assert row.get("status", "ok") == "ok" and row["img_per_s"] > 0


def test_bad_formats_are_one_line():
    from ofconvert.exporter import export

    with pytest.raises(OfconvertError, match="bad input format"):
        export("efficientnet_lite0", "/tmp/never.onnx", input_format="rgb24")
    with pytest.raises(OfconvertError, match="not with several inputs or --dynamic-size"):
        export("efficientnet_lite0", "/tmp/never.onnx", input_format="uint8-nhwc", dynamic_size=True)


def test_cli_flag_parses():
    from ofconvert.cli import _convert_parser

    a = _convert_parser().parse_args(["resnet50", "--input-format", "uint8-nhwc"])
    assert a.input_format == "uint8-nhwc"


def test_int8_calibrates_on_uint8_images(exported, tmp_path):
    """The calibration reader feeds a raw model uint8 NHWC batches; its int8 model
    computes what the float-input int8 model computes on the normalised images."""
    from ofconvert.calibration import calibrate
    from ofconvert.data import normalize, real_images
    from ofconvert.precision import quantize_qdq

    d, _, _ = exported
    u8, pre = _real_u8(8)
    calib = real_images(24)[8:]
    for stem in ("lite_raw", "lite"):
        cal = calibrate(str(d / f"{stem}.onnx"), calib, pre, method="minmax",
                        cache_path=str(tmp_path / f"{stem}.cache"))
        quantize_qdq(str(d / f"{stem}.onnx"), str(tmp_path / f"{stem}.int8-cpu.onnx"), cal.scales, target="cpu",
                     means=cal.means)
    y_raw, dt = _run(tmp_path / "lite_raw.int8-cpu.onnx", u8)
    y_flt, _ = _run(tmp_path / "lite.int8-cpu.onnx", normalize(u8, pre))
    assert dt == np.uint8
    np.testing.assert_allclose(y_raw, y_flt, rtol=0, atol=1e-4)


def test_an_unreadable_real_image_is_skipped_and_never_named(tmp_path, monkeypatch, datasets):
    """One corrupt file among the real validation images: both the float and the raw
    (uint8) validation inputs skip it, and the paths they report are the images used."""
    import shutil

    from ofconvert.config import get_config
    from ofconvert.data import REAL_SET, list_images
    from ofconvert.models.raw_input import uint8_images
    from ofconvert.validation import _make_inputs

    folder = tmp_path / REAL_SET
    folder.mkdir()
    for p in list_images(os.path.join(datasets, REAL_SET))[:3]:
        shutil.copy(p, folder)
    (folder / "ILSVRC2012_val_00000000.JPEG").write_bytes(b"not a jpeg")      # sorts first
    monkeypatch.setenv("OFCONVERT_DATASETS", str(tmp_path))
    pre = get_config("efficientnet_lite0").preprocess
    out, paths, note = uint8_images(pre, 4)
    assert note == "" and len(paths) == 3 and out["real"][0].shape == (3, 224, 224, 3)
    assert not any(p.endswith("00000000.JPEG") for p in paths)
    inputs, real_paths, note = _make_inputs(pre, [(3, 224, 224)], 4, True, True, 0)
    assert note == "" and len(real_paths) == 3 and not any(p.endswith("00000000.JPEG") for p in real_paths)
