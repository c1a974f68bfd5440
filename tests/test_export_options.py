"""``export(model, path, options=None, **settings)`` and ``validate(module, path, config,
options=None, **settings)``: keyword calls as before, an ``ExportOptions`` /
``ValidateOptions`` object, keywords overriding it, one-line errors for an unknown
keyword or a wrong options type."""
import dataclasses
import hashlib
import json

import pytest
from conftest import needs_oneflow


def _tiny():
    """Conv2d + ReLU on (3, 16, 16): exports and validates in seconds."""
    from ofconvert.zoo import import_oneflow

    flow = import_oneflow()
    flow.manual_seed(5)
    return flow.nn.Sequential(flow.nn.Conv2d(3, 4, 3, padding=1), flow.nn.ReLU()).eval()


def _report(path):
    with open(str(path) + ".json") as f:
        return json.load(f)


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _one_line(e):
    text = str(e.value)
    assert text and "\n" not in text, text
    return text


def test_public_names_and_frozen():
    import ofconvert
    from ofconvert.export_options import ExportOptions, ValidateOptions

    assert ofconvert.ExportOptions is ExportOptions and ofconvert.ValidateOptions is ValidateOptions
    o = ExportOptions(opset=17)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.opset = 13
    with pytest.raises(dataclasses.FrozenInstanceError):
        ValidateOptions().batches = (2,)
    assert o.opset == 17 and ExportOptions().opset == 13 and ValidateOptions().batches == (1, 4, 5)


def test_validation_options_dict_becomes_validate_options():
    from ofconvert import ExportOptions, ValidateOptions

    o = ExportOptions(validation_options={"batches": (1, 2), "use_real": False})
    assert o.validation_options == ValidateOptions(batches=(1, 2), use_real=False)


@needs_oneflow
def test_keyword_call_equals_options_call(tmp_path):
    from ofconvert import ExportOptions, ValidateOptions, export

    a, b = tmp_path / "kw.onnx", tmp_path / "opts.onnx"
    ra = export(_tiny(), a, opset=14, input_shape=(3, 16, 16), verbose=False,
                validation_options={"batches": (1, 2), "use_real": False})
    rb = export(_tiny(), b, ExportOptions(opset=14, input_shape=(3, 16, 16), verbose=False,
                                          validation_options=ValidateOptions(batches=(1, 2), use_real=False)))
    assert _sha(a) == _sha(b)
    for r, path in ((ra, a), (rb, b)):
        rep = _report(path)
        assert rep["opset"] == 14 and r.opset == 14
        assert rep["input_shape"] == [3, 16, 16]
        assert sorted({c["batch"] for c in rep["validation"]["checks"]}) == [1, 2]
        assert {c["inputs"] for c in rep["validation"]["checks"]} == {"random"}
        assert rep["validation"]["passed"] is True


@needs_oneflow
def test_override_wins_over_the_options_object(tmp_path):
    import onnx

    from ofconvert import ExportOptions, export

    p = tmp_path / "m.onnx"
    base = ExportOptions(opset=14, validate=False, input_shape=(3, 16, 16), verbose=False)
    export(_tiny(), p, base, opset=15)
    assert _report(p)["opset"] == 15
    assert [o.version for o in onnx.load(str(p)).opset_import if o.domain in ("", "ai.onnx")] == [15]
    assert _report(p)["validation"] is None and not (tmp_path / "m.onnx.validation.json").exists()
    assert base.opset == 14   # the caller's object is left as it was


@needs_oneflow
def test_unknown_keyword_is_one_line_type_error(tmp_path):
    from ofconvert import export

    p = tmp_path / "m.onnx"
    with pytest.raises(TypeError) as e:
        export(_tiny(), p, input_shape=(3, 16, 16), bogus=1)
    text = _one_line(e)
    assert "export()" in text and "'bogus'" in text and "opset" in text and "validation_options" in text
    with pytest.raises(TypeError) as e:
        export(_tiny(), p, input_shape=(3, 16, 16), validation_options={"bogus": 1})
    text = _one_line(e)
    assert "validation_options" in text and "'bogus'" in text and "batches" in text
    assert not p.exists()


@needs_oneflow
def test_wrong_options_type_is_one_line_error(tmp_path):
    from ofconvert import ValidateOptions, export
    from ofconvert.errors import OfconvertError

    p = tmp_path / "m.onnx"
    with pytest.raises(OfconvertError) as e:
        export(_tiny(), p, {"opset": 14})
    assert "ExportOptions" in _one_line(e) and "dict" in str(e.value)
    with pytest.raises(OfconvertError) as e:
        export(_tiny(), p, ValidateOptions())
    assert "ExportOptions" in _one_line(e)
    with pytest.raises(OfconvertError) as e:
        export(_tiny(), p, validation_options=[("batches", (1,))])
    assert "ValidateOptions" in _one_line(e)
    with pytest.raises(OfconvertError) as e:   # the export decides what it validates and where the report goes
        export(_tiny(), p, validation_options={"report_path": "x.json"})
    assert "report_path" in _one_line(e)
    assert not p.exists()


@needs_oneflow
def test_validate_keywords_options_and_override(tmp_path, capsys):
    from ofconvert import ValidateOptions, export, validate
    from ofconvert.config import config_for_shape
    from ofconvert.errors import OfconvertError

    p = tmp_path / "m.onnx"
    m = _tiny()
    export(m, p, input_shape=(3, 16, 16), validate=False, verbose=False)
    cfg = config_for_shape("Tiny", (3, 16, 16), weights="user module")
    r = validate(m, p, cfg, batches=(1, 2), use_real=False, verbose=False, report_path=False)
    assert sorted({c.batch for c in r.checks}) == [1, 2] and r.passed
    assert not (tmp_path / "m.onnx.validation.json").exists()
    opts = ValidateOptions(batches=(1, 2), use_real=False, label="LABEL-X")
    r = validate(m, p, cfg, opts, batches=(3,))
    assert sorted({c.batch for c in r.checks}) == [3]
    assert "Validating LABEL-X" in capsys.readouterr().out
    assert json.loads((tmp_path / "m.onnx.validation.json").read_text())["checks"][0]["batch"] == 3
    with pytest.raises(TypeError) as e:
        validate(m, p, cfg, batchez=(1,))
    assert "validate()" in _one_line(e) and "'batchez'" in str(e.value) and "batches" in str(e.value)
    with pytest.raises(OfconvertError) as e:   # the old 4th positional parameter was batches
        validate(m, p, cfg, (1, 2))
    assert "ValidateOptions" in _one_line(e)


@needs_oneflow
def test_export_label_and_verbose_from_validation_options(tmp_path, capsys):
    from ofconvert import ValidateOptions, export

    p = tmp_path / "m.onnx"
    export(_tiny(), p, input_shape=(3, 16, 16), verbose=True,
           validation_options=ValidateOptions(batches=(1,), use_real=False, label="FINAL.onnx"))
    out = capsys.readouterr().out
    assert "Validating FINAL.onnx against OneFlow" in out
    export(_tiny(), p, input_shape=(3, 16, 16), verbose=True,
           validation_options=ValidateOptions(batches=(1,), use_real=False, verbose=False))
    assert "Validating" not in capsys.readouterr().out
    assert [c["batch"] for c in _report(p)["validation"]["checks"]] == [1]
