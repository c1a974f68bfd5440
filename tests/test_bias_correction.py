"""Bias correction of the weight-rounding error (precision/bias.py), int32 biases
that fit, the per-channel means the calibration keeps for it, and the "mixed"
calibration method. Every model runs in ONNX Runtime."""
import json

import numpy as np
import pytest
from test_calibration import tiny_cnn, write_images
from test_precision import CFG, _run

from ofconvert import calibration as C
from ofconvert import precision as P
from ofconvert.precision.bias import weight_error_shift
from ofconvert.precision.common import BIAS_CORRECTED_KEY

S = 1.0 / 64   # activation scale: inputs below are multiples of it, exact after Q/DQ


def _model(path, op, cin=6, cout=4, group=1, bias=None, seed=0, weights=None):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    if op == "Conv":
        w = rng.standard_normal((cout, cin // group, 3, 3)).astype(np.float32) if weights is None else weights
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="layer", group=group)
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin, 5, 5])
    else:
        w = rng.standard_normal((cout, cin)).astype(np.float32) if weights is None else weights
        node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="layer", transB=1)
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", cin])
    b = rng.standard_normal(cout).astype(np.float32) if bias is None else np.asarray(bias, np.float32)
    yshape = ["N", cout, 3, 3] if op == "Conv" else ["N", cout]
    g = helper.make_graph([node], "one", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, yshape)],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, str(path))
    return str(path), w


@pytest.mark.parametrize("op,group", [("Conv", 1), ("Conv", 6), ("Conv", 2), ("Gemm", 1)])
def test_corrected_layer_matches_fp32_on_inputs_at_their_mean(tmp_path, op, group):
    """A constant input (each channel at its mean) sees exactly the mean shift: with
    the correction the int8 layer's output equals fp32's there; without it, it is
    off by (Wq - W) . E[x], which is what weight_error_shift computes."""
    cout = 6 if group == 6 else 4
    src, w = _model(tmp_path / "m.onnx", op, cout=cout, group=group)
    mean = np.random.default_rng(1).integers(-64, 64, 6) * S
    x = (mean[None, :, None, None] * np.ones((2, 6, 5, 5)) if op == "Conv"
         else np.tile(mean, (2, 1))).astype(np.float32)
    scales = {"x": S}               # x's values are exact multiples of the scale (|x| <= 64 S < 127 S)
    ref = _run(src, x)
    plain, corr = str(tmp_path / "plain.onnx"), str(tmp_path / "corr.onnx")
    P.quantize_qdq(src, plain, scales, target="trt")
    P.quantize_qdq(src, corr, scales, target="trt", means={"x": mean.tolist()})
    off = _run(plain, x) - ref
    assert np.abs(off).max() > 1e-4                               # rounding the weights does move the mean
    np.testing.assert_allclose(_run(corr, x), ref, atol=2e-5)     # and the correction removes exactly that
    import onnx

    wq = onnx.numpy_helper.to_array(
        next(t for t in onnx.load(plain).graph.initializer if t.name.endswith("_quantized")))
    wsc = onnx.numpy_helper.to_array(next(t for t in onnx.load(plain).graph.initializer if t.name == "w_scale"))
    shape = (-1,) + (1,) * (w.ndim - 1)
    shift = weight_error_shift(op, w, wq * wsc.reshape(shape), 0, mean, group)
    axes = (0, 2, 3) if op == "Conv" else (0,)
    np.testing.assert_allclose(off.mean(axis=axes), shift, atol=2e-5)
    meta = {p.key: p.value for p in onnx.load(corr).metadata_props}
    assert (meta[BIAS_CORRECTED_KEY] == "1"
            and BIAS_CORRECTED_KEY not in {p.key for p in onnx.load(plain).metadata_props})


def test_means_of_another_shape_are_ignored(tmp_path):
    src, _ = _model(tmp_path / "m.onnx", "Conv")
    P.quantize_qdq(src, str(tmp_path / "q.onnx"), {"x": S}, target="cpu", means={"x": [0.5, 0.25]})  # 2 != 6
    import onnx

    assert BIAS_CORRECTED_KEY not in {p.key for p in onnx.load(str(tmp_path / "q.onnx")).metadata_props}


def test_dead_channel_keeps_its_bias_in_int32(tmp_path):
    """A channel whose weights are ~0 (dead after BatchNorm folding) but whose bias is
    large: bias / (input scale * weight scale) does not fit int32. Its weight scale is
    raised so the int32 bias holds the value, instead of saturating to a wrong constant."""
    w = np.random.default_rng(0).standard_normal((4, 6, 3, 3)).astype(np.float32)
    w[2] = 1e-9
    src, _ = _model(tmp_path / "m.onnx", "Conv", weights=w, bias=[0.1, -0.2, 5.0, 0.3])
    x = (np.random.default_rng(2).integers(-64, 64, (2, 6, 5, 5)) * S).astype(np.float32)
    q = str(tmp_path / "q.onnx")
    P.quantize_qdq(src, q, {"x": S}, target="cpu")
    out = _run(q, x)
    np.testing.assert_allclose(out[:, 2], 5.0, atol=1e-4)
    np.testing.assert_allclose(out, _run(src, x), atol=0.05)


def test_calibration_keeps_channel_means_and_reuses_them(tmp_path):
    model = tiny_cnn(tmp_path / "tiny.onnx")
    imgs = write_images(str(tmp_path / "imgs"), n=6)
    res = C.calibrate(model, imgs, CFG, method="minmax")
    assert res.means and set(res.means) <= set(C.calibration_tensors(__import__("onnx").load(model)))
    reader = C.ImageCalibrationDataReader(imgs, CFG, "input", 4)
    x = np.concatenate([f["input"] for f in reader])
    np.testing.assert_allclose(res.means["input"], x.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    with open(res.sidecar_path) as f:
        assert json.load(f)["channel_means"]["input"] == res.means["input"]
    again = C.calibrate(model, imgs, CFG, method="minmax")
    assert again.reused and again.means == res.means
    assert C.read_means({"channel_means": {"input": "junk", "x": [1.0]}}, ["input"]) is None
    assert C.read_means({}) is None


def test_mixed_method_is_minmax_on_bounded_tensors_entropy_elsewhere(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Clip", ["x", "lo", "hi"], ["c"], name="relu6"),
             helper.make_node("Relu", ["x"], ["r"], name="relu")]
    g = helper.make_graph(nodes, "b", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 4]),
                           helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 4])],
                          [numpy_helper.from_array(np.float32(0), "lo"), numpy_helper.from_array(np.float32(6), "hi")])
    assert C.bounded_tensors(helper.make_model(g)) == {"c"}
    data = np.abs(np.random.default_rng(0).standard_normal(20000)).astype(np.float32)
    data[:3] = 40.0                                         # a few outliers
    cols = {m: C.RangeCollector(m, C.CalibrationOptions(), bounded={"a"}) for m in ("mixed", "entropy")}
    for col in cols.values():
        for name in ("a", "b"):
            col.collect(name, data)
    assert cols["mixed"].compute("a") == pytest.approx(40.0)                    # bounded: the max
    assert cols["mixed"].compute("b") == pytest.approx(cols["entropy"].compute("b"))   # else: entropy
    assert cols["mixed"].compute("b") < 20.0
    assert "mixed" in C.METHODS
    onnx.checker.check_model(helper.make_model(g))
