"""Your own model through the front door (issue 21), with the real OneFlow:
``file.py:Class`` / ``pkg.mod:factory`` on the CLI and in the API, OneFlow
checkpoints (``flow.save`` folders, the old snapshot layout) as weights, read
without running pickle code, shapes said the usual way, train-mode modules, and a
validator that a stateful module cannot talk into a pass."""
import json
import os
import pickle
import textwrap

import numpy as np
import pytest
from conftest import has_traceback, needs_oneflow, run_cli

pytestmark = needs_oneflow

MY_NET = textwrap.dedent('''
    import oneflow as flow
    import oneflow.nn as nn


    class MyNet(nn.Module):
        def __init__(self, num_classes=10, width=8):
            super().__init__()
            self.conv = nn.Conv2d(3, width, 3, padding=1)
            self.bn = nn.BatchNorm2d(width)
            self.drop = nn.Dropout(0.5)
            self.fc = nn.Linear(width, num_classes)

        def forward(self, x):
            x = flow.relu(self.bn(self.conv(x)))
            return self.fc(self.drop(x.mean((2, 3))))


    class Declared(MyNet):
        input_shape = (3, 24, 24)


    def build(num_classes=5):
        return MyNet(num_classes=num_classes)


    def not_a_module():
        return 42


    class Counter(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.conv(x).mean((2, 3)) * float(self.calls)


    class Broken(nn.Module):
        def __init__(self):
            raise RuntimeError("no GPU here")
''')
ARGS = ("--model-args", "num_classes=7")


def _flow():
    from ofconvert.zoo import import_oneflow

    return import_oneflow()


def _module(seed=1, num_classes=7):
    """MyNet with non-default weights and BN statistics (what a trained net has)."""
    flow = _flow()
    ns = {}
    exec(compile(MY_NET, "my_net", "exec"), ns)   # the test's own source, not a user file
    flow.manual_seed(seed)
    m = ns["MyNet"](num_classes=num_classes)
    rng = np.random.default_rng(seed)
    with flow.no_grad():
        for name, t in m.state_dict().items():
            if t.dtype == flow.float32:
                t.copy_(flow.tensor(rng.uniform(0.5, 1.5, t.shape).astype(np.float32) if "running_var" in name
                                    else rng.standard_normal(t.shape).astype(np.float32) * 0.5))
    return m.eval()


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """A folder as a user has it: my_net.py and a flow.save checkpoint of MyNet."""
    d = tmp_path_factory.mktemp("user")
    (d / "my_net.py").write_text(MY_NET)
    _flow().save(_module().state_dict(), str(d / "ckpt"))
    return d


def _ort(path, x):
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def _reference(ckpt, x):
    """OneFlow's own loader (flow.load) as the independent reference."""
    flow = _flow()
    m = _module(seed=99)
    m.load_state_dict(flow.load(str(ckpt)))
    with flow.no_grad():
        return m.eval()(flow.tensor(x)).numpy()


def _export_equals(module, path, reference, **kw):
    """``ofconvert.export(module, path, **kw)`` at 16x16, then its ONNX equals ``reference`` (a module) -> report."""
    import ofconvert

    flow = _flow()
    rep = ofconvert.export(module, str(path), input_shape=(3, 16, 16), verbose=False, **kw)
    x = _x(2, 16)
    with flow.no_grad():
        want = reference.eval()(flow.tensor(x)).numpy()
    assert _rel(_ort(path, x), want) < 1e-5
    return rep


def _x(n=3, size=32, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _one_line_exit_2(p, *words):
    assert p.returncode == 2, p.stderr
    assert not has_traceback(p)
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("ofconvert:")]
    assert len(err) == 1, p.stderr
    for w in words:
        assert w in err[0], err[0]
    return err[0]


# -- the CLI front door -----------------------------------------------------------------

def test_file_class_with_a_flow_save_checkpoint_equals_oneflow(user_dir, tmp_path):
    out = tmp_path / "MyNet.onnx"
    p = run_cli("my_net.py:MyNet", "--weights", "ckpt", "--input-shape", "3,32,32", *ARGS, "--to", "onnx",
                "-o", out, cwd=user_dir)
    assert p.returncode == 0, p.stderr
    assert "[✓]" in p.stdout and "[✗]" not in p.stdout and "[~]" not in p.stdout
    x = _x()
    assert _rel(_ort(out, x), _reference(user_dir / "ckpt", x)) < 1e-5
    rep = json.loads((tmp_path / "MyNet.onnx.json").read_text())
    from ofconvert.weights import weights_digest

    assert rep["model"] == "my_net.py:MyNet" and rep["model_args"] == {"num_classes": 7}
    assert rep["weights_file"] == str(user_dir / "ckpt")
    assert rep["weights_sha256"] == weights_digest(str(user_dir / "ckpt"))
    assert rep["weights_tensors"] == len(_flow().load(str(user_dir / "ckpt")))
    assert rep["source_file"] == str(user_dir / "my_net.py") and len(rep["source_sha256"]) == 64
    # the same again is reused; a change of the user's code is not
    p = run_cli("my_net.py:MyNet", "--weights", "ckpt", "--input-shape", "3,32,32", *ARGS, "-o", out, cwd=user_dir)
    assert "reusing fp32 ONNX" in p.stdout, p.stdout


def test_fp16_and_int8_of_your_own_model(user_dir, tmp_path, datasets):
    out = tmp_path / "MyNet.onnx"
    common = ("my_net.py:MyNet", "--weights", "ckpt", "--input-shape", "3,32,32", *ARGS)
    p = run_cli(*common, "--fp16", "-o", tmp_path / "MyNet.fp16.onnx", cwd=user_dir)
    assert p.returncode == 0, p.stderr
    x = _x()
    ref = _reference(user_dir / "ckpt", x)
    assert _rel(_ort(tmp_path / "MyNet.fp16.onnx", x.astype(np.float16)).astype(np.float32), ref) < 2e-2
    calib = os.path.join(datasets, "imagenet-stubs-16")
    p = run_cli(*common, "--int8", "--calib", calib, "-o", tmp_path / "MyNet.int8.onnx", cwd=user_dir)
    assert p.returncode == 0, p.stderr
    for f in ("MyNet.int8.onnx", "MyNet.int8-cpu.onnx"):
        y = _ort(tmp_path / f, x)
        assert y.shape == ref.shape and _rel(y, ref) < 0.2, f
    assert out.exists()


def test_to_trt_through_the_contract(user_dir, tmp_path, monkeypatch):
    """--to trt for user code: the engine is built from the validated export (stand-in TensorRT)."""
    import fake_tensorrt

    from ofconvert.pipeline import ConvertOptions, convert

    monkeypatch.chdir(user_dir)
    with fake_tensorrt.installed("10.3.0") as trt:
        res = convert(ConvertOptions(model="my_net.py:MyNet", to="trt", weights="ckpt", input_shape=(3, 32, 32),
                                     model_args={"num_classes": 7}, batch=2, max_batch=4,
                                     output=str(tmp_path / "MyNet.fp32.engine"), timing_cache=False),
                      log=lambda *a: None)
        (build,) = trt._record.builds
    assert build["profiles"] == [{"input": ((1, 3, 32, 32), (2, 3, 32, 32), (4, 3, 32, 32))}]
    assert os.path.isfile(res.artefacts["engine"]) and res.export["model"] == "my_net.py:MyNet"


def test_package_module_factory_from_the_current_folder(user_dir, tmp_path):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(MY_NET)
    p = run_cli("mypkg.models:build", "--model-args", '{"num_classes": 3}', "--input-shape", "3,16,16",
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert _ort(tmp_path / "build.onnx", _x(2, 16)).shape == (2, 3)


def test_a_declared_input_shape_needs_no_option(user_dir, tmp_path):
    p = run_cli("my_net.py:Declared", "-o", tmp_path / "d.onnx", cwd=user_dir)
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "d.onnx.json").read_text())["input_shape"] == [3, 24, 24]


@pytest.mark.parametrize("argv, words", [
    (["my_net.py:Nope", "--input-shape", "3,8,8"], ["my_net.py has no 'Nope'", "MyNet"]),
    (["missing.py:MyNet", "--input-shape", "3,8,8"], ["model file not found: missing.py"]),
    (["my_net.py:Broken", "--input-shape", "3,8,8"], ["my_net.py:Broken()", "RuntimeError: no GPU here"]),
    (["my_net.py:not_a_module", "--input-shape", "3,8,8"], ["returned a int, not a oneflow.nn.Module"]),
    (["my_net.py:MyNet", "--input-shape", "3,8,8", "--model-args", "num_class=3"],
     ["unexpected keyword argument 'num_class'"]),
    (["my_net.py:MyNet", "--input-shape", "3,8,8", "--model-args", "{bad json"], ["--model-args: not valid JSON"]),
    (["my_net.py:MyNet"], ["--input-shape C,H,W"]),
    (["resnet50", "--model-args", "a=1"], ["--model-args is for your own model"]),
    (["nosuchpkg.models:build", "--input-shape", "3,8,8"], ["cannot import nosuchpkg.models"]),
])
def test_user_code_mistakes_are_one_line(user_dir, argv, words):
    before = sorted(os.listdir(user_dir))
    _one_line_exit_2(run_cli(*argv, cwd=user_dir), *words)
    assert sorted(os.listdir(user_dir)) == before


def test_an_import_that_raises_is_one_line(tmp_path):
    (tmp_path / "bad.py").write_text("import oneflow\nraise ValueError('typo in my file')\n")
    _one_line_exit_2(run_cli("bad.py:Net", "--input-shape", "3,8,8", cwd=tmp_path),
                     "importing bad.py failed: ValueError: typo in my file")


# -- checkpoints: safe, strict, recorded -----------------------------------------------

class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_carrying_code_is_refused_and_the_code_does_not_run(user_dir, tmp_path):
    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "PWNED"
    (evil / "pickled_data").write_bytes(pickle.dumps({"protocol_version": 1, "data": {"w": _Payload(marker)}}))
    before = sorted(os.listdir(tmp_path))
    for argv in (["my_net.py:MyNet", "--input-shape", "3,8,8"], ["resnet50"]):
        line = _one_line_exit_2(run_cli(*argv, "--weights", evil, "-o", tmp_path / "m.onnx", cwd=user_dir),
                                "refusing to unpickle", "system")
        assert str(evil) in line
    assert not marker.exists()
    assert sorted(os.listdir(tmp_path)) == before
    from ofconvert.errors import WeightsError
    from ofconvert.weights import load_user_weights

    with pytest.raises(WeightsError, match="refusing to unpickle"):
        load_user_weights(str(evil / "pickled_data"))
    assert not marker.exists()


def test_the_old_snapshot_layout_maps_its_names(tmp_path):
    """One folder per variable (``bn-running_mean/out`` + ``meta``) and snapshot_done:
    read as OneFlow's own legacy loader reads it, names mapped to the module's keys."""
    flow = _flow()
    m = _module(seed=3)
    snap = tmp_path / "snap"
    for k, v in m.state_dict().items():
        var = snap / k.replace(".", "-")
        var.mkdir(parents=True)
        a = v.numpy()
        (var / "out").write_bytes(a.tobytes())
        dt = {"float32": "kFloat", "int64": "kInt64"}[a.dtype.name]
        (var / "meta").write_text("shape {\n" + "".join(f"  dim: {d}\n" for d in a.shape) + f"}}\ndata_type: {dt}\n")
    (snap / "snapshot_done").write_text("")
    theirs = flow.load(str(snap))
    from ofconvert.oneflow_ckpt import load_checkpoint, map_names

    ours = load_checkpoint(str(snap))
    assert sorted(ours) == sorted(theirs)
    for k in ours:
        np.testing.assert_array_equal(ours[k], theirs[k].numpy())
    mapped = map_names(ours, m.state_dict().keys())
    assert sorted(mapped) == sorted(m.state_dict())
    rep = _export_equals(_module(seed=8), tmp_path / "s.onnx", m, weights=str(snap))
    assert rep.weights_tensors == len(mapped)


def test_a_full_training_checkpoint_yields_its_model_state(tmp_path):
    flow = _flow()
    m = _module(seed=4)
    flow.save({"model": m.state_dict(), "epoch": 12, "optimizer": {"lr": 0.1}}, str(tmp_path / "full.pth"))
    from ofconvert.weights import load_user_weights

    got = load_user_weights(str(tmp_path / "full.pth"))   # a folder despite its name
    assert sorted(got) == sorted(m.state_dict())


def test_export_of_a_module_loads_the_weights_it_records(user_dir, tmp_path):
    import ofconvert
    from ofconvert.fileio import sha256_file

    src = _module(seed=5)
    npz = tmp_path / "other.npz"
    np.savez(npz, **{k: v.numpy() for k, v in src.state_dict().items()})
    rep = _export_equals(_module(seed=6), tmp_path / "w.onnx", src, weights=str(npz))
    x = _x(2, 16)
    rec = json.loads((tmp_path / "w.onnx.json").read_text())
    assert rec["weights_file"] == str(npz) and rec["weights_sha256"] == sha256_file(npz)
    assert rep.weights_tensors == len(src.state_dict())
    # a checkpoint folder works the same way (it raised IsADirectoryError before)
    rep = ofconvert.export(_module(seed=7), str(tmp_path / "c.onnx"), weights=str(user_dir / "ckpt"),
                           input_shape=(3, 16, 16), verbose=False)
    assert _rel(_ort(tmp_path / "c.onnx", x), _reference(user_dir / "ckpt", x)) < 1e-5


def test_weights_that_do_not_fit_are_refused_and_nothing_is_written(user_dir, tmp_path):
    import ofconvert
    from ofconvert.errors import WeightsError

    other = _flow().nn.Linear(3, 2)
    _flow().save(other.state_dict(), str(tmp_path / "lin"))
    with pytest.raises(WeightsError) as e:
        ofconvert.export(_module(), str(tmp_path / "x.onnx"), weights=str(tmp_path / "lin"), verbose=False)
    msg = str(e.value)
    assert "\n" not in msg and "missing" in msg and "unexpected" in msg and "conv.weight" in msg
    assert not (tmp_path / "x.onnx").exists()


# -- shapes and modes said the usual way -----------------------------------------------

def test_n_c_h_w_is_read_as_batch_plus_sample_shape(tmp_path, capsys):
    import ofconvert

    rep = ofconvert.export(_module(), str(tmp_path / "n.onnx"), input_shape=(1, 3, 16, 16))
    assert rep.input_shape == [3, 16, 16]
    assert "input shape 1,3,16,16 read as batch + per-sample shape" in capsys.readouterr().out
    assert _ort(tmp_path / "n.onnx", _x(4, 16)).shape == (4, 7)


def test_a_shape_the_model_cannot_take_is_one_line(tmp_path):
    import ofconvert
    from ofconvert.errors import OfconvertError

    with pytest.raises(OfconvertError, match="give the per-sample shape without the batch"):
        ofconvert.export(_module(), str(tmp_path / "n.onnx"), input_shape=(2, 5, 16, 16), verbose=False)


def test_a_module_in_train_mode_exports_in_eval_mode_and_comes_back_in_train_mode(tmp_path, capsys):
    import ofconvert

    flow = _flow()
    m = _module(seed=2).train()
    rep = ofconvert.export(m, str(tmp_path / "t.onnx"), input_shape=(3, 16, 16))
    assert "was in train mode" in capsys.readouterr().out
    assert m.training and m.bn.training and m.drop.training
    x = _x(3, 16)
    m.eval()
    with flow.no_grad():
        want = m(flow.tensor(x)).numpy()
    assert _rel(_ort(tmp_path / "t.onnx", x), want) < 1e-5
    assert rep.validation.passed and not rep.validation.ill_conditioned


# -- a validator that cannot be fooled ------------------------------------------------

def test_a_stateful_module_is_refused_and_the_good_file_stays(user_dir, tmp_path):
    import ofconvert
    from ofconvert.errors import NondeterministicError

    target = tmp_path / "m.onnx"
    target.write_bytes(b"a good file from before")
    ns = {}
    exec(compile(MY_NET, "my_net", "exec"), ns)
    with pytest.raises(NondeterministicError, match="not deterministic: two identical calls differ"):
        ofconvert.export(ns["Counter"](), str(target), input_shape=(3, 16, 16), verbose=False)
    assert target.read_bytes() == b"a good file from before"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]
    p = run_cli("my_net.py:Counter", "--input-shape", "3,16,16", "-o", target, cwd=user_dir)
    _one_line_exit_2(p, "not deterministic", "random ops, Python state or train mode?")
    assert target.read_bytes() == b"a good file from before"


def test_no_tick_beside_an_error_above_the_tolerance():
    """A check passed only through the fp32-rounding allowance prints ~, never ✓."""
    from ofconvert.validation import ValidationReport, compare

    ref = np.array([[1.0, 2.0, 3.0]])
    c = compare(ref, ref * 1.3, "random", 1)
    assert not c.passed and c.line().startswith("  [✗]")
    c.fp32_rounding_rel_err, c.onnx_vs_fp64_rel_err, c.passed = 0.4, 0.3, True
    line = c.line()
    assert line.startswith("  [~]") and "ill-conditioned: fp32 itself differs by 4.00e-01" in line
    ok = compare(ref, ref, "random", 1)
    rep = ValidationReport("m", "m.onnx", 5e-4, [ok, c], [])
    assert rep.passed and rep.ill_conditioned == 1 and rep.to_dict()["ill_conditioned_checks"] == 1
    for chk in (ok, c):
        assert ("[✓]" in chk.line()) == (chk.max_rel_err <= 5e-4)


# -- bench -----------------------------------------------------------------------------

def test_bench_runs_your_own_model(user_dir, tmp_path):
    out = tmp_path / "b"
    (tmp_path / "m").mkdir()
    p = run_cli("bench", "--models", "my_net.py:MyNet", "--backends", "oneflow,ort-cpu", "--precisions", "fp32",
                "--batch", "2", "--input-size", "32", "--warmup", "1", "--iters", "2", "--no-progress", "--no-png",
                "--models-dir", tmp_path / "m", "--out-dir", out, cwd=user_dir)
    assert p.returncode == 0, p.stderr
    rows = json.loads((out / "bench.json").read_text())
    rows = rows["results"] if isinstance(rows, dict) else rows
    assert {(r["backend"], r["status"]) for r in rows} == {("oneflow", "ok"), ("ort-cpu", "ok")}, rows
    assert (tmp_path / "m" / "MyNet.onnx").is_file()
    _one_line_exit_2(run_cli("bench", "--models", "my_net.py:MyNet", "--backends", "ort-cpu", "--no-png",
                             "--out-dir", out, cwd=user_dir), "declares no input_shape: pass --input-size")
