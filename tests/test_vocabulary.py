"""One vocabulary for what a file holds (artifacts.Flavour) and one precision
detector (graph.precision.onnx_precision) that names, content checks and the TensorRT
plan all use: a model whose only float16 is a Cast is fp16 to each of them."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ofconvert.artifacts import FLAVOURS, Flavour, detect_precision
from ofconvert.config import METADATA_KEY, PreprocessConfig
from ofconvert.graph.precision import onnx_precision


def _cast_only(path):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])
    w = numpy_helper.from_array(np.ones((3, 3, 8, 8), np.float32), "w")
    nodes = [helper.make_node("Cast", ["input"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("Cast", ["h"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Conv", ["f", "w"], ["c"]),
             helper.make_node("Flatten", ["c"], ["logits"])]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]), opset_imports=[helper.make_opsetid("", 13)])
    m.metadata_props.add(key=METADATA_KEY, value=PreprocessConfig(8, crop_pct=1.0).to_json())
    onnx.save(m, str(path))
    return m


def test_a_cast_to_fp16_makes_a_model_fp16_to_every_reader(tmp_path):
    from ofconvert.trt.plan import inspect_onnx

    m = _cast_only(tmp_path / "m.onnx")
    assert onnx_precision(m) == Flavour.FP16 == "fp16"
    assert detect_precision(tmp_path / "m.onnx") == "fp16"
    assert inspect_onnx(tmp_path / "m.onnx").flavour == "fp16"


def test_the_flavours_are_the_file_names_words():
    assert FLAVOURS == ("fp32", "fp16", "int8", "int8-cpu")
    assert [str(f) for f in Flavour] == list(FLAVOURS) and Flavour("int8-cpu") is Flavour.INT8_CPU


def test_a_flavour_says_its_arithmetic_and_its_qdq_dialect():
    """The one mapping from what a file holds to how it computes and which Q/DQ
    dialect writes it (the TensorRT plan, the ORT-TensorRT options and the budget
    read these, not tables of their own)."""
    assert [(f.value, f.precision, f.target) for f in Flavour] == [
        ("fp32", "fp32", None), ("fp16", "fp16", None), ("int8", "int8", "trt"), ("int8-cpu", "int8", "cpu")]
