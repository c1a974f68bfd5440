"""A conversion as steps (ofconvert.steps): preflight checks before any work, one
stage committed at the end. A run refused at a later step (a --calib-cache of
another model, found out only once the model is exported) leaves no file; a run
that succeeds leaves its artefacts, reports naming their final paths, and no stage."""
import json
import os

import pytest
from conftest import ROOT, has_traceback, needs_oneflow, run_cli

pytestmark = needs_oneflow
NET = os.path.join(ROOT, "examples", "my_net.py")


@pytest.fixture(scope="module")
def lite(tmp_path_factory, datasets):
    """examples/my_net.py:MyNet converted to int8 on 16 real photos: its cache."""
    d = tmp_path_factory.mktemp("mine")
    p = run_cli(f"{NET}:MyNet", "--input-shape", "3,32,32", "--int8", "--calib",
                os.path.join(datasets, "imagenet-stubs-16"), "-o", d / "MyNet.int8.onnx", cwd=d)
    assert p.returncode == 0, p.stderr
    return d


def test_an_int8_run_leaves_its_artefacts_reports_with_final_paths_and_no_stage(lite):
    names = sorted(os.listdir(lite))
    assert {"MyNet.onnx", "MyNet.onnx.json", "MyNet.int8.onnx", "MyNet.int8-cpu.onnx",
            "MyNet.entropy.calib.cache"} <= set(names), names
    assert not [n for n in names if n.endswith(".tmp")], names
    rep = json.loads((lite / "MyNet.onnx.json").read_text())
    assert rep["onnx_path"] == str(lite / "MyNet.onnx")
    assert rep["validation"]["onnx_path"] == str(lite / "MyNet.onnx")
    for n in names:
        if n.endswith(".json"):
            assert ".stage." not in (lite / n).read_text(), n


def test_a_cache_of_another_model_is_refused_and_nothing_is_written(lite, tmp_path):
    (tmp_path / "other.py").write_text(
        "import oneflow.nn as nn\n\n\nclass Other(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.conv = nn.Conv2d(3, 4, 5)\n        self.act = nn.Sigmoid()\n\n"
        "    def forward(self, x):\n        return self.act(self.conv(x)).mean((2, 3))\n")
    before = sorted(os.listdir(tmp_path))
    p = run_cli("other.py:Other", "--input-shape", "3,32,32", "--int8",
                "--calib-cache", lite / "MyNet.entropy.calib.cache", "-o", tmp_path / "b.int8.onnx", cwd=tmp_path)
    assert p.returncode == 2 and not has_traceback(p), p.stderr
    assert sorted(os.listdir(tmp_path)) == before   # no b.onnx, no reports, no stage


def test_preflight_refuses_before_any_work(tmp_path):
    """Options are checked first: a bad calibration folder costs no export."""
    from ofconvert.errors import OfconvertError
    from ofconvert.pipeline import ConvertOptions
    from ofconvert.steps import preflight

    opts = ConvertOptions(model=f"{NET}:MyNet", input_shape=(3, 32, 32), precision="int8",
                          calib=str(tmp_path / "none"), output=str(tmp_path / "m.int8.onnx"))
    with pytest.raises(OfconvertError, match="--calib: no such folder"):
        preflight(opts)
    assert os.listdir(tmp_path) == []


def test_simplify_goes_through_onnxslim_and_keeps_equal_outputs(tmp_path):

    import ofconvert
    from ofconvert.exporter import require_simplifier
    from ofconvert.zoo import import_oneflow

    assert require_simplifier()[0] == "onnxslim"
    flow = import_oneflow()

    class Net(flow.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = flow.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return (self.conv(x) * 1.0 + 0.0).flatten(1).mean(1, keepdim=True)

    rep = ofconvert.export(Net(), str(tmp_path / "s.onnx"), input_shape=(3, 8, 8), simplify=True, verbose=False)
    assert rep.simplified and rep.validation.passed


def test_simplify_without_a_simplifier_is_one_line(monkeypatch, tmp_path):
    import builtins

    from ofconvert.errors import OfconvertError
    from ofconvert.pipeline import ConvertOptions
    from ofconvert.steps import preflight

    real = builtins.__import__

    def no_simplifiers(name, *a, **k):
        if name.split(".")[0] in ("onnxslim", "onnxsim"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_simplifiers)
    with pytest.raises(OfconvertError, match="--simplify needs onnxslim"):
        preflight(ConvertOptions(model=f"{NET}:MyNet", input_shape=(3, 32, 32), simplify=True,
                                 output=str(tmp_path / "m.onnx")))
    assert os.listdir(tmp_path) == []


def test_an_int8_engine_gets_the_cache_this_run_calibrated(tmp_path, datasets):
    """--to trt --int8 --calib: the engine step reads the calibration cache the run
    just wrote (still in the stage) and everything lands on the commit (stand-in TensorRT)."""
    import fake_tensorrt

    from ofconvert.pipeline import ConvertOptions, convert

    opts = ConvertOptions(model=f"{NET}:MyNet", input_shape=(3, 32, 32), precision="int8", to="trt",
                          calib=os.path.join(datasets, "imagenet-stubs-16"), batch=2, timing_cache=False,
                          output=str(tmp_path / "MyNet.int8.engine"))
    with fake_tensorrt.installed("10.3.0") as trt:
        res = convert(opts, log=lambda *a: None)
        (build,) = trt._record.builds
    assert res.artefacts["calib_cache"] == str(tmp_path / "MyNet.entropy.calib.cache")
    assert os.path.isfile(res.artefacts["calib_cache"]) and os.path.isfile(res.artefacts["engine"])
    assert build["strongly_typed"] is True                      # the Q/DQ ONNX: its types say int8
    assert res.engine["precision"] == "int8" and res.engine["onnx"]["flavour"] == "int8"
    assert not [n for n in os.listdir(tmp_path) if ".stage." in n or n.endswith(".tmp")]
