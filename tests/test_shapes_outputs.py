"""Shapes and outputs as the user wrote them (issue 22), with real OneFlow:
several inputs (a siamese network), a dynamic image size (a small UNet: H and W
symbolic, validated at sizes not traced, TensorRT profile ranges through the
stand-in), dict outputs keeping their keys, declared output shapes with
``batch`` on the axis that carries it (a CRNN returning (T, N, classes)),
buffers and folded constants returned as outputs, preprocessing metadata only
for RGB image inputs. Small models and images: the whole file runs in seconds."""
import json
import os

import numpy as np
import onnx
import pytest
from conftest import needs_oneflow, run_cli

pytestmark = needs_oneflow

NO_REAL = {"use_real": False}


def _flow():
    from ofconvert.zoo import import_oneflow

    return import_oneflow()


def _ort(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _dims(vi):
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


def _outputs(m, *xs):
    flow = _flow()
    with flow.no_grad():
        y = m(*[flow.tensor(x) for x in xs])
    if isinstance(y, dict):
        return [v.numpy() for v in y.values()]
    return [t.numpy() for t in y] if isinstance(y, (tuple, list)) else [y.numpy()]


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------
def siamese():
    flow = _flow()
    nn = flow.nn

    class Siamese(nn.Module):
        def __init__(self):
            super().__init__()
            flow.manual_seed(1)
            self.embed = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                       nn.Flatten(), nn.Linear(8, 4))

        def forward(self, x1, x2):
            a, b = self.embed(x1), self.embed(x2)
            return (a - b).pow(2).sum(1), a

    return Siamese().eval()


def unet(sized_upsample=False):
    flow = _flow()
    nn = flow.nn

    class TinyUNet(nn.Module):
        def __init__(self):
            super().__init__()
            flow.manual_seed(2)
            self.enc1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
            self.enc2 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
            self.bottom = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
            self.dec2 = nn.Conv2d(32, 8, 3, padding=1)
            self.dec1 = nn.Conv2d(16, 2, 1)

        def up(self, x, like):
            if sized_upsample:   # sizes taken from the skip: Resize with computed sizes
                return nn.functional.interpolate(x, size=(like.shape[2], like.shape[3]), mode="nearest")
            return nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")

        def forward(self, x):
            e1 = self.enc1(x)
            e2 = self.enc2(e1)
            b = self.bottom(e2)
            d2 = self.dec2(flow.cat([self.up(b, e2), e2], 1)).relu()
            return self.dec1(flow.cat([self.up(d2, e1), e1], 1))

    return TinyUNet().eval()


def crnn():
    """(N, 1, 16, W) text line -> (T = W/4, N, classes), as a CTC head returns it."""
    flow = _flow()
    nn = flow.nn

    class CRNN(nn.Module):
        def __init__(self):
            super().__init__()
            flow.manual_seed(3)
            self.cnn = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                     nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                     nn.Conv2d(16, 16, (4, 1)))
            self.fc = nn.Linear(16, 12)

        def forward(self, x):
            f = self.cnn(x).squeeze(2)            # N, C, T
            return self.fc(f.permute(2, 0, 1))    # T, N, classes

    return CRNN().eval()


def detector():
    """A dict-returning detector with its priors (a buffer), anchors * stride (folded) and a parameter returned too."""
    flow = _flow()
    nn = flow.nn

    class Det(nn.Module):
        def __init__(self):
            super().__init__()
            flow.manual_seed(4)
            self.body = nn.Conv2d(3, 6, 3, stride=2, padding=1)
            self.register_buffer("priors", flow.rand(16, 4))
            self.register_buffer("anchors", flow.rand(3, 2))

        def forward(self, x):
            f = self.body(x)
            return {"boxes": f[:, :4].flatten(2).transpose(1, 2), "scores": f[:, 4:].flatten(2).softmax(1),
                    "priors": self.priors, "anchors": self.anchors * 8,
                    "per_sample": self.priors.expand(x.shape[0], 16, 4), "bias": self.body.bias}

    return Det().eval()


def flat_head():
    """Bakes its size: a Linear after flattening the spatial map."""
    flow = _flow()
    nn = flow.nn
    flow.manual_seed(5)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 32 * 32, 3)).eval()


def _conv_then(tail, seed):
    """A 3x3 Conv2d (3 -> 4 channels), then ``tail(y, x)`` of its output ``y`` and the
    input ``x``: the size-baking patterns below differ only in that tail."""
    flow = _flow()
    nn = flow.nn

    class ConvThen(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return tail(self.conv(x), x)

    flow.manual_seed(seed)
    return ConvThen().eval()


def flat_sum():
    """Runs at any size but reshapes to C*H*W: the constant is not affine in H and W."""
    return _conv_then(lambda y, x: y.reshape(y.shape[0], y.shape[1] * y.shape[2] * y.shape[3]).sum(1, keepdim=True),
                      6)


def size_scaled():
    """Multiplies by 1 / H, a float the trace bakes."""
    return _conv_then(lambda y, x: y * (1.0 / x.shape[2]), 7)


def batch_rows():
    """Rows of every image stacked: a reshape to (N*H, C*W), a product of batch and size."""
    def rows(y, x):
        y = y.permute(0, 2, 1, 3)
        return y.reshape(y.shape[0] * y.shape[1], y.shape[2] * y.shape[3])

    return _conv_then(rows, 8)


# ---------------------------------------------------------------------------
# several inputs
# ---------------------------------------------------------------------------
def test_siamese_two_inputs_names_batch_and_validation(tmp_path):
    from ofconvert import export

    m = siamese()
    path = tmp_path / "siam.onnx"
    r = export(m, path, input_shape=[(3, 16, 16), (3, 16, 16)], verbose=False, validation_options=NO_REAL)
    assert r.input_names == ["input0", "input1"] and r.input_shape == [[3, 16, 16], [3, 16, 16]]
    assert r.validation.passed and {c.output for c in r.validation.checks} == {"output0", "output1"}
    g = onnx.load(str(path)).graph
    assert [_dims(i) for i in g.input] == [["batch", 3, 16, 16]] * 2
    assert [_dims(o) for o in g.output] == [["batch"], ["batch", 4]]
    a, b = _x(7, 3, 16, 16), _x(7, 3, 16, 16, seed=1)            # batch 7: not traced
    for got, want in zip(_ort(path).run(None, {"input0": a, "input1": b}), _outputs(m, a, b)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    named = tmp_path / "named.onnx"
    export(m, named, input_shape=[(3, 16, 16), (3, 16, 16)], input_names=["left", "right"],
           output_names=["distance", "embedding"], verbose=False, validate=False)
    g = onnx.load(str(named)).graph
    assert [i.name for i in g.input] == ["left", "right"] and [o.name for o in g.output] == ["distance", "embedding"]


def test_siamese_at_the_preprocessing_size_is_validated_on_real_image_pairs(tmp_path, datasets):
    from ofconvert import export

    path = tmp_path / "siam.onnx"
    r = export(siamese(), path, input_shape=[(3, 224, 224), (3, 224, 224)], verbose=False,
               validation_options={"batches": (1, 3)})
    assert r.validation.passed and {c.inputs for c in r.validation.checks} == {"real", "random"}
    assert len(r.validation.real_images) == 6                    # each input its own images
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert "ofconvert.preprocess" in meta and meta["ofconvert.inputs"] == "input0,input1"


def test_a_forward_needing_more_inputs_than_shapes_is_one_line(tmp_path):
    from ofconvert import export
    from ofconvert.errors import ExportError

    with pytest.raises(ExportError, match=r"forward takes 2 inputs \(x1, x2\); give one --input-shape per input"):
        export(siamese(), tmp_path / "s.onnx", input_shape=(3, 16, 16), verbose=False)
    with pytest.raises(ExportError, match=r"forward takes 1 input\(s\) \(x\) but 2 input shapes"):
        export(crnn(), tmp_path / "c.onnx", input_shape=[(1, 16, 32), (1, 16, 32)], verbose=False)
    assert not os.listdir(tmp_path)


def test_batch_4d_reading_applies_per_shape(tmp_path):
    from ofconvert import export

    r = export(siamese(), tmp_path / "s.onnx", input_shape=[(1, 3, 16, 16), (1, 3, 16, 16)], verbose=False,
               validate=False)
    assert r.input_shape == [[3, 16, 16], [3, 16, 16]]


# ---------------------------------------------------------------------------
# dynamic image size
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("sized", [False, True], ids=["scale-factor", "sizes-from-skip"])
def test_unet_dynamic_size_runs_at_sizes_not_traced(tmp_path, sized):
    from ofconvert import export

    m = unet(sized)
    path = tmp_path / "unet.onnx"
    r = export(m, path, input_shape=(3, 32, 32), dynamic_size=True, verbose=False, validation_options=NO_REAL)
    assert r.dynamic_size == {"height": [32, 32, 64], "width": [32, 32, 64]}
    sizes = {c.inputs for c in r.validation.checks}
    assert r.validation.passed and {"random 96x96", "random 96x32"} <= sizes, sizes
    model = onnx.load(str(path))
    assert _dims(model.graph.input[0]) == ["batch", 3, "height", "width"]
    assert _dims(model.graph.output[0]) == ["batch", 2, "height", "width"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["ofconvert.dynamic_size"]) == r.dynamic_size
    sess = _ort(path)
    for h, w in ((96, 160), (128, 32), (160, 96)):          # never traced (32, 64 and 32+32 only)
        x = _x(3, 3, h, w, seed=h)
        (got,) = sess.run(None, {"input": x})
        np.testing.assert_allclose(got, _outputs(m, x)[0], rtol=1e-4, atol=1e-5)


def test_dynamic_size_from_ranges_and_the_cli(tmp_path):
    out = tmp_path / "unet.onnx"
    p = _cli(_net_file(tmp_path, "unet"), "--input-shape", "3,32-96,32-64", "-o", str(out))
    assert p.returncode == 0, p.stderr
    rep = json.loads(open(str(out) + ".json").read())
    assert rep["dynamic_size"] == {"height": [32, 32, 96], "width": [32, 32, 64]}
    assert rep["validation"]["passed"]
    p = _cli(_net_file(tmp_path, "unet"), "--input-shape", "3,32,32", "--dynamic-size", "-o", str(out))
    assert p.returncode == 0, p.stderr
    rep = json.loads(open(str(out) + ".json").read())
    assert rep["dynamic_size"] == {"height": [32, 32, 64], "width": [32, 32, 64]} and rep["validation"]["passed"]


def test_a_model_baking_its_size_is_refused_in_one_line(tmp_path):
    from ofconvert import export
    from ofconvert.errors import ExportError

    with pytest.raises(ExportError, match=r"--dynamic-size: the model does not run at 64x32 \(module `2` \(Linear\) "
                                          r"fails\): it bakes the image size"):
        export(flat_head(), tmp_path / "f.onnx", input_shape=(3, 32, 32), dynamic_size=True, verbose=False)
    with pytest.raises(ExportError, match=r"the Mul node .*: a float32 constant depends on the image height"):
        export(size_scaled(), tmp_path / "f.onnx", input_shape=(3, 32, 32), dynamic_size=True, verbose=False)
    with pytest.raises(ExportError, match=r"Reshape node .*not an affine function of the image height and "
                                          r"the image width"):
        export(flat_sum(), tmp_path / "f.onnx", input_shape=(3, 32, 32), dynamic_size=True, verbose=False)
    with pytest.raises(ExportError, match=r"Reshape node .*not an affine function of the batch size and the image "
                                          r"height and the image width"):
        export(batch_rows(), tmp_path / "f.onnx", input_shape=(3, 32, 32), dynamic_size=True, verbose=False)
    assert not os.listdir(tmp_path)
    export(flat_sum(), tmp_path / "f.onnx", input_shape=(3, 32, 32), verbose=False, validation_options=NO_REAL)


def test_unet_engine_profile_has_the_height_and_width_ranges(tmp_path):
    import fake_tensorrt

    from ofconvert import engine as eng
    from ofconvert import export

    path = tmp_path / "unet.onnx"
    export(unet(), path, input_shape=(3, 32, 32), dynamic_size=True, verbose=False, validate=False)
    with fake_tensorrt.installed("10.3.0") as trt:
        sc = eng.build_engine(str(path), str(tmp_path / "unet.fp32.engine"), batch=2, max_batch=4,
                              timing_cache=False)
        (build,) = trt._record.builds
    assert build["profiles"] == [{"input": ((1, 3, 32, 32), (2, 3, 32, 32), (4, 3, 64, 64))}]
    assert sc["profile"]["min"] == [1, 3, 32, 32] and sc["profile"]["max"] == [4, 3, 64, 64]
    from ofconvert.errors import OfconvertError
    from ofconvert.runners import make_runner

    with fake_tensorrt.installed("10.3.0"):
        with make_runner("trt", str(tmp_path / "unet.fp32.engine")) as r:   # any size within the profile
            for h, w in ((32, 64), (64, 32), (64, 64)):
                x = _x(3, 3, h, w, seed=h + w)
                np.testing.assert_allclose(r.infer(x), _ort(path).run(None, {"input": x})[0], rtol=1e-5, atol=1e-6)
            with pytest.raises(OfconvertError, match=r"takes images of shapes \(3, 32, 32\) to \(3, 64, 64\)"):
                r.infer(_x(1, 3, 96, 64))


# ---------------------------------------------------------------------------
# outputs as the user wrote them
# ---------------------------------------------------------------------------
def test_dict_detector_keeps_its_keys_and_exports_buffer_and_folded_outputs(tmp_path):
    from ofconvert import export

    m = detector()
    path = tmp_path / "det.onnx"
    r = export(m, path, input_shape=(3, 8, 8), verbose=False, validation_options=NO_REAL)
    assert r.outputs == ["boxes", "scores", "priors", "anchors", "per_sample", "bias"] and r.validation.passed
    g = onnx.load(str(path)).graph
    assert [_dims(o) for o in g.output] == [["batch", 16, 4], ["batch", 2, 16], [16, 4], [3, 2], ["batch", 16, 4], [6]]
    x = _x(6, 3, 8, 8)
    for got, want in zip(_ort(path).run(None, {"input": x}), _outputs(m, x)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_crnn_declares_time_batch_classes(tmp_path):
    from ofconvert import export

    path = tmp_path / "crnn.onnx"
    r = export(crnn(), path, input_shape=(1, 16, 32), verbose=False, validation_options=NO_REAL)
    assert r.output_shapes == [[8, "batch", 12]] and r.validation.passed
    model = onnx.load(str(path))
    assert "ofconvert.preprocess" not in {p.key for p in model.metadata_props}   # 1 channel: not an RGB image
    dyn = tmp_path / "crnn_dyn.onnx"
    r = export(crnn(), dyn, input_shape=(1, 16, (32, 128)), verbose=False, validation_options=NO_REAL)
    assert r.output_shapes == [["width/4", "batch", 12]] and r.validation.passed
    (y,) = _ort(dyn).run(None, {"input": _x(2, 1, 16, 96)})
    assert y.shape == (24, 2, 12)


def test_declared_shapes_are_checked_against_onnx_runtime(tmp_path):
    from ofconvert import export, validate
    from ofconvert.errors import ShapeError

    m = crnn()
    path = tmp_path / "crnn.onnx"
    r = export(m, path, input_shape=(1, 16, 32), verbose=False, validate=False)
    model = onnx.load(str(path))
    dim = model.graph.output[0].type.tensor_type.shape.dim[0]
    dim.ClearField("dim_value")
    dim.dim_param = "batch"                                  # the old, false declaration
    onnx.save(model, str(path))
    from ofconvert.config import config_for_shape

    cfg = config_for_shape("crnn", (1, 16, 32))
    with pytest.raises(ShapeError, match="contradicts its declared shape"):
        validate(m, path, cfg, input_shape=(1, 16, 32), verbose=False, report_path=False, use_real=False)
    assert r.output_shapes == [[8, "batch", 12]]
    # a symbolic time axis is checked at every size validated: width/4, not width/2
    dyn = tmp_path / "dyn.onnx"
    export(m, dyn, input_shape=(1, 16, (32, 64)), verbose=False, validate=False)
    model = onnx.load(str(dyn))
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "width/2"
    onnx.save(model, str(dyn))
    with pytest.raises(ShapeError, match=r"ONNX output shape \[8, 1, 12\] contradicts its declared shape "
                                         r"\['width/2', 'batch', 12\]"):
        validate(m, dyn, cfg, input_shape=(1, 16, 32), verbose=False, report_path=False, use_real=False)


# ---------------------------------------------------------------------------
# the CLI and the tools
# ---------------------------------------------------------------------------
def _net_file(tmp_path, factory):
    """``nets.py:Net`` building one of the models above (the CLI runs it with tests/ on PYTHONPATH: _cli)."""
    src = tmp_path / "nets.py"
    src.write_text("from test_shapes_outputs import %s as make\n\n\ndef Net():\n    return make()\n" % factory)
    return f"{src}:Net"


def _cli(*args):
    return run_cli(*args, env={"PYTHONPATH": os.path.dirname(os.path.abspath(__file__))})


def test_cli_two_input_shapes_and_names(tmp_path):
    out = tmp_path / "siam.onnx"
    p = _cli(_net_file(tmp_path, "siamese"), "--input-shape", "3,16,16", "--input-shape", "3,16,16",
                "--input-names", "left,right", "-o", str(out))
    assert p.returncode == 0, p.stderr
    rep = json.loads(open(str(out) + ".json").read())
    assert rep["input_names"] == ["left", "right"] and rep["input_shape"] == [[3, 16, 16], [3, 16, 16]]
    assert rep["validation"]["passed"]
    p = _cli(_net_file(tmp_path, "siamese"), "--input-shape", "3,16,16", "-o", str(tmp_path / "one.onnx"))
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "forward takes 2 inputs (x1, x2); give one --input-shape per input" in p.stderr
    p = _cli(_net_file(tmp_path, "siamese"), "--input-shape", "3,16,16", "--input-shape", "3,16,16", "--to", "trt",
             "-o", str(tmp_path / "s.fp32.engine"))
    assert p.returncode == 2 and "--to trt builds engines of one image input; this model has 2 inputs" in p.stderr


def test_bench_feeds_every_input_and_eval_refuses_several(tmp_path):
    from ofconvert import export
    from ofconvert.bench.worker import _random_input, _step
    from ofconvert.errors import OfconvertError
    from ofconvert.evaluation.variants import model_info
    from ofconvert.runners import make_runner

    export(siamese(), tmp_path / "siam.onnx", input_shape=[(3, 16, 16), (3, 16, 16)], verbose=False,
           validate=False)
    runner = make_runner("ort-cpu", str(tmp_path / "siam.onnx")).activate()
    try:
        x = _random_input(runner, 3, 16, np.random.default_rng(0))
        assert {k: v.shape for k, v in x.items()} == {"input0": (3, 3, 16, 16), "input1": (3, 3, 16, 16)}
        dist, emb = _step(runner, x, "host")()
        assert dist.shape == (3,) and emb.shape == (3, 4)
    finally:
        runner.deactivate()
    with pytest.raises(OfconvertError, match=r"^eval runs single-image classifiers; this model has 2 inputs"):
        model_info("siam", str(tmp_path))


def test_int8_calibration_of_a_non_rgb_input_is_refused_in_one_line(tmp_path):
    from PIL import Image

    from ofconvert import ConvertOptions
    from ofconvert.errors import OfconvertError

    calib = tmp_path / "calib"
    calib.mkdir()
    Image.new("RGB", (8, 8)).save(calib / "a.jpg")
    opts = ConvertOptions(model=_net_file(tmp_path, "crnn"), input_shape=(1, 16, 32), precision="int8",
                          calib=str(calib))
    with pytest.raises(OfconvertError, match=r"calibration and --max-flips feed RGB images \(3, H, W\); this "
                                             r"model's input 1,16,32 is not one"):
        opts.check()


def test_shape_specs_and_their_mistakes_are_one_line():
    from ofconvert.cli import _shape
    from ofconvert.errors import OfconvertError
    from ofconvert.export_io import make_spec, split_shapes, trace_points

    assert _shape("3,224-640,224-640") == (3, (224, 640), (224, 640))
    spec = make_spec(split_shapes((3, (224, 640), (224, 640))))
    assert spec.sizes == {"height": (224, 224, 640), "width": (224, 224, 640)} and spec.names == ("input",)
    assert make_spec([(3, 64, 64)], dynamic_size=True).sizes["height"] == (32, 64, 128)
    # base, batch 3, H + 32, W + 32, both, both with batch 3 (a product N*H would show)
    assert [v for v, _ in trace_points(make_spec([(3, 64, 64)], dynamic_size=True))][2:] == [
        {"batch": 2, "height": 96, "width": 64}, {"batch": 2, "height": 64, "width": 96},
        {"batch": 2, "height": 96, "width": 96}, {"batch": 3, "height": 96, "width": 96}]
    for bad, msg in [(([(3, 64, 64), (3, 32, 32)], None, True), "same H and W"),
                     (([(10,)], None, True), r"needs a \(C, H, W\) input"),
                     (([((1, 2), 64, 64)], None, None), "for H and W of C,H,W only"),
                     (([(3, 64, 64), (3, 64, 64)], ["a"], None), "2 distinct non-empty name"),
                     (([(3, 0, 64)], None, None), "positive ints")]:
        with pytest.raises(OfconvertError, match=msg):
            make_spec(*bad)
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        _shape("3,640-224,224")
