"""Export of any user module: determinism, input_shape, several outputs, typed
errors naming the op, a forward that fails at the trace shape, transactional
replacement of an existing file."""
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, has_traceback, needs_oneflow, run_cli

pytestmark = needs_oneflow


def _flow():
    from ofconvert.zoo import import_oneflow

    return import_oneflow()


def _two_branch_module():
    """Two scalar branches: the pattern whose node order used to depend on
    process-wide counters (traces then "differed in structure")."""
    flow = _flow()
    nn = flow.nn

    class TwoBranch(nn.Module):
        def __init__(self):
            super().__init__()
            flow.manual_seed(3)
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return (y * 0.5 + 1.0).mean((2, 3)) + (y - 2.0).amax((2, 3)) * 0.25

    return TwoBranch().eval()


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_same_model_gives_the_same_bytes_in_one_process_and_across_processes(tmp_path):
    from ofconvert import export

    shas = set()
    for i in range(6):
        p = tmp_path / f"m{i}.onnx"
        export(_two_branch_module(), p, input_shape=(3, 16, 16), verbose=False,
               validation_options={"use_real": False})
        shas.add(_sha(p))
    assert len(shas) == 1, "repeated exports in one process differ"
    code = ("import sys; from test_export_any import _two_branch_module; from ofconvert import export; "
            "export(_two_branch_module(), sys.argv[1], input_shape=(3, 16, 16), verbose=False, validate=False)")
    other = tmp_path / "other.onnx"
    # cwd=tests: `python -c` imports this file's builder from there
    subprocess.run([sys.executable, "-c", code, str(other)], check=True, capture_output=True,
                   cwd=os.path.join(ROOT, "tests"))
    assert _sha(other) == shas.pop(), "an export in another process differs"


def test_input_shape_multiple_outputs_and_names(tmp_path):
    import onnx
    import onnxruntime as ort

    from ofconvert import export

    flow = _flow()
    nn = flow.nn

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 4, 3, stride=2, padding=1)
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            f = self.stem(x).relu()
            return f, self.head(f.mean((2, 3)))

    m = Backbone().eval()
    path = tmp_path / "bb.onnx"
    r = export(m, path, input_shape=(1, 20, 12), verbose=False)
    assert r.validation.passed and r.input_shape == [1, 20, 12]
    model = onnx.load(str(path))
    assert [o.name for o in model.graph.output] == ["output0", "output1"]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((7, 1, 20, 12)).astype(np.float32)   # batch 7: not traced
    feat, logits = sess.run(None, {"input": x})
    with flow.no_grad():
        rf, rl = m(flow.tensor(x))
    np.testing.assert_allclose(feat, rf.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logits, rl.numpy(), rtol=1e-4, atol=1e-5)
    # feature map (rank 4) and logits (rank 2) both checked, batch 1/4/5
    assert {c.output for c in r.validation.checks} == {"output0", "output1"}
    assert {c.batch for c in r.validation.checks} == {1, 4, 5}
    named = tmp_path / "named.onnx"
    export(m, named, input_shape=(1, 20, 12), output_names=["features", "logits"], verbose=False,
           validation_options={"use_real": False})
    assert [o.name for o in onnx.load(str(named)).graph.output] == ["features", "logits"]


def test_forward_failing_at_the_trace_shape_names_the_shape(tmp_path):
    from ofconvert import export
    from ofconvert.errors import ExportError

    flow = _flow()
    m = flow.nn.Sequential(flow.nn.Flatten(), flow.nn.Linear(3 * 32 * 32, 4)).eval()
    with pytest.raises(ExportError, match=r"shape \(2, 3, 224, 224\).*input_shape="):
        export(m, tmp_path / "x.onnx", verbose=False)
    assert not os.listdir(tmp_path)
    export(m, tmp_path / "x.onnx", input_shape=(3, 32, 32), verbose=False)


def test_unsupported_op_is_one_typed_error_naming_op_module_and_opset(tmp_path):
    from ofconvert import export
    from ofconvert.errors import ExportError

    flow = _flow()
    nn = flow.nn

    class Inner(nn.Module):
        def forward(self, x):
            return flow.sort(x, dim=1)[0]

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Inner()

        def forward(self, x):
            return self.block(x)

    with pytest.raises(ExportError) as ei:
        export(Outer().eval(), tmp_path / "s.onnx", input_shape=(3, 4, 4), opset=17, verbose=False)
    msg = str(ei.value)
    assert "`sort`" in msg or "sort" in msg.split("module")[0], msg
    assert "module `block`" in msg and "opset 17" in msg and "\n" not in msg
    assert not os.listdir(tmp_path)


def test_failed_validation_leaves_the_existing_file_and_reports_byte_identical(tmp_path, clean_tmp_check, monkeypatch):
    from onnx import numpy_helper

    import ofconvert.exporter as exporter
    from ofconvert import export
    from ofconvert.errors import AtolError

    m = _two_branch_module()
    path = tmp_path / "good.onnx"
    export(m, path, input_shape=(3, 16, 16), verbose=False, validation_options={"use_real": False})
    before = {p: _sha(tmp_path / p) for p in os.listdir(tmp_path) if p != "private-tmp"}
    assert set(before) == {"good.onnx", "good.onnx.json", "good.onnx.validation.json"}
    real_fold = exporter.fold_bias_add

    def buggy_fold(model):      # inject a converter bug: one weight off by 1 %
        n = real_fold(model)
        t = next(t for t in model.graph.initializer if t.data_type == 1 and len(t.dims) == 4)
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * 1.01, t.name))
        return n

    monkeypatch.setattr(exporter, "fold_bias_add", buggy_fold)
    with pytest.raises(AtolError):
        export(m, path, input_shape=(3, 16, 16), verbose=False, validation_options={"use_real": False})
    after = {p: _sha(tmp_path / p) for p in os.listdir(tmp_path) if p != "private-tmp"}
    assert after == before
    assert clean_tmp_check() == []


def test_no_validate_prints_a_warning_and_drops_stale_validation_report(tmp_path):
    from ofconvert import export

    path = tmp_path / "m.onnx"
    export(_two_branch_module(), path, input_shape=(3, 16, 16), verbose=False, validation_options={"use_real": False})
    assert (tmp_path / "m.onnx.validation.json").exists()
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        export(_two_branch_module(), path, input_shape=(3, 16, 16), validate=False)
    assert buf.getvalue().count("\n") == 1 and "not validated" in buf.getvalue()
    assert not (tmp_path / "m.onnx.validation.json").exists()


@pytest.mark.parametrize("opset", ["99", "12"])
def test_unsupported_opset_is_refused_before_the_export(tmp_path, opset):
    p = run_cli("resnet50", "--to", "onnx", "--opset", opset, "--no-validate", "-o", tmp_path / "r.onnx")
    assert p.returncode == 2 and not has_traceback(p)
    assert p.stderr.strip().count("\n") == 0 and f"--opset {opset}" in p.stderr
    assert not os.listdir(tmp_path)


def test_flowvision_model_by_name_and_misspelling(tmp_path):
    p = run_cli("flowvision:squeezenet1_1", "--to", "onnx", "-o", tmp_path / "sq.onnx", "--input-shape", "3,96,96")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "[✗]" not in p.stdout and "[✓] logits random batch  5" in p.stdout
    q = run_cli("flowvision:squeezenet1_2", "--to", "onnx", "-o", tmp_path / "x.onnx")
    assert q.returncode == 2 and not has_traceback(q)
    assert "did you mean flowvision:squeezenet1_1" in q.stderr and q.stderr.strip().count("\n") == 0


_WRITER = """
import sys
from ofconvert.zoo import import_oneflow
from ofconvert import export
flow = import_oneflow()
flow.manual_seed(int(sys.argv[2]))
m = flow.nn.Sequential(flow.nn.Conv2d(3, 4, 3), flow.nn.ReLU()).eval()
for _ in range(3):
    export(m, sys.argv[1], input_shape=(3, 16, 16), verbose=False, validation_options={"use_real": False})
"""


def test_two_concurrent_writers_leave_one_consistent_set(tmp_path):
    import json

    target = tmp_path / "m.onnx"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(target), str(seed)]) for seed in (1, 2)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    report = json.load(open(str(target) + ".json"))
    val = json.load(open(str(target) + ".validation.json"))
    assert report["onnx_sha256"] == _sha(target)
    assert val["passed"] and report["validation"]["checks"] == val["checks"]
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "m.onnx.json", "m.onnx.validation.json"]
