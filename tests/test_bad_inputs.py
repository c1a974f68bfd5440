"""Bad inputs, as a user makes them: every case gets one line, a typed error
(exit 2 on the CLI), no traceback, no file created or changed in the output
folder, the cwd or $TMPDIR."""
import hashlib
import os

import numpy as np
import pytest
from conftest import has_traceback, needs_oneflow, run_cli

pytestmark = needs_oneflow


def _snapshot(*folders):
    out = {}
    for d in folders:
        for root, dirs, files in os.walk(d):
            for f in files:
                p = os.path.join(root, f)
                out[p] = hashlib.sha256(open(p, "rb").read()).hexdigest()
            for x in dirs:
                out[os.path.join(root, x) + "/"] = "dir"
    return out


@pytest.fixture
def sandbox(tmp_path):
    """(cwd, out folder with a good pre-existing file, private TMPDIR)."""
    cwd, out, tmpd = tmp_path / "cwd", tmp_path / "out", tmp_path / "tmpdir"
    for d in (cwd, out, tmpd):
        d.mkdir()
    (out / "keep.onnx").write_bytes(b"a good file that must survive")
    (out / "keep.onnx.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("a text file, not weights")
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "afolder").mkdir()
    (tmp_path / "model.pth").write_bytes(b"\x80\x02}q\x00.")            # a pickle
    np.save(tmp_path / "array.npy", np.zeros(3))
    os.replace(tmp_path / "array.npy", tmp_path / "array.npz")          # .npy under the .npz name
    (tmp_path / "garbage.safetensors").write_bytes(b"\xff" * 64)
    np.savez(tmp_path / "small.npz", w=np.zeros((2, 2), np.float32))    # not resnet50's tensors
    return tmp_path


CLI_CASES = {
    "unknown_model": ["resnet51", "--to", "onnx"],
    "unknown_flowvision_model": ["flowvision:resnet1800", "--to", "onnx"],
    "misspelled_flowvision_model": ["flowvision:mobilenetv3_small", "--to", "onnx"],
    "unknown_target": ["resnet50", "--to", "tflite"],
    "opset_too_new": ["resnet50", "--opset", "99", "--no-validate"],
    "opset_too_old": ["resnet50", "--opset", "9"],
    "opset_not_a_number": ["resnet50", "--opset", "thirteen"],
    "input_shape_zero": ["resnet50", "--input-shape", "3,0,224"],
    "input_shape_words": ["resnet50", "--input-shape", "three,by,three"],
    "input_shape_negative": ["resnet50", "--input-shape", "3,-224,224"],
    "output_is_a_folder": ["resnet50", "-o", "{out}"],
    "output_under_a_file": ["resnet50", "-o", "{tmp}/notes.txt/r.onnx"],
    "weights_missing": ["resnet50", "--weights", "{tmp}/nope.npz"],
    "weights_is_a_folder": ["resnet50", "--weights", "{tmp}/afolder"],
    "weights_empty": ["resnet50", "--weights", "{tmp}/empty.npz", "-o", "{out}/r.onnx"],
    "weights_text": ["resnet50", "--weights", "{tmp}/notes.txt", "-o", "{out}/r.onnx"],
    "int8_without_calib": ["resnet50", "--int8"],
    "calib_missing": ["resnet50", "--int8", "--calib", "{tmp}/no-such-calib"],
    "calib_images_zero": ["resnet50", "--int8", "--calib", "{tmp}/afolder", "--calib-images", "0"],
    "calib_empty_folder": ["resnet50", "--int8", "--calib", "{tmp}/afolder"],
    "calib_method_unknown": ["resnet50", "--int8", "--calib", "{tmp}/afolder", "--calib-method", "magic"],
    "fp16_and_int8": ["resnet50", "--fp16", "--int8"],
    "unknown_flag": ["resnet50", "--turbo"],
    "trt_without_tensorrt": ["resnet50", "--to", "trt"],
    "batch_zero_trt": ["resnet50", "--to", "trt", "--batch", "0"],
    "no_model": ["--to", "onnx"],
    "calib_set_missing_source": ["calib-set", "--from", "{tmp}/nowhere", "-o", "{out}/calib"],
    "calib_set_no_output": ["calib-set", "--from", "{tmp}/afolder"],
    "calib_set_per_class_zero": ["calib-set", "--from", "{tmp}/afolder", "--per-class", "0", "-o", "{out}/c"],
    "list_with_argument": ["list", "extra"],
    "int8_output_named_fp32": ["resnet50", "--int8", "--calib", "{tmp}/afolder", "-o", "{out}/r.onnx"],
    "fp16_output_named_fp32": ["resnet50", "--fp16", "-o", "{out}/keep.onnx"],
    "output_wrong_extension": ["resnet50", "-o", "{out}/r.txt"],
    "engine_name_for_onnx": ["resnet50", "--to", "onnx", "-o", "{out}/r.engine"],
    "weights_pickle": ["resnet50", "--weights", "{tmp}/model.pth"],
    "weights_npy_renamed": ["resnet50", "--weights", "{tmp}/array.npz", "-o", "{out}/r.onnx"],
    "weights_garbage_safetensors": ["resnet50", "--weights", "{tmp}/garbage.safetensors", "-o", "{out}/r.onnx"],
    "weights_wrong_model": ["resnet50", "--weights", "{tmp}/small.npz", "-o", "{out}/r.onnx"],
    "calib_images_negative": ["resnet50", "--int8", "--calib", "{tmp}/afolder", "--calib-images", "-3"],
    "calib_is_a_text_file": ["resnet50", "--int8", "--calib", "{tmp}/notes.txt"],
    "max_batch_below_batch": ["resnet50", "--to", "trt", "--batch", "16", "--max-batch", "8"],
    "workspace_zero": ["resnet50", "--to", "trt", "--workspace", "0"],
    "batch_words": ["resnet50", "--batch", "eight"],
    "opset_float": ["resnet50", "--opset", "13.5"],
    "input_shape_two_dims": ["resnet50", "--input-shape", "3,"],
    "empty_model_name": ["", "--to", "onnx"],
    "flowvision_prefix_only": ["flowvision:", "--to", "onnx"],
    "calib_set_per_class_words": ["calib-set", "--from", "{tmp}/afolder", "--per-class", "one", "-o", "{out}/c"],
    "calib_set_empty_source": ["calib-set", "--from", "{tmp}/afolder", "-o", "{out}/c"],
    "calib_set_output_is_a_file": ["calib-set", "--from", "{tmp}/afolder", "-o", "{tmp}/notes.txt"],
    "refused_run_creates_no_output_folder": ["resnet50", "--int8", "--calib", "{tmp}/afolder",
                                             "-o", "{out}/new/sub/r.int8.onnx"],
}


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_cli_bad_input_is_one_line_exit_2_and_touches_nothing(name, sandbox):
    args = [a.format(tmp=sandbox, out=sandbox / "out") for a in CLI_CASES[name]]
    before = _snapshot(sandbox)
    p = run_cli(*args, cwd=sandbox / "cwd", env={"TMPDIR": str(sandbox / "tmpdir")}, timeout=300)
    assert p.returncode == 2, (p.returncode, p.stderr[-800:])
    assert not has_traceback(p), p.stderr[-800:]
    assert p.stderr.strip().count("\n") == 0 and p.stderr.startswith("ofconvert: error:"), p.stderr
    assert _snapshot(sandbox) == before


def _module():
    from ofconvert.zoo import import_oneflow

    flow = import_oneflow()
    flow.manual_seed(0)
    return flow.nn.Sequential(flow.nn.Conv2d(3, 4, 3), flow.nn.ReLU()).eval()


API_CASES = {
    "model_is_a_number": lambda m, p: dict(model=123, onnx_path=p),
    "model_is_a_dict": lambda m, p: dict(model={"a": 1}, onnx_path=p),
    "path_is_a_number": lambda m, p: dict(model=m, onnx_path=42),
    "path_is_a_folder": lambda m, p: dict(model=m, onnx_path=os.path.dirname(p)),
    "input_shape_string": lambda m, p: dict(model=m, onnx_path=p, input_shape="3,224,224"),
    "input_shape_zero": lambda m, p: dict(model=m, onnx_path=p, input_shape=(3, 0, 8)),
    "input_shape_float": lambda m, p: dict(model=m, onnx_path=p, input_shape=(3, 8.5, 8)),
    "input_shape_empty": lambda m, p: dict(model=m, onnx_path=p, input_shape=()),
    "input_shape_bool": lambda m, p: dict(model=m, onnx_path=p, input_shape=(True, 8, 8)),
    "input_shape_wrong_for_module": lambda m, p: dict(model=m, onnx_path=p, input_shape=(5, 8, 8)),
    "opset_string": lambda m, p: dict(model=m, onnx_path=p, input_shape=(3, 8, 8), opset="13"),
    "opset_bool": lambda m, p: dict(model=m, onnx_path=p, input_shape=(3, 8, 8), opset=True),
    "opset_too_new": lambda m, p: dict(model=m, onnx_path=p, input_shape=(3, 8, 8), opset=99),
    "opset_too_old": lambda m, p: dict(model=m, onnx_path=p, input_shape=(3, 8, 8), opset=11),
    "output_names_wrong_count": lambda m, p: dict(model=m, onnx_path=p, input_shape=(3, 8, 8),
                                                  output_names=["a", "b"]),
    "output_names_not_strings": lambda m, p: dict(model=m, onnx_path=p, input_shape=(3, 8, 8), output_names=[1]),
    "output_names_clash_with_input": lambda m, p: dict(model=m, onnx_path=p, input_shape=(3, 8, 8),
                                                       output_names=["input"]),
    "config_is_a_dict": lambda m, p: dict(model=m, onnx_path=p, config={"name": "x"}),
    "unknown_zoo_name": lambda m, p: dict(model="resnet51", onnx_path=p),
    "validation_batches_zero": lambda m, p: dict(model=m, onnx_path=p, input_shape=(3, 8, 8),
                                                 validation_options={"batches": (0,)}),
}


@pytest.mark.parametrize("name", sorted(API_CASES))
def test_export_api_bad_argument_is_one_typed_error(name, sandbox):
    from ofconvert import export
    from ofconvert.errors import OfconvertError

    out = sandbox / "out"
    before = _snapshot(sandbox)
    kwargs = API_CASES[name](_module(), str(out / "keep.onnx"))
    with pytest.raises(OfconvertError) as ei:
        export(verbose=False, **kwargs)
    msg = str(ei.value)
    assert msg and "\n" not in msg and "Traceback" not in msg
    assert _snapshot(sandbox) == before


def test_validate_api_bad_arguments(tmp_path):
    from ofconvert import export, validate
    from ofconvert.config import ModelConfig, PreprocessConfig
    from ofconvert.errors import OfconvertError

    m = _module()
    p = tmp_path / "m.onnx"
    export(m, p, input_shape=(3, 8, 8), verbose=False, validation_options={"use_real": False})
    with pytest.raises(OfconvertError, match="config"):
        validate(m, p, {"name": "x"})
    cfg = ModelConfig("m", PreprocessConfig(8))
    for bad in ((0,), ("a",), ()):
        with pytest.raises(OfconvertError, match="batches"):
            validate(m, p, cfg, batches=bad, verbose=False)


def test_api_type_errors_name_the_parameter(tmp_path):
    import ofconvert
    from ofconvert.errors import OfconvertError

    with pytest.raises(OfconvertError, match="data must be"):
        ofconvert.evaluate(123, ["resnet50"])
    with pytest.raises(OfconvertError, match="options must be"):
        ofconvert.evaluate(str(tmp_path), ["resnet50"], options={"limit": 3})
    with pytest.raises(OfconvertError, match="models must be"):
        ofconvert.evaluate(str(tmp_path), 7)
    with pytest.raises(OfconvertError, match="options must be"):
        ofconvert.benchmark(["resnet50"], options={"onnx_dir": "x"})
    with pytest.raises(OfconvertError, match="opset must be"):
        ofconvert.convert(ofconvert.ConvertOptions("resnet50", opset="13"))
    with pytest.raises(OfconvertError, match="opts must be"):
        ofconvert.convert({"model": "resnet50"})
    with pytest.raises(OfconvertError, match="batch must be"):
        ofconvert.convert(ofconvert.ConvertOptions("resnet50", batch=2.5))
    assert os.listdir(tmp_path) == []


def _vector_onnx(path):
    """A real ONNX whose input is a (batch, 16) vector, not an image."""
    import onnx
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.ones((16, 4), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 16])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 4])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)


TOOL_CASES = {
    "eval_out_dir_is_a_file": ("eval.py", ["--data", "{data}", "--models", "resnet50", "--out-dir", "{tmp}/notes.txt"]),
    "eval_missing_data": ("eval.py", ["--data", "{tmp}/nowhere", "--models", "resnet50"]),
    "eval_unknown_model": ("eval.py", ["--data", "{data}", "--models", "resnet51"]),
    "eval_unknown_backend": ("eval.py", ["--data", "{data}", "--models", "resnet50", "--backends", "tpu"]),
    "eval_unknown_precision": ("eval.py", ["--data", "{data}", "--models", "resnet50", "--precisions", "fp8"]),
    "eval_limit_zero": ("eval.py", ["--data", "{data}", "--models", "resnet50", "--limit", "0"]),
    "eval_batch_zero": ("eval.py", ["--data", "{data}", "--models", "resnet50", "--batch", "0"]),
    "eval_bad_variant": ("eval.py", ["--data", "{data}", "--models", "resnet50", "--variants", "ort-cpu-fp32"]),
    "eval_models_dir_missing": ("eval.py", ["--data", "{data}", "--models", "resnet50", "--no-produce",
                                            "--onnx-dir", "{tmp}/nowhere"]),
    "eval_models_dir_is_a_file": ("eval.py", ["--data", "{data}", "--models", "resnet50", "--onnx-dir",
                                              "{tmp}/notes.txt"]),
    "bench_unknown_model": ("bench.py", ["--models", "resnet51"]),
    "bench_unknown_backend": ("bench.py", ["--models", "resnet50", "--backends", "tpu"]),
    "bench_unknown_precision": ("bench.py", ["--models", "resnet50", "--precisions", "int4"]),
    "bench_batch_zero": ("bench.py", ["--models", "resnet50", "--batch", "0"]),
    "bench_batch_words": ("bench.py", ["--models", "resnet50", "--batch", "eight"]),
    "bench_onnx_dir_missing": ("bench.py", ["--models", "resnet50", "--onnx-dir", "{tmp}/nowhere"]),
    "bench_onnx_dir_is_a_file": ("bench.py", ["--models", "resnet50", "--onnx-dir", "{tmp}/notes.txt"]),
    "bench_onnx_file_missing": ("bench.py", ["--models", "{tmp}/nope.onnx"]),
    "bench_onnx_file_is_text": ("bench.py", ["--models", "{tmp}/text.onnx"]),
    "bench_onnx_not_an_image_model": ("bench.py", ["--models", "{tmp}/vector.onnx"]),
}


@pytest.mark.parametrize("name", sorted(TOOL_CASES))
def test_tools_bad_input_is_one_line_exit_2_and_touches_nothing(name, sandbox, datasets):
    import subprocess
    import sys

    from conftest import ROOT

    (sandbox / "text.onnx").write_text("not an onnx model")
    _vector_onnx(str(sandbox / "vector.onnx"))
    script, args = TOOL_CASES[name]
    args = [a.format(tmp=sandbox, data=os.path.join(datasets, "imagenet-val-1300")) for a in args]
    before = _snapshot(sandbox)
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", script), *args], cwd=sandbox / "cwd",
                       env={**os.environ, "TMPDIR": str(sandbox / "tmpdir")}, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 2, (p.returncode, p.stderr[-800:])
    assert not has_traceback(p), p.stderr[-800:]
    assert p.stderr.strip().count("\n") == 0, p.stderr
    assert _snapshot(sandbox) == before


def _onnx_file(folder):
    """A real tiny fp32 ONNX (Conv) for the API cases below."""
    import onnx
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["input", "w"], ["logits"])], "g",
                          [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", 3, 4, 4])],
                          [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 2, 4, 4])], [w])
    path = os.path.join(folder, "tiny.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


OTHER_API_CASES = {
    "to_fp16_missing_source":
        lambda d, onnx_path: ("to_fp16", (os.path.join(d, "none.onnx"), os.path.join(d, "o.onnx"))),
    "to_fp16_text_source": lambda d, onnx_path: ("to_fp16", (os.path.join(d, "notes.txt"), os.path.join(d, "o.onnx"))),
    "to_fp16_into_a_folder": lambda d, onnx_path: ("to_fp16", (onnx_path, os.path.join(d, "afolder"))),
    "quantize_missing_source": lambda d, onnx_path: ("quantize_qdq", (os.path.join(d, "none.onnx"),
                                                                      os.path.join(d, "q.onnx"), {})),
    "quantize_bad_target": lambda d, onnx_path: ("quantize_qdq", (onnx_path, os.path.join(d, "q.onnx"), {}, "tpu")),
    "calibrate_missing_model": lambda d, onnx_path: ("calibrate", (os.path.join(d, "none.onnx"),
                                                                   os.path.join(d, "afolder"), None)),
    "build_engine_missing_onnx": lambda d, onnx_path: ("build_engine", (os.path.join(d, "none.onnx"),
                                                                        os.path.join(d, "e.engine"))),
    "make_runner_unknown_backend": lambda d, onnx_path: ("make_runner", ("tpu", onnx_path)),
    "get_config_number": lambda d, onnx_path: ("get_config", (42,)),
    "get_config_unknown": lambda d, onnx_path: ("get_config", ("resnet51",)),
}


@pytest.mark.parametrize("name", sorted(OTHER_API_CASES))
def test_other_api_bad_arguments_are_typed_errors(name, sandbox):
    import ofconvert
    from ofconvert.errors import OfconvertError

    d = str(sandbox)
    path = _onnx_file(d)
    before = _snapshot(sandbox)
    fn, args = OTHER_API_CASES[name](d, path)
    with pytest.raises(OfconvertError) as ei:
        getattr(ofconvert, fn)(*args)
    assert str(ei.value) and "\n" not in str(ei.value)
    assert _snapshot(sandbox) == before
