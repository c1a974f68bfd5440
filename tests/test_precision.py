"""fp16 and int8 Q/DQ models: structure (onnx), execution (ONNX Runtime CPU) and
agreement with the fp32 model, on small graphs and on a real export."""
import collections
import os

import numpy as np
import pytest
from test_calibration import tiny_cnn, write_images

from ofconvert import calibration as C
from ofconvert import precision as P
from ofconvert.config import PreprocessConfig
from ofconvert.errors import OfconvertError

CFG = PreprocessConfig(32)


def _run(path, x, optimized=None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    if optimized:
        so.optimized_model_filepath = optimized
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    return s.run(None, {inp.name: x.astype(np.float16 if "float16" in inp.type else np.float32)})[0]


def _inputs(n=6, size=32, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_calibrated(tmp_path_factory):
    d = tmp_path_factory.mktemp("tinyq")
    model = tiny_cnn(d / "tiny.onnx")
    write_images(str(d / "imgs"), n=8)
    res = C.calibrate(model, str(d / "imgs"), CFG, method="minmax")
    return model, res.scales, d


def _meta(path):
    import onnx

    return {p.key: p.value for p in onnx.load(path).metadata_props}


# ---------------------------------------------------------------------------
# fp16
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("keep_io", [False, True])
def test_fp16_runs_and_matches_fp32(tiny_calibrated, keep_io):
    import onnx

    model, _, d = tiny_calibrated
    out = P.to_fp16(model, d / f"tiny.fp16.{keep_io}.onnx", keep_io_types=keep_io)
    m = onnx.load(out)
    onnx.checker.check_model(m)
    io_type = m.graph.input[0].type.tensor_type.elem_type
    assert io_type == (onnx.TensorProto.FLOAT if keep_io else onnx.TensorProto.FLOAT16)
    assert m.graph.output[0].type.tensor_type.elem_type == io_type
    assert all(t.data_type != onnx.TensorProto.FLOAT for t in m.graph.initializer if t.name.endswith(".w"))
    meta = _meta(out)
    assert meta["ofconvert.model"] == "tiny" and "ofconvert.preprocess" in meta
    assert meta[P.PRECISION_KEY].startswith("fp16")
    x = _inputs()
    ref, y = _run(model, x), _run(out, x)
    assert y.dtype == (np.float32 if keep_io else np.float16)
    np.testing.assert_allclose(y.astype(np.float32), ref, atol=2e-2 * np.abs(ref).max())


def test_missing_source(tmp_path):
    with pytest.raises(OfconvertError, match="not found"):
        P.to_fp16(tmp_path / "none.onnx", tmp_path / "o.onnx")
    with pytest.raises(OfconvertError, match="not found"):
        P.quantize_qdq(tmp_path / "none.onnx", tmp_path / "o.onnx", {})


# ---------------------------------------------------------------------------
# int8 Q/DQ
# ---------------------------------------------------------------------------
def _qdq_structure(path):
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    onnx.checker.check_model(m)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    return m, inits, producer


@pytest.mark.parametrize("target", ["trt", "cpu"])
def test_qdq_structure(tiny_calibrated, target):
    model, scales, d = tiny_calibrated
    out = P.quantize_qdq(model, d / f"tiny.{target}.onnx", scales, target=target)
    m, inits, producer = _qdq_structure(out)
    ops = collections.Counter(n.op_type for n in m.graph.node)
    assert "BatchNormalization" not in ops                    # folded into the convs
    for node in m.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            x_dq, w_dq = producer[node.input[0]], producer[node.input[1]]
            assert x_dq.op_type == w_dq.op_type == "DequantizeLinear"
            w = inits[w_dq.input[0]]
            assert w.dtype == np.int8 and np.abs(w).max() <= 127
            ws = inits[w_dq.input[1]]
            axis = next(a.i for a in w_dq.attribute if a.name == "axis")
            assert axis == 0 and ws.shape == (w.shape[0],)      # per output channel
            assert not inits[w_dq.input[2]].any()               # symmetric
            zp = inits[x_dq.input[2]]
            if target == "trt":
                assert zp.dtype == np.int8 and zp == 0
                assert len(node.input) < 3 or node.input[2] in inits  # float bias
            else:
                assert zp.dtype == np.uint8
                assert inits[producer[node.input[2]].input[0]].dtype == np.int32
        if node.op_type == "Add":    # residual add: both inputs quantized
            assert all(producer[i].op_type == "DequantizeLinear" for i in node.input)
    # activation scales come from the calibration (uint8 for Relu outputs: amax/255, zero point 0)
    q_of = {n.input[0]: n for n in m.graph.node if n.op_type == "QuantizeLinear"}
    s_in = float(inits[q_of["input"].input[1]])
    assert s_in == pytest.approx(scales["input"], rel=1e-6)
    s_relu = float(inits[q_of["stem.relu"].input[1]])
    assert s_relu == pytest.approx(scales["stem.relu"] * (127 / 255 if target == "cpu" else 1), rel=1e-6)
    meta = _meta(out)
    assert meta["ofconvert.model"] == "tiny" and meta[P.PRECISION_KEY] == f"int8-qdq-{target}"


@pytest.mark.parametrize("target", ["trt", "cpu"])
def test_qdq_runs_close_to_fp32(tiny_calibrated, target):
    model, scales, d = tiny_calibrated
    out = P.quantize_qdq(model, d / f"tiny.run.{target}.onnx", scales, target=target)
    from ofconvert.data import load_batch

    x, _ = load_batch(C.list_calibration_images(str(d / "imgs")), CFG)
    ref, y = _run(model, x), _run(out, x)
    assert y.shape == ref.shape
    err = np.abs(y - ref).max() / np.abs(ref).max()
    assert 0 < err < 0.1     # really quantized, and still close


def test_cpu_flavour_is_fused_by_onnxruntime(tiny_calibrated):
    """The cpu target is laid out so that ONNX Runtime's CPU provider runs integer
    kernels: every Conv becomes QLinearConv, the residual add QLinearAdd."""
    import onnx

    model, scales, d = tiny_calibrated
    out = P.quantize_qdq(model, d / "tiny.fuse.onnx", scales, target="cpu")
    opt = str(d / "tiny.fuse.opt.onnx")
    _run(out, _inputs(1), optimized=opt)
    ops = collections.Counter(n.op_type for n in onnx.load(opt).graph.node)
    assert ops["QLinearConv"] == 3 and ops["QLinearAdd"] == 1 and "Conv" not in ops and "FusedConv" not in ops


def test_explicit_pad_runs_on_uint8_in_cpu_flavour(tmp_path):
    """Relu -> Pad -> Conv (efficientnet's "same" padding): folded into the Conv's
    ``pads`` by default (both targets); unfolded, on the cpu target the Pad moves
    between the Q and the DQ, so no float op sits between two QLinearConv."""
    import onnx

    model = tiny_cnn(tmp_path / "pad.onnx", explicit_pad=True)
    write_images(str(tmp_path / "imgs"), n=4)
    res = C.calibrate(model, str(tmp_path / "imgs"), CFG, method="minmax")
    assert "c1.pad" in res.scales and res.scales["c1.pad"] == res.scales["stem.relu"]   # Pad keeps its input's range
    from ofconvert.data import load_batch

    x, _ = load_batch(C.list_calibration_images(str(tmp_path / "imgs")), CFG)
    ref = _run(model, x)
    outs = {}
    for target in P.TARGETS:
        for fold in (False, True):
            out = str(tmp_path / f"pad.{target}.{fold}.onnx")
            onnx.save(P.quantize_model(onnx.load(model), res.scales, target, fold_pads=fold), out)
            m, inits, producer = _qdq_structure(out)
            pads = [n for n in m.graph.node if n.op_type == "Pad"]
            if fold:
                assert not pads
            else:
                assert producer[pads[0].input[0]].op_type == ("QuantizeLinear" if target == "cpu"
                                                              else "DequantizeLinear")
            outs[target, fold] = _run(out, x)
            assert np.abs(outs[target, fold] - ref).max() < 0.1 * np.abs(ref).max()
    assert np.array_equal(outs["cpu", True], outs["cpu", False])   # the same arithmetic, without the Pad ops
    for fold in (False, True):
        opt = str(tmp_path / f"pad.opt.{fold}.onnx")
        _run(str(tmp_path / f"pad.cpu.{fold}.onnx"), x, optimized=opt)
        ops = collections.Counter(n.op_type for n in onnx.load(opt).graph.node)
        assert ops["QLinearConv"] == 3 and ops["DequantizeLinear"] <= 2 and ops["Pad"] == (0 if fold else 2), ops


def test_scales_for_another_model(tiny_calibrated, tmp_path):
    model, scales, _ = tiny_calibrated
    partial = {k: v for k, v in scales.items() if k != "c2.bn"}
    with pytest.raises(OfconvertError, match="do not cover this model"):
        P.quantize_qdq(model, tmp_path / "x.onnx", partial)
    assert not os.path.exists(tmp_path / "x.onnx")
    with pytest.raises(OfconvertError, match="unknown quantization target"):
        P.quantize_qdq(model, tmp_path / "x.onnx", scales, target="gpu")


def test_model_without_batchnorm(tmp_path):
    model = tiny_cnn(tmp_path / "nobn.onnx", bn=False)
    write_images(str(tmp_path / "imgs"), n=4)
    res = C.calibrate(model, str(tmp_path / "imgs"), CFG, method="entropy")
    from ofconvert.data import load_batch

    x, _ = load_batch(C.list_calibration_images(str(tmp_path / "imgs")), CFG)   # the calibrated range
    ref = _run(model, x)
    for target in P.TARGETS:
        out = P.quantize_qdq(model, tmp_path / f"nobn.{target}.onnx", res.scales, target=target)
        y = _run(out, x)
        err = np.abs(y - ref).max() / np.abs(ref).max()
        assert 0 < err < 0.1, (target, err)     # really quantized, and still close to fp32


# ---------------------------------------------------------------------------
# a real export on real images
# ---------------------------------------------------------------------------
def test_real_model_fp16_and_int8(zoo_onnx, datasets, tmp_path):
    """efficientnet_lite0 (real ImageNet weights): fp16 and int8 (cpu and trt
    flavours, entropy calibration on 16 images of imagenet-sample-1000, never the
    evaluation images) agree with fp32 on the top-1 of 24 validation images."""
    import shutil

    from ofconvert.config import get_config
    from ofconvert.data import load_batch, sample_images

    src = str(tmp_path / "efficientnet_lite0.onnx")
    shutil.copyfile(zoo_onnx("efficientnet_lite0"), src)
    cfg = get_config("efficientnet_lite0").preprocess
    manifest = C.build_calib_set(os.path.join(datasets, "imagenet-sample-1000"), tmp_path / "calib")
    res = C.calibrate(src, manifest, cfg, method="entropy", num_images=16)
    assert res.num_images == 16
    x, _ = load_batch(sample_images(24, root=datasets), cfg)
    ref = _run(src, x).argmax(1)
    fp16 = P.to_fp16(src, tmp_path / "m.fp16.onnx")
    assert (_run(fp16, x).astype(np.float32).argmax(1) == ref).sum() >= 23
    for target in P.TARGETS:
        q = P.quantize_qdq(src, tmp_path / f"m.int8.{target}.onnx", res.scales, target=target)
        agree = (_run(q, x).argmax(1) == ref).sum()
        assert agree >= 20, f"{target}: int8 top-1 agrees with fp32 on only {agree}/24 images"
